"""RadioGAN evaluation: latent walks with smoothness and realism, memorisation audit, conditional accuracy, FID.

One classifier (:mod:`bundles.evaluation.classifier`) is trained on the real training MIPs; it judges the
generated images (conditional accuracy, realism of walk frames) and provides the feature space of the
second memorisation audit and of the FID-style distance. Its accuracy on the held-out real MIPs is
reported too: numbers judged by a classifier are only as good as that accuracy.

Outputs in ``output_dir``: ``metrics.json`` and the figures ``walk_axis.png`` (the paper's Z_k walks, one
row per class), ``walk_<a>_to_<b>.png`` (walks between two seeds across classes),
``closest_pixel.png`` / ``closest_features.png`` (generated images closest to the training set, each
above its nearest training image) and ``generated_grid.png``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from bundles.errors import BundleInputError  # noqa: E402
from bundles.evaluation.classifier import conditional_accuracy, feature_fid, predict, train_classifier  # noqa: E402
from bundles.evaluation.latent_walk import (  # noqa: E402
    axis_walk_latents,
    generate_walk,
    interpolate,
    save_strip,
    to_display,
    walk_smoothness,
)
from bundles.evaluation.memorisation import memorisation_audit, save_closest_pairs  # noqa: E402
from bundles.fileio import atomic_dir, atomic_torch_save, atomic_write_text, save_figure  # noqa: E402
from bundles.models import Model  # noqa: E402
from bundles.runs import RUN_INFO, run_info, write_run_info  # noqa: E402
from bundles.workflows.radiogan_inference import class_indices, fixed_latents  # noqa: E402
from bundles.workflows.radiogan_prepare import load_datalist, load_images  # noqa: E402

KIND = "radiogan evaluation"

__all__ = ["evaluate", "latent_walks"]

logger = logging.getLogger(__name__)


def _walk_record(frames: torch.Tensor, classifier, class_names: Sequence[str]) -> dict:
    probs, _ = predict(classifier, frames)
    confidence, predicted = probs.max(dim=1)
    return {
        **walk_smoothness(frames),
        "realism": [float(v) for v in confidence],
        "mean_realism": float(confidence.mean()),
        "min_realism": float(confidence.min()),
        "predicted": [class_names[int(i)] for i in predicted],
    }


@torch.no_grad()
def latent_walks(
    generator,
    classifier,
    output_dir: Path,
    class_names: Sequence[str],
    *,
    latent_dim: int = 100,
    steps: int = 10,
    class_pairs: Sequence[Sequence[str]] = (("lung", "lymphoma"), ("normal", "head_neck")),
    seed_pair: Sequence[int] = (1, 2),
) -> dict:
    """The paper's walks: ``Z_k = [k, 0, ..., 0]`` (k = 1..steps) per class, and seed-to-seed walks across classes.

    A cross-class walk interpolates linearly both z (from seed ``seed_pair[0]`` to ``seed_pair[1]``) and the
    class embedding (from class a to class b). Each walk gets SSIM smoothness and classifier realism.
    """
    device = next(generator.parameters()).device
    z_axis = axis_walk_latents(latent_dim, steps)
    walks, rows = {}, []
    for c, name in enumerate(class_names):
        emb = generator.embed(torch.full((steps,), c, dtype=torch.long, device=device))
        frames = generate_walk(generator, z_axis, emb)
        walks[f"axis_{name}"] = _walk_record(frames, classifier, class_names)
        rows.append((name, frames))
    _save_rows(rows, output_dir / "walk_axis.png", [f"k={k}" for k in range(1, steps + 1)],
               "latent walk Z_k = [k, 0, ..., 0]")
    z0 = fixed_latents(1, latent_dim, seed_pair[0])[0]
    z1 = fixed_latents(1, latent_dim, seed_pair[1])[0]
    for a, b in class_pairs:
        ia, ib = class_indices([a, b], class_names)
        ends = generator.embed(torch.tensor([ia, ib], device=device)).cpu()
        frames = generate_walk(generator, interpolate(z0, z1, steps), interpolate(ends[0], ends[1], steps))
        record = _walk_record(frames, classifier, class_names)
        walks[f"{a}_to_{b}"] = record
        save_strip(frames, output_dir / f"walk_{a}_to_{b}.png", titles=record["predicted"],
                   suptitle=f"walk from {a} (seed {seed_pair[0]}) to {b} (seed {seed_pair[1]}); titles: classifier")
    return walks


def _save_rows(rows: list[tuple[str, torch.Tensor]], path: Path, col_titles: list[str], title: str) -> None:
    """One row per (name, frames (N, 1, S0, S1) in [-1, 1]) as a PNG."""
    n = rows[0][1].shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.2 * n, 2.1 * len(rows)), squeeze=False)
    for r, (name, frames) in enumerate(rows):
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(to_display(frames[i]), cmap="gray_r", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_titles[i], fontsize=7)
            if i == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def _audit_summary(audit: dict) -> dict:
    keys = ("ratio", "generated_mean", "generated_min", "heldout_mean", "heldout_min", "flagged", "flagged_fraction")
    return {k: audit[k] for k in keys}


@torch.no_grad()
def _generate(generator, labels: torch.Tensor, latent_dim: int, seed: int, batch_size: int = 64) -> torch.Tensor:
    device = next(generator.parameters()).device
    z = fixed_latents(labels.shape[0], latent_dim, seed)
    out = [generator(z[s : s + batch_size].to(device), labels[s : s + batch_size].to(device)).cpu()
           for s in range(0, labels.shape[0], batch_size)]
    return torch.cat(out)


def evaluate(
    model: Model,
    dataset_dir: str | Path,
    output_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    num_per_class: int = 20,
    seed: int = 1000,
    classifier_epochs: int = 60,
    classifier_width: int = 16,
    walk_steps: int = 10,
    class_pairs: Sequence[Sequence[str]] = (("lung", "lymphoma"), ("normal", "head_neck")),
    settings: dict | None = None,
) -> dict:
    """Run every evaluation and write ``metrics.json`` + figures into ``output_dir``; returns the metrics.

    Args:
        model: the trained model (:func:`bundles.models.read_model`).
        dataset_dir: the prepared dataset (read only; ``training`` / ``validation`` items, ``classes``).
        output_dir: a missing or empty folder, or an earlier output of this evaluation (replaced).
        num_per_class: generated images per class (latent codes from ``seed``, independent of the walks).
        classifier_epochs, classifier_width: the judging classifier (trained with the same seed each run).
    """
    datalist = load_datalist(dataset_dir)
    class_names = list(datalist["classes"])
    generator = model.load(device)
    train_x, train_y = load_images(datalist["training"])
    held_x, held_y = load_images(datalist["validation"])
    if held_x.shape[0] < 2:
        raise BundleInputError("the evaluation needs at least two held-out real images", path=dataset_dir,
                               field="validation", hint="prepare with heldout_per_class >= 1 and enough studies")
    with atomic_dir(output_dir, record=RUN_INFO, kind=KIND, setting="evaluation_dir") as work:
        metrics = _evaluate(generator, classifier_inputs=(train_x, train_y, held_x, held_y), class_names=class_names,
                            work=work, num_per_class=num_per_class, seed=seed, latent_dim=int(model.network["latent_dim"]),
                            classifier_epochs=classifier_epochs, classifier_width=classifier_width,
                            walk_steps=walk_steps, class_pairs=class_pairs)
        write_run_info(work, run_info(KIND, settings=settings, datalist=Path(dataset_dir) / "datalist.json",
                                      seed=seed))
    return metrics


def _evaluate(generator, *, classifier_inputs, class_names, work: Path, num_per_class, seed, latent_dim,
              classifier_epochs, classifier_width, walk_steps, class_pairs) -> dict:
    train_x, train_y, held_x, held_y = classifier_inputs
    output_dir = work

    logger.info("training the judging classifier on %d real MIPs", train_x.shape[0])
    classifier = train_classifier(train_x, train_y, num_classes=len(class_names), width=classifier_width,
                                  epochs=classifier_epochs, seed=seed)
    atomic_torch_save(classifier.state_dict(), output_dir / "classifier.pt")
    held_probs, held_feat = predict(classifier, held_x)
    _, train_feat = predict(classifier, train_x)

    gen_y = torch.arange(len(class_names)).repeat_interleave(num_per_class)
    gen_x = _generate(generator, gen_y, latent_dim, seed)
    gen_probs, gen_feat = predict(classifier, gen_x)

    pixel = memorisation_audit(gen_x, train_x, held_x)
    feature = memorisation_audit(gen_feat, train_feat, held_feat)
    captions = [class_names[int(c)] for c in gen_y]
    save_closest_pairs(gen_x, train_x, pixel["generated_distances"], pixel["generated_nearest"],
                       output_dir / "closest_pixel.png", captions=captions)
    save_closest_pairs(gen_x, train_x, feature["generated_distances"], feature["generated_nearest"],
                       output_dir / "closest_features.png", captions=captions)
    _save_rows([(name, gen_x[gen_y == c][:10]) for c, name in enumerate(class_names)],
               output_dir / "generated_grid.png", [str(i) for i in range(min(10, num_per_class))],
               "generated MIPs (one row per requested class)")

    walks = latent_walks(generator, classifier, output_dir, class_names, latent_dim=latent_dim, steps=walk_steps,
                         class_pairs=class_pairs)
    metrics = {
        "num_training": int(train_x.shape[0]),
        "num_heldout": int(held_x.shape[0]),
        "num_generated": int(gen_x.shape[0]),
        "classifier_heldout_accuracy": conditional_accuracy(held_probs, held_y, class_names),
        "conditional_accuracy": conditional_accuracy(gen_probs, gen_y, class_names),
        "fid_features_generated_vs_heldout": feature_fid(gen_feat, held_feat),
        "fid_features_train_vs_heldout": feature_fid(train_feat, held_feat),
        "memorisation_pixel": _audit_summary(pixel),
        "memorisation_features": _audit_summary(feature),
        "walks": walks,
    }
    atomic_write_text(json.dumps(metrics, indent=1), output_dir / "metrics.json")
    logger.info(
        "conditional accuracy %.3f (classifier on held-out real %.3f), memorisation ratio pixel %.3f / features "
        "%.3f, feature FID %.2f",
        metrics["conditional_accuracy"]["mean"], metrics["classifier_heldout_accuracy"]["mean"],
        pixel["ratio"], feature["ratio"], metrics["fid_features_generated_vs_heldout"],
    )
    return metrics
