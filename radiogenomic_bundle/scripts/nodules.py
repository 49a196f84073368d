"""Measured nodule descriptors: what a radiologist's ruler and HU probe read off one slice and its mask.

Seven numbers per nodule slice (``DESCRIPTORS``), all from the image in HU and the binary mask:

========================  =====================================================================================
``diameter_mm``           diameter of the circle of the mask's area
``mean_hu``               mean HU inside the mask
``boundary_gradient``     mean gradient magnitude (HU/mm) over the mask's boundary pixels: margin sharpness
``compactness``           ``4 pi area / perimeter^2`` (1 for a disk; spicules and lobes lower it); the perimeter is
                          the count of pixel edges between mask and background times ``pi / 4`` (the mean ratio of
                          a convex curve's length to its axis-aligned staircase), in mm
``solidity``              mask pixels / pixels of its digital convex hull (1 for convex shapes)
``hu_p90``                90th percentile of HU inside the mask (the solid part of a part-solid nodule)
``hu_spread``             standard deviation of HU inside the mask (ground glass around a solid core is wide)
========================  =====================================================================================

They describe a nodule in the terms the phenotypes differ by (size, density, margin, shape, heterogeneity),
and they serve three purposes: the preparation writes them per slice into the datalist (the appearance targets
of training come from the training patients' real nodules only); the evaluation's judge classifies nodules
from them; and the evaluation compares generated nodules with real ones on them.

:func:`contains_nodule` is the test of "an output holds a nodule": at least ``min_pixels`` mask pixels, and
the mean HU inside exceeds the mean HU of a ``ring``-pixel ring around the mask by at least ``contrast_hu``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from .networks import crop_patches, gaussian_kernel

__all__ = ["DESCRIPTORS", "contains_nodule", "crop_patches", "descriptor_matrix", "nodule_contrast", "nodule_descriptors",
           "paste_nodules"]

DESCRIPTORS: tuple[str, ...] = (
    "diameter_mm", "mean_hu", "boundary_gradient", "compactness", "solidity", "hu_p90", "hu_spread",
)


def _perimeter_mm(mask: np.ndarray, sx: float, sy: float) -> float:
    """Length of the mask's outline: pixel edges between mask and background (edges along axis 0 have length
    ``sy``, along axis 1 ``sx``) times ``pi / 4``."""
    padded = np.pad(mask, 1)
    edges_axis0 = np.count_nonzero(padded[1:, :] != padded[:-1, :])  # faces crossing axis 0: each is sy long
    edges_axis1 = np.count_nonzero(padded[:, 1:] != padded[:, :-1])
    return (math.pi / 4.0) * (edges_axis0 * sy + edges_axis1 * sx)


def _solidity(mask: np.ndarray) -> float:
    """Mask pixels / pixels whose centres lie in the convex hull of the mask's pixel centres (the digital convex
    hull, as scikit-image's ``convex_hull_image``): 1 for convex shapes, lower for spiculated ones. Counting pixels
    keeps a digital disk at 1 whatever the spacing (an affine map keeps convexity and containment)."""
    rows, cols = np.nonzero(mask)
    points = np.stack([rows, cols], axis=1).astype(np.float64)
    try:
        hull = ConvexHull(points)
    except QhullError:  # one pixel, or pixels on one line: convex
        return 1.0
    r0, c0 = rows.min(), cols.min()
    grid = np.stack(np.mgrid[r0 : rows.max() + 1, c0 : cols.max() + 1], axis=-1).reshape(-1, 2).astype(np.float64)
    inside = (grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9).all(axis=1)
    return float(min(1.0, rows.size / max(int(inside.sum()), 1)))


def nodule_descriptors(image_hu: np.ndarray, mask: np.ndarray, spacing_mm: Sequence[float]) -> dict[str, float]:
    """The seven :data:`DESCRIPTORS` of one nodule slice.

    Args:
        image_hu: (H, W) in HU.
        mask: (H, W), nodule where > 0.
        spacing_mm: pixel spacing along the two array axes (mm).

    Returns:
        ``{name: value}`` in the order of :data:`DESCRIPTORS`; every value NaN for an empty mask.
    """
    mask = np.asarray(mask) > 0
    if not mask.any():
        return {name: float("nan") for name in DESCRIPTORS}
    image = np.asarray(image_hu, np.float64)
    sx, sy = float(spacing_mm[0]), float(spacing_mm[1])
    area = float(mask.sum()) * sx * sy
    inside = image[mask]
    g0, g1 = np.gradient(image, sx, sy)
    boundary = mask & ~ndimage.binary_erosion(mask)
    perimeter = _perimeter_mm(mask, sx, sy)
    return {
        "diameter_mm": float(2.0 * math.sqrt(area / math.pi)),
        "mean_hu": float(inside.mean()),
        "boundary_gradient": float(np.hypot(g0, g1)[boundary].mean()),
        "compactness": float(4.0 * math.pi * area / perimeter**2),
        "solidity": _solidity(mask),
        "hu_p90": float(np.percentile(inside, 90)),
        "hu_spread": float(inside.std()),
    }


def descriptor_matrix(rows: Sequence[dict]) -> np.ndarray:
    """Descriptor dicts -> (N, 7) float64 in the order of :data:`DESCRIPTORS`."""
    return np.array([[float(r[name]) for name in DESCRIPTORS] for r in rows], dtype=np.float64).reshape(-1, len(DESCRIPTORS))


def nodule_contrast(image_hu: np.ndarray, mask: np.ndarray, ring: int = 3) -> float:
    """Mean HU inside ``mask`` minus the mean HU of the ``ring``-pixel ring around it (8-connected dilation);
    NaN for an empty mask or an empty ring."""
    mask = np.asarray(mask) > 0
    if not mask.any():
        return float("nan")
    grown = ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=int(ring))
    around = grown & ~mask
    if not around.any():
        return float("nan")
    image = np.asarray(image_hu, np.float64)
    return float(image[mask].mean() - image[around].mean())


def contains_nodule(image_hu: np.ndarray, mask: np.ndarray, *, min_pixels: int = 10, ring: int = 3,
                    contrast_hu: float = 100.0) -> bool:
    """True when the mask holds at least ``min_pixels`` pixels and its mean HU exceeds that of a ``ring``-pixel
    ring around it by at least ``contrast_hu`` (issue 13's definition of an output that contains a nodule)."""
    mask = np.asarray(mask) > 0
    if int(mask.sum()) < min_pixels:
        return False
    contrast = nodule_contrast(image_hu, mask, ring)
    return bool(np.isfinite(contrast) and contrast >= contrast_hu)


def paste_nodules(images: torch.Tensor, masks: torch.Tensor, backgrounds: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Real nodules moved onto other backgrounds, through a point-spread function P (Gaussian, ``sigma`` pixels):
    ``background + P(m) * (P(image) - P(background))``, the default generator's own pixel-level fusion with a real
    nodule as its object image and its real mask as its mask. What a perfect nodule generator would give on these
    backgrounds: the reference of the two-sample tests.

    Args:
        images: (M, 1, S, S) real nodule slices in [-1, 1]; masks: (M, 1, S, S) (nodule > 0);
        backgrounds: (M, 1, S, S) the backgrounds to paste onto, in [-1, 1].
    """
    radius = max(1, int(round(2 * sigma)))
    kernel = gaussian_kernel(sigma, radius).to(images.dtype)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(torch.nn.functional.pad(x, [radius] * 4, mode="reflect"), kernel)

    weight = blur((masks > 0).to(images.dtype))
    return (backgrounds + weight * (blur(images) - blur(backgrounds))).clamp(-1.0, 1.0)
