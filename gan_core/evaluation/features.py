"""Fixed, offline feature extractors for the evaluation metrics, registered by name.

An extractor maps images (B, 1, H, W) in [-1, 1] to features (B, F) float32 and carries a ``name`` that
the metrics record. Nothing is downloaded: the default extractor is a VGG-19 with fixed-seed random filters
(:class:`~gan_core.vgg.VGG19Features` without a weight file), cut at one layer and pooled globally.
Random convolutional filters followed by ReLUs still measure texture statistics (Ustyuzhaninov et al. 2016,
"Texture synthesis using shallow CNNs with random filters"; He, Wang & Hopcroft 2016, "A powerful generative
model using random weights for the deep image representation"), which is what a few hundred small medical
images can be compared on. A local torchvision vgg19 state_dict gives the ImageNet features instead
(:func:`vgg_extractor` with ``weights=``). See ``METRICS.md`` beside this file.

Registered names (:data:`EXTRACTORS`):

- ``vgg19_random0_relu3_1_meanstd_64`` (default): images resized to 64 x 64, relu3_1 (256 channels,
  16 x 16 positions, receptive field 24 px), per-channel spatial mean and standard deviation -> F = 512.
- ``vgg19_random0_relu4_1_meanstd_64``: relu4_1 (512 channels, 8 x 8, receptive field 68 px) -> F = 1024.
- ``vgg19_random0_relu3_1_meanstd_128``: as the default at 128 x 128 (finer texture of 256 x 256 CT;
  about four times slower).
- ``pixels_16``: the image area-resized to 16 x 16, flattened -> F = 256 (no network; a transparent check).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from functools import cache
from os import PathLike
from pathlib import Path

import torch
import torch.nn.functional as F

from gan_core.errors import BundleInputError
from gan_core.vgg import LAYER_INDEX, VGG19Features

__all__ = [
    "DEFAULT_EXTRACTOR",
    "EXTRACTORS",
    "FeatureExtractor",
    "PixelExtractor",
    "VGGExtractor",
    "extractor_name",
    "get_extractor",
    "list_extractors",
    "vgg_extractor",
]

logger = logging.getLogger(__name__)

FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]
"""images (B, 1, H, W) float in [-1, 1] -> features (B, F) float."""


class VGGExtractor:
    """VGG-19 features of one layer, globally pooled: images (B, 1, H, W) in [-1, 1] -> (B, F) float32.

    The grey image is bilinearly resized (with antialiasing) to ``size`` x ``size``, repeated to three
    channels and ImageNet-normalised inside :class:`VGG19Features`; the chosen ReLU output (B, C, h, w) is
    pooled over its h * w positions into the per-channel mean (the average response of each filter: "how
    much of this pattern") and, with ``pooling="meanstd"``, the per-channel standard deviation (how unevenly
    it is spread: texture contrast, the diagonal of the Gram matrix around the mean) -> F = C or 2 C.

    Deterministic: the filters come from ``seed`` (or ``weights``), the network is frozen in eval mode and
    the computation is done without gradients; results on one machine repeat exactly.

    Args:
        layer: a name of :data:`gan_core.vgg.LAYER_INDEX` (e.g. ``"relu3_1"``).
        size: side of the square the images are resized to (pixels); every image, whatever its size, is
            seen at the same scale, so the receptive field covers the same fraction of it.
        seed: seed of the random filters (ignored with ``weights``).
        weights: optional local torchvision vgg19 state_dict (nothing is downloaded).
        pooling: ``"meanstd"`` or ``"mean"``.
        batch_size: images per forward pass (memory bound only; the features do not depend on it).
    """

    def __init__(
        self,
        layer: str = "relu3_1",
        size: int = 64,
        seed: int = 0,
        weights: str | PathLike | None = None,
        pooling: str = "meanstd",
        batch_size: int = 50,
    ):
        if layer not in LAYER_INDEX:
            raise BundleInputError(f"unknown VGG-19 layer {layer!r}", field="layer",
                                   hint=f"choose from {sorted(LAYER_INDEX)}")
        if pooling not in ("mean", "meanstd"):
            raise BundleInputError(f"unknown pooling {pooling!r}", field="pooling", hint="use 'mean' or 'meanstd'")
        if size < 16:
            raise BundleInputError(f"resize side {size} is too small for VGG-19", field="size", hint="use >= 16")
        self.layer, self.size, self.pooling, self.batch_size = layer, int(size), pooling, int(batch_size)
        source = f"random{seed}" if weights is None else Path(weights).stem
        self.name = f"vgg19_{source}_{layer}_{pooling}_{self.size}"
        # Random filters are intended here; VGG19Features' warning speaks of the style losses, so it is
        # replaced by one line about the metrics.
        vgg_logger = logging.getLogger(VGG19Features.__module__)
        previous = vgg_logger.disabled
        vgg_logger.disabled = True
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self.net = VGG19Features(weights=weights, layers=(layer,), seed=seed)
        finally:
            vgg_logger.disabled = previous
        if weights is None:
            logger.info("metric features %s: fixed-seed random VGG-19 filters (by design; see METRICS.md)", self.name)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, H, W) in [-1, 1] -> (B, F) float32 on the images' device."""
        self.net.to(images.device)
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            x = images[start : start + self.batch_size].float()
            if tuple(x.shape[-2:]) != (self.size, self.size):
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                  antialias=True)
            fmap = self.net(x)[self.layer].flatten(2)  # (b, C, h * w)
            parts = [fmap.mean(dim=2)]
            if self.pooling == "meanstd":
                parts.append(fmap.std(dim=2, correction=0))
            out.append(torch.cat(parts, dim=1))
        return torch.cat(out) if out else images.new_zeros((0, 0))


class PixelExtractor:
    """The image itself at low resolution: (B, 1, H, W) -> area-resized to ``size`` x ``size``, flattened
    -> (B, size ** 2) float32 in [-1, 1]. No network: a transparent baseline and a cheap extractor for tests."""

    def __init__(self, size: int = 16):
        self.size = int(size)
        self.name = f"pixels_{self.size}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, H, W) -> (B, size ** 2) float32."""
        x = F.interpolate(images.float(), size=(self.size, self.size), mode="area")
        return x.flatten(1)


def vgg_extractor(
    layer: str = "relu3_1", size: int = 64, seed: int = 0, weights: str | PathLike | None = None,
    pooling: str = "meanstd",
) -> VGGExtractor:
    """A :class:`VGGExtractor` (e.g. on a local pretrained file: ``vgg_extractor(weights="vgg19.pth")``)."""
    return VGGExtractor(layer=layer, size=size, seed=seed, weights=weights, pooling=pooling)


EXTRACTORS: dict[str, Callable[[], FeatureExtractor]] = {
    "vgg19_random0_relu3_1_meanstd_64": lambda: VGGExtractor("relu3_1", 64),
    "vgg19_random0_relu4_1_meanstd_64": lambda: VGGExtractor("relu4_1", 64),
    "vgg19_random0_relu3_1_meanstd_128": lambda: VGGExtractor("relu3_1", 128),
    "pixels_16": lambda: PixelExtractor(16),
}
"""Name -> factory of every registered extractor."""

DEFAULT_EXTRACTOR = "vgg19_random0_relu3_1_meanstd_64"


def list_extractors() -> list[str]:
    """Names of the registered extractors."""
    return sorted(EXTRACTORS)


@cache
def get_extractor(name: str) -> FeatureExtractor:
    """The registered extractor ``name`` (built once per process); BundleInputError for an unknown name."""
    if name not in EXTRACTORS:
        raise BundleInputError(f"unknown feature extractor {name!r}", field="extractor",
                               hint=f"known extractors: {', '.join(list_extractors())}")
    return EXTRACTORS[name]()


def extractor_name(extractor: str | FeatureExtractor) -> str:
    """The name recorded in the results: the registry name, the extractor's ``name`` attribute, or its
    class / function name."""
    if isinstance(extractor, str):
        return extractor
    name = getattr(extractor, "name", None)
    if isinstance(name, str):
        return name
    return getattr(extractor, "__name__", type(extractor).__name__)
