"""Volume of interest (VOI) in physical units, and its axial slices.

A VOI is a ``size_mm`` cube (default 60 mm, the radiogenomic GAN's) centred on a point in RAS mm, resampled
onto a fixed grid: ``image_size`` x ``image_size`` voxels in plane (default 128, so 60 / 128 = 0.46875 mm) and
``round(size_mm / slice_spacing_mm)`` slices through plane. The through-plane spacing defaults to the source
image's own slice spacing (rounded so that a whole number of slices spans exactly ``size_mm``): the VOI then
holds about as many axial slices as the scan has over 60 mm, so the nodule slices extracted from it are the
scan's real slices (up to sub-slice interpolation), not interpolated copies.

Geometry: the VOI's axes follow the source's axes (same direction cosines, so an axial scan gives axial VOI
slices along the third axis); voxel ``(S - 1) / 2`` of each axis lies on the centre, so the box spans exactly
``size_mm`` (voxel edges) and the centre is the middle of the grid. Points outside the source are padded
(``-1000`` HU, air, for images; 0 for masks). Images are interpolated linearly, masks by nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, Transform
from monai.utils import ensure_tuple_rep
from scipy import ndimage

from gan_core.errors import BundleInputError

AIR_HU = -1000.0
_ORDERS = {"bilinear": 1, "trilinear": 1, "linear": 1, "nearest": 0}


def _require_metatensor(img: object, what: str) -> MetaTensor:
    if not isinstance(img, MetaTensor):
        raise TypeError(f"{what} must be a MetaTensor with its affine (got {type(img).__name__})")
    return img


def _affine(img: MetaTensor) -> np.ndarray:
    """A copy (never a view: callers modify it) of the 4x4 affine as float64."""
    return np.array(img.affine.detach().cpu(), dtype=np.float64)


def _meta_without_affine(img: MetaTensor, spatial_shape: Sequence[int]) -> dict:
    """Copy of the meta for a resampled output: its affine is set separately, its shape is new."""
    meta = {k: v for k, v in img.meta.items() if k != "affine"}
    meta["spatial_shape"] = np.asarray(spatial_shape)
    return meta


def centroid_mm(mask: MetaTensor) -> np.ndarray:
    """Centroid of the non-zero voxels of a mask (C, X, Y, Z) (all channels), in RAS mm; shape (3,)."""
    mask = _require_metatensor(mask, "the mask")
    voxels = np.argwhere(np.asarray(mask).max(axis=0) > 0)
    if len(voxels) == 0:
        raise BundleInputError(
            "the nodule mask is empty, so no VOI can be centred on it",
            path=mask.meta.get("filename_or_obj"),
            field="mask",
            hint="check that the segmentation belongs to this CT series and is not blank",
        )
    affine = _affine(mask)
    return affine[:3, :3] @ voxels.mean(axis=0) + affine[:3, 3]


class CropVOI(Transform):
    """Resample a ``size_mm`` cube centred on a point (RAS mm) out of a 3D image.

    Args:
        size_mm: edge of the cube in mm (all three axes).
        image_size: voxels along each in-plane axis (the first two spatial axes).
        slice_spacing_mm: wanted through-plane spacing; ``None`` = the source's slice spacing. The spacing used
            is ``size_mm / n`` with ``n = max(1, round(size_mm / slice_spacing_mm))`` slices, so the box is
            exactly ``size_mm`` deep.
        mode: ``"bilinear"`` (linear interpolation, for images) or ``"nearest"`` (for masks).
        padding_value: value outside the source image (-1000 HU for CT, 0 for masks).

    Input: MetaTensor (C, X, Y, Z) with its affine; output: MetaTensor (C, image_size, image_size, n) with the
    VOI's affine, float32 for linear mode and the input dtype for nearest mode.
    """

    def __init__(
        self,
        size_mm: float = 60.0,
        image_size: int = 128,
        slice_spacing_mm: float | None = None,
        mode: str = "bilinear",
        padding_value: float = AIR_HU,
    ):
        if mode not in _ORDERS:
            raise ValueError(f"mode must be one of {sorted(_ORDERS)}, got {mode!r}")
        if size_mm <= 0 or image_size < 1 or (slice_spacing_mm is not None and slice_spacing_mm <= 0):
            raise ValueError("size_mm, image_size and slice_spacing_mm must be positive")
        self.size_mm = float(size_mm)
        self.image_size = int(image_size)
        self.slice_spacing_mm = slice_spacing_mm
        self.mode = mode
        self.padding_value = float(padding_value)

    def grid(
        self, source_affine: np.ndarray, center_mm: Sequence[float]
    ) -> tuple[tuple[int, int, int], np.ndarray]:
        """Shape (S, S, n) and 4x4 RAS affine of the VOI grid around ``center_mm`` for a source affine."""
        source_affine = np.asarray(source_affine, dtype=np.float64)
        spacing_src = np.linalg.norm(source_affine[:3, :3], axis=0)
        slice_spacing = spacing_src[2] if self.slice_spacing_mm is None else float(self.slice_spacing_mm)
        n_slices = max(1, int(round(self.size_mm / slice_spacing)))
        shape = (self.image_size, self.image_size, n_slices)
        spacing = self.size_mm / np.asarray(shape, dtype=np.float64)
        directions = source_affine[:3, :3] / spacing_src
        affine = np.eye(4)
        affine[:3, :3] = directions * spacing
        half = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
        affine[:3, 3] = np.asarray(center_mm, dtype=np.float64) - affine[:3, :3] @ half
        return shape, affine

    def __call__(self, img: MetaTensor, center_mm: Sequence[float]) -> MetaTensor:
        img = _require_metatensor(img, "the image")
        if img.ndim != 4:
            raise ValueError(f"expected a channel-first 3D image (C, X, Y, Z), got shape {tuple(img.shape)}")
        shape, affine = self.grid(_affine(img), center_mm)
        to_source = np.linalg.inv(_affine(img)) @ affine
        ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
        plane = np.stack([ii.ravel(), jj.ravel(), np.zeros(ii.size), np.ones(ii.size)]).astype(np.float64)
        order = _ORDERS[self.mode]
        source = img.detach().cpu().numpy()
        if order == 1:
            source = source.astype(np.float32, copy=False)
        out = np.empty((source.shape[0], *shape), dtype=source.dtype)
        upper = np.asarray(source.shape[1:], dtype=np.float64)[:, None] - 1.0
        for k in range(shape[2]):
            plane[2] = k
            coords = (to_source @ plane)[:3]
            # A voxel covers +-0.5 of its index: points on the outer half-voxel take the edge value.
            outside = np.any((coords < -0.5 - 1e-6) | (coords > upper + 0.5 + 1e-6), axis=0).reshape(
                shape[:2]
            )
            coords = np.clip(coords, 0.0, upper)
            for c in range(source.shape[0]):
                values = ndimage.map_coordinates(
                    source[c], coords, order=order, mode="nearest", prefilter=False
                )
                out[c, :, :, k] = np.where(outside, self.padding_value, values.reshape(shape[:2]))
        meta = _meta_without_affine(img, shape)
        return MetaTensor(torch.from_numpy(out), affine=torch.as_tensor(affine), meta=meta)


class CropVOId(MapTransform):
    """Dictionary twin of :class:`CropVOI`: the same cube cut out of every key (image and mask alike).

    The centre is ``data[center_key]`` (RAS mm) when ``center_key`` is given, else the centroid of
    ``data[mask_key]`` (the nodule), which is then stored under ``"voi_center_mm"``. ``mode`` and
    ``padding_value`` are one value or one per key (default: linear / -1000 HU for the first key, nearest / 0
    for the others, i.e. image then masks).
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str = "mask",
        center_key: str | None = None,
        size_mm: float = 60.0,
        image_size: int = 128,
        slice_spacing_mm: float | None = None,
        mode: str | Sequence[str] | None = None,
        padding_value: float | Sequence[float] | None = None,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        n = len(self.keys)
        modes = ensure_tuple_rep(mode, n) if mode is not None else ("bilinear",) + ("nearest",) * (n - 1)
        pads = (
            ensure_tuple_rep(padding_value, n) if padding_value is not None else (AIR_HU,) + (0.0,) * (n - 1)
        )
        self.mask_key = mask_key
        self.center_key = center_key
        self.croppers = [
            CropVOI(size_mm, image_size, slice_spacing_mm, m, p) for m, p in zip(modes, pads, strict=True)
        ]

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        if self.center_key is not None:
            center = np.asarray(d[self.center_key], dtype=np.float64)
        else:
            center = centroid_mm(d[self.mask_key])
            d["voi_center_mm"] = center.tolist()
        for key, cropper in self.key_iterator(d, self.croppers):
            d[key] = cropper(d[key], center)
        return d


def axial_slice(voi: MetaTensor, k: int) -> MetaTensor:
    """Slice ``k`` of the last axis of a (C, X, Y, Z) MetaTensor -> (C, X, Y) with a full 4x4 affine.

    The 2D affine keeps the three columns of the 3D one and moves the origin to slice ``k``, so the slice's
    pixels keep their RAS positions (saved as a 2D NIfTI it overlays the scan).
    """
    voi = _require_metatensor(voi, "the VOI")
    affine = _affine(voi)
    affine[:3, 3] = affine[:3, :3] @ np.array([0.0, 0.0, float(k)]) + affine[:3, 3]
    meta = _meta_without_affine(voi, voi.shape[1:3])
    return MetaTensor(voi[..., k].as_tensor().clone(), affine=torch.as_tensor(affine), meta=meta)


def nodule_slice_indices(mask_voi: MetaTensor | np.ndarray | torch.Tensor) -> list[int]:
    """Indices along the last axis of a (C, X, Y, Z) mask where any voxel is non-zero."""
    mask = np.asarray(mask_voi.detach().cpu() if isinstance(mask_voi, torch.Tensor) else mask_voi)
    return [int(k) for k in np.flatnonzero(mask.reshape(-1, mask.shape[-1]).max(axis=0) > 0)]


def slice_dicts(transform: MapTransform, data: Mapping[Hashable, object], indices) -> list[dict[Hashable, object]]:
    """One dict per axial index in ``indices``: ``transform``'s keys sliced by :func:`axial_slice`, the other
    entries of ``data`` unchanged, plus ``"slice_index"``."""
    out = []
    for k in indices:
        d = dict(data)
        for key in transform.key_iterator(d):
            d[key] = axial_slice(d[key], k)
        d["slice_index"] = int(k)
        out.append(d)
    return out


class NoduleSlicesd(MapTransform):
    """VOI dict -> list of 2D dicts, one per axial slice that contains nodule (``mask_key`` non-zero).

    Each output dict holds the (C, X, Y) slices of ``keys`` (see :func:`axial_slice`), the other entries of
    the input unchanged, and ``"slice_index"``. An empty list when the VOI holds no nodule.
    """

    def __init__(self, keys: KeysCollection, mask_key: str = "mask", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, object]) -> list[dict[Hashable, object]]:
        return slice_dicts(self, data, nodule_slice_indices(data[self.mask_key]))


class RandAxialSlicesd(Randomizable, MapTransform):
    """VOI dict -> list of ``num_slices`` 2D dicts at distinct random axial positions (sorted).

    Slices lying wholly outside the scan (every voxel of ``keys[0]`` equal to ``padding_value``) are never
    drawn; when fewer than ``num_slices`` remain, all of them are returned. Each output dict carries
    ``"slice_index"``. Deterministic for a given random state (``set_random_state``).
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_slices: int = 20,
        padding_value: float = AIR_HU,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.num_slices = int(num_slices)
        self.padding_value = float(padding_value)
        self._chosen: list[int] = []

    def randomize(self, candidates: Sequence[int]) -> None:
        n = min(self.num_slices, len(candidates))
        self._chosen = sorted(int(k) for k in self.R.choice(np.asarray(candidates), size=n, replace=False))

    def __call__(self, data: Mapping[Hashable, object]) -> list[dict[Hashable, object]]:
        ref = np.asarray(data[self.keys[0]].detach().cpu())
        inside = np.flatnonzero((ref != self.padding_value).reshape(-1, ref.shape[-1]).any(axis=0))
        self.randomize(inside)
        return slice_dicts(self, data, self._chosen)
