"""Lung mask from CT and sampling of nodule-free background VOI centres (the radiogenomic GAN's backgrounds).

Paper recipe (REFERENCE.md section 1): lung segmented, nodules removed from the lung mask, distance transform,
centres drawn 5-25 mm from the mask boundary, a 60 mm VOI around each, 20 random slices per VOI. Here the
nodule is dilated by ``nodule_margin_mm`` before it is removed, distances are Euclidean in mm (anisotropic
voxels), and a centre is rejected when its VOI box would reach the dilated nodule, so no background VOI holds
a nodule voxel.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, Transform
from scipy import ndimage

from gan_core.errors import BundleInputError


def _volume(img: np.ndarray | torch.Tensor) -> np.ndarray:
    """(X, Y, Z) numpy view of a (X, Y, Z) or single-channel (1, X, Y, Z) array/tensor."""
    arr = np.asarray(img.detach().cpu() if isinstance(img, torch.Tensor) else img)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ValueError(f"expected one channel, got shape {arr.shape}")
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(f"expected a 3D volume (X, Y, Z) or (1, X, Y, Z), got shape {arr.shape}")
    return arr


def _spacing(img: object, spacing_mm: Sequence[float] | None) -> np.ndarray:
    if spacing_mm is not None:
        return np.asarray(spacing_mm, dtype=np.float64)
    if isinstance(img, MetaTensor):
        return np.linalg.norm(np.asarray(img.affine, dtype=np.float64)[:3, :3], axis=0)
    return np.ones(3)


def _box(mask: np.ndarray, margin: Sequence[int]) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``margin`` voxels per axis, clipped to the array."""
    lo = np.argwhere(mask).min(axis=0) - np.asarray(margin)
    hi = np.argwhere(mask).max(axis=0) + np.asarray(margin) + 1
    return tuple(slice(max(int(a), 0), min(int(b), n)) for a, b, n in zip(lo, hi, mask.shape, strict=True))


def _distance_inside_mm(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) of each voxel of ``mask`` to the nearest voxel outside it (0 outside).

    Computed on the mask's bounding box grown by one voxel: a nearer outside voxel always exists on that layer,
    so the result equals the full-volume transform (the image border, as there, is not a boundary).
    """
    distance = np.zeros(mask.shape, dtype=np.float64)
    if mask.any():
        box = _box(mask, [1, 1, 1])
        distance[box] = ndimage.distance_transform_edt(mask[box], sampling=spacing)
    return distance


def _dilate_mm(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Voxels within ``radius_mm`` (Euclidean, mm) of ``mask``; computed on its grown bounding box."""
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    box = _box(mask, np.ceil(radius_mm / spacing).astype(int) + 1)
    dilated = np.zeros_like(mask)
    dilated[box] = ndimage.distance_transform_edt(~mask[box], sampling=spacing) <= radius_mm
    return dilated


def _close_mm(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Morphological closing with a ball of ``radius_mm``, padded so the image border does not act as mask."""
    if radius_mm <= 0 or not mask.any():
        return mask
    pad = np.ceil(radius_mm / spacing).astype(int) + 1
    dilated = _dilate_mm(np.pad(mask, [(p, p) for p in pad]), radius_mm, spacing)
    closed = _distance_inside_mm(dilated, spacing) > radius_mm
    return closed[tuple(slice(p, -p) for p in pad)]


def lung_mask(
    ct_hu: np.ndarray | torch.Tensor,
    spacing_mm: Sequence[float] | None = None,
    *,
    threshold_hu: float = -400.0,
    closing_mm: float = 2.0,
    min_second_fraction: float = 0.2,
) -> np.ndarray:
    """Both lungs of a chest CT, as a boolean (X, Y, Z) array (axial slices along Z).

    Steps: voxels below ``threshold_hu``; air connected to the in-plane image border (outside the body, the
    table) dropped; of the remaining 3D components (6-connected) the largest, plus the second largest when it
    has at least ``min_second_fraction`` of the largest's volume (the two lungs; a trachea joining them makes
    one component, and bowel gas is then not taken for a lung); closing with a ``closing_mm`` ball; holes
    filled per axial slice (vessels, nodules inside the lung).

    Args:
        ct_hu: (X, Y, Z) or (1, X, Y, Z) in HU; a MetaTensor gives its own spacing.
        spacing_mm: voxel spacing (3,), overriding the MetaTensor's; 1 mm when neither is known.

    Raises:
        BundleInputError: when nothing lung-like is inside the body (not a chest CT, or not in HU).
    """
    spacing = _spacing(ct_hu, spacing_mm)
    low = _volume(ct_hu) < threshold_hu
    labels, n = ndimage.label(low)
    border = np.unique(
        np.concatenate([labels[0].ravel(), labels[-1].ravel(), labels[:, 0].ravel(), labels[:, -1].ravel()])
    )
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    sizes[border] = 0
    order = np.argsort(sizes)[::-1]
    if sizes[order[0]] == 0:
        raise BundleInputError(
            f"no air-filled region below {threshold_hu} HU inside the body: no lung found",
            path=getattr(ct_hu, "meta", {}).get("filename_or_obj"),
            field="image",
            hint="the background sampling needs a chest CT in HU (RescaleSlope/RescaleIntercept applied)",
        )
    keep = [order[0]]
    if n > 1 and sizes[order[1]] >= min_second_fraction * sizes[order[0]]:
        keep.append(order[1])
    mask = _close_mm(np.isin(labels, keep), closing_mm, spacing)
    for k in range(mask.shape[2]):
        mask[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return mask


def voi_box_halfwidth(voi_mm: float, spacing_mm: Sequence[float]) -> np.ndarray:
    """Half-width, in source voxels per axis, of the region a ``voi_mm`` VOI can read (one voxel extra for
    the linear interpolation); shape (3,), int."""
    return np.ceil(0.5 * voi_mm / np.asarray(spacing_mm, dtype=np.float64)).astype(int) + 1


def background_center_candidates(
    lung: np.ndarray,
    nodule: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    min_mm: float = 5.0,
    max_mm: float = 25.0,
    voi_mm: float = 60.0,
    nodule_margin_mm: float = 5.0,
    voi_inside_scan: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Voxels allowed as background VOI centres, and the distance map they were chosen on.

    Args:
        lung, nodule: boolean (X, Y, Z) masks on the same grid.
        spacing_mm: voxel spacing (3,).

    Returns:
        candidates: boolean (X, Y, Z): inside the lung minus the dilated nodule, ``min_mm`` to ``max_mm`` from
        that mask's boundary, with no dilated-nodule voxel inside the VOI box around it, and (when
        ``voi_inside_scan``) with that box wholly inside the scan, so every VOI slice is real image.
        distance_mm: float (X, Y, Z): distance of each voxel of that mask to the nearest voxel outside it.
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    lung = np.asarray(lung, dtype=bool)
    near_nodule = _dilate_mm(np.asarray(nodule, dtype=bool), nodule_margin_mm, spacing)
    allowed = lung & ~near_nodule
    distance_mm = _distance_inside_mm(allowed, spacing)
    candidates = allowed & (distance_mm >= min_mm) & (distance_mm <= max_mm)
    if voi_inside_scan:
        half = 0.5 * voi_mm / spacing
        for axis, n in enumerate(candidates.shape):
            index = np.arange(n)
            outside = (index - half[axis] < -0.5 - 1e-6) | (index + half[axis] > n - 0.5 + 1e-6)
            candidates[(slice(None),) * axis + (outside,)] = False
    if near_nodule.any():
        size = 2 * voi_box_halfwidth(voi_mm, spacing) + 1
        candidates &= ~ndimage.maximum_filter(near_nodule, size=tuple(size), mode="constant", cval=False)
    return candidates, distance_mm


def _draw(num_candidates: int, num: int, rng: np.random.RandomState | np.random.Generator) -> np.ndarray:
    """Sorted distinct indices into the candidates: ``min(num, num_candidates)`` of them."""
    return np.sort(rng.choice(num_candidates, size=min(num, num_candidates), replace=False))


def _voxels_to_mm(voxels: np.ndarray, affine: np.ndarray) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    return voxels @ affine[:3, :3].T + affine[:3, 3]


def sample_background_centers(
    lung: np.ndarray,
    nodule: np.ndarray,
    affine: np.ndarray,
    num: int,
    rng: np.random.RandomState | np.random.Generator,
    **candidate_kwargs: float,
) -> np.ndarray:
    """Draw up to ``num`` distinct background VOI centres; returns (n, 3) RAS mm, n < num only when fewer
    candidates exist (see :func:`background_center_candidates` for the rules and keyword arguments)."""
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    voxels = np.argwhere(background_center_candidates(lung, nodule, spacing, **candidate_kwargs)[0])
    return _voxels_to_mm(voxels[_draw(len(voxels), num, rng)], affine)


class LungMask(Transform):
    """CT in HU, MetaTensor (1, X, Y, Z) -> lung mask MetaTensor (1, X, Y, Z) uint8 {0, 1}, same affine.

    Keyword arguments go to :func:`lung_mask`.
    """

    def __init__(
        self, threshold_hu: float = -400.0, closing_mm: float = 2.0, min_second_fraction: float = 0.2
    ):
        self.kwargs = {
            "threshold_hu": threshold_hu,
            "closing_mm": closing_mm,
            "min_second_fraction": min_second_fraction,
        }

    def __call__(self, img: MetaTensor) -> MetaTensor:
        mask = lung_mask(img, **self.kwargs)
        meta = {k: v for k, v in img.meta.items() if k != "affine"}
        return MetaTensor(torch.from_numpy(mask[None].astype(np.uint8)), affine=img.affine.clone(), meta=meta)


class LungMaskd(MapTransform):
    """Dictionary twin of :class:`LungMask`: ``data[lung_key] = LungMask(data[image_key])``."""

    def __init__(
        self,
        image_key: str = "image",
        lung_key: str = "lung",
        threshold_hu: float = -400.0,
        closing_mm: float = 2.0,
        min_second_fraction: float = 0.2,
    ):
        super().__init__(image_key)
        self.lung_key = lung_key
        self.lung = LungMask(threshold_hu, closing_mm, min_second_fraction)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        d[self.lung_key] = self.lung(d[self.keys[0]])
        return d


class RandBackgroundCentersd(Randomizable, MapTransform):
    """Dict with a lung mask and a nodule mask (1, X, Y, Z) -> list of ``num_centers`` copies of the dict,
    each with a background VOI centre (RAS mm, list of 3 floats) under ``center_key``.

    Centres lie ``min_mm``-``max_mm`` inside the lung mask with the nodule (dilated by ``nodule_margin_mm``)
    removed, their ``voi_mm`` box holds no dilated-nodule voxel and (``voi_inside_scan``) lies inside the scan. Fewer copies (possibly none) when the
    lung has room for fewer. Deterministic for a given random state (``set_random_state``).
    """

    def __init__(
        self,
        lung_key: str = "lung",
        mask_key: str = "mask",
        num_centers: int = 2,
        min_mm: float = 5.0,
        max_mm: float = 25.0,
        voi_mm: float = 60.0,
        nodule_margin_mm: float = 5.0,
        voi_inside_scan: bool = True,
        center_key: str = "voi_center_mm",
    ):
        super().__init__([lung_key, mask_key])
        self.lung_key = lung_key
        self.mask_key = mask_key
        self.num_centers = int(num_centers)
        self.center_key = center_key
        self.candidate_kwargs = {
            "min_mm": min_mm,
            "max_mm": max_mm,
            "voi_mm": voi_mm,
            "nodule_margin_mm": nodule_margin_mm,
            "voi_inside_scan": voi_inside_scan,
        }
        self._picked = np.zeros(0, dtype=int)

    def randomize(self, num_candidates: int) -> None:
        self._picked = _draw(num_candidates, self.num_centers, self.R)

    def __call__(self, data: Mapping[Hashable, object]) -> list[dict[Hashable, object]]:
        lung = data[self.lung_key]
        affine = np.asarray(lung.affine, dtype=np.float64)
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        candidates, _ = background_center_candidates(
            _volume(lung) > 0, _volume(data[self.mask_key]) > 0, spacing, **self.candidate_kwargs
        )
        voxels = np.argwhere(candidates)
        self.randomize(len(voxels))
        return [
            {**data, self.center_key: center.tolist()}
            for center in _voxels_to_mm(voxels[self._picked], affine)
        ]
