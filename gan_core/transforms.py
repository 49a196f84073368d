"""CT intensity window: HU clipped to [-1000, 500] and mapped linearly to [-1, 1] (and back).

The window is the one of the radiogenomic GAN (REFERENCE.md section 1): air at -1000 HU maps to -1, soft
tissue and nodules stay inside, bone above 500 HU saturates at +1. ``hu_from_scaled`` inverts the map
exactly (up to float rounding) for HU inside the window, so generated images can be written back in HU.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import get_track_meta
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_tensor

HU_MIN = -1000.0
HU_MAX = 500.0


def _as_float_tensor(img: NdarrayOrTensor) -> torch.Tensor:
    """MetaTensor (when meta tracking is on) or tensor, float32 unless already float64."""
    img = convert_to_tensor(img, track_meta=get_track_meta())
    return img if img.dtype == torch.float64 else img.float()


class ClipHU(Transform):
    """Clip a CT image to the window [hu_min, hu_max] HU, staying in HU; any shape, MetaTensor kept."""

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, hu_min: float = HU_MIN, hu_max: float = HU_MAX):
        if not hu_min < hu_max:
            raise ValueError(f"hu_min ({hu_min}) must be below hu_max ({hu_max})")
        self.hu_min = float(hu_min)
        self.hu_max = float(hu_max)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        return torch.clamp(_as_float_tensor(img), self.hu_min, self.hu_max)


class ScaleHU(Transform):
    """HU -> [-1, 1]: clip to [hu_min, hu_max] then map linearly (hu_min -> -1, hu_max -> +1).

    Input: any shape in HU (numpy, tensor or MetaTensor); output: float32 tensor of the same shape, a
    MetaTensor with the input's affine and meta when the input carries them.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, hu_min: float = HU_MIN, hu_max: float = HU_MAX):
        self.clip = ClipHU(hu_min, hu_max)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        lo, hi = self.clip.hu_min, self.clip.hu_max
        return (self.clip(img) - lo) * (2.0 / (hi - lo)) - 1.0


def hu_from_scaled(x: NdarrayOrTensor, hu_min: float = HU_MIN, hu_max: float = HU_MAX) -> NdarrayOrTensor:
    """Inverse of :class:`ScaleHU`: [-1, 1] -> HU in [hu_min, hu_max]; same type (numpy / tensor) as ``x``.

    Values outside [-1, 1] (an unbounded network output) are clipped first, so the result stays in the window.
    """
    if isinstance(x, np.ndarray):
        x = np.clip(x, -1.0, 1.0)
    else:
        x = torch.clamp(x, -1.0, 1.0)
    return (x + 1.0) * (0.5 * (hu_max - hu_min)) + hu_min


class ClipHUd(MapTransform):
    """Dictionary twin of :class:`ClipHU`."""

    backend = ClipHU.backend

    def __init__(
        self,
        keys: KeysCollection,
        hu_min: float = HU_MIN,
        hu_max: float = HU_MAX,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.clip = ClipHU(hu_min, hu_max)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.clip(d[key])
        return d


class ScaleHUd(MapTransform):
    """Dictionary twin of :class:`ScaleHU`."""

    backend = ScaleHU.backend

    def __init__(
        self,
        keys: KeysCollection,
        hu_min: float = HU_MIN,
        hu_max: float = HU_MAX,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.scale = ScaleHU(hu_min, hu_max)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scale(d[key])
        return d
