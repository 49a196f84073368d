"""Radiogenomic utility study: do synthetic nodules (image + mask) help a nodule segmentation network trained on
few real patients?

For each seed, from the prepared dataset's **training** patients:

1. the **real subset** = every nodule slice of ``size`` training patients chosen at random (nested over sizes);
2. a radiogenomic GAN is trained on the subset ONLY, through the bundle's own ``train.json`` (in this process):
   the subset's slices as its training items (appearance targets standardised over the subset alone), the
   subset's own nodule-free backgrounds, ``gan_iterations`` iterations, its output folder inside the study;
3. ``synthetic_per_patient`` synthetic slices per subset patient: the patient's gene profile on the subset's
   backgrounds with new noise draws -> (generated CT, generated mask > 0); outputs without a nodule (fewer than
   10 mask pixels or no contrast, :func:`scripts.nodules.contains_nodule`) are dropped;
4. a MONAI ``BasicUNet`` (small features) is trained to segment the nodule in four arms, each for the same
   ``seg_steps`` minibatches from the same initialisation with the same augmentation (flips, shifts, Gaussian
   noise): ``real``, ``real+synthetic`` (real slices drawn with probability 1 - ``synthetic_share`` per batch
   slot), ``synthetic`` (TSTR) and ``real+null``: the real slices with as many copy-paste slices
   (:func:`paste_real_nodules`: the subset's own nodules pasted into the subset's backgrounds, Ghiasi et al.
   2021; synthesis of no skill) mixed in as the synthetic ones are; ``seg_repeats`` networks per arm from their
   own initialisations, averaged;
5. each arm is tested on the same held-out real slices: the held-out patients' and those of the training
   patients outside the seed's largest subset (never seen by that seed's GAN or network).

Measure: nodule Dice over all test slices pooled (``2 |P & R| / (|P| + |R|)``), with the nodule pixels' precision
and recall beside it and the mean nodule area of the real subset, the synthetic set and the test slices (a subset
of small nodules teaches under-segmentation of large ones). The phenotype (hidden truth) is not needed. Per size:
the mean over seeds of every arm with a Student-t interval, the paired gain of adding synthetic nodules and the
TSTR / TRTR ratio (:mod:`gan_core.evaluation.utility`). Writes ``<utility_dir>/``: ``utility.json``, ``utility.png``,
``gans/p<size>_seed<seed>/`` (each GAN's training run), ``configs/`` (the train.json every GAN was trained from,
copied at the start) and ``run_info.json``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from gan_core.evaluation.utility import (
    ARMS,
    NULL_ARM,
    arm_counts,
    arm_data,
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
from gan_core.transforms import ScaleHU, hu_from_scaled

from .nodules import contains_nodule
from .prepare import load_datalist, training_items

__all__ = ["gan_overrides", "mean_nodule_area", "nodule_overlap", "paste_real_nodules", "run_utility",
           "shrunken_nodules", "synthesise_pairs"]

KIND = "radiogenomic utility"
REPEAT_SEED_STRIDE = 1000  # repeat r of a seed's segmenter is initialised and drawn with seed + stride * r
# A GAN whose synthetic nodules average less than this share of its subset's nodule area has most likely collapsed:
# on the demo, working study GANs drew 0.73-1.17 of their subset's area (seeds 7-11 of the shipped study, two GANs
# of 2-patient subsets), collapsed ones 0.23 (seed 6) and 0.45 (a 2-patient subset).
SHRUNKEN_AREA_RATIO = 0.5

logger = logging.getLogger(__name__)


def _load_slices(entries: Sequence[Mapping]) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodule slices -> images (N, 1, S, S) in [-1, 1], masks (N, 1, S, S) int64 {0, 1}."""
    images = np.stack([np.asarray(nib.load(e["image"]).dataobj, np.float32).squeeze() for e in entries])
    masks = np.stack([np.asarray(nib.load(e["mask"]).dataobj).squeeze() > 0 for e in entries])
    scaled = ScaleHU()(torch.from_numpy(images)).as_subclass(torch.Tensor).float()[:, None]
    return scaled, torch.from_numpy(masks.astype(np.int64))[:, None]


def _load_backgrounds(entries: Sequence[Mapping]) -> torch.Tensor:
    """Background slices -> (N, 1, S, S) in [-1, 1]."""
    images = np.stack([np.asarray(nib.load(e["image"]).dataobj, np.float32).squeeze() for e in entries])
    return ScaleHU()(torch.from_numpy(images)).as_subclass(torch.Tensor).float()[:, None]


def gan_overrides(datalist: Mapping, patients: Sequence[str], *, iterations: int, seed: int, epoch_length: int = 50,
                  extra: Mapping | None = None) -> dict:
    """The train.json overrides of one study GAN: the subset's slices as its training items (standardised over the
    subset), the subset's backgrounds, ``iterations`` iterations in epochs of ``epoch_length``."""
    chosen = set(patients)
    entries = [e for e in datalist["training"] if e["patient_id"] in chosen]
    backgrounds = [{"image": b["image"]} for b in datalist["backgrounds"] if b["patient_id"] in chosen]
    return {
        "train_items": training_items({"training": entries}),
        "train#backgrounds#data": backgrounds,
        "train#trainer#epoch_length": int(min(epoch_length, iterations)),
        "train#trainer#max_epochs": max(1, math.ceil(iterations / epoch_length)),
        "sample_every_n_epochs": max(1, math.ceil(iterations / epoch_length)),
        "seed": int(seed),
        **(extra or {}),
    }


@torch.no_grad()
def synthesise_pairs(generator, genes: torch.Tensor, backgrounds: torch.Tensor, per_profile: int, seed: int,
                     device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, int]:
    """``per_profile`` outputs per gene profile on backgrounds drawn at random with fresh noise.

    Returns:
        images (M, 1, S, S) in [-1, 1], masks (M, 1, S, S) int64 (generated mask > 0), and the number of outputs
        dropped because they held no nodule (:func:`contains_nodule`); when none holds one (an untrained GAN), all
        are kept and -1 is returned in place of the count.
    """
    gen = torch.Generator().manual_seed(seed)
    p = genes.shape[0]
    picks = torch.randint(backgrounds.shape[0], (p * per_profile,), generator=gen)
    noise = torch.randn(p * per_profile, int(generator.noise_dim), generator=gen)
    g = genes.repeat_interleave(per_profile, dim=0)
    images, masks = [], []
    for s in range(0, g.shape[0], 64):
        image, mask = generator(backgrounds[picks[s : s + 64]].to(device), g[s : s + 64].to(device),
                                noise[s : s + 64].to(device))
        images.append(image.cpu())
        masks.append((mask > 0).cpu())
    images, masks = torch.cat(images), torch.cat(masks)
    hu = hu_from_scaled(images.numpy())[:, 0]
    keep = np.array([contains_nodule(hu[i], masks[i, 0].numpy()) for i in range(images.shape[0])], dtype=bool)
    if not keep.any():
        logger.warning("no generated output holds a nodule: the synthetic set keeps all %d outputs", keep.size)
        return images, masks.long(), -1
    keep_t = torch.from_numpy(keep)
    return images[keep_t], masks[keep_t].long(), int((~keep).sum())


def paste_real_nodules(images: torch.Tensor, masks: torch.Tensor, backgrounds: torch.Tensor, count: int, seed: int,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The copy-paste null of the study: ``count`` backgrounds drawn at random, each with the nodule pixels (mask)
    of a real nodule slice drawn at random pasted in at the same positions (nodule slices and backgrounds are
    both nodule-centred VOIs of one size), with that slice's mask.

    Args:
        images: (N, 1, S, S) real nodule slices in [-1, 1]; masks: (N, 1, S, S) int64 {0, 1}.
        backgrounds: (B, 1, S, S) nodule-free slices in [-1, 1].

    Returns:
        images (count, 1, S, S) and masks (count, 1, S, S) int64.
    """
    gen = torch.Generator().manual_seed(seed)
    nodules = torch.randint(images.shape[0], (count,), generator=gen)
    picks = torch.randint(backgrounds.shape[0], (count,), generator=gen)
    pasted = torch.where(masks[nodules] == 1, images[nodules], backgrounds[picks])
    return pasted, masks[nodules].clone()


def nodule_overlap(pred: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """Nodule (label 1) overlap over all slices pooled: ``dice = 2 |P & R| / (|P| + |R|)`` (1 when both are
    empty), ``precision = |P & R| / |P|`` and ``recall = |P & R| / |R|`` (NaN when P or R is empty). A recall
    well below the precision is under-segmentation: the network draws nodules smaller than the reference."""
    p, r = pred == 1, ref == 1
    hits, n_pred, n_ref = int((p & r).sum()), int(p.sum()), int(r.sum())
    return {"dice": 2.0 * hits / (n_pred + n_ref) if n_pred + n_ref else 1.0,
            "precision": hits / n_pred if n_pred else float("nan"),
            "recall": hits / n_ref if n_ref else float("nan")}


def mean_nodule_area(masks: torch.Tensor) -> float:
    """Mean nodule area in pixels per slice of (N, 1, S, S) masks (label 1); NaN for no slices."""
    return float((masks == 1).sum(dim=(1, 2, 3)).double().mean()) if masks.shape[0] else float("nan")


def shrunken_nodules(nodule_area_px: Mapping[str, float]) -> str | None:
    """A warning when the synthetic nodules' mean area is below ``SHRUNKEN_AREA_RATIO`` of the real subset's
    (``nodule_area_px`` as in ``gans[]``: ``train_real`` and ``train_synthetic`` in pixels), else None."""
    real, synthetic = nodule_area_px["train_real"], nodule_area_px["train_synthetic"]
    if not real > 0 or not synthetic < SHRUNKEN_AREA_RATIO * real:
        return None
    return (f"the synthetic nodules average {synthetic:.0f} px, {synthetic / real:.2f} of the real subset's "
            f"{real:.0f} px: the GAN has most likely collapsed (see its samples/); its arms are reported as measured")


def run_utility(
    dataset_dir: str | Path,
    utility_dir: str | Path,
    *,
    train_config: str | Path,
    sizes: Sequence[int] = (4,),
    seeds: Sequence[int] = (0, 1, 2),
    gan_iterations: int = 540,
    gan_settings: Mapping | None = None,
    synthetic_per_patient: int = 40,
    synthetic_share: float = 0.5,
    seg_steps: int = 400,
    seg_batch_size: int = 8,
    seg_features: Sequence[int] = (8, 16, 32, 64, 64, 8),
    seg_repeats: int = 1,
    device: str | torch.device = "cpu",
    settings: dict | None = None,
) -> dict:
    """Run the study and write ``utility_dir``; returns what ``utility.json`` holds.

    Args:
        dataset_dir: the prepared dataset (read only).
        utility_dir: a missing or empty folder, or an earlier output of this study (replaced).
        train_config: the bundle's train.json.
        sizes: training patients per subset (ascending; nested per seed).
        seeds: one subset, GAN, synthetic set and network initialisation per seed (>= 3 for the issue).
        gan_iterations: every GAN's budget; gan_settings: further train.json overrides.
        synthetic_per_patient: synthetic slices generated per subset patient (before dropping empty ones).
        synthetic_share: expected share of synthetic slices in a batch of the real+synthetic arm.
        seg_steps, seg_batch_size, seg_features: every arm's segmentation network.
        seg_repeats: networks trained per (size, seed, arm), each from its own initialisation and batch draws
            (seed + ``REPEAT_SEED_STRIDE`` r); the arm's value is their mean Dice, so the seed-to-seed interval is not widened by one
            network's luck (one network's Dice moves by about 0.03-0.04 with its initialisation on the demo).
    """
    started = time.perf_counter(), time.process_time()
    arms = (*ARMS, NULL_ARM)  # the null arm beside the three of every study
    dataset_dir = Path(dataset_dir)
    datalist = load_datalist(dataset_dir)
    training = list(datalist["training"])
    patients = [e["patient_id"] for e in training]
    pool_x, pool_y = _load_slices(training)
    held_x, held_y = _load_slices(datalist["validation"]) if datalist["validation"] else (pool_x[:0], pool_y[:0])
    splits = {seed: patient_splits(patients, sizes, seed) for seed in seeds}  # sizes that do not fit: before writing
    runs, gans = [], []
    with atomic_dir(utility_dir, record=RUN_INFO, kind=KIND, setting="utility_dir") as work:
        (train_config,) = snapshot_bundle(work, train_config)
        for seed, (subsets, rest) in splits.items():
            rest_idx = [i for i, p in enumerate(patients) if p in rest]
            test_x, test_y = torch.cat([pool_x[rest_idx], held_x]), torch.cat([pool_y[rest_idx], held_y])
            for size, chosen in subsets.items():
                idx = [i for i, p in enumerate(patients) if p in chosen]
                gan_wall, gan_cpu = time.perf_counter(), time.process_time()
                overrides = gan_overrides(datalist, chosen, iterations=gan_iterations, seed=seed, extra=gan_settings)
                checkpoint = train_with_config(train_config, work / "gans" / f"p{size}_seed{seed}",
                                               {**overrides, "dataset_dir": str(dataset_dir), "device": str(device)})
                gans.append({"size": size, "seed": seed, "checkpoint": str(checkpoint.relative_to(work)),
                             "wall_s": time.perf_counter() - gan_wall, "cpu_s": time.process_time() - gan_cpu})
                real = (pool_x[idx], pool_y[idx])
                genes = torch.from_numpy(np.stack([np.load(e["genes"]) for e in
                                                   {training[i]["patient_id"]: training[i] for i in idx}.values()]))
                backgrounds = _load_backgrounds([b for b in datalist["backgrounds"] if b["patient_id"] in set(chosen)])
                syn_x, syn_y, dropped = synthesise_pairs(read_model(checkpoint).load(device), genes.float(), backgrounds,
                                                         synthetic_per_patient, seed, device)
                gans[-1]["nodule_area_px"] = {"train_real": mean_nodule_area(real[1]),
                                              "train_synthetic": mean_nodule_area(syn_y), "test": mean_nodule_area(test_y)}
                warning = shrunken_nodules(gans[-1]["nodule_area_px"])
                if warning:
                    gans[-1]["warning"] = warning
                    logger.warning("%d patient(s), seed %d: %s", size, seed, warning)
                null = paste_real_nodules(*real, backgrounds, int(syn_x.shape[0]), seed)
                for arm in arms:
                    x, y, weights = arm_data(arm, real, (syn_x, syn_y), synthetic_share, null)
                    overlaps = []
                    for repeat in range(seg_repeats):
                        net = train_segmenter(x, y, num_classes=2, steps=seg_steps, weights=weights, flips=True,
                                              batch_size=seg_batch_size, features=seg_features,
                                              seed=seed + REPEAT_SEED_STRIDE * repeat, device=device)
                        overlaps.append(nodule_overlap(segment(net, test_x, batch_size=32), test_y))
                    mean = {k: float(np.mean([o[k] for o in overlaps])) for k in ("dice", "precision", "recall")}
                    runs.append({"size": size, "seed": seed, "arm": arm, "value": mean["dice"], "steps": seg_steps,
                                 "repeat_dice": [o["dice"] for o in overlaps],
                                 "patients": chosen, **arm_counts(arm, real[0].shape[0], x),
                                 "synthetic_dropped": dropped, "test": int(test_y.shape[0]),
                                 "precision": mean["precision"], "recall": mean["recall"]})
                    logger.info("%d patient(s), seed %d, %s: nodule Dice %.3f over %d network(s) (%s; precision %.3f, "
                                "recall %.3f)", size, seed, arm, mean["dice"], seg_repeats,
                                " / ".join(f"{o['dice']:.3f}" for o in overlaps), mean["precision"], mean["recall"])
        summary = summarise_runs(runs, sizes, seeds)
        result = {
            "bundle": "radiogenomic",
            "measure": "held-out real nodule Dice",
            "size_unit": "training patients",
            "sizes": [int(k) for k in sizes],
            "seeds": [int(s) for s in seeds],
            "arms": list(arms),
            "design": {
                "subsets": "per seed, a random order of the training patients; size k takes the first k (nested)",
                "test": "held-out patients' nodule slices + training patients' outside the seed's largest subset",
                "gan": {"iterations": gan_iterations, "train_config": str(train_config.relative_to(work)),
                        "settings": dict(gan_settings or {}),
                        "data": "the subset's nodule slices (appearance targets standardised over the subset) and "
                                "the subset's own backgrounds"},
                "synthetic": {"per_patient": synthetic_per_patient, "from": "the subset's gene profiles on the "
                              "subset's backgrounds, fresh noise; outputs without a nodule dropped"},
                "synthetic_share": synthetic_share,
                "null": "real+null: as many copy-paste slices as synthetic ones (the subset's own nodules, image and "
                        "mask, pasted into the subset's backgrounds), mixed in at the same share",
                "segmenter": {"network": "monai.networks.nets.BasicUNet", "features": list(seg_features),
                              "steps": seg_steps, "batch_size": seg_batch_size, "loss": "DiceCELoss",
                              "repeats": seg_repeats,
                              "repeat_seeds": f"seed + {REPEAT_SEED_STRIDE} r; value = mean Dice of the repeats "
                                              "(each in runs[].repeat_dice)",
                              "same_steps_and_init_in_every_arm": True},
                "dice": "nodule, over all test slices pooled; precision and recall of the nodule pixels beside it",
                "nodule_area_px": "per GAN (gans[]): mean nodule area per slice of the real subset, the synthetic set "
                                  "and the test set; gans[].warning where the synthetic nodules average less than "
                                  f"{SHRUNKEN_AREA_RATIO} of the subset's area (a collapsed GAN)",
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
