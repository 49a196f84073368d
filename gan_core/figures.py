"""The project's matplotlib helpers, in one place: the ``Agg`` backend is set here, once.

Modules that draw import ``plt`` and the helpers from here (never matplotlib directly): :func:`save_figure`
(every figure is written atomically through :func:`gan_core.fileio.atomic_path` and closed),
:func:`save_image_grid` (the trainers' sample grids), :func:`save_strip` (a row of frames, e.g. a latent
walk) and :func:`to_display` (a PET MIP the way it is read).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from gan_core.fileio import atomic_path  # noqa: E402

__all__ = ["plt", "save_figure", "save_image_grid", "save_strip", "to_display"]


def save_figure(fig, target: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it; returns the path."""
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return Path(target)


def save_image_grid(columns: list[tuple[str, torch.Tensor]], path: str | Path, title: str = "") -> Path:
    """Write a PNG grid: one column per ``(title, (B, 1, H, W) tensor in [-1, 1])``, one row per sample."""
    rows = min(int(t.shape[0]) for _, t in columns)
    fig, axes = plt.subplots(rows, len(columns), figsize=(2.0 * len(columns), 2.0 * rows), squeeze=False)
    for c, (name, images) in enumerate(columns):
        for r in range(rows):
            ax = axes[r][c]
            ax.imshow(images[r, 0].detach().float().cpu().numpy().T, cmap="gray", vmin=-1, vmax=1, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    return Path(path)


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
