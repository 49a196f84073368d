"""Measures of the ctstyle bundle: per-organ Gram distance, organ HU, threshold re-segmentation Dice.

Organs are the six segments of the label map (``scripts.labels.LABEL_VALUES``). A threshold
re-segmentation of a CT can only tell apart what differs in HU: air outside the body (< ``air_below_hu``,
connected to the image border), lungs (< ``air_below_hu``, enclosed), bone (> ``bone_above_hu``) and soft
tissue (the rest). Body soft tissue, heart / vessels and spinal cord all lie at 30-50 HU, so the map is
compared in these four groups (:data:`GROUPS`). The diversity of seeds is measured with the metric registry's
MS-SSIM (:func:`gan_core.evaluation.metrics.pairwise_ms_ssim`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from gan_core.losses import segment_grams, style_distances
from gan_core.vgg import STYLE_LAYERS, VGG19Features

from .labels import LABEL_VALUES

GROUPS: tuple[str, ...] = ("air", "lungs", "soft_tissue", "bone")
# Group index of each label value of the map.
GROUP_OF_LABEL: dict[int, int] = {0: 0, 100: 1, 50: 2, 150: 2, 230: 2, 200: 3}


@torch.no_grad()
def organ_gram_distances(
    vgg: VGG19Features,
    image: torch.Tensor,
    masks: torch.Tensor,
    style_image: torch.Tensor,
    style_masks: torch.Tensor,
    layers: Sequence[str] = STYLE_LAYERS,
) -> np.ndarray:
    """Per-organ style distance (eq. 6 terms, summed over ``layers``) of ``image`` to ``style_image``.

    Args:
        image, style_image: (1, 1, H, W) in [-1, 1].
        masks, style_masks: their (1, S, H, W) one-hot maps.

    Returns:
        (S,) float64, NaN where the organ is absent from either image.
    """
    g = segment_grams(vgg(image), masks, layers)
    s = segment_grams(vgg(style_image), style_masks, layers)
    d = style_distances(g, s)[0].double().cpu().numpy()
    present = (masks.sum(dim=(2, 3))[0] > 0) & (style_masks.sum(dim=(2, 3))[0] > 0)
    return np.where(present.cpu().numpy(), d, np.nan)


def paint_organ_means(images: torch.Tensor, onehots: torch.Tensor, target_onehots: torch.Tensor) -> torch.Tensor:
    """A renderer that copies nothing: each organ of ``target_onehots`` painted with its mean over ``images``.

    The null of the memorisation ratio for a map-conditioned generator: it draws only what the labels fix (the
    training set's typical value per organ), so it cannot reproduce any training CT, yet it sits nearer the
    training set than a real CT, whose own patient detail the labels do not fix (the conditional mean).

    Args:
        images: (N, 1, H, W) real images (any intensity unit); onehots: (N, S, H, W) their one-hot maps.
        target_onehots: (M, S, H', W') the maps to paint.

    Returns:
        (M, 1, H', W') in the unit of ``images``; an organ absent from every image gets the images' overall mean.
    """
    counts = onehots.sum(dim=(0, 2, 3))
    means = torch.where(counts > 0, (images * onehots).sum(dim=(0, 2, 3)) / counts.clamp_min(1), images.mean())
    return (target_onehots * means[None, :, None, None]).sum(dim=1, keepdim=True)


def organ_mean_hu(hu: np.ndarray, label_map: np.ndarray, values: Sequence[int] = LABEL_VALUES) -> np.ndarray:
    """(S,) mean HU of each organ of ``label_map`` (same shape as ``hu``); NaN for an absent organ."""
    return np.array([hu[label_map == v].mean() if (label_map == v).any() else np.nan for v in values])


def organ_hu_range(
    hu: np.ndarray, label_map: np.ndarray, percentiles: tuple[float, float] = (5.0, 95.0),
    values: Sequence[int] = LABEL_VALUES,
) -> np.ndarray:
    """(S, 2) HU percentiles of each organ (the organ's intensity range); NaN rows for absent organs."""
    out = np.full((len(values), 2), np.nan)
    for s, v in enumerate(values):
        if (label_map == v).any():
            out[s] = np.percentile(hu[label_map == v], percentiles)
    return out


def label_groups(label_map: np.ndarray) -> np.ndarray:
    """Label values -> group indices of :data:`GROUPS` (int8, same shape)."""
    out = np.zeros(label_map.shape, np.int8)
    for value, group in GROUP_OF_LABEL.items():
        out[label_map == value] = group
    return out


def threshold_resegmentation(hu: np.ndarray, air_below_hu: float = -500.0, bone_above_hu: float = 150.0) -> np.ndarray:
    """Group map of a 2D CT in HU by thresholds: air-like pixels touching the border -> air, other air-like
    pixels -> lungs, above ``bone_above_hu`` -> bone, the rest -> soft tissue; int8 indices of :data:`GROUPS`."""
    airlike = hu < air_below_hu
    components, _ = ndimage.label(airlike)
    border = np.unique(np.concatenate([components[0], components[-1], components[:, 0], components[:, -1]]))
    outside = np.isin(components, border[border > 0])
    out = np.full(hu.shape, GROUPS.index("soft_tissue"), np.int8)
    out[hu > bone_above_hu] = GROUPS.index("bone")
    out[airlike] = GROUPS.index("lungs")
    out[outside] = GROUPS.index("air")
    return out


def dice_per_group(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(len(GROUPS),) Dice of two group maps; NaN for a group absent from both."""
    out = np.full(len(GROUPS), np.nan)
    for g in range(len(GROUPS)):
        a, b = pred == g, ref == g
        total = a.sum() + b.sum()
        if total:
            out[g] = 2.0 * np.logical_and(a, b).sum() / total
    return out
