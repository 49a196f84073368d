"""Latent walks (RadioGAN section 4.1) and numbers for what the paper judges by eye.

A walk is a sequence of latent codes fed to a conditional generator. The paper's axis walk uses
``Z_k = [k, 0, ..., 0]`` for ``k = 1..10``; a walk between two seeds interpolates both the noise and the
class embedding, so it can cross from one class to another. Smoothness is the SSIM between neighbouring
frames (a memorising GAN jumps between training images: low minimum SSIM; a generalising one changes
gradually); realism is a classifier's confidence in each frame.
"""

from __future__ import annotations

import torch
from monai.metrics import SSIMMetric

__all__ = [
    "axis_walk_latents",
    "generate_walk",
    "interpolate",
    "walk_smoothness",
]


def axis_walk_latents(latent_dim: int = 100, steps: int = 10, axis: int = 0) -> torch.Tensor:
    """The paper's seeds ``Z_k = [k, 0, ..., 0]`` (value k on ``axis``), k = 1..steps -> (steps, latent_dim)."""
    z = torch.zeros(steps, latent_dim)
    z[:, axis] = torch.arange(1, steps + 1, dtype=torch.float32)
    return z


def interpolate(start: torch.Tensor, end: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Linear path from ``start`` (D,) to ``end`` (D,), both included -> (steps, D)."""
    t = torch.linspace(0.0, 1.0, steps, dtype=start.dtype).unsqueeze(1)
    return (1.0 - t) * start.unsqueeze(0) + t * end.unsqueeze(0)


@torch.no_grad()
def generate_walk(generator: torch.nn.Module, z: torch.Tensor, label_embedding: torch.Tensor) -> torch.Tensor:
    """Frames (steps, 1, S0, S1) in [-1, 1] of a generator with ``forward_embedded(z, embedding)``.

    Args:
        generator: a conditional generator in eval mode, e.g. ``RadioGANGenerator``.
        z: (steps, latent_dim) latent codes.
        label_embedding: (steps, E) class embeddings (``generator.embed(labels)``, or an interpolation).
    """
    device = next(generator.parameters()).device
    return generator.forward_embedded(z.to(device), label_embedding.to(device)).cpu()


def walk_smoothness(frames: torch.Tensor) -> dict:
    """SSIM between neighbouring frames of a walk (steps, 1, S0, S1) in [-1, 1] (data range 2).

    Returns ``{"ssim": [steps - 1 values], "mean_ssim", "max_ssim", "min_ssim"}``. Frames need at least
    7 x 7 pixels (the SSIM window).
    """
    if frames.shape[0] < 2:
        raise ValueError("a walk needs at least two frames")
    x = frames.float()
    win = min(7, *x.shape[2:])
    win -= 1 - win % 2  # odd window
    metric = SSIMMetric(spatial_dims=2, data_range=2.0, win_size=win)
    values = metric(x[1:], x[:-1]).flatten()
    return {
        "ssim": [float(v) for v in values],
        "mean_ssim": float(values.mean()),
        "max_ssim": float(values.max()),
        "min_ssim": float(values.min()),
    }
