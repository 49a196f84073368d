"""PET transforms (array transform + dictionary twin): a PET DICOM series as SUV (body weight), SUV normalised to
[0, 1], maximum intensity projections, and padding 2D images to a fixed size.

MIP: Maximum intensity projection (MIP) along a named anatomical axis, and a fast resample-and-project path.

Planes and the world (RAS) axis they project along: ``"coronal"`` along anterior-posterior, ``"sagittal"``
along left-right, ``"axial"`` along inferior-superior. The array axis to project is found from the affine,
not assumed from the array order. The result is a 2D MetaTensor ``(C, A, B)`` (A, B: the two remaining
array axes in their original order) with a 3x3 affine mapping (a, b) to the in-plane world coordinates
(e.g. R and S mm for a coronal MIP).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from os import PathLike

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, ResizeWithPadOrCrop, Spacing, Transform

from gan_core.errors import BundleInputError
from gan_core.io.dicom_series import read_series

from .suv import suv_factor


class LoadPETSUV(Transform):
    """PET DICOM series folder -> MetaTensor (1, X, Y, Z) float32 in SUVbw, RAS affine.

    The meta data records ``suv_factor`` (g/ml per real-world unit, first slice), ``suv_branch`` (the rule
    applied), ``suv_explanation`` (tags and values used) and ``units`` = "SUVbw".
    Raises ``BundleInputError`` naming the file and tag for a bad series or missing SUV tags.
    """

    backend = [torch.Tensor]

    def __call__(self, folder: str | PathLike) -> MetaTensor:
        series = read_series(folder, modality="PT")
        factor = suv_factor(series.headers, folder)
        img = series.to_metatensor()
        suv = img.as_tensor() * torch.as_tensor(factor.factors, dtype=torch.float64).reshape(1, 1, 1, -1)
        meta = {k: v for k, v in img.meta.items() if k != "affine"}
        img = MetaTensor(suv.to(torch.float32), affine=img.affine, meta=meta)
        img.meta.update({"suv_factor": factor.factor, "suv_branch": factor.branch,
                         "suv_explanation": factor.describe(), "units": "SUVbw"})
        return img


class LoadPETSUVd(MapTransform):
    """Dictionary twin of :class:`LoadPETSUV`: replaces each key's series folder by its SUV MetaTensor."""

    backend = LoadPETSUV.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadPETSUV()

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d


class NormalizeSUV(Transform):
    """Clip SUV to [0, ``max_suv``] and scale to [0, 1] (RadioGAN: ``max_suv`` = 30). Shape and meta kept."""

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, max_suv: float = 30.0):
        if max_suv <= 0:
            raise ValueError(f"max_suv must be positive, got {max_suv}")
        self.max_suv = float(max_suv)

    def __call__(self, img):
        if isinstance(img, np.ndarray):
            return (np.clip(img, 0.0, self.max_suv) / self.max_suv).astype(np.float32)
        return torch.clamp(img, 0.0, self.max_suv) / self.max_suv


class NormalizeSUVd(MapTransform):
    """Dictionary twin of :class:`NormalizeSUV`."""

    backend = NormalizeSUV.backend

    def __init__(self, keys: KeysCollection, max_suv: float = 30.0, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.normalizer = NormalizeSUV(max_suv)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d


# -------------------------------------------------------------------------------- projections
PLANES = {"sagittal": 0, "coronal": 1, "axial": 2}  # plane -> RAS world axis normal to it
_WORLD = "RAS"


def _affine_of(img) -> torch.Tensor:
    if isinstance(img, MetaTensor):
        return torch.as_tensor(img.affine, dtype=torch.float64)
    return torch.eye(img.ndim, dtype=torch.float64)


def projection_axis(affine, plane: str = "coronal") -> int:
    """Spatial array axis (0, 1 or 2) whose direction in the 4x4 RAS ``affine`` is closest to the plane's normal."""
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {sorted(PLANES)}, got {plane!r}")
    cols = np.asarray(affine, dtype=np.float64)[:3, :3]
    cosines = np.abs(cols) / np.linalg.norm(cols, axis=0, keepdims=True)
    return int(np.argmax(cosines[PLANES[plane]]))


def _world_axis(affine, axis: int) -> int:
    cols = np.asarray(affine, dtype=np.float64)[:3, :3]
    return int(np.argmax(np.abs(cols[:, axis])))


def mip_affine(affine, axis: int) -> np.ndarray:
    """3x3 affine of the MIP along array ``axis``: (a, b) -> the two in-plane world coordinates in mm.

    Rows: the world axes of the kept array axes (in their order); the projected axis is taken at index 0.
    """
    affine = np.asarray(affine, dtype=np.float64)
    keep = [k for k in range(3) if k != axis]
    rows = [_world_axis(affine, k) for k in keep]
    out = np.eye(3)
    for i, w in enumerate(rows):
        out[i, :2] = affine[w, keep]
        out[i, 2] = affine[w, 3]
    return out


class MaximumIntensityProjection(Transform):
    """MIP of a channel-first 3D image ``(C, X, Y, Z)`` -> 2D MetaTensor ``(C, A, B)`` with a 3x3 affine.

    Args:
        plane: "coronal" (default; projects along anterior-posterior), "sagittal" or "axial".
    """

    backend = [torch.Tensor]

    def __init__(self, plane: str = "coronal"):
        if plane not in PLANES:
            raise ValueError(f"plane must be one of {sorted(PLANES)}, got {plane!r}")
        self.plane = plane

    def __call__(self, img: torch.Tensor) -> MetaTensor:
        if img.ndim != 4:
            raise ValueError(f"expected a channel-first 3D image (C, X, Y, Z), got shape {tuple(img.shape)}")
        affine = _affine_of(img)
        axis = projection_axis(affine, self.plane)
        data = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
        meta = img.meta if isinstance(img, MetaTensor) else {}
        return _as_mip(data.amax(dim=axis + 1), meta, affine, axis, self.plane)


def _as_mip(values: torch.Tensor, meta: Mapping, affine, axis: int, plane: str) -> MetaTensor:
    """Wrap projected values (C, A, B) with the 2D affine and a copy of the source's meta data."""
    meta = {k: v for k, v in meta.items() if k != "affine"}
    world = [_WORLD[_world_axis(affine, k)] for k in range(3) if k != axis]
    meta.update({"spatial_shape": np.asarray(values.shape[1:]), "mip_plane": plane, "mip_world_axes": "".join(world)})
    return MetaTensor(values, affine=torch.as_tensor(mip_affine(affine, axis)), meta=meta)


class MaximumIntensityProjectiond(MapTransform):
    """Dictionary twin of :class:`MaximumIntensityProjection`."""

    backend = MaximumIntensityProjection.backend

    def __init__(self, keys: KeysCollection, plane: str = "coronal", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.projector = MaximumIntensityProjection(plane)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.projector(d[key])
        return d


class ResampleProject(Transform):
    """``Spacing(pixdim, mode="nearest")`` followed by a MIP, computed by projecting first (much faster).

    Nearest-neighbour resampling of an axis-aligned grid picks, along each array axis k, source indices
    ``p_k[j]`` (possibly skipping or repeating slices) independently of the other axes, so
    ``resampled[i, j, l] = img[p_x[i], p_y[j], p_z[l]]`` and its maximum along the projected axis is the maximum
    of the source over the set of picked slices. The picks are obtained from MONAI's own ``Spacing`` applied to
    one index ramp per axis, so the result (values, shape, affine) equals the slow chain bit for bit. An image
    with a rotated grid (an affine column with more than one non-zero entry) falls back to the slow chain.

    Args:
        pixdim: output voxel size in mm (as for ``Spacing``; defaults padding "border", align_corners False).
        plane: "coronal" (default), "sagittal" or "axial".
    """

    backend = [torch.Tensor]

    def __init__(self, pixdim: Sequence[float] | float, plane: str = "coronal"):
        self.spacing = Spacing(pixdim=pixdim, mode="nearest")
        self.projector = MaximumIntensityProjection(plane)
        self.plane = plane

    def picked_indices(self, img: MetaTensor) -> list[torch.Tensor]:
        """Per spatial axis, the source index that each output voxel of ``Spacing`` copies."""
        picks = []
        for k, n in enumerate(img.shape[1:]):
            probe_shape = [1, 1, 1, 1]
            probe_shape[k + 1] = n
            ramp = MetaTensor(torch.arange(n, dtype=torch.float32).reshape(probe_shape), affine=_affine_of(img))
            picks.append(self.spacing(ramp).as_tensor().reshape(-1).round().long())
        return picks

    def __call__(self, img: torch.Tensor) -> MetaTensor:
        if img.ndim != 4:
            raise ValueError(f"expected a channel-first 3D image (C, X, Y, Z), got shape {tuple(img.shape)}")
        if not isinstance(img, MetaTensor):
            img = MetaTensor(img)
        cols = np.asarray(_affine_of(img))[:3, :3]
        if np.any(np.count_nonzero(cols, axis=0) != 1):  # rotated grid: resampling is not separable
            return self.projector(self.spacing(img))
        out_affine = torch.as_tensor(self.spacing(img, lazy=True).peek_pending_affine(), dtype=torch.float64)
        picks = self.picked_indices(img)
        axis = projection_axis(out_affine, self.plane)
        data = img.as_tensor()
        projected = _max_over(data, axis + 1, torch.unique(picks[axis]))
        keep = [k for k in range(3) if k != axis]
        values = projected.index_select(1, picks[keep[0]]).index_select(2, picks[keep[1]]).to(torch.float32)
        return _as_mip(values, img.meta, out_affine, axis, self.plane)


def _max_over(data: torch.Tensor, dim: int, indices: torch.Tensor) -> torch.Tensor:
    """Maximum of ``data`` over the given (unique) indices of dimension ``dim``, which is removed."""
    if indices.numel() == data.shape[dim]:
        return data.amax(dim=dim)
    out = data.select(dim, int(indices[0])).clone()
    for index in indices[1:].tolist():
        torch.maximum(out, data.select(dim, index), out=out)
    return out


class ResampleProjectd(MapTransform):
    """Dictionary twin of :class:`ResampleProject`: identical to ``Spacingd(keys, pixdim, mode="nearest")`` then
    ``MaximumIntensityProjectiond(keys, plane)``, only faster."""

    backend = ResampleProject.backend

    def __init__(self, keys: KeysCollection, pixdim: Sequence[float] | float, plane: str = "coronal",
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.resample_project = ResampleProject(pixdim, plane)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.resample_project(d[key])
        return d


# -------------------------------------------------------------------------------- fixed size
class FitToSized(MapTransform):
    """Bring 2D images (1, S0, S1) to a fixed ``spatial_size`` without ever resampling them.

    Policy: an image smaller than the size is zero-padded symmetrically (value 0 = SUV 0; the affine's
    origin moves so world positions are kept). An image larger than the size along any axis is refused
    with a :class:`BundleInputError`, unless ``crop=True``, which centre-crops it (cutting anatomy, so it is
    opt-in). Anatomy is never stretched.
    """

    def __init__(self, keys: KeysCollection, spatial_size: Sequence[int], crop: bool = False):
        super().__init__(keys)
        self.spatial_size = tuple(int(s) for s in spatial_size)
        self.crop = bool(crop)
        self.resize = ResizeWithPadOrCrop(self.spatial_size, method="symmetric", mode="constant")

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            shape = tuple(image.shape[1:])
            if len(shape) != len(self.spatial_size):
                raise BundleInputError(
                    f"expected a 2D image (1, S0, S1), got shape {tuple(image.shape)}", path=_source(image), field=key, hint='the chain must end in a 2D MIP')
            if not self.crop and any(s > t for s, t in zip(shape, self.spatial_size, strict=True)):
                raise BundleInputError(
                    f"the MIP is {shape[0]} x {shape[1]} pixels, larger than the fixed size "
                    f"{self.spatial_size[0]} x {self.spatial_size[1]}; policy: MIPs are zero-padded to the fixed "
                    "size and never stretched, and larger ones are refused unless cropping is enabled",
                    path=_source(image),
                    field="image_size",
                    hint="raise image_size (generator first_grid * 2**len(channels)) or set crop=true to "
                    "centre-crop (cuts anatomy)",
                )
            d[key] = self.resize(image)
        return d


def _source(image) -> str | None:
    if isinstance(image, MetaTensor):
        return image.meta.get("filename_or_obj")
    return None


__all__ = ["FitToSized", "LoadPETSUV", "LoadPETSUVd", "MaximumIntensityProjection", "MaximumIntensityProjectiond",
           "NormalizeSUV", "NormalizeSUVd", "PLANES", "ResampleProject", "ResampleProjectd", "mip_affine",
           "projection_axis"]
