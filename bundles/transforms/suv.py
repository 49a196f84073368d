"""PET transforms: load a PET DICOM series as SUV (body weight), and normalise SUV to [0, 1]."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from os import PathLike

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from bundles.io.dicom_series import read_series
from bundles.io.suv import suv_factor


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


__all__ = ["LoadPETSUV", "LoadPETSUVd", "NormalizeSUV", "NormalizeSUVd"]
