"""RadioGAN utility study: do class-conditional synthetic MIPs help a five-class classifier trained on few studies?

For each seed and each real-data size (``sizes_per_class`` studies per class, nested: the smaller subset lies
inside the larger one), from the prepared dataset's **training** MIPs:

1. a RadioGAN is trained on the subset ONLY, through the bundle's own ``train.json`` (in this process, with
   the subset as ``train#dataset#data``, a fixed budget of ``gan_iterations`` iterations and its output folder
   inside the study), so that nothing it makes carries information from the test images;
2. ``synthetic_per_class`` MIPs per class are generated from it;
3. the classifier of :mod:`scripts.classifier` is trained in three arms, each for the same
   ``classifier_steps`` minibatches from the same initialisation: ``real`` (the subset), ``real+synthetic``
   (real images drawn with probability 1 - ``synthetic_share`` per batch slot, synthetic ones with
   ``synthetic_share``) and ``synthetic`` (TSTR); after training, each arm's BatchNorm statistics are
   re-estimated on its real images without augmentation (the synthetic arm: on its synthetic images), so that
   the real+synthetic arm normalises the real test MIPs as the real arm does and the arms differ in what their
   weights learned, not in the intensity statistics of their batches;
4. each arm is tested on the same held-out real MIPs: the prepared ``validation`` MIPs plus the training MIPs
   outside the seed's largest subset (never seen by the GAN or the classifier of that seed).

Result: the class-averaged accuracy of every (size, seed, arm), and per size the mean over seeds with a
Student-t interval, the paired gain of adding synthetic MIPs and the TSTR / TRTR ratio
(:mod:`gan_core.evaluation.utility`). Writes ``<utility_dir>/``: ``utility.json``, ``utility.png``,
``gans/n<size>_seed<seed>/`` (each GAN's training run: checkpoints, sample grid, run_info.json), ``configs/``
(the train.json every GAN was trained from, copied at the start) and ``run_info.json``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from gan_core.evaluation.metrics import MS_SSIM_MIN_SIDE, SampleSets, compute_metrics
from gan_core.evaluation.utility import (
    ARMS,
    arm_counts,
    arm_data,
    select_per_class,
    snapshot_bundle,
    summarise_runs,
    train_with_config,
    write_study,
)
from gan_core.fileio import atomic_dir
from gan_core.models import read_model
from gan_core.runs import RUN_INFO

from .classifier import (
    conditional_accuracy,
    predict,
    recalibrate_batchnorm,
    train_classifier,
)
from .inference import fixed_latents
from .prepare import load_datalist, load_images

__all__ = ["gan_overrides", "run_utility", "study_splits"]

KIND = "radiogan utility"

logger = logging.getLogger(__name__)


def study_splits(labels: Sequence[int], sizes_per_class: Sequence[int], seed: int) -> tuple[dict[int, list[int]], list[int]]:
    """For one seed: ``{size: indices of the training subset}`` (nested) and the indices left for testing
    (those outside the largest subset), all into ``labels`` (the training pool)."""
    subsets = {int(n): select_per_class(labels, int(n), seed) for n in sizes_per_class}
    used = set(subsets[max(subsets)])
    return subsets, [i for i in range(len(labels)) if i not in used]


def gan_overrides(items: Sequence[Mapping], *, iterations: int, batch_size: int, seed: int,
                  epoch_length: int = 50, extra: Mapping | None = None) -> dict:
    """The train.json overrides of one study GAN: the subset as its data, ``iterations`` iterations in epochs of
    ``epoch_length`` (Ignite restarts the loader inside an epoch), a checkpoint and a sample grid at the end."""
    epochs = max(1, math.ceil(iterations / epoch_length))
    return {
        "train#dataset#data": [{"image": it["image"], "label": int(it["label"])} for it in items],
        "train#dataloader#batch_size": int(min(batch_size, len(items))),
        "train#trainer#epoch_length": int(min(epoch_length, iterations)),
        "train#trainer#max_epochs": epochs,
        "sample_every_n_epochs": epochs,
        "seed": int(seed),
        **(extra or {}),
    }


@torch.no_grad()
def _synthesise(model, num_classes: int, per_class: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = model.load(device)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    z = fixed_latents(labels.shape[0], int(model.network["latent_dim"]), 7919 + seed)
    images = torch.cat([generator(z[s : s + 256].to(device), labels[s : s + 256].to(device)).cpu()
                        for s in range(0, labels.shape[0], 256)])
    return images, labels


def _synthetic_check(synthetic, real, test, seed: int, per_class: int = 20) -> dict:
    """What limits the synthetic MIPs' use: their diversity within a class (MS-SSIM, beside the real MIPs') and
    how close they lie to the GAN's training subset (pixel memorisation ratio against the test MIPs), on
    ``per_class`` synthetic MIPs per class."""
    labels = synthetic[1]
    keep = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in labels.unique()])
    sets = SampleSets(synthetic[0][keep], real[0], test[0], generated_conditions=labels[keep],
                      train_conditions=real[1], heldout_conditions=test[1])
    names = ["ms_ssim_diversity", "memorisation_pixel"] if min(real[0].shape[-2:]) >= MS_SSIM_MIN_SIDE else \
        ["memorisation_pixel"]
    results = compute_metrics(names, sets, seed=seed, num_bootstrap=200)
    return {name: {"value": r["value"], "ci95": r["ci95"], "reference": (r["reference"] or {}).get("value"),
                   "what": (r["reference"] or {}).get("what")} for name, r in results.items()}


def run_utility(
    dataset_dir: str | Path,
    utility_dir: str | Path,
    *,
    train_config: str | Path,
    sizes_per_class: Sequence[int] = (2, 4),
    seeds: Sequence[int] = (0, 1, 2),
    gan_iterations: int = 1500,
    gan_batch_size: int = 10,
    gan_settings: Mapping | None = None,
    synthetic_per_class: int = 200,
    synthetic_share: float = 0.5,
    classifier_steps: int = 600,
    classifier_batch_size: int = 16,
    classifier_width: int = 16,
    classifier_smooth_px: float = 0.0,
    device: str | torch.device = "cpu",
    settings: dict | None = None,
) -> dict:
    """Run the study and write ``utility_dir``; returns what ``utility.json`` holds.

    Args:
        dataset_dir: the prepared dataset (read only).
        utility_dir: a missing or empty folder, or an earlier output of this study (replaced).
        train_config: the bundle's train.json (the GANs are trained with it).
        sizes_per_class: real studies per class of each subset (ascending; nested per seed).
        seeds: one subset, GAN, synthetic sample and classifier initialisation per seed (>= 3 for the issue).
        gan_iterations, gan_batch_size: every GAN's budget (the same at every size); gan_settings: further
            train.json overrides of the GANs (e.g. ``{"lr": 1e-4}``).
        synthetic_per_class: generated MIPs per class.
        synthetic_share: expected share of synthetic images in a batch of the real+synthetic arm.
        classifier_steps, classifier_batch_size, classifier_width, classifier_smooth_px: every arm's classifier
            (:func:`scripts.classifier.train_classifier`; ``smooth_px`` > 0 smooths its input).
    """
    started = time.perf_counter(), time.process_time()
    datalist = load_datalist(dataset_dir)
    class_names = list(datalist["classes"])
    pool = list(datalist["training"])
    pool_x, pool_y = load_images(pool)
    held = datalist["validation"]  # the prepared held-out studies join each seed's test set (may be none)
    held_x, held_y = load_images(held) if held else (pool_x[:0], pool_y[:0])
    splits = {seed: study_splits(pool_y.tolist(), sizes_per_class, seed) for seed in seeds}  # before writing
    runs, gans = [], []
    with atomic_dir(utility_dir, record=RUN_INFO, kind=KIND, setting="utility_dir") as work:
        (train_config,) = snapshot_bundle(work, train_config)
        for seed, (subsets, rest) in splits.items():
            test_x, test_y = torch.cat([pool_x[rest], held_x]), torch.cat([pool_y[rest], held_y])
            for size, subset in subsets.items():
                gan_wall, gan_cpu = time.perf_counter(), time.process_time()
                overrides = gan_overrides([pool[i] for i in subset], iterations=gan_iterations,
                                          batch_size=gan_batch_size, seed=seed, extra=gan_settings)
                checkpoint = train_with_config(train_config, work / "gans" / f"n{size}_seed{seed}",
                                               {**overrides, "dataset_dir": str(dataset_dir), "device": str(device)})
                gans.append({"size": size, "seed": seed, "checkpoint": str(checkpoint.relative_to(work)),
                             "wall_s": time.perf_counter() - gan_wall, "cpu_s": time.process_time() - gan_cpu})
                synthetic = _synthesise(read_model(checkpoint), len(class_names), synthetic_per_class, seed, device)
                real = (pool_x[subset], pool_y[subset])
                gans[-1]["synthetic_check"] = _synthetic_check(synthetic, real, (test_x, test_y), seed)
                for arm in ARMS:
                    x, y, weights = arm_data(arm, real, synthetic, synthetic_share)
                    classifier = train_classifier(x, y, num_classes=len(class_names), width=classifier_width,
                                                  smooth_px=classifier_smooth_px, steps=classifier_steps,
                                                  weights=weights, batch_size=classifier_batch_size, seed=seed)
                    recalibrate_batchnorm(classifier, synthetic[0] if arm == "synthetic" else real[0],
                                          batch_size=classifier_batch_size, seed=seed)
                    accuracy = conditional_accuracy(predict(classifier, test_x)[0], test_y, class_names)
                    runs.append({"size": size, "seed": seed, "arm": arm, "value": accuracy["mean"],
                                 "per_class": accuracy["per_class"], "steps": classifier_steps,
                                 **arm_counts(arm, real[0].shape[0], x),
                                 "test": int(test_y.shape[0])})
                    logger.info("size %d/class, seed %d, %s: held-out accuracy %.3f", size, seed, arm, accuracy["mean"])
        summary = summarise_runs(runs, sizes_per_class, seeds)
        result = {
            "bundle": "radiogan",
            "measure": "held-out real accuracy (class mean)",
            "size_unit": "real studies per class",
            "sizes": [int(n) for n in sizes_per_class],
            "seeds": [int(s) for s in seeds],
            "arms": list(ARMS),
            "design": {
                "subsets": "per seed, a random order of each class's training MIPs; size n takes the first n (nested)",
                "test": "prepared validation MIPs + training MIPs outside the seed's largest subset",
                "gan": {"iterations": gan_iterations, "batch_size": gan_batch_size, "train_config": str(train_config.relative_to(work)),
                        "settings": dict(gan_settings or {}), "data": "the subset only"},
                "synthetic_per_class": synthetic_per_class, "synthetic_share": synthetic_share,
                "classifier": {"steps": classifier_steps, "batch_size": classifier_batch_size,
                               "width": classifier_width, "smooth_px": classifier_smooth_px,
                               "same_steps_and_init_in_every_arm": True,
                               "batchnorm_statistics": "re-estimated after training on the arm's real images "
                                                       "(synthetic arm: its synthetic images), no augmentation"},
                "interval": "Student-t over seeds; gain and TSTR / TRTR paired per seed",
            },
            "runs": runs,
            "gans": gans,
            "summary": summary,
        }
        result = write_study(work, result, kind=KIND, settings=settings, datalist=Path(dataset_dir) / "datalist.json",
                             seed=int(seeds[0]), started=started)
    logger.info("utility study written to %s (%.0f s wall, %.0f s CPU)", utility_dir, result["time"]["wall_s"],
                result["time"]["cpu_s"])
    return result
