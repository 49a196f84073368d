"""Per-segment style (Gram) and content losses on VGG features, total variation, adversarial BCE and the
mode-seeking diversity term.

Krishna & Mueller, eqs. (2)-(9): for each of the six segments sg of the label map and each VGG layer l
with N_l channels and M_l positions,

    style   L_s = sum_sg sum_l 1 / (4 N_l^2 M_l^2) || G(R * m_sg) - G(S * m'_sg) ||_F^2
    content L_c = sum_sg sum_l 1 / (2 N_l M_l)     || R * m_sg - O * m_sg ||_F^2
    TV      L_tv = sum_{h,w} (x[h+1,w] - x[h,w])^2 + (x[h,w+1] - x[h,w])^2

with R, S, O the features of the generated, style and content (original) image, m_sg the segment's mask of
the input map (downsampled to layer l by area averaging) and m'_sg the style image's own mask.

Choice for the style term: a segment has a different area in the generated map and in the style image, so
each Gram is divided by its OWN mask area A (a weighted mean of feature products, ``G / A``) and the loss is
``|| G_r / A_r - G_s / A_s ||^2 / (4 N^2)``; when both areas equal M this is exactly the paper's
``1/(4 N^2 M^2) || G_r - G_s ||^2``. A segment absent from either image contributes zero (never NaN).
The content term uses M_l = all positions of the layer, so with binary masks the sum over segments is
Gatys' whole-image content loss. Every function returns per-image values; losses average over the batch.

The paper's generator, like pix2pix's (Isola et al. 2017), learns to ignore its noise: no term rewards two
noise codes for giving two images. :func:`mode_seeking` is the regulariser of Mao et al. 2019 (MSGAN,
"Mode Seeking Generative Adversarial Networks for Diverse Image Synthesis", eq. 3, minimised in the
inverted form of their code): ``1 / (mean|G(y, z1) - G(y, z2)| / mean|z1 - z2| + eps)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

# Smallest mask area (in feature-map positions) for which a segment counts as present.
MIN_AREA = 1e-3


def downsample_masks(masks: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Area-average (B, S, H, W) masks in [0, 1] to ``size`` = (H_l, W_l) of a feature map."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.adaptive_avg_pool2d(masks, tuple(size))


def gram_matrix(features: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Area-normalised Gram matrix of (masked) features.

    Args:
        features: (B, N, H, W).
        mask: (B, H, W) weights in [0, 1], or ``None`` for the whole image.

    Returns:
        ``(gram, area)``: gram (B, N, N) = ``(F m)(F m)^T / A`` with A = sum of the mask (H * W without
        one), 0 where A < MIN_AREA; area (B,).
    """
    b, n = features.shape[:2]
    f = features.reshape(b, n, -1)
    if mask is None:
        area = torch.full((b,), float(f.shape[-1]), dtype=f.dtype, device=f.device)
    else:
        m = mask.reshape(b, 1, -1).to(f.dtype)
        f = f * m
        area = m.sum(dim=(1, 2))
    gram = torch.bmm(f, f.transpose(1, 2)) / area.clamp_min(MIN_AREA)[:, None, None]
    return gram, area


def segment_grams(
    features: dict[str, torch.Tensor], masks: torch.Tensor, layers: Sequence[str]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-segment Grams of each layer.

    Args:
        features: {layer: (B, N_l, H_l, W_l)}.
        masks: (B, S, H, W) segment masks at image resolution (one-hot of the label map).
        layers: the layers to use.

    Returns:
        {layer: (grams (B, S, N_l, N_l), areas (B, S))}.
    """
    out = {}
    for layer in layers:
        feat = features[layer]
        m = downsample_masks(masks.to(feat.dtype), feat.shape[-2:])
        pairs = [gram_matrix(feat, m[:, s]) for s in range(m.shape[1])]
        out[layer] = (torch.stack([g for g, _ in pairs], 1), torch.stack([a for _, a in pairs], 1))
    return out


def style_distances(
    grams_r: dict[str, tuple[torch.Tensor, torch.Tensor]], grams_s: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """Per-segment style distance summed over layers: (B, S); zero where a segment is absent in either image.

    ``grams_s`` may have batch size 1 (one fixed style image), broadcast over ``grams_r``'s batch.
    """
    total = None
    for layer, (g_r, a_r) in grams_r.items():
        g_s, a_s = grams_s[layer]
        n = g_r.shape[-1]
        present = (a_r >= MIN_AREA) & (a_s >= MIN_AREA)
        d = ((g_r - g_s) ** 2).sum(dim=(-2, -1)) / (4.0 * n * n)
        d = torch.where(present, d, torch.zeros_like(d))
        total = d if total is None else total + d
    if total is None:
        raise ValueError("no style layers given")
    return total


def content_distances(
    features_r: dict[str, torch.Tensor],
    features_o: dict[str, torch.Tensor],
    masks: torch.Tensor,
    layers: Sequence[str],
) -> torch.Tensor:
    """Per-segment content distance summed over layers: (B, S).

    Args:
        features_r, features_o: {layer: (B, N_l, H_l, W_l)} of the generated and the content image.
        masks: (B, S, H, W) segment masks of the map both images share.
        layers: the content layers.
    """
    total = None
    for layer in layers:
        diff = features_r[layer] - features_o[layer]
        b, n, h, w = diff.shape
        m = downsample_masks(masks.to(diff.dtype), (h, w))
        d = ((diff[:, None] * m[:, :, None]) ** 2).sum(dim=(2, 3, 4)) / (2.0 * n * h * w)
        total = d if total is None else total + d
    if total is None:
        raise ValueError("no content layers given")
    return total


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Squared-difference total variation of (B, C, H, W) images, summed over pixels: (B,)."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]) ** 2
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2
    return dh.sum(dim=(1, 2, 3)) + dw.sum(dim=(1, 2, 3))


def discriminator_bce(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. (9): ``-log D(x, y) - log(1 - D(G(y, z), y))`` on logits (sigmoid inside, numerically stable).

    Logits of any shape (a patch map per image); the mean over all elements.
    """
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_bce(fake_logits: torch.Tensor) -> torch.Tensor:
    """Adversarial part of eq. (8): ``-log D(G(y, z), y)`` on logits, mean over all elements."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def mode_seeking(
    image_a: torch.Tensor, image_b: torch.Tensor, noise_a: torch.Tensor, noise_b: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """MSGAN's mode-seeking term (Mao et al. 2019): small when the two noise codes give different images.

    Args:
        image_a, image_b: (B, C, H, W) images generated from the same condition with ``noise_a``, ``noise_b``.
        noise_a, noise_b: (B, D) noise codes.
        eps: keeps the term finite when the images are equal.

    Returns:
        (B,) ``1 / (mean|image_a - image_b| / mean|noise_a - noise_b| + eps)``, means over each image's elements.
    """
    image_distance = (image_a - image_b).abs().flatten(1).mean(1)
    noise_distance = (noise_a - noise_b).abs().flatten(1).mean(1)
    return 1.0 / (image_distance / noise_distance + eps)
