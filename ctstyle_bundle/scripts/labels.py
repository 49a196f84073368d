"""Transforms of the six-segment CT label maps: validated one-hot encoding and random boundary perturbation.

The maps hold the values of Krishna & Mueller: 0 outside the body / air, 50 body soft tissue and fat,
100 lungs, 150 heart and mediastinal vessels, 200 bone, 230 spinal cord.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform, Transform
from scipy import ndimage

from gan_core.errors import BundleInputError

LABEL_VALUES: tuple[int, ...] = (0, 50, 100, 150, 200, 230)
SEGMENT_NAMES: tuple[str, ...] = ("air", "body", "lungs", "heart_vessels", "bone", "spinal_cord")
# A stored value counts as a label if it is this close to one (float NIfTI maps carry rounding noise).
VALUE_TOLERANCE = 1e-3


def label_indices(label_map, values: Sequence[int] = LABEL_VALUES, path=None, field: str = "label") -> np.ndarray:
    """Index (0..S-1) of each pixel's value in ``values``; BundleInputError naming unknown values.

    Args:
        label_map: array or tensor of any shape with the label values.
        values: the allowed values, in channel order.
        path, field: named in the error.
    """
    arr = np.asarray(label_map.detach().cpu() if isinstance(label_map, torch.Tensor) else label_map, dtype=np.float64)
    allowed = np.asarray(values, dtype=np.float64)
    dist = np.abs(arr[..., None] - allowed)
    index = dist.argmin(-1)
    bad = np.take_along_axis(dist, index[..., None], -1)[..., 0] > VALUE_TOLERANCE
    if bad.any():
        unknown = np.unique(arr[bad])
        shown = ", ".join(f"{v:g}" for v in unknown[:10]) + (" ..." if unknown.size > 10 else "")
        raise BundleInputError(
            f"label map has {int(bad.sum())} pixel(s) with values outside {list(values)}: {shown}",
            path=path,
            field=field,
            hint="use the six-segment coding 0 air, 50 body, 100 lungs, 150 heart/vessels, 200 bone, "
            "230 spinal cord (a map resampled with linear interpolation must be resampled with nearest)",
        )
    return index


def _source_path(img) -> str | None:
    meta = getattr(img, "meta", None)
    return None if meta is None else meta.get("filename_or_obj")


def _with_meta_of(data: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """``data`` as a MetaTensor with ``img``'s affine and meta when ``img`` is one."""
    if not isinstance(img, MetaTensor):
        return data
    out = MetaTensor(data)
    out.copy_meta_from(img)
    return out


class LabelToOneHot(Transform):
    """(1, H, W) label map with values in ``values`` -> (S, H, W) float32 one-hot, channel s = ``values[s]``.

    MetaTensor in, MetaTensor out (affine and meta kept). Unknown values raise BundleInputError.
    """

    def __init__(self, values: Sequence[int] = LABEL_VALUES):
        self.values = tuple(int(v) for v in values)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[0] != 1:
            raise BundleInputError(
                f"label map must have one channel, got shape {tuple(img.shape)}", path=_source_path(img), field="label",
                hint='pass a single-channel map of the six label values')
        index = torch.as_tensor(label_indices(img[0], self.values, path=_source_path(img)), device=img.device)
        onehot = torch.stack([(index == s) for s in range(len(self.values))]).to(torch.float32)
        return _with_meta_of(onehot, img)


class LabelToOneHotd(MapTransform):
    """Dictionary twin of :class:`LabelToOneHot`; writes to ``output_keys`` (default: in place)."""

    def __init__(
        self,
        keys: KeysCollection,
        values: Sequence[int] = LABEL_VALUES,
        output_keys: KeysCollection | None = None,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.transform = LabelToOneHot(values)
        self.output_keys = self.keys if output_keys is None else tuple(
            [output_keys] if isinstance(output_keys, str) else output_keys
        )
        if len(self.output_keys) != len(self.keys):
            raise ValueError("output_keys must have one entry per key")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key, out in zip(self.keys, self.output_keys, strict=True):
            if key in d:
                d[out] = self.transform(d[key])
            elif not self.allow_missing_keys:
                raise KeyError(key)
        return d


def smooth_displacement(
    shape: Sequence[int], magnitude_px: float, smoothness_px: float, rng: np.random.RandomState, max_gradient: float
) -> np.ndarray:
    """Random smooth 2D displacement field (2, H, W) in pixels.

    Gaussian-smoothed white noise (sigma ``smoothness_px``) scaled to a largest displacement of
    ``magnitude_px``, then scaled down if needed so that no spatial derivative exceeds ``max_gradient``:
    with ``max_gradient < 0.5`` the map x -> x + u(x) is one-to-one (no folding), so segments are moved and
    bent but not torn, merged or created.
    """
    # Periodic ('wrap') Gaussian smoothing done in Fourier space: the untruncated periodic Gaussian, within 3e-4 of
    # scipy's spatial filter (truncated at 4 sigma) and 15 times faster at 256 px and sigma 32 px.
    shape = tuple(shape)
    spectra = np.fft.rfft2(rng.standard_normal((2, *shape)))
    field = np.stack([np.fft.irfft2(ndimage.fourier_gaussian(spectrum, smoothness_px, n=shape[-1]), s=shape)
                      for spectrum in spectra])
    peak = np.abs(field).max()
    if peak == 0 or magnitude_px == 0:
        return np.zeros((2, *shape))
    field *= magnitude_px / peak
    gradient = max(np.abs(np.gradient(field[c], axis=a)).max() for c in range(2) for a in range(2))
    if gradient > max_gradient:
        field *= max_gradient / gradient
    return field


class RandPerturbLabelBoundaries(RandomizableTransform):
    """Random smooth deformation of a (1, H, W) label map (the paper's contribution 3: new anatomy).

    A smooth displacement field (:func:`smooth_displacement`) warps each label's indicator (linear
    interpolation) and every pixel takes the label with the largest warped indicator, so the result holds
    only the original label values; because the warp is one-to-one and smooth, the
    segments keep their number and arrangement (a lung stays one lung, the cord stays inside the spine)
    while their boundaries move by up to ``magnitude_px`` pixels. The image border is replicated.

    Args:
        magnitude_px: largest displacement in pixels.
        smoothness_px: Gaussian sigma of the field in pixels (larger: broader, gentler bends).
        prob: probability of applying it.
        max_gradient: largest allowed derivative of the displacement (keeps the warp one-to-one).
    """

    def __init__(self, magnitude_px: float = 6.0, smoothness_px: float = 24.0, prob: float = 1.0,
                 max_gradient: float = 0.4):
        RandomizableTransform.__init__(self, prob)
        if magnitude_px < 0 or smoothness_px <= 0 or not 0 < max_gradient < 1:
            raise BundleInputError(
                f"bad perturbation settings magnitude_px={magnitude_px}, smoothness_px={smoothness_px}, "
                f"max_gradient={max_gradient}",
                field="perturbation",
                hint="magnitude_px >= 0, smoothness_px > 0, 0 < max_gradient < 1",
            )
        self.magnitude_px = float(magnitude_px)
        self.smoothness_px = float(smoothness_px)
        self.max_gradient = float(max_gradient)
        self._field: np.ndarray | None = None
        self._grid: torch.Tensor | None = None

    def randomize(self, shape: Sequence[int]) -> None:
        super().randomize(None)
        self._field, self._grid = None, None
        if self._do_transform:
            self._field = smooth_displacement(shape, self.magnitude_px, self.smoothness_px, self.R, self.max_gradient)
            self._grid = _sampling_grid(self._field)

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        _check_single_slice(img, "label", "label map")
        if randomize:
            self.randomize(img.shape[1:])
        if self._field is None:
            return img
        arr = np.asarray(img[0].detach().cpu())
        values = np.unique(arr)
        # Each label's indicator is warped with linear interpolation and every pixel takes the label of the
        # largest one: boundaries move smoothly instead of in nearest-neighbour staircases.
        indicators = torch.from_numpy(np.stack([arr == v for v in values]).astype(np.float32))
        warped = values[self._sample(indicators, "bilinear").numpy().argmax(0)]
        out = torch.as_tensor(warped, dtype=img.dtype, device=img.device)[None]
        return _with_meta_of(out, img)

    def warp_image(self, img: torch.Tensor) -> torch.Tensor:
        """The (1, H, W) intensity image (the CT of the map) warped by the field of the last map: bicubic
        interpolation, border replicated, so that the pair (image, map) moves together. Unchanged when the last
        call did not transform."""
        _check_single_slice(img, "image", "image")
        if self._field is None:
            return img
        warped = self._sample(torch.as_tensor(np.asarray(img.detach().cpu(), dtype=np.float32)), "bicubic")
        return _with_meta_of(warped.to(dtype=img.dtype, device=img.device), img)

    def _sample(self, stack: torch.Tensor, mode: str) -> torch.Tensor:
        """(C, H, W) float32 channels sampled at x + u(x) of the current field (border replicated) -> (C, H, W)."""
        shape = tuple(stack.shape[1:])
        if self._field.shape[1:] != shape:
            raise BundleInputError(f"an image of {shape} px cannot take the field drawn for {self._field.shape[1:]} px",
                                   field="image", hint="warp the image and its map of the same size together")
        return torch.nn.functional.grid_sample(stack[None], self._grid, mode=mode, padding_mode="border",
                                               align_corners=True)[0]


def _sampling_grid(field: np.ndarray) -> torch.Tensor:
    """The (1, H, W, 2) ``grid_sample`` grid of x + u(x) for a (2, H, W) pixel displacement (rows, columns):
    (x, y) = (column, row) scaled to [-1, 1], -1 and 1 being the edge pixels (align_corners)."""
    shape = field.shape[1:]
    rows, cols = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    grid = np.stack([(cols + field[1]) / max(shape[1] - 1, 1), (rows + field[0]) / max(shape[0] - 1, 1)], -1)
    return torch.from_numpy((grid * 2 - 1).astype(np.float32))[None]


def _check_single_slice(img: torch.Tensor, field: str, what: str) -> None:
    if img.ndim != 3 or img.shape[0] != 1:
        raise BundleInputError(f"expected a (1, H, W) {what}, got shape {tuple(img.shape)}", path=_source_path(img),
                               field=field, hint="pass a single 2D slice")


class RandPerturbLabelBoundariesd(RandomizableTransform, MapTransform):
    """Dictionary twin of :class:`RandPerturbLabelBoundaries`: the same field for all label ``keys`` and for the
    intensity images of ``image_keys`` (warped with :meth:`RandPerturbLabelBoundaries.warp_image`), so a (CT,
    map) pair is deformed jointly into a new pair whose CT still shows the map's anatomy."""

    def __init__(self, keys: KeysCollection, magnitude_px: float = 6.0, smoothness_px: float = 24.0,
                 prob: float = 1.0, max_gradient: float = 0.4, image_keys: KeysCollection = (),
                 allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.image_keys = (image_keys,) if isinstance(image_keys, str) else tuple(image_keys)
        self.transform = RandPerturbLabelBoundaries(magnitude_px, smoothness_px, 1.0, max_gradient)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize(None)
        first = next((k for k in self.key_iterator(d)), None)
        if first is None or not self._do_transform:
            return d
        self.transform.randomize(d[first].shape[1:])
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], randomize=False)
        for key in self.image_keys:
            if key in d:
                d[key] = self.transform.warp_image(d[key])
            elif not self.allow_missing_keys:
                raise KeyError(key)
        return d
