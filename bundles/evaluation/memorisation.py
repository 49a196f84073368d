"""Memorisation audit: are generated images closer to the training set than new real images are?

For every generated image the nearest training image is found (Euclidean distance, in pixel space or in a
feature space). The same is done for held-out real images, which sets the scale of "as close as a new
patient is". The ratio of the mean generated->train distance to the mean held-out->train distance is >= 1
for a generator that does not copy; a generated image closer to a training image than every held-out real
image is (``distance < min(held-out distances)``) is flagged as a probable copy.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from bundles.evaluation.latent_walk import to_display  # noqa: E402
from bundles.fileio import save_figure  # noqa: E402

__all__ = ["memorisation_audit", "nearest_neighbours", "save_closest_pairs"]


def nearest_neighbours(queries: torch.Tensor, references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest reference of every query by Euclidean distance.

    Args:
        queries: (N, ...) vectors or images (flattened per item).
        references: (M, ...) of the same item shape.

    Returns:
        distances (N,) float64 and indices (N,) int64 into ``references``.
    """
    q = queries.reshape(queries.shape[0], -1).double()
    r = references.reshape(references.shape[0], -1).double()
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries and references differ in item size: {q.shape[1]} vs {r.shape[1]}")
    dist = torch.cdist(q, r)
    d, idx = dist.min(dim=1)
    return d, idx


def memorisation_audit(generated: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor) -> dict:
    """Distances of generated and held-out real items to their nearest training item, and their ratio.

    Args:
        generated: (N, ...) generated images or their features.
        train: (M, ...) training images or features (same space).
        heldout: (K, ...) held-out real images or features (K >= 1), never seen in training.

    Returns:
        ``{"ratio": mean(d_gen) / mean(d_heldout), "generated_mean", "generated_min", "heldout_mean",
        "heldout_min", "flagged": [indices of generated items with d < min(d_heldout)], "flagged_fraction",
        "generated_distances", "generated_nearest", "heldout_distances", "heldout_nearest"}`` (lists).
    """
    if heldout.shape[0] < 1:
        raise ValueError("the audit needs at least one held-out real image")
    d_gen, i_gen = nearest_neighbours(generated, train)
    d_held, i_held = nearest_neighbours(heldout, train)
    held_mean = float(d_held.mean())
    threshold = float(d_held.min())
    flagged = torch.nonzero(d_gen < threshold).flatten()
    return {
        "ratio": float(d_gen.mean()) / held_mean if held_mean > 0 else float("inf"),
        "generated_mean": float(d_gen.mean()),
        "generated_min": float(d_gen.min()),
        "heldout_mean": held_mean,
        "heldout_min": threshold,
        "flagged": [int(i) for i in flagged],
        "flagged_fraction": float(flagged.numel()) / generated.shape[0],
        "generated_distances": [float(v) for v in d_gen],
        "generated_nearest": [int(v) for v in i_gen],
        "heldout_distances": [float(v) for v in d_held],
        "heldout_nearest": [int(v) for v in i_held],
    }


def save_closest_pairs(
    generated: torch.Tensor,
    train: torch.Tensor,
    distances: list[float],
    nearest: list[int],
    path: str | Path,
    num_pairs: int = 8,
    captions: list[str] | None = None,
) -> Path:
    """PNG of the ``num_pairs`` generated images closest to the training set, each above its nearest
    training image. Images (N, 1, X, Z) in [-1, 1]; ``distances`` / ``nearest`` from :func:`memorisation_audit`."""
    order = sorted(range(len(distances)), key=lambda i: distances[i])[:num_pairs]
    n = len(order)
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 5.0), squeeze=False)
    for col, i in enumerate(order):
        axes[0, col].imshow(to_display(generated[i]), cmap="gray_r", vmin=0.0, vmax=1.0)
        title = f"gen {i}\nd={distances[i]:.2f}"
        if captions is not None:
            title = f"{captions[i]}\n{title}"
        axes[0, col].set_title(title, fontsize=7)
        axes[1, col].imshow(to_display(train[nearest[i]]), cmap="gray_r", vmin=0.0, vmax=1.0)
        axes[1, col].set_title(f"train {nearest[i]}", fontsize=7)
        axes[0, col].set_axis_off()
        axes[1, col].set_axis_off()
    fig.suptitle("closest generated (top) / nearest training image (bottom)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path, dpi=100)
    return path
