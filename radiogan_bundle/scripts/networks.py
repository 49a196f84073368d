"""RadioGAN (Amyar et al.): the class-conditional DCGAN ("DCCGAN") of PET maximum-intensity projections.

Both networks take integer class labels ``(B,)`` (int64, values ``0 .. num_classes - 1``) and images of shape
``(B, 1, S0, S1)`` in ``[-1, 1]``, spatial axes in the order of the prepared MIPs (MONAI's ``(X, Z)``: patient
left-right, then the body axis).

Sizes: the generator starts from a ``first_grid`` feature map and doubles it ``len(channels)`` times, so the
image is ``first_grid * 2 ** len(channels)``. The paper's 5 x 3 grid (5 along the body axis, 3 left-right)
is ``first_grid=(3, 5)`` in ``(X, Z)`` order; four upsamplings give the demo's 48 x 80 MIPs (96 x 160 mm at
2 mm), and seven give 384 x 640, the first size of this family that holds the paper's 2 mm MIPs
(168 x 4.06 mm = 682 mm -> 341 columns, 429 slices of 2 mm -> 429 rows) after zero padding.

The discriminator's eight 3 x 3 stride-2 convolutions use padding 1, so every layer maps ``n`` to
``ceil(n / 2)`` and never reaches zero: any image of at least 1 x 1 pixel works (48 x 80 ends at 1 x 1, and
so does 384 x 640 after eight halvings to 2 x 3). It returns logits; the sigmoid of the paper's last Dense
layer is folded into ``BCEWithLogitsLoss`` in the trainer, which is the numerically stable form of the
same binary cross-entropy. Keras' BatchNormalization momentum 0.8 is PyTorch's ``momentum=0.2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["RadioGANDiscriminator", "RadioGANGenerator", "init_dcgan_weights"]

KERAS_BN_MOMENTUM_0_8 = 0.2
UPSAMPLING = ("transposed", "resize")


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al.): conv and dense weights N(0, 0.02), BN scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class RadioGANGenerator(nn.Module):
    """z (B, latent_dim) + labels (B,) -> image (B, 1, first_grid[0] * 2**n, first_grid[1] * 2**n) in [-1, 1].

    z -> Dense -> reshape to ``(channels[0], *first_grid)`` -> BN -> ReLU; label -> Embedding(num_classes,
    embed_dim) -> Dense(prod(first_grid)) (linear) -> reshape -> one extra channel; then per entry of
    ``channels`` an upsampling x2 + BN + ReLU; last a 3 x 3 conv to one channel + tanh.

    Args:
        latent_dim: length of z (paper: 100).
        num_classes: number of class labels (paper: 5).
        first_grid: spatial size of the first feature map (paper: 5 x 3; ``(3, 5)`` in (X, Z) order).
        channels: output channels of the transposed convolutions; the dense layer feeds ``channels[0]``
            channels (plus the label channel) into the first one. Its length is the number of doublings.
        embed_dim: size of the label embedding (paper: 50).
        upsample: ``"transposed"`` (the paper's DCGAN): a 4 x 4 stride-2 transposed convolution, whose kernel
            overlaps unevenly and stamps a 2-pixel checkerboard on the image (Odena, Dumoulin & Olah 2016,
            "Deconvolution and checkerboard artifacts"); ``"resize"``: nearest-neighbour x2 then a 3 x 3
            convolution, the same receptive field without the uneven overlap.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        num_classes: int = 5,
        first_grid: Sequence[int] = (3, 5),
        channels: Sequence[int] = (128, 64, 32, 16),
        embed_dim: int = 50,
        upsample: str = "transposed",
    ):
        super().__init__()
        if len(first_grid) != 2 or len(channels) < 1:
            raise ValueError("first_grid needs two sizes and channels at least one entry.")
        if upsample not in UPSAMPLING:
            raise ValueError(f"upsample must be one of {list(UPSAMPLING)}, got {upsample!r}")
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.grid0 = int(first_grid[0])
        self.grid1 = int(first_grid[1])
        self.first_channels = int(channels[0])
        cells = self.grid0 * self.grid1
        self.project = nn.Linear(latent_dim, self.first_channels * cells)
        self.project_norm = nn.Sequential(
            nn.BatchNorm2d(self.first_channels, momentum=KERAS_BN_MOMENTUM_0_8), nn.ReLU()
        )
        self.embedding = nn.Embedding(num_classes, embed_dim)
        self.label_dense = nn.Linear(embed_dim, cells)
        layers: list[nn.Module] = []
        in_ch = self.first_channels + 1
        for out_ch in channels:
            if upsample == "transposed":
                layers.append(nn.ConvTranspose2d(in_ch, int(out_ch), kernel_size=4, stride=2, padding=1))
            else:
                layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(in_ch, int(out_ch), 3, padding=1)]
            layers += [nn.BatchNorm2d(int(out_ch), momentum=KERAS_BN_MOMENTUM_0_8), nn.ReLU()]
            in_ch = int(out_ch)
        layers += [nn.Conv2d(in_ch, 1, kernel_size=3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.image_size = (self.grid0 * 2 ** len(channels), self.grid1 * 2 ** len(channels))
        init_dcgan_weights(self)

    def embed(self, labels: torch.Tensor) -> torch.Tensor:
        """labels (B,) int64 -> class embeddings (B, embed_dim)."""
        return self.embedding(labels)

    def forward_embedded(self, z: torch.Tensor, label_embedding: torch.Tensor) -> torch.Tensor:
        """Generate from z (B, latent_dim) and class embeddings (B, embed_dim); used to walk between classes."""
        b = z.shape[0]
        x = self.project(z).view(b, self.first_channels, self.grid0, self.grid1)
        x = self.project_norm(x)
        label_map = self.label_dense(label_embedding).view(b, 1, self.grid0, self.grid1)
        return self.body(torch.cat([x, label_map], dim=1))

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) float, labels (B,) int64 -> images (B, 1, *image_size) in [-1, 1]."""
        return self.forward_embedded(z, self.embed(labels))


class RadioGANDiscriminator(nn.Module):
    """image (B, 1, S0, S1) in [-1, 1] + labels (B,) -> real/fake logits (B, 1).

    label -> Embedding(num_classes, embed_dim) -> Dense(S0 * S1) (linear) -> second input channel; then
    ``len(channels)`` (paper: 8) blocks of conv 3 x 3 stride 2 (padding 1) -> LeakyReLU(0.2) -> Dropout ->
    BatchNorm, with no BatchNorm in the first and the last two blocks; then flatten -> Dense(1).

    Args:
        image_size: (S0, S1) of the images it judges.
        num_classes: number of class labels.
        channels: output channels of the conv blocks (paper: 8 blocks).
        embed_dim: size of the label embedding (paper: 50).
        dropout: dropout probability after each LeakyReLU.
    """

    def __init__(
        self,
        image_size: Sequence[int] = (48, 80),
        num_classes: int = 5,
        channels: Sequence[int] = (16, 32, 64, 64, 128, 128, 128, 128),
        embed_dim: int = 50,
        dropout: float = 0.25,
    ):
        super().__init__()
        if len(image_size) != 2 or len(channels) < 3:
            raise ValueError("image_size needs two sizes and channels at least three entries.")
        self.size0 = int(image_size[0])
        self.size1 = int(image_size[1])
        self.embedding = nn.Embedding(num_classes, embed_dim)
        self.label_dense = nn.Linear(embed_dim, self.size0 * self.size1)
        layers: list[nn.Module] = []
        in_ch = 2
        s0, s1 = self.size0, self.size1
        n = len(channels)
        for i, out_ch in enumerate(channels):
            layers += [
                nn.Conv2d(in_ch, int(out_ch), kernel_size=3, stride=2, padding=1),
                nn.LeakyReLU(0.2),
                nn.Dropout(dropout),
            ]
            if 0 < i < n - 2:
                layers.append(nn.BatchNorm2d(int(out_ch), momentum=KERAS_BN_MOMENTUM_0_8))
            in_ch = int(out_ch)
            s0, s1 = (s0 + 1) // 2, (s1 + 1) // 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(in_ch * s0 * s1, 1)
        init_dcgan_weights(self)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """images (B, 1, S0, S1), labels (B,) int64 -> logits (B, 1); sigmoid gives P(real)."""
        b = images.shape[0]
        label_map = self.label_dense(self.embedding(labels)).view(b, 1, self.size0, self.size1)
        x = self.body(torch.cat([images, label_map], dim=1))
        return self.head(torch.flatten(x, 1))
