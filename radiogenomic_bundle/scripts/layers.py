"""Small building blocks shared by the generators and discriminators (2D, channel first)."""

from __future__ import annotations

import torch
from torch import nn


class AdaIN(nn.Module):
    """Adaptive instance normalisation (Huang & Belongie 2017, as in StyleGAN).

    ``out = instance_norm(x) * (1 + gamma(style)) + beta(style)`` with ``gamma, beta`` an affine map of the
    style vector, so a zero style gives plain instance normalisation.

    Args:
        num_features: channels C of ``x``.
        style_dim: length S of the style vector.
    """

    def __init__(self, num_features: int, style_dim: int):
        super().__init__()
        self.num_features = num_features
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.affine = nn.Linear(style_dim, 2 * num_features)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W); style: (B, S) -> (B, C, H, W)."""
        params = self.affine(style)
        gamma = params[:, : self.num_features, None, None]
        beta = params[:, self.num_features :, None, None]
        return self.norm(x) * (1.0 + gamma) + beta


def conv_bn(in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3, act: bool = True) -> nn.Sequential:
    """Conv2d (padding keeps the size at stride 1, halves it at stride 2) + BatchNorm2d (+ LeakyReLU(0.2))."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if act:
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def up_glu(in_channels: int, out_channels: int) -> nn.Sequential:
    """Nearest-neighbour x2 upsampling + conv3x3 (to 2 * out) + BatchNorm2d + GLU over channels -> ``out`` channels."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2.0, mode="nearest"),
        nn.Conv2d(in_channels, 2 * out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * out_channels),
        nn.GLU(dim=1),
    )


def init_orthogonal(module: nn.Module, gain: float = 1.0) -> None:
    """Orthogonal weights for every Conv/Linear layer (zero biases), unit scale / zero shift for norm layers."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
