"""ctstyle utility study: do (CT, label map) pairs generated from perturbed maps help a segmentation network?

The study works on a copy of the prepared dataset at ``image_size`` (default 64 x 64: the CPU budget), made
by the bundle's own ``preparation`` (``prepare.json``) from the raw folder and split the prepared dataset
records, into ``<utility_dir>/prepared`` (skipped when ``image_size`` is the prepared size). For each seed and
each real-data size (``sizes``: training patients, nested per seed):

1. the **real subset** = every slice of the chosen training patients + the style slice (the GAN sees the
   style CT and its map, so the real-only arm gets that pair too); size 0 is the style slice alone;
2. a ctstyle GAN is trained on the subset ONLY, through the bundle's ``train.json`` (in this process; the
   subset's slices as ``train#dataset#data`` - at size 0 the style slice, its own content image - the
   dataset's style slice as style, ``gan_iterations`` iterations, its output folder inside the study);
3. synthetic pairs: each map of the subset, deformed ``synthetic_per_map`` times by
   :class:`scripts.labels.RandPerturbLabelBoundaries` (new anatomy), fed to the GAN with a new
   noise code -> (generated CT, deformed map);
4. a MONAI ``BasicUNet`` (small features) is trained to segment the six labels from the CT in four arms,
   each for the same ``seg_steps`` minibatches from the same initialisation and with the same augmentation
   (random shifts, random Gaussian noise): ``real``, ``real+synthetic`` (real pairs drawn with probability
   1 - ``synthetic_share`` per batch slot), ``synthetic`` (TSTR) and ``real+null``: the real pairs with the
   same deformed maps painted with the subset's organ means (:func:`scripts.style_metrics.paint_organ_means`,
   a renderer of no skill that agrees with its map everywhere), mixed in as the synthetic pairs are;
5. each arm is tested on the same held-out real slices: the evaluation patients' and those of the training
   patients outside the seed's largest subset (never seen by that seed's GAN or network).

Measure: per-organ Dice (body, lungs, heart and vessels, bone, spinal cord; air, the background, is left
out) over all test slices pooled, and their mean. Writes ``<utility_dir>/``: ``utility.json``, ``utility.png``,
``prepared/`` (the study's dataset), ``gans/p<size>_seed<seed>/`` (each GAN's training run), ``configs/`` (the
train.json and prepare.json the study ran with, copied at its start) and ``run_info.json``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from gan_core.evaluation.utility import (
    ARMS,
    NULL_ARM,
    arm_counts,
    arm_data,
    check_sizes_fit,
    patient_splits,
    segment,
    snapshot_bundle,
    summarise_runs,
    train_segmenter,
    train_with_config,
    write_study,
)
from gan_core.fileio import atomic_dir
from gan_core.models import read_model
from gan_core.runs import RUN_INFO

from .inference import generate, load_ct, load_map
from .labels import SEGMENT_NAMES, RandPerturbLabelBoundaries, label_indices
from .prepare import load_datalist
from .style_metrics import paint_organ_means

__all__ = ["ORGANS", "organ_dice", "run_utility"]

KIND = "ctstyle utility"
# The organs scored: every segment but air (the background).
ORGANS: tuple[str, ...] = SEGMENT_NAMES[1:]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------- data
def _onehot(labels: torch.Tensor) -> torch.Tensor:
    """(n, 1, H, W) label indices -> (n, 6, H, W) float one-hot."""
    return torch.nn.functional.one_hot(labels[:, 0], len(SEGMENT_NAMES)).permute(0, 3, 1, 2).float()


def _load_pairs(entries: Sequence[Mapping]) -> tuple[torch.Tensor, torch.Tensor]:
    """Datalist entries -> CTs (n, 1, H, W) in [-1, 1] and label indices (n, 1, H, W) int64 (0..5)."""
    images = torch.cat([load_ct(e["image"])[0][None] for e in entries])
    labels = torch.cat([torch.from_numpy(label_indices(load_map(e["label"])[0]))[None] for e in entries])
    return images, labels.long()


def _study_dataset(dataset_dir: Path, datalist: dict, work: Path, prepare_config: str | Path,
                   image_size: int) -> tuple[Path, dict]:
    """The dataset the study reads and its datalist: ``dataset_dir`` itself (``datalist``) at its own size, else
    the bundle's preparation run again from the same raw folder and split at ``image_size`` into
    ``work / "prepared"``."""
    if int(datalist["image_size"]) == int(image_size):
        return dataset_dir, datalist
    from monai.bundle import ConfigWorkflow

    prepared = datalist.get("settings", {})
    overrides = {"raw_dir": prepared["raw_dir"], "dataset_dir": str(work / "prepared"), "image_size": int(image_size),
                 "style_patient": datalist["style"]["patient_id"], "style_slice": prepared.get("style_slice"),
                 "num_eval_patients": int(prepared.get("num_eval_patients", len({e["patient_id"] for e in datalist["evaluation"]})))}
    workflow = ConfigWorkflow(config_file=str(prepare_config), workflow_type=None, run_id="preparation", **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return work / "prepared", load_datalist(work / "prepared")


# --------------------------------------------------------------------------------------------- synthesis
@torch.no_grad()
def _synthesise(model, labels: torch.Tensor, per_map: int, seed: int, magnitude_px: float, smoothness_px: float,
                device) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_map`` (generated CT, deformed map) pairs per map of ``labels`` (n, 1, H, W) label indices."""
    generator = model.load(device)
    noise_dim = int(model.network["noise_dim"])
    perturb = RandPerturbLabelBoundaries(magnitude_px, smoothness_px)
    perturb.set_random_state(seed=seed)
    images, maps = [], []
    for n, label in enumerate(labels):
        for j in range(per_map):
            warped = perturb(label.float()).long()
            images.append(generate(generator, _onehot(warped[None]), 104_729 * seed + 1_000 * n + j, noise_dim))
            maps.append(warped[None])
    return torch.cat(images), torch.cat(maps)


# ----------------------------------------------------------------------------------------- segmentation
def organ_dice(pred: torch.Tensor, ref: torch.Tensor) -> dict[str, float | None]:
    """Dice of every organ of :data:`ORGANS` over all slices pooled (label indices, any equal shapes):
    ``2 |P & R| / (|P| + |R|)``; None for an organ absent from both."""
    out: dict[str, float | None] = {}
    for index, name in enumerate(SEGMENT_NAMES):
        if name not in ORGANS:
            continue
        p, r = pred == index, ref == index
        total = int(p.sum() + r.sum())
        out[name] = 2.0 * int((p & r).sum()) / total if total else None
    return out


# ------------------------------------------------------------------------------------------------ study
def gan_overrides(entries: Sequence[Mapping], *, iterations: int, seed: int, epoch_length: int = 100,
                  extra: Mapping | None = None) -> dict:
    """The train.json overrides of one study GAN: the subset's slices as its data, ``iterations`` iterations
    in epochs of ``epoch_length`` (Ignite restarts the loader inside an epoch)."""
    return {
        "train#dataset#data": [{"image": e["image"], "label": e["label"]} for e in entries],
        "train#trainer#epoch_length": int(min(epoch_length, iterations)),
        "train#trainer#max_epochs": max(1, math.ceil(iterations / epoch_length)),
        "seed": int(seed),
        **(extra or {}),
    }


def run_utility(
    dataset_dir: str | Path,
    utility_dir: str | Path,
    *,
    train_config: str | Path,
    prepare_config: str | Path,
    image_size: int = 64,
    sizes: Sequence[int] = (1, 3),
    seeds: Sequence[int] = (0, 1, 2),
    gan_iterations: int = 600,
    gan_settings: Mapping | None = None,
    synthetic_per_map: int = 16,
    perturb_magnitude_px: float = 3.0,
    perturb_smoothness_px: float = 8.0,
    synthetic_share: float = 0.5,
    seg_steps: int = 400,
    seg_batch_size: int = 8,
    seg_features: Sequence[int] = (8, 16, 32, 64, 64, 8),
    device: str | torch.device = "cpu",
    settings: dict | None = None,
) -> dict:
    """Run the study and write ``utility_dir``; returns what ``utility.json`` holds.

    Args:
        dataset_dir: the prepared dataset (read only); its raw folder is prepared again at ``image_size``.
        utility_dir: a missing or empty folder, or an earlier output of this study (replaced).
        train_config, prepare_config: the bundle's train.json and prepare.json.
        sizes: training patients per subset (ascending; nested per seed; 0: the style slice alone).
        seeds: one subset, GAN, synthetic set and network initialisation per seed (>= 3 for the issue).
        gan_iterations: every GAN's budget; gan_settings: further train.json overrides (network size for
            the study's image size, ``loss_size``, ...).
        synthetic_per_map, perturb_magnitude_px, perturb_smoothness_px: the synthetic pairs.
        synthetic_share: expected share of synthetic pairs in a batch of the real+synthetic arm.
        seg_steps, seg_batch_size, seg_features: every arm's segmentation network.
    """
    started = time.perf_counter(), time.process_time()
    arms = (*ARMS, NULL_ARM)  # the null arm beside the three of every study
    dataset_dir = Path(dataset_dir)
    # the sizes against the dataset's training patients before anything is written or prepared again (the
    # re-preparation reads the whole raw folder; it keeps the split)
    given = load_datalist(dataset_dir)
    check_sizes_fit([e["patient_id"] for e in given["training"]], sizes)
    runs, gans = [], []
    with atomic_dir(utility_dir, record=RUN_INFO, kind=KIND, setting="utility_dir") as work:
        train_config, prepare_config = snapshot_bundle(work, train_config, prepare_config)
        study_dir, datalist = _study_dataset(dataset_dir, given, work, prepare_config, image_size)
        training = list(datalist["training"])
        style_x, style_y = _load_pairs([datalist["style"]])
        pool_x, pool_y = _load_pairs(training)
        held_x, held_y = _load_pairs(datalist["evaluation"])
        patients = [e["patient_id"] for e in training]
        for seed in seeds:
            subsets, rest = patient_splits(patients, sizes, seed)
            rest_idx = [i for i, p in enumerate(patients) if p in rest]
            test_x, test_y = torch.cat([pool_x[rest_idx], held_x]), torch.cat([pool_y[rest_idx], held_y])
            for size, chosen in subsets.items():
                idx = [i for i, p in enumerate(patients) if p in chosen]
                gan_wall, gan_cpu = time.perf_counter(), time.process_time()
                content = [training[i] for i in idx] or [datalist["style"]]  # size 0: the style slice alone
                overrides = gan_overrides(content, iterations=gan_iterations, seed=seed, extra=gan_settings)
                checkpoint = train_with_config(train_config, work / "gans" / f"p{size}_seed{seed}",
                                               {**overrides, "dataset_dir": str(study_dir), "device": str(device)})
                gans.append({"size": size, "seed": seed, "checkpoint": str(checkpoint.relative_to(work)),
                             "content_slices": [Path(e["image"]).name for e in content],
                             "wall_s": time.perf_counter() - gan_wall, "cpu_s": time.process_time() - gan_cpu})
                real = (torch.cat([pool_x[idx], style_x]), torch.cat([pool_y[idx], style_y]))
                synthetic = _synthesise(read_model(checkpoint), real[1], synthetic_per_map, seed,
                                        perturb_magnitude_px, perturb_smoothness_px, device)
                null = (paint_organ_means(real[0], _onehot(real[1]), _onehot(synthetic[1])), synthetic[1])
                for arm in arms:
                    x, y, weights = arm_data(arm, real, synthetic, synthetic_share, null)
                    net = train_segmenter(x, y, num_classes=len(SEGMENT_NAMES), steps=seg_steps, weights=weights,
                                          batch_size=seg_batch_size, features=seg_features, seed=seed, device=device)
                    dice = organ_dice(segment(net, test_x), test_y)
                    mean = float(np.mean([v for v in dice.values() if v is not None]))
                    runs.append({"size": size, "seed": seed, "arm": arm, "value": mean, "per_organ": dice,
                                 "steps": seg_steps, "patients": chosen,
                                 **arm_counts(arm, real[0].shape[0], x),
                                 "test": int(test_y.shape[0])})
                    logger.info("%d patient(s), seed %d, %s: mean Dice %.3f", size, seed, arm, mean)
        summary = summarise_runs(runs, sizes, seeds)
        for size in sizes:  # per-organ means over seeds, per arm
            summary[str(size)]["per_organ"] = {
                arm: {o: _mean([r["per_organ"][o] for r in runs if r["size"] == size and r["arm"] == arm])
                      for o in ORGANS} for arm in arms}
        result = {
            "bundle": "ctstyle",
            "measure": "held-out real mean organ Dice",
            "size_unit": "training patients (+ the style slice)",
            "sizes": [int(k) for k in sizes],
            "seeds": [int(s) for s in seeds],
            "arms": list(arms),
            "design": {
                "image_size": int(image_size),
                "study_dataset": str(study_dir),
                "subsets": "per seed, a random order of the training patients; size k takes the first k (nested); "
                           "every subset also holds the style slice (the GAN sees it); size 0 is the style slice "
                           "alone, which is then also the GAN's one content pair",
                "test": "evaluation patients' slices + training patients outside the seed's largest subset",
                "gan": {"iterations": gan_iterations, "train_config": str(train_config.relative_to(work)),
                        "settings": dict(gan_settings or {}), "data": "the subset only"},
                "synthetic": {"per_map": synthetic_per_map, "perturb_magnitude_px": perturb_magnitude_px,
                              "perturb_smoothness_px": perturb_smoothness_px},
                "synthetic_share": synthetic_share,
                "null": "real+null: the subset's organ means (its real CTs, style slice included) painted on the same "
                        "deformed maps as the synthetic pairs, as many, mixed in at the same share",
                "segmenter": {"network": "monai.networks.nets.BasicUNet", "features": list(seg_features),
                              "steps": seg_steps, "batch_size": seg_batch_size, "loss": "DiceCELoss",
                              "same_steps_and_init_in_every_arm": True},
                "dice": "per organ over all test slices pooled; organs: " + ", ".join(ORGANS),
                "interval": "Student-t over seeds; gain and TSTR / TRTR paired per seed",
            },
            "runs": runs,
            "gans": gans,
            "summary": summary,
        }
        result = write_study(work, result, kind=KIND, settings=settings, datalist=dataset_dir / "datalist.json",
                             seed=int(seeds[0]), started=started)
    logger.info("utility study written to %s (%.0f s wall, %.0f s CPU)", utility_dir, result["time"]["wall_s"],
                result["time"]["cpu_s"])
    return result


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None
