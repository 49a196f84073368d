"""ctstyle evaluation: is the style transferred, is the anatomy kept, do seeds matter?

For every evaluation map (held-out patients) and each of ``seeds``, the generator makes a CT; then:

- style: per-organ Gram distance (eq. 6 terms on the VGG features) of the generated CT to the style image,
  against the content image's (the real CT of that map) own distance; ``gram_reduction`` = mean over
  organs of 1 - d_generated / d_content (target >= 0.30);
- intensity: per-organ mean HU of the generated CT, and whether it lies in the style image's organ range
  (5th-95th HU percentile);
- anatomy: Dice of a threshold re-segmentation of the generated CT against the input map, in the four
  groups a threshold can separate (``bundles.evaluation.style_metrics.GROUPS``; target mean >= 0.8);
- diversity: mean pairwise SSIM of the generated CTs of one map across seeds (target < 0.98).

Writes ``evaluation_dir/evaluation.json`` (all numbers, per map and summarised, with the targets) and the
figures ``examples.png``, ``gram_distances.png``, ``organ_hu.png``, ``resegmentation.png``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bundles.engines.ctstyle import map_to_display  # noqa: E402
from bundles.errors import BundleInputError  # noqa: E402
from bundles.evaluation.style_metrics import (  # noqa: E402
    GROUPS,
    dice_per_group,
    label_groups,
    mean_pairwise_ssim,
    organ_gram_distances,
    organ_hu_range,
    organ_mean_hu,
    threshold_resegmentation,
)
from bundles.fileio import atomic_dir, atomic_write_text, save_figure  # noqa: E402
from bundles.models import Model  # noqa: E402
from bundles.networks.vgg import VGG19Features  # noqa: E402
from bundles.runs import RUN_INFO, run_info, write_run_info  # noqa: E402
from bundles.transforms.intensity import hu_from_scaled  # noqa: E402
from bundles.transforms.labels import LABEL_VALUES, SEGMENT_NAMES  # noqa: E402
from bundles.workflows.ctstyle_inference import generate, load_slice_pair  # noqa: E402
from bundles.workflows.ctstyle_prepare import load_datalist  # noqa: E402

__all__ = ["evaluate", "TARGETS"]

logger = logging.getLogger(__name__)

TARGETS = {"gram_reduction": 0.30, "dice": 0.80, "pairwise_ssim": 0.98}
KIND = "ctstyle evaluation"


def _nanmean(values) -> float | None:
    arr = np.asarray(values, dtype=np.float64)
    return None if np.all(np.isnan(arr)) else float(np.nanmean(arr))


def _clean(x):
    """NaN -> None, numpy -> python, for JSON."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if np.isnan(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _save(fig, path: Path) -> None:
    save_figure(fig, path, dpi=90)


def _show(ax, image: torch.Tensor, title: str) -> None:
    ax.imshow(image.numpy().T, cmap="gray", vmin=-1, vmax=1, origin="lower")
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def _at(size: int | None, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """(B, C, H, W) tensors area-averaged to size x size (unchanged for ``None``)."""
    return [t if size is None else torch.nn.functional.adaptive_avg_pool2d(t, (size, size)) for t in tensors]


@torch.no_grad()
def evaluate(
    model: Model,
    vgg: VGG19Features,
    dataset_dir: str | Path,
    evaluation_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    seeds: Sequence[int] = (0, 1, 2, 3),
    max_maps: int | None = None,
    air_below_hu: float = -500.0,
    bone_above_hu: float = 150.0,
    loss_size: int | None = None,
    settings: dict | None = None,
) -> dict:
    """Run the evaluation on the prepared dataset's evaluation slices against its style slice.

    Args:
        model: the trained model (:func:`bundles.models.read_model`); vgg: the feature network used in training.
        dataset_dir: the prepared dataset (read only).
        evaluation_dir: a missing or empty folder, or an earlier output of this evaluation (replaced).
        seeds: noise seeds per map (at least two, for the diversity measure).
        max_maps: evaluate only the first ``max_maps`` maps (``None``: all).
        air_below_hu, bone_above_hu: thresholds of the re-segmentation.
        loss_size: side to which images and masks are area-averaged before the VGG for the Gram distances
            (the training's ``loss_size``, so the distance measured is the one optimised; ``None``: full size).

    Returns:
        The dictionary written to ``evaluation.json``.
    """
    if len(seeds) < 2:
        raise BundleInputError("need at least two seeds to measure diversity", field="seeds",
                               hint="pass --seeds \"[0, 1, 2, 3]\"")
    split = load_datalist(dataset_dir)
    generator = model.load(device)
    noise_dim = int(model.network["noise_dim"])
    entries = list(split["evaluation"])[: max_maps or None]
    if not entries:
        raise BundleInputError("no evaluation maps: the split holds no evaluation patient", field="num_eval_patients",
                               hint="set num_eval_patients >= 1")
    style, style_onehot = load_slice_pair(split["style"]["image"], split["style"]["label"])
    style_hu = hu_from_scaled(style[0, 0]).numpy()
    style_map = np.asarray(LABEL_VALUES)[style_onehot[0].argmax(0).numpy()]
    hu_range = organ_hu_range(style_hu, style_map)
    generator.eval()
    per_map, examples = [], []
    for entry in tqdm(entries, desc="evaluating maps"):
        content, onehot = load_slice_pair(entry["image"], entry["label"])
        if content.shape != style.shape:
            raise BundleInputError(f"map {tuple(content.shape[2:])} and style image {tuple(style.shape[2:])} differ "
                                   "in size", path=entry["label"], field="label",
                                   hint='prepare the dataset again (all slices are resized to image_size)')
        label_map = np.asarray(LABEL_VALUES)[onehot[0].argmax(0).numpy()]
        fakes = torch.cat([generate(generator, onehot, int(s), noise_dim) for s in seeds])
        d_content = organ_gram_distances(vgg, *_at(loss_size, content, onehot, style, style_onehot))
        d_gen = np.mean([organ_gram_distances(vgg, *_at(loss_size, fakes[i : i + 1], onehot, style, style_onehot))
                         for i in range(len(seeds))], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            reduction = np.where(d_content > 0, 1.0 - d_gen / d_content, np.nan)
        fake_hu = hu_from_scaled(fakes[:, 0]).numpy()
        mean_hu = np.mean([organ_mean_hu(h, label_map) for h in fake_hu], axis=0)
        inside = (mean_hu >= hu_range[:, 0]) & (mean_hu <= hu_range[:, 1])
        ref_groups = label_groups(label_map)
        dice = np.mean([dice_per_group(threshold_resegmentation(h, air_below_hu, bone_above_hu), ref_groups)
                        for h in fake_hu], axis=0)
        ssim = mean_pairwise_ssim(fakes)
        per_map.append({
            "map": entry["label"], "patient_id": entry["patient_id"],
            "gram_distance_generated": dict(zip(SEGMENT_NAMES, d_gen, strict=True)),
            "gram_distance_content": dict(zip(SEGMENT_NAMES, d_content, strict=True)),
            "gram_reduction_per_organ": dict(zip(SEGMENT_NAMES, reduction, strict=True)),
            "gram_reduction": _nanmean(reduction),
            "mean_hu_generated": dict(zip(SEGMENT_NAMES, mean_hu, strict=True)),
            "mean_hu_in_style_range": {n: bool(v) for n, v, h in zip(SEGMENT_NAMES, inside, hu_range, strict=True)
                                       if not np.isnan(h[0]) and not np.isnan(v)},
            "dice_per_group": dict(zip(GROUPS, dice, strict=True)),
            "dice_mean": _nanmean(dice),
            "pairwise_ssim": ssim,
        })
        if len(examples) < 3:
            examples.append((entry, content, onehot, fakes))
    summary = {
        "gram_reduction": _nanmean([m["gram_reduction"] for m in per_map]),
        "gram_distance_generated": {n: _nanmean([m["gram_distance_generated"][n] for m in per_map]) for n in SEGMENT_NAMES},
        "gram_distance_content": {n: _nanmean([m["gram_distance_content"][n] for m in per_map]) for n in SEGMENT_NAMES},
        "mean_hu_generated": {n: _nanmean([m["mean_hu_generated"][n] for m in per_map]) for n in SEGMENT_NAMES},
        "fraction_organs_in_style_hu_range": _nanmean([v for m in per_map for v in m["mean_hu_in_style_range"].values()]),
        "dice_per_group": {g: _nanmean([m["dice_per_group"][g] for m in per_map]) for g in GROUPS},
        "dice_mean": _nanmean([m["dice_mean"] for m in per_map]),
        "pairwise_ssim": _nanmean([m["pairwise_ssim"] for m in per_map]),
    }
    passed = {
        "gram_reduction": summary["gram_reduction"] is not None and summary["gram_reduction"] >= TARGETS["gram_reduction"],
        "dice": summary["dice_mean"] is not None and summary["dice_mean"] >= TARGETS["dice"],
        "pairwise_ssim": summary["pairwise_ssim"] is not None and summary["pairwise_ssim"] < TARGETS["pairwise_ssim"],
    }
    result = _clean({
        "style_image": split["style"]["image"], "num_maps": len(per_map), "seeds": list(seeds),
        "style_hu_range_p5_p95": {n: list(r) for n, r in zip(SEGMENT_NAMES, hu_range, strict=True)},
        "thresholds_hu": {"air_below": air_below_hu, "bone_above": bone_above_hu}, "loss_size": loss_size,
        "vgg_pretrained": bool(vgg.pretrained),
        "summary": summary, "targets": TARGETS, "passed": passed, "per_map": per_map,
    })
    with atomic_dir(evaluation_dir, record=RUN_INFO, kind=KIND, setting="evaluation_dir") as work:
        _figures(work, examples, style, result, hu_range, seeds, air_below_hu, bone_above_hu)
        atomic_write_text(json.dumps(result, indent=1), work / "evaluation.json")
        write_run_info(work, run_info(KIND, settings=settings, datalist=Path(dataset_dir) / "datalist.json"))
    logger.info("evaluation: gram reduction %s, Dice %s, pairwise SSIM %s -> %s", summary["gram_reduction"],
                summary["dice_mean"], summary["pairwise_ssim"], Path(evaluation_dir) / "evaluation.json")
    return result


def _figures(out_dir: Path, examples, style, result, hu_range, seeds, air_below_hu, bone_above_hu) -> None:
    """examples.png, gram_distances.png, organ_hu.png, resegmentation.png."""
    cols = 3 + len(seeds)
    fig, axes = plt.subplots(len(examples), cols, figsize=(1.9 * cols, 2.0 * len(examples)), squeeze=False)
    for r, (entry, content, onehot, fakes) in enumerate(examples):
        _show(axes[r][0], map_to_display(onehot)[0, 0], f"map {entry['patient_id']}")
        _show(axes[r][1], content[0, 0], "content image")
        _show(axes[r][2], style[0, 0], "style image")
        for i, s in enumerate(seeds):
            _show(axes[r][3 + i], fakes[i, 0], f"seed {s}")
    fig.tight_layout()
    _save(fig, out_dir / "examples.png")

    summary = result["summary"]
    names = [n for n in SEGMENT_NAMES if summary["gram_distance_content"][n] is not None]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(x - 0.2, [summary["gram_distance_content"][n] for n in names], 0.4, label="content image vs style")
    ax.bar(x + 0.2, [summary["gram_distance_generated"][n] or 0.0 for n in names], 0.4, label="generated vs style")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("Gram distance (eq. 6)")
    ax.set_title(f"per-organ style distance; mean reduction {summary['gram_reduction'] or 0:.2f}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out_dir / "gram_distances.png")

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for i, n in enumerate(SEGMENT_NAMES):
        lo, hi = hu_range[i]
        if not np.isnan(lo):
            ax.plot([i, i], [lo, hi], color="tab:blue", linewidth=6, alpha=0.4, label="style p5-p95" if i == 0 else None)
        if summary["mean_hu_generated"][n] is not None:
            ax.plot(i, summary["mean_hu_generated"][n], "o", color="tab:red", label="generated mean" if i == 0 else None)
    ax.set_xticks(range(len(SEGMENT_NAMES)), SEGMENT_NAMES, fontsize=8)
    ax.set_ylabel("HU")
    ax.legend(fontsize=8)
    ax.set_title("per-organ mean HU of the generated CTs within the style image's range", fontsize=9)
    fig.tight_layout()
    _save(fig, out_dir / "organ_hu.png")

    entry, content, onehot, fakes = examples[0]
    label_map = np.asarray(LABEL_VALUES)[onehot[0].argmax(0).numpy()]
    reseg = threshold_resegmentation(hu_from_scaled(fakes[0, 0]).numpy(), air_below_hu, bone_above_hu)
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    _show(axes[0], fakes[0, 0], f"generated (seed {seeds[0]})")
    for ax, groups, title in ((axes[1], label_groups(label_map), "input map (groups)"),
                              (axes[2], reseg, "threshold re-segmentation")):
        ax.imshow(groups.T, cmap="viridis", vmin=0, vmax=len(GROUPS) - 1, origin="lower", interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"groups: {', '.join(GROUPS)}; Dice {result['per_map'][0]['dice_mean'] or 0:.3f}", fontsize=8)
    fig.tight_layout()
    _save(fig, out_dir / "resegmentation.png")
