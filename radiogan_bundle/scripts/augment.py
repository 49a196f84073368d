"""Differentiable augmentation of what the discriminator sees (Zhao et al. 2020, "DiffAugment").

With few training images the discriminator learns them by heart and the generator follows it towards copies.
DiffAugment applies the same random, differentiable transformations to real and generated images just before
every discriminator call (in its update and in the generator's), so the discriminator never sees an image
twice the same way, while the generator, whose gradient passes through the transformations, still learns the
untransformed images (translations and cutouts of the generated set match those of the real set only when the
sets match). StyleGAN2-ADA's ``training/augment.py`` is the adaptive cousin; this is the fixed policy that
Zhao et al. found best for 100-image datasets: translation and cutout. RadioGAN's train.json uses translation
only (cutout hid the lesions its condition is about; measured in its docs).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DiffAugment"]


class DiffAugment(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): a random translation, then a random cutout, drawn per image.

    - translation: shifts of up to ``translation * (H, W)`` pixels (rounded) in each axis, uniformly drawn;
      pixels shifted in are ``fill``;
    - cutout: a box of ``cutout * (H, W)`` pixels (rounded) centred uniformly in the image is set to ``fill``.

    Randomness comes from torch's global generator (the adversarial trainer re-seeds it every iteration, so a
    resumed run draws the same boxes). ``translation=0`` or ``cutout=0`` switches that part off; identity
    when the module is in eval mode.

    Args:
        translation: largest shift as a fraction of the image size (Zhao et al.: 1/8).
        cutout: box size as a fraction of the image size (Zhao et al.: 1/2).
        fill: value of the pixels shifted in and cut out, in the images' units (PET MIPs in [-1, 1]: -1,
            the empty background).
    """

    def __init__(self, translation: float = 0.125, cutout: float = 0.5, fill: float = -1.0):
        super().__init__()
        if not 0.0 <= translation < 1.0 or not 0.0 <= cutout < 1.0:
            raise ValueError(f"translation and cutout must lie in [0, 1), got {translation} and {cutout}")
        self.translation = float(translation)
        self.cutout = float(cutout)
        self.fill = float(fill)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return images
        if self.translation > 0:
            images = self._translate(images)
        if self.cutout > 0:
            images = self._cut_out(images)
        return images

    def _translate(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        pad_h, pad_w = int(h * self.translation + 0.5), int(w * self.translation + 0.5)
        padded = nn.functional.pad(images, (pad_w, pad_w, pad_h, pad_h), value=self.fill)
        dev = images.device
        shift_h = torch.randint(-pad_h, pad_h + 1, (b, 1, 1), device=dev)
        shift_w = torch.randint(-pad_w, pad_w + 1, (b, 1, 1), device=dev)
        rows = (torch.arange(h, device=dev).view(1, h, 1) + pad_h - shift_h).expand(b, h, w)
        cols = (torch.arange(w, device=dev).view(1, 1, w) + pad_w - shift_w).expand(b, h, w)
        batch = torch.arange(b, device=dev).view(b, 1, 1).expand(b, h, w)
        # (B, H, W, C) gather of each image's window, back to channels first
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)

    def _cut_out(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        box_h, box_w = int(h * self.cutout + 0.5), int(w * self.cutout + 0.5)
        dev = images.device
        centre_h = torch.randint(0, h, (b, 1, 1), device=dev)
        centre_w = torch.randint(0, w, (b, 1, 1), device=dev)
        rows = torch.arange(h, device=dev).view(1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        inside = ((rows - centre_h).abs() * 2 < box_h) & ((cols - centre_w).abs() * 2 < box_w)
        return torch.where(inside.unsqueeze(1), torch.full_like(images, self.fill), images)

    def extra_repr(self) -> str:
        return f"translation={self.translation}, cutout={self.cutout}, fill={self.fill}"
