"""Latent walks (RadioGAN section 4.1) and numbers for what the paper judges by eye.

A walk is a sequence of latent codes fed to a conditional generator. The paper's axis walk uses
``Z_k = [k, 0, ..., 0]`` for ``k = 1..10``; a walk between two seeds interpolates both the noise and the
class embedding, so it can cross from one class to another. Smoothness is the SSIM between neighbouring
frames (a memorising GAN jumps between training images: low minimum SSIM; a generalising one changes
gradually); realism is a classifier's confidence in each frame.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from monai.metrics import SSIMMetric  # noqa: E402

from bundles.fileio import save_figure  # noqa: E402

__all__ = [
    "axis_walk_latents",
    "generate_walk",
    "interpolate",
    "save_strip",
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


def save_strip(frames: torch.Tensor, path: str | Path, titles: list[str] | None = None, suptitle: str = "") -> Path:
    """Save frames (N, 1, S0, S1) in [-1, 1] side by side as a PNG; arrays shown with axis 1 vertical."""
    n = frames.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(1.4 * n, 2.6), squeeze=False)
    for i in range(n):
        ax = axes[0, i]
        ax.imshow(to_display(frames[i]), cmap="gray_r", vmin=0.0, vmax=1.0)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path, dpi=100)
    return path


def to_display(image: torch.Tensor) -> torch.Tensor:
    """(1, X, Z) image in [-1, 1] -> (Z, X) in [0, 1], head up: rows along the body axis, as a MIP is read."""
    x = (image[0].float().clamp(-1, 1) + 1) / 2
    return torch.flip(x.T, dims=(0,))
