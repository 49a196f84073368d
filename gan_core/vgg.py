"""Frozen VGG-19 feature extractor for style and content losses, laid out like torchvision's ``vgg19``.

The convolution and ReLU layers keep torchvision's ``features.<i>`` indices, so the state_dict of
``torchvision.models.vgg19`` saved to a local file loads into it unchanged. Nothing is downloaded: without a
weight file the filters are fixed-seed random (see :class:`VGG19Features`).
"""

from __future__ import annotations

import logging
import warnings
from os import PathLike
from pathlib import Path

import torch
from torch import nn

from gan_core.errors import BundleInputError

logger = logging.getLogger(__name__)

# torchvision's vgg19 "E" configuration: output channels of each 3x3 conv, "M" = 2x2 max-pooling.
VGG19_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                              512, 512, 512, 512, "M"]
# Index in ``features`` of the ReLU after each named conv (torchvision numbering).
LAYER_INDEX: dict[str, int] = {
    "relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8, "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu3_4": 17, "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26, "relu5_1": 29,
}
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYERS = ("relu4_2",)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RANDOM_FILTER_WARNING = (
    "No VGG-19 weight file given (config key 'vgg_weights'): the style and content losses use fixed-seed "
    "RANDOM VGG-19 filters (seed {seed}). Random filters still carry texture statistics (Ustyuzhaninov et al. "
    "2016; He, Wang & Hopcroft 2016), so per-organ style transfer works, but the features are not the "
    "ImageNet features of the paper: fine texture is matched less faithfully, the content loss constrains "
    "anatomy more weakly, and loss values and Gram distances are not comparable with runs on pretrained "
    "weights. To use the paper's features, save torchvision's vgg19 state_dict (vgg19-dcbb9e9d.pth) on this "
    "machine and pass its path as 'vgg_weights'."
)


def vgg19_state_dict_shapes(last_index: int = 36) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's ``vgg19().features`` parameters up to layer ``last_index``."""
    shapes: dict[str, tuple[int, ...]] = {}
    index, in_ch = 0, 3
    for v in VGG19_CFG:
        if index > last_index:
            break
        if v == "M":
            index += 1
            continue
        shapes[f"features.{index}.weight"] = (int(v), in_ch, 3, 3)
        shapes[f"features.{index}.bias"] = (int(v),)
        in_ch = int(v)
        index += 2
    return shapes


class VGG19Features(nn.Module):
    """VGG-19 ``features`` up to the deepest requested layer, frozen, returning named ReLU outputs.

    Input: a CT batch (B, 1, H, W) scaled to [-1, 1] (see ``gan_core.transforms.ScaleHU``); it is
    mapped to [0, 1], repeated to 3 channels and normalised with the ImageNet mean/std, as the torchvision
    weights expect. Output: ``{name: (B, C_l, H / 2**k, W / 2**k)}`` for each name in ``layers``
    (torchvision naming: relu1_1 = ``features.1``, relu4_2 = ``features.22``, relu5_1 = ``features.29``).

    Args:
        weights: path of a torchvision vgg19 state_dict (``torch.save(vgg19().state_dict(), path)``), loaded
            with ``weights_only=True``; ``None`` -> fixed-seed random filters and a warning saying what
            that costs (:data:`RANDOM_FILTER_WARNING`).
        layers: names from :data:`LAYER_INDEX`; default: the five style layers and relu4_2.
        seed: seed of the random filters (ignored with ``weights``).
    """

    def __init__(
        self,
        weights: str | PathLike | None = None,
        layers: tuple[str, ...] = STYLE_LAYERS + CONTENT_LAYERS,
        seed: int = 0,
    ):
        super().__init__()
        unknown = [name for name in layers if name not in LAYER_INDEX]
        if unknown:
            raise BundleInputError(
                f"unknown VGG-19 layer(s) {unknown}", field="vgg_layers", hint=f"choose from {sorted(LAYER_INDEX)}"
            )
        self.layers = tuple(layers)
        self.last_index = max(LAYER_INDEX[name] for name in self.layers)
        modules: list[nn.Module] = []
        in_ch = 3
        for v in VGG19_CFG:
            if len(modules) > self.last_index:
                break
            if v == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                in_ch = int(v)
        self.features = nn.Sequential(*modules[: self.last_index + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.pretrained = weights is not None
        if weights is None:
            self._init_random(seed)
            message = RANDOM_FILTER_WARNING.format(seed=seed)
            warnings.warn(message, UserWarning, stacklevel=2)
            logger.warning(message)
        else:
            self.load_torchvision_weights(weights)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def _init_random(self, seed: int) -> None:
        """Kaiming-normal filters (fan-in, ReLU gain: activations keep their scale with depth), zero biases."""
        gen = torch.Generator().manual_seed(int(seed))
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                    m.bias.zero_()

    def load_torchvision_weights(self, path: str | PathLike) -> None:
        """Load a torchvision vgg19 state_dict file; BundleInputError listing mismatched keys otherwise."""
        path = Path(path)
        if not path.is_file():
            raise BundleInputError(
                "VGG-19 weight file not found", path=path, field="vgg_weights",
                hint="give the path of torchvision's vgg19 state_dict, or null for random filters",
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors come in many types
            raise BundleInputError(
                f"cannot read as a weights-only torch file ({type(exc).__name__}: {exc})", path=path,
                field="vgg_weights", hint="save it with torch.save(torchvision.models.vgg19(...).state_dict(), path)",
            ) from exc
        if not isinstance(state, dict):
            raise BundleInputError(
                f"holds a {type(state).__name__}, not a state_dict", path=path, field="vgg_weights",
                hint="save the state_dict, not the model: torch.save(model.state_dict(), path)",
            )
        # The classifier of a full torchvision file (classifier.0/3/6) is not used and not checked.
        allowed = vgg19_state_dict_shapes()
        needed = vgg19_state_dict_shapes(self.last_index)
        missing = sorted(k for k in needed if k not in state)
        unexpected = sorted(k for k in state if k not in allowed and not str(k).startswith("classifier."))
        wrong = sorted(
            f"{k} {tuple(state[k].shape)} (VGG-19: {allowed[k]})"
            for k in state
            if k in allowed and (not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != allowed[k])
        )
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected[:20]}" + (" ..." if len(unexpected) > 20 else ""))
            if wrong:
                parts.append(f"wrong shapes {wrong}")
            raise BundleInputError(
                "not a torchvision VGG-19 state_dict: " + "; ".join(parts), path=path, field="vgg_weights",
                hint="use torchvision.models.vgg19 weights (keys features.<i>.weight/bias, classifier.*)",
            )
        own = {k[len("features."):]: state[k].float() for k in needed}
        self.features.load_state_dict(own, strict=True)

    def train(self, mode: bool = True) -> VGG19Features:
        """Stay in eval mode: the feature network is frozen."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, 1, H, W) in [-1, 1] -> {layer name: (B, C_l, H_l, W_l)}."""
        x = ((x + 1.0) * 0.5).expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        wanted = {LAYER_INDEX[name]: name for name in self.layers}
        out: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x
        return out

