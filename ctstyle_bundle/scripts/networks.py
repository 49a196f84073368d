"""Segmentation-to-CT cGAN of Krishna & Mueller: encoder-decoder generator and map-conditioned discriminator.

Both follow the paper: kernel 4, stride 2, no pooling, Convolution-Normalisation-LeakyReLU blocks
(Radford et al.), tanh output for the generator. Choices the paper leaves open, made here:

- The label map enters as its six one-hot channels (``scripts.labels.LabelToOneHot``), not as
  gray values 0..230: the segments are categories, and the same one-hot tensor serves as loss masks.
- The 200-d noise z is fully connected to the first layer and reshaped: ``Linear(200, C_z * g * g)`` to a
  (C_z, g, g) grid, bilinearly upsampled to the map's size and concatenated with the map channels. A
  full-resolution layer (200 -> 512 x 512) would hold 52 M weights; through the first layer the noise
  reaches every encoder level and every skip connection, so seeds change the whole image.
- Normalisation: the paper trains with batch 1, where BatchNorm normalises each image by its own
  statistics; ``InstanceNorm2d(affine=True)`` is that same operation and keeps images of a batch
  independent at inference (several seeds in one batch give the same images as one by one).
- The discriminator returns a map of logits (a patch per output position); the sigmoid lives in the
  loss (``binary_cross_entropy_with_logits``), which is the paper's sigmoid + BCE, computed stably.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _down(in_ch: int, out_ch: int, norm: bool = True) -> nn.Sequential:
    """Conv2d(k4, s2, p1) (+ InstanceNorm2d) + LeakyReLU(0.2): halves H and W."""
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=not norm)]
    if norm:
        layers.append(nn.InstanceNorm2d(out_ch, affine=True))
    layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


def _up(in_ch: int, out_ch: int) -> nn.Sequential:
    """ConvTranspose2d(k4, s2, p1) + InstanceNorm2d + LeakyReLU(0.2): doubles H and W."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
        nn.InstanceNorm2d(out_ch, affine=True),
        nn.LeakyReLU(0.2),
    )


def map_size_multiple(num_levels: int) -> int:
    """The side (px) that the generator's map heights and widths must be multiples of: each level halves them."""
    return 2 ** int(num_levels)


def init_dcgan(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), norm scales N(1, 0.02), zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.InstanceNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class CTStyleGenerator(nn.Module):
    """Encoder-decoder with skip connections: (one-hot map, noise) -> CT in [-1, 1].

    Args:
        in_channels: map channels (6 one-hot segments).
        noise_dim: length of z (200 in the paper).
        base_channels: channels of the first encoder level (doubling per level up to ``max_channels``).
        num_levels: stride-2 levels; H and W must be divisible by ``2**num_levels`` and the bottleneck
            (H / 2**num_levels) should be at least 2 pixels (instance normalisation).
        max_channels: channel cap.
        noise_channels: C_z, channels of the reshaped noise.
        noise_grid: g, side of the reshaped noise grid before upsampling to the map size.
    """

    def __init__(
        self,
        in_channels: int = 6,
        noise_dim: int = 200,
        base_channels: int = 64,
        num_levels: int = 7,
        max_channels: int = 512,
        noise_channels: int = 4,
        noise_grid: int = 16,
    ):
        super().__init__()
        self.noise_dim = noise_dim
        self.noise_channels = noise_channels
        self.noise_grid = noise_grid
        self.num_levels = num_levels
        self.map_multiple = map_size_multiple(num_levels)
        self.noise_fc = nn.Linear(noise_dim, noise_channels * noise_grid * noise_grid)
        chans = [min(base_channels * 2**i, max_channels) for i in range(num_levels)]
        self.encoder = nn.ModuleList(
            [_down(in_channels + noise_channels, chans[0], norm=False)]
            + [_down(chans[i - 1], chans[i]) for i in range(1, num_levels)]
        )
        # Decoder level i upsamples to the resolution of encoder level num_levels - 2 - i and concatenates it.
        decoder: list[nn.Module] = [_up(chans[-1], chans[-2])]
        for i in range(num_levels - 2, 0, -1):
            decoder.append(_up(2 * chans[i], chans[i - 1]))
        self.decoder = nn.ModuleList(decoder)
        self.head = nn.ConvTranspose2d(2 * chans[0], 1, 4, stride=2, padding=1)
        init_dcgan(self)

    def forward(self, label_map: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """label_map: (B, 6, H, W) one-hot; noise: (B, noise_dim) -> (B, 1, H, W) in [-1, 1]."""
        b, _, h, w = label_map.shape
        step = self.map_multiple
        if h % step != 0 or w % step != 0:
            raise ValueError(f"map height and width must be multiples of {step}")
        z = self.noise_fc(noise).view(b, self.noise_channels, self.noise_grid, self.noise_grid)
        z = F.interpolate(z, size=[h, w], mode="bilinear", align_corners=False)
        x = torch.cat([label_map, z], dim=1)
        skips: list[torch.Tensor] = []
        for layer in self.encoder:
            x = layer(x)
            skips.append(x)
        n = len(skips)
        for i, layer in enumerate(self.decoder):
            x = layer(x)
            x = torch.cat([x, skips[n - 2 - i]], dim=1)
        return torch.tanh(self.head(x))


class CTStyleDiscriminator(nn.Module):
    """Map-conditioned discriminator: (CT, one-hot map) -> logits (B, 1, H / 2**num_layers, W / 2**num_layers).

    Args:
        in_channels: 1 image channel + 6 map channels.
        base_channels: channels of the first level (doubling up to ``max_channels``).
        num_layers: stride-2 blocks before the final stride-2 logit convolution.
        max_channels: channel cap.
    """

    def __init__(self, in_channels: int = 7, base_channels: int = 64, num_layers: int = 4, max_channels: int = 512):
        super().__init__()
        chans = [min(base_channels * 2**i, max_channels) for i in range(num_layers)]
        blocks = [_down(in_channels, chans[0], norm=False)] + [_down(chans[i - 1], chans[i]) for i in range(1, num_layers)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(chans[-1], 1, 4, stride=2, padding=1)
        self.num_layers = num_layers
        init_dcgan(self)

    def forward(self, image: torch.Tensor, label_map: torch.Tensor) -> torch.Tensor:
        """image: (B, 1, H, W) in [-1, 1]; label_map: (B, 6, H, W) one-hot -> logits (B, 1, h, w)."""
        return self.head(self.blocks(torch.cat([image, label_map], dim=1)))
