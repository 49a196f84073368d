"""RadioGAN evaluation: the shared metrics of the registry, conditional accuracy and the paper's latent walks.

``num_per_class`` MIPs per class are generated and compared with the real training MIPs (which the generator
saw) and the held-out MIPs (other patients) by the metrics that ``evaluate.json`` lists
(:mod:`gan_core.evaluation.metrics`: FID / KID with the real-vs-real floor, precision / recall, density /
coverage, MS-SSIM diversity per class beside the real MIPs' own, nearest-neighbour memorisation in pixels and
features), every one with its interval. Beside them, the bundle's own measures: a classifier
(:mod:`scripts.classifier`) trained on the real training MIPs judges the generated images
(conditional accuracy, with its accuracy on the held-out real MIPs first: numbers judged by a classifier are
only as good as that) and the realism of the latent-walk frames.

Outputs in ``output_dir``: ``metrics.json`` (:func:`gan_core.evaluation.metrics.write_metrics_json`: the
registry's results under ``"metrics"``, the bundle's own numbers beside), ``summary.png`` (one page: real and
generated MIPs per class, the main numbers, the utility curve when ``utility_dir`` holds a result),
``walk_axis.png`` (the paper's Z_k walks, one row per class), ``walk_<a>_to_<b>.png`` (walks between two seeds
across classes), ``closest_pixel.png`` / ``closest_features.png`` (generated MIPs closest to a training MIP,
each above it), ``generated_grid.png``, ``classifier.pt`` and ``run_info.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from gan_core.errors import BundleInputError
from gan_core.evaluation.metrics import (
    SampleSets,
    check_metrics,
    compute_metrics,
    format_result,
    save_closest_pairs,
    write_metrics_json,
)
from gan_core.evaluation.utility import numbers_panel, read_utility_result
from gan_core.figures import plt, save_figure, save_strip, to_display
from gan_core.fileio import atomic_dir, atomic_torch_save
from gan_core.models import Model
from gan_core.runs import RUN_INFO, run_info, write_run_info

from .classifier import conditional_accuracy, predict, train_classifier
from .inference import class_indices, fixed_latents
from .latent_walk import (
    axis_walk_latents,
    generate_walk,
    interpolate,
    walk_smoothness,
)
from .prepare import load_datalist, load_images

KIND = "radiogan evaluation"

__all__ = ["TARGETS", "evaluate", "latent_walks"]

# Acceptance: conditional accuracy (judged by the classifier), and the memorisation ratio read with precision.
TARGETS = {"conditional_accuracy": 0.8, "memorisation_ratio": 1.0, "precision": 0.5}

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
    metrics: Sequence[str],
    metric_options: dict | None = None,
    num_bootstrap: int = 1000,
    device: str | torch.device = "cpu",
    num_per_class: int = 20,
    seed: int = 1000,
    classifier_epochs: int = 60,
    classifier_width: int = 16,
    walk_steps: int = 10,
    class_pairs: Sequence[Sequence[str]] = (("lung", "lymphoma"), ("normal", "head_neck")),
    utility_dir: str | Path | None = None,
    settings: dict | None = None,
) -> dict:
    """Run every evaluation and write ``metrics.json`` + figures into ``output_dir``; returns what metrics.json holds.

    Args:
        model: the trained model (:func:`gan_core.models.read_model`).
        dataset_dir: the prepared dataset (read only; ``training`` / ``validation`` items, ``classes``).
        output_dir: a missing or empty folder, or an earlier output of this evaluation (replaced).
        metrics: names of registered metrics (:func:`gan_core.evaluation.metrics.list_metrics`), computed with
            the generated MIPs' classes as conditions; metric_options: per-metric options (e.g. ``{"density":
            {"k": 3}}``); num_bootstrap: resamples of every interval.
        num_per_class: generated images per class (latent codes from ``seed``, independent of the walks).
        classifier_epochs, classifier_width: the judging classifier (trained with the same seed each run).
        utility_dir: a finished utility study (``utility.json``) whose curve ``summary.png`` shows, if any.
    """
    check_metrics(metrics, metric_options)
    datalist = load_datalist(dataset_dir)
    class_names = list(datalist["classes"])
    generator = model.load(device)
    train_x, train_y = load_images(datalist["training"])
    held_x, held_y = load_images(datalist["validation"])
    if held_x.shape[0] < 2:
        raise BundleInputError("the evaluation needs at least two held-out real images", path=dataset_dir,
                               field="validation", hint="prepare with heldout_per_class >= 1 and enough studies")
    utility = read_utility_result(utility_dir)
    with atomic_dir(output_dir, record=RUN_INFO, kind=KIND, setting="evaluation_dir") as work:
        result = _evaluate(generator, real=(train_x, train_y, held_x, held_y), class_names=class_names, work=work,
                           metrics=metrics, metric_options=metric_options, num_bootstrap=num_bootstrap,
                           num_per_class=num_per_class, seed=seed, latent_dim=int(model.network["latent_dim"]),
                           classifier_epochs=classifier_epochs, classifier_width=classifier_width,
                           walk_steps=walk_steps, class_pairs=class_pairs, utility=utility)
        write_run_info(work, run_info(KIND, settings=settings, datalist=Path(dataset_dir) / "datalist.json",
                                      seed=seed))
    return result


def _evaluate(generator, *, real, class_names, work: Path, metrics, metric_options, num_bootstrap, num_per_class,
              seed, latent_dim, classifier_epochs, classifier_width, walk_steps, class_pairs, utility) -> dict:
    train_x, train_y, held_x, held_y = real
    logger.info("training the judging classifier on %d real MIPs", train_x.shape[0])
    classifier = train_classifier(train_x, train_y, num_classes=len(class_names), width=classifier_width,
                                  epochs=classifier_epochs, seed=seed)
    atomic_torch_save(classifier.state_dict(), work / "classifier.pt")

    gen_y = torch.arange(len(class_names)).repeat_interleave(num_per_class)
    gen_x = _generate(generator, gen_y, latent_dim, seed)
    sets = SampleSets(gen_x, train_x, held_x, generated_conditions=gen_y, train_conditions=train_y,
                      heldout_conditions=held_y)
    results = compute_metrics(metrics, sets, seed=seed, num_bootstrap=num_bootstrap, options=metric_options)
    for space in ("pixel", "features"):
        if f"memorisation_{space}" in results:
            save_closest_pairs(sets, results[f"memorisation_{space}"], work / f"closest_{space}.png")
    _save_rows([(name, gen_x[gen_y == c][:10]) for c, name in enumerate(class_names)],
               work / "generated_grid.png", [str(i) for i in range(min(10, num_per_class))],
               "generated MIPs (one row per requested class)")

    held_accuracy = conditional_accuracy(predict(classifier, held_x)[0], held_y, class_names,
                                         num_bootstrap=num_bootstrap, seed=seed)
    accuracy = conditional_accuracy(predict(classifier, gen_x)[0], gen_y, class_names, num_bootstrap=num_bootstrap,
                                    seed=seed)
    walks = latent_walks(generator, classifier, work, class_names, latent_dim=latent_dim, steps=walk_steps,
                         class_pairs=class_pairs)
    extra = {
        "bundle": "radiogan",
        "counts": {"training": int(train_x.shape[0]), "heldout": int(held_x.shape[0]), "generated": int(gen_x.shape[0]),
                   "generated_per_class": num_per_class},
        "seed": seed,
        "sets": {"generated": f"{num_per_class} MIPs per class from fixed latent codes (seed {seed})",
                 "train": "the real training MIPs (the generator saw them)",
                 "heldout": "the real held-out MIPs (validation patients, never trained on)",
                 "conditions": "class index"},
        "classifier_heldout_accuracy": held_accuracy,
        "conditional_accuracy": accuracy,
        "walks": walks,
        "targets": TARGETS,
        "passed": _passed(results, accuracy),
    }
    path = write_metrics_json(work / "metrics.json", results, **extra)
    _save_summary(work / "summary.png", (held_x, held_y), (gen_x, gen_y), class_names, results, extra, utility)
    logger.info("conditional accuracy %.3f (classifier on held-out real %.3f); %s -> %s", accuracy["mean"],
                held_accuracy["mean"], "; ".join(format_result(n, r) for n, r in results.items()), path)
    return json.loads(path.read_text())


def _passed(results: dict, accuracy: dict) -> dict:
    """Acceptance: conditional accuracy; the pixel memorisation ratio, which counts only beside precision."""
    out = {"conditional_accuracy": accuracy["mean"] >= TARGETS["conditional_accuracy"]}
    if "memorisation_pixel" in results and "precision" in results:
        ratio, precision = results["memorisation_pixel"]["value"], results["precision"]["value"]
        out["memorisation_with_precision"] = bool(ratio is not None and precision is not None
                                                  and ratio >= TARGETS["memorisation_ratio"]
                                                  and precision >= TARGETS["precision"])
    return out


def _save_summary(path: Path, real, generated, class_names, results: dict, extra: dict, utility: dict | None,
                  num_real: int = 2, num_generated: int = 4) -> None:
    """One page: per class ``num_real`` held-out real MIPs beside ``num_generated`` generated ones, the main
    numbers, and the utility curve when a utility result exists."""
    (held_x, held_y), (gen_x, gen_y) = real, generated
    rows, cols = len(class_names), num_real + num_generated
    fig = plt.figure(figsize=(1.15 * cols + 6.2, 1.75 * rows + 0.6))
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1] * cols + [5.2])
    for r, name in enumerate(class_names):
        real_c, gen_c = held_x[held_y == r][:num_real], gen_x[gen_y == r][:num_generated]
        for c in range(cols):
            ax = fig.add_subplot(grid[r, c])
            images, i = (real_c, c) if c < num_real else (gen_c, c - num_real)
            if i < len(images):
                ax.imshow(to_display(images[i]), cmap="gray_r", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("held-out real" if c < num_real else "generated", fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    acc, held = extra["conditional_accuracy"], extra["classifier_heldout_accuracy"]
    lines = [f"RadioGAN, {extra['counts']['generated']} generated / {extra['counts']['training']} training / "
             f"{extra['counts']['heldout']} held-out MIPs",
             f"conditional accuracy {acc['mean']:.3f}" + _ci(acc.get("ci95")) +
             f" (judge on held-out real {held['mean']:.3f})"]
    lines += [format_result(name, r) for name, r in results.items()]
    lines.append("passed: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in extra["passed"].items()))
    numbers_panel(fig, grid[:, cols], lines, utility)
    fig.suptitle("RadioGAN: held-out real MIPs beside generated ones per class; main numbers (95 % CI, ref = real)",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def _ci(ci) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
