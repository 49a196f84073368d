"""Spatial transforms without resampling: bring 2D images to a fixed size by padding only."""

from __future__ import annotations

from collections.abc import Sequence

from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, ResizeWithPadOrCrop

from bundles.errors import BundleInputError


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
