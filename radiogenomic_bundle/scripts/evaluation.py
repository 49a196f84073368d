"""Radiogenomic evaluation: Table 1 and Fig. 4 of Xu et al., and the measures that tell whether the map is real.

Every gene profile of the prepared patients is drawn on ``num_backgrounds`` fixed backgrounds with ``num_noise``
fixed noise draws (K x P x N outputs per model). Measured:

- Table 1: MSE / SSIM / PSNR between generated slice and background ([0, 1] scale), whole slice and background
  region (generated mask < 0, eroded by ``erosion``); beside it the fraction of outputs that contain a nodule
  (>= 10 mask pixels, mean HU >= 100 HU above a 3-pixel ring: :func:`scripts.nodules.contains_nodule`),
  since a generator that draws nothing scores a perfect Table 1;
- realism that does not reward drawing nothing: classifier two-sample tests real vs generated, on 32 x 32 nodule
  patches (random-filter VGG features of the metric registry) and on the seven measured descriptors (AUC 0.5 =
  indistinguishable), and the shared metrics of :mod:`gan_core.evaluation.metrics` on the patches (``metrics``),
  whose generated set is drawn from held-out inputs only: the held-out patients' gene profiles on
  ``num_backgrounds`` of the held-out patients' own backgrounds (x ``num_noise``), so that fidelity, diversity and
  memorisation measure what the generator made for patients it never saw, not the training background a patch
  carries or the training patient's nodule the consistency term asks for (issue 15);
- do the nodules follow the genes: per profile, Spearman's rho between the generated nodules' mean diameter / mean
  HU and the patient's real ones (all, training and held-out patients, with bootstrap intervals); how much area
  and HU change when the gene profile is swapped vs when the noise is, and same- vs cross-phenotype swaps;
- the gene code (Fig. 4): k-NN phenotype accuracy over ``cv_shuffles`` CV shuffles with the shuffled-label null,
  label silhouette, k-means silhouette and ARI, for raw genes, the baseline's code and the proposed code; held-out
  patients classified by their nearest training patients; patient-bootstrap intervals of the paired differences
  code - raw genes and code - baseline code;
- a judge of the phenotype from measured descriptors (its own leave-one-patient-out accuracy on real slices
  first), applied to the generated nodules (controllability);
- the radiogenomic map: k-means clusters of the proposed code -> their patients' real nodules and their generated
  nodules by the hand-computed descriptors and by IBSI radiomic features (MIRP, on a documented subsample), and
  the genes that drive each cluster (gradient x input through the gene encoder).

The phenotype-based measures need the hidden truth (``truth_csv``: the demo cohort's ``phenotypes.csv``); without
it (real data) they are skipped and ``notes`` in metrics.json says so.

Writes into ``output_dir`` (built in a private work folder, swapped into place when complete)::

    metrics.json            every number, per model; the shared metrics under "metrics"
    summary.png             one page: synthesis examples, the gene-code maps, the main numbers
    synthesis.png           fixed background x gene profiles: real nodule, proposed and baseline outputs
    gene_code_tsne.png      t-SNE of raw genes, baseline code and proposed code (Fig. 4), with the scores
    follows_genes.png       generated vs real diameter and mean HU per profile
    radiogenomic_map.csv    one row per proposed-code cluster: descriptors, radiomic features, phenotype mix, genes
    radiogenomic_map.png    the same as a figure
    closest_patches.png     the generated nodule patches closest to a training patch (memorisation)
    run_info.json
"""

from __future__ import annotations

import csv
import io
import logging
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from gan_core.errors import BundleInputError
from gan_core.evaluation.features import get_extractor
from gan_core.evaluation.metrics import (
    SampleSets,
    check_metrics,
    compute_metrics,
    save_closest_pairs,
    write_metrics_json,
)
from gan_core.evaluation.utility import read_utility_result
from gan_core.figures import save_image_grid
from gan_core.fileio import atomic_dir, atomic_write_text
from gan_core.models import Model, read_model
from gan_core.runs import RUN_INFO, run_info, write_run_info
from gan_core.transforms import ScaleHU, hu_from_scaled

from .gene_maps import (
    embed_tsne,
    gene_attribution,
    kmeans_labels,
    plot_code_maps,
    plot_follows_genes,
    plot_radiogenomic_map,
    top_genes,
)
from .losses import eroded_background
from .nodules import (
    DESCRIPTORS,
    contains_nodule,
    crop_patches,
    nodule_descriptors,
    paste_nodules,
)
from .prepare import load_datalist, slice_descriptors, usable_backgrounds
from .radiomics import FEATURES as RADIOMIC_FEATURES
from .radiomics import radiomic_features
from .regional import regional_metrics, to_unit_range
from .stats import (
    descriptor_judge,
    knn_cv,
    knn_transfer,
    label_null,
    label_silhouette,
    paired_bootstrap,
    spearman_ci,
    swap_sensitivity,
    two_sample_auc,
)
from .summary import plot_summary

__all__ = ["DEFAULT_METRICS", "TARGETS", "baseline_model", "check_evaluation_settings", "demo_truth", "evaluate", "load_subjects", "read_phenotypes"]

KIND = "radiogenomic evaluation"
DEFAULT_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "ms_ssim_diversity",
                   "memorisation_pixel", "memorisation_features")
PATCH_SIZE = 32
# Issue 13's acceptance targets, checked in metrics.json ("targets") so a reader sees which hold.
TARGETS = {"code_knn": 0.75, "code_minus_raw": 0.2, "spearman": 0.7, "same_over_cross": 0.5, "noise_over_gene": 0.25,
           "nodule_fraction": 0.95, "two_sample_auc": 0.75, "background_ssim": 0.90, "background_psnr": 24.5,
           "judge": 0.8}

logger = logging.getLogger(__name__)


def check_evaluation_settings(settings: dict) -> None:
    """Integer settings of evaluate.json that ``gan_core.config.check_settings`` has no rule for: each >= 1, except
    ``radiomics_per_cluster`` and ``erosion`` (>= 0; 0 radiomic patients skips MIRP).

    Raises:
        BundleInputError: the first bad setting.
    """
    for key, value in settings.items():
        minimum = 0 if key in ("radiomics_per_cluster", "erosion") else 1
        if key == "n_clusters":
            minimum = 2
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise BundleInputError(f"must be an integer >= {minimum}, got {value!r}", field=key,
                                   hint=f"pass --{key} with a whole number of at least {minimum}")


def baseline_model(path: str | os.PathLike | None, bundle_root: str | os.PathLike) -> Model | None:
    """The MC-GAN baseline to compare with: ``path`` when given (an error if unreadable), else the bundle's
    exported ``models/baseline_model.pt`` when it exists, else ``None`` (the comparison is left out)."""
    if path is not None:
        return read_model(path)
    default = Path(bundle_root) / "models" / "baseline_model.pt"
    return read_model(default) if default.is_file() else None


def demo_truth(dataset_dir: str | os.PathLike, bundle_root: str | os.PathLike) -> str | None:
    """The demo cohort's hidden truth (``<bundle>/data/raw/phenotypes.csv``) when ``dataset_dir`` is the bundle's
    demo dataset, else ``None`` (real data has no hidden truth; pass ``--truth_csv`` for your own)."""
    demo = Path(bundle_root) / "data" / "prepared"
    truth = Path(bundle_root) / "data" / "raw" / "phenotypes.csv"
    return str(truth) if Path(dataset_dir).resolve() == demo.resolve() and truth.is_file() else None


def read_phenotypes(path: str | os.PathLike | None) -> dict[str, str] | None:
    """``patient_id,phenotype,...`` CSV -> {patient_id: phenotype}; ``None`` when ``path`` is None."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise BundleInputError("truth table not found", path=path, field="truth_csv",
                               hint="pass the patient_id,phenotype CSV, or leave truth_csv unset on real data")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"patient_id", "phenotype"} <= set(rows[0]):
        raise BundleInputError("the truth table needs the columns patient_id and phenotype", path=path,
                               field="truth_csv", hint="write a header line: patient_id,phenotype")
    return {r["patient_id"]: r["phenotype"] for r in rows}


def _spacing(affine: np.ndarray) -> tuple[float, float]:
    return float(np.linalg.norm(affine[:3, 0])), float(np.linalg.norm(affine[:3, 1]))


def load_subjects(datalist: dict) -> dict:
    """Nodule slices, genes and measured descriptors of every prepared patient (training first, then held-out).

    Returns ``{"patient_ids": [P], "training_ids": set, "genes": (P, G) float32, "slices": list of dicts
    {"patient_id", "image_hu" (S, S), "mask" (S, S) bool, "spacing_mm", "descriptors" (7,)}, "real": (P, 7) the
    mean over each patient's slices of every descriptor}``.
    """
    genes, slices = {}, []
    training_ids = {d["patient_id"] for d in datalist["training"]}
    entries = datalist["training"] + datalist["validation"]
    values = slice_descriptors(entries)
    for item, row in zip(entries, values, strict=True):
        pid = item["patient_id"]
        if pid not in genes:
            genes[pid] = np.load(item["genes"]).astype(np.float32)
        img = nib.load(item["image"])
        slices.append({
            "patient_id": pid,
            "image_hu": np.asarray(img.dataobj, np.float32).squeeze(),
            "mask": np.asarray(nib.load(item["mask"]).dataobj).squeeze() > 0,
            "spacing_mm": _spacing(img.affine),
            "descriptors": row,
        })
    ids = list(genes)
    real = np.stack([np.nanmean([s["descriptors"] for s in slices if s["patient_id"] == p], axis=0) for p in ids])
    return {"patient_ids": ids, "training_ids": training_ids, "genes": np.stack([genes[p] for p in ids]),
            "slices": slices, "real": real}


def _scaled(images_hu: np.ndarray) -> torch.Tensor:
    """(N, S, S) HU -> (N, 1, S, S) in [-1, 1], a plain tensor (no MetaTensor bookkeeping in the networks)."""
    return ScaleHU()(torch.from_numpy(np.asarray(images_hu, np.float32))).as_subclass(torch.Tensor).float()[:, None]


def _even_backgrounds(entries: list[dict], num_backgrounds: int) -> tuple[torch.Tensor, list]:
    """``num_backgrounds`` entries evenly spaced over ``entries`` -> (K, 1, S, S) in [-1, 1] and their spacings."""
    picks = np.unique(np.linspace(0, len(entries) - 1, num_backgrounds).round().astype(int))
    images = [nib.load(entries[i]["image"]) for i in picks]
    return (_scaled(np.stack([np.asarray(b.dataobj, np.float32).squeeze() for b in images])),
            [_spacing(b.affine) for b in images])


def _heldout_input_patches(generator, heldout_backgrounds: list[dict], num_backgrounds: int, heldout_genes: torch.Tensor,
                           num_noise: int, seed: int, device) -> tuple[torch.Tensor, int]:
    """Nodule patches (K * P * N, 1, PATCH_SIZE, PATCH_SIZE) drawn for held-out inputs only: every held-out profile
    on ``num_backgrounds`` held-out backgrounds with the evaluation's noise draws; and K, the backgrounds used."""
    backgrounds, _ = _even_backgrounds(heldout_backgrounds, num_backgrounds)
    fakes = generate_grid(generator, backgrounds, heldout_genes, noise_draws(int(generator.noise_dim), num_noise, seed),
                          device)
    size = fakes["image"].shape[-2:]
    patches = crop_patches(fakes["image"].reshape(-1, 1, *size), fakes["mask"].reshape(-1, 1, *size) > 0, PATCH_SIZE)
    return patches, len(backgrounds)


def noise_draws(noise_dim: int, num_noise: int, seed: int) -> torch.Tensor:
    """(num_noise, noise_dim) N(0, 1) draws from ``seed``: the same for every background and profile."""
    return torch.randn(num_noise, noise_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate_grid(generator, backgrounds: torch.Tensor, genes: torch.Tensor, noise: torch.Tensor, device) -> dict:
    """Every profile on every background with every noise draw: images / masks (K, P, N, 1, S, S) in [-1, 1]."""
    k, p, n = backgrounds.shape[0], genes.shape[0], noise.shape[0]
    images, masks = [], []
    for b in range(k):
        bg = backgrounds[b : b + 1].to(device).expand(p * n, -1, -1, -1)
        g = genes.to(device).repeat_interleave(n, dim=0)
        z = noise.to(device).repeat(p, 1)
        image, mask = generator(bg, g, z)
        images.append(image.cpu().reshape(p, n, *image.shape[1:]))
        masks.append(mask.cpu().reshape(p, n, *mask.shape[1:]))
    return {"image": torch.stack(images), "mask": torch.stack(masks)}


def measure_outputs(fake: dict, spacings: Sequence[tuple[float, float]]) -> dict:
    """Descriptors (K, P, N, 7), mask area in pixels (K, P, N) and whether each output contains a nodule."""
    hu = hu_from_scaled(fake["image"].numpy())[:, :, :, 0]
    masks = fake["mask"].numpy()[:, :, :, 0] > 0
    k, p, n = masks.shape[:3]
    desc = np.full((k, p, n, len(DESCRIPTORS)), np.nan)
    has = np.zeros((k, p, n), dtype=bool)
    for a in range(k):
        for b in range(p):
            for c in range(n):
                has[a, b, c] = contains_nodule(hu[a, b, c], masks[a, b, c])
                if masks[a, b, c].any():
                    values = nodule_descriptors(hu[a, b, c], masks[a, b, c], spacings[a])
                    desc[a, b, c] = [values[d] for d in DESCRIPTORS]
    return {"descriptors": desc, "area_px": masks.sum(axis=(3, 4)).astype(np.float64), "contains": has, "hu": hu,
            "masks": masks}


def _table1(fake: dict, backgrounds: torch.Tensor, erosion: int) -> dict:
    k, p, n = fake["image"].shape[:3]
    shape = fake["image"].shape[3:]
    generated = to_unit_range(fake["image"].reshape(k * p * n, *shape))
    reference = to_unit_range(backgrounds[:, None, None].expand(-1, p, n, -1, -1, -1).reshape(generated.shape))
    region = eroded_background(fake["mask"].reshape(generated.shape), erosion)
    return {"whole_slice": regional_metrics(generated, reference),
            "background_region": regional_metrics(generated, reference, region)}


def _group_bootstrap_ci(per_group: np.ndarray, seed: int, num_resamples: int = 2000) -> list[float]:
    """95 % percentile interval of the mean of (G,) per-group values, resampling the groups."""
    rng = np.random.default_rng(seed)
    means = per_group[rng.integers(0, per_group.size, (num_resamples, per_group.size))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def _fraction_ci(flags: np.ndarray, seed: int) -> dict:
    """Fraction of True over profiles' outputs, with a bootstrap interval over profiles (axis 1 of (K, P, N))."""
    return {"value": float(flags.mean()), "ci95": _group_bootstrap_ci(flags.mean(axis=(0, 2)), seed),
            "num_outputs": int(flags.size)}


def _real_nodule_fraction(subjects: dict, seed: int) -> dict:
    """The nodule rule on the real nodule slices, with each patient weighing equally (as the profiles do in the
    generated grid): the fraction a generator reaches by reproducing the real slices, edge slices included.
    Interval: bootstrap over patients."""
    ids = subjects["patient_ids"]
    flags = {p: [] for p in ids}
    for s in subjects["slices"]:
        flags[s["patient_id"]].append(contains_nodule(s["image_hu"], s["mask"]))
    per_patient = np.array([np.mean(flags[p]) for p in ids])
    return {"value": float(per_patient.mean()), "ci95": _group_bootstrap_ci(per_patient, seed),
            "num_slices": len(subjects["slices"]),
            "what": "real nodule slices that pass the rule, mean over patients of each patient's fraction"}


def _real_patches(subjects: dict) -> tuple[torch.Tensor, np.ndarray]:
    images = _scaled(np.stack([s["image_hu"] for s in subjects["slices"]]))
    masks = torch.from_numpy(np.stack([s["mask"] for s in subjects["slices"]]))[:, None]
    training = np.array([s["patient_id"] in subjects["training_ids"] for s in subjects["slices"]])
    return crop_patches(images, masks, PATCH_SIZE), training


def _split_masks(ids: list[str], training_ids: set) -> dict[str, np.ndarray]:
    train = np.array([p in training_ids for p in ids])
    return {"all": np.ones(len(ids), bool), "training": train, "heldout": ~train}


def _code_scores(representations: dict, phenotypes: list[str] | None, splits: dict, *, n_clusters: int, seed: int,
                 cv_shuffles: int, null_permutations: int) -> tuple[dict, dict]:
    """Per representation: k-means silhouette / clusters (always) and, with phenotypes, k-NN (all, training,
    held-out transfer), label silhouette, ARI and the shuffled-label null; plus the paired comparisons."""
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    scores, per_patient = {}, {}
    for name, features in representations.items():
        clusters = kmeans_labels(features, n_clusters, seed)
        sil = float(silhouette_score(features, clusters)) if 1 < len(set(clusters)) < len(clusters) else float("nan")
        entry = {"kmeans_silhouette": sil, "clusters": clusters.tolist()}
        if phenotypes is not None:
            labels = np.asarray(phenotypes)
            all_cv = knn_cv(features, labels, shuffles=cv_shuffles, seed=seed)
            train = splits["training"]
            train_cv = knn_cv(features[train], labels[train], shuffles=cv_shuffles, seed=seed)
            transfer = knn_transfer(features[train], labels[train], features[~train], labels[~train])
            silhouette = label_silhouette(features, labels)
            entry.update({
                "knn": {k: v for k, v in all_cv.items() if k != "per_shuffle"},
                "knn_training": {k: v for k, v in train_cv.items() if k != "per_shuffle"},
                "knn_heldout_transfer": transfer,
                "label_silhouette": silhouette,
                "ari": float(adjusted_rand_score(labels, clusters)),
                "null": label_null(features, labels, {"knn": all_cv["mean"], "silhouette": silhouette},
                                   permutations=null_permutations, seed=seed),
            })
            for key in ("knn", "silhouette"):
                entry["null"][key].pop("values")
            per_patient[name] = {"all": np.asarray(all_cv["per_patient"]),
                                 "training": np.asarray(train_cv["per_patient"]),
                                 "heldout": np.asarray(transfer["per_patient"])}
        scores[name] = entry
    comparisons = {}
    if phenotypes is not None:
        for other in ("raw genes", "baseline code"):
            if other in per_patient and "proposed code" in per_patient:
                comparisons[f"proposed code - {other}"] = {
                    split: paired_bootstrap(per_patient[other][split], per_patient["proposed code"][split], seed=seed)
                    for split in ("all", "training", "heldout")}
    return scores, comparisons


def _follows_genes(out: dict, subjects: dict, splits: dict, seed: int) -> dict:
    """Per profile: generated mean diameter / mean HU (outputs that contain a nodule) vs the patient's real ones."""
    result = {}
    desc = out["descriptors"]
    valid = out["contains"][..., None]
    generated = np.where(valid, desc, np.nan)
    per_profile = generated.transpose(1, 0, 2, 3).reshape(generated.shape[1], -1, generated.shape[-1])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a profile without any nodule: NaN, left out of rho
        gen_mean = np.nanmean(per_profile, axis=1)
    for key in ("diameter_mm", "mean_hu"):
        j = DESCRIPTORS.index(key)
        result[key] = {split: spearman_ci(gen_mean[mask, j], subjects["real"][mask, j], seed=seed)
                       for split, mask in splits.items()}
        result[key]["generated"] = gen_mean[:, j].tolist()
        result[key]["real"] = subjects["real"][:, j].tolist()
    return result


def _swaps(out: dict, subjects: dict, phenotypes: list[str] | None) -> dict:
    with np.errstate(invalid="ignore"):
        mean_hu = np.where(out["masks"].any(axis=(3, 4)), out["descriptors"][..., DESCRIPTORS.index("mean_hu")], np.nan)
    return {"area_px": swap_sensitivity(out["area_px"], phenotypes),
            "mean_hu": swap_sensitivity(mean_hu, phenotypes, subjects["real"][:, DESCRIPTORS.index("mean_hu")])}


def _controllability(judge: dict, out: dict, phenotypes: list[str], splits: dict) -> dict:
    """The judge's phenotype of each generated nodule (no nodule = wrong) against the profile's phenotype."""
    desc = out["descriptors"]
    k, p, n = desc.shape[:3]
    flat = desc.reshape(-1, desc.shape[-1])
    usable = out["contains"].reshape(-1) & np.isfinite(flat).all(axis=1)
    predicted = np.full(flat.shape[0], None, dtype=object)
    if usable.any():
        predicted[usable] = judge["model"].predict(flat[usable])
    predicted = predicted.reshape(k, p, n)
    wanted = np.asarray(phenotypes, dtype=object)[None, :, None]
    hit = predicted == wanted
    result = {}
    for split, mask in splits.items():
        if not mask.any():
            continue
        h = hit[:, mask]
        labels = np.asarray(phenotypes)[mask]
        per_class = {c: float(h[:, labels == c].mean()) for c in sorted(set(labels.tolist()))}
        result[split] = {"accuracy": float(h.mean()), "class_mean": float(np.mean(list(per_class.values()))),
                         "per_class": per_class}
    result["chance"] = 1.0 / len(set(phenotypes))
    return result


def matched_outputs(slice_patients: Sequence[str], patient_ids: Sequence[str], grid: tuple[int, int, int],
                    seed: int) -> np.ndarray:
    """For every real slice, one generated output of the same patient's profile, drawn at random (background and
    noise draw): flat indices into a (K, P, N) grid. The generated set then holds each patient as often as the real
    set does (a patient with more nodule slices, e.g. a spiculated one whose spicules span more slices, weighs more
    in both), so a two-sample test compares appearance, not the patient mix. Each profile's outputs are drawn without
    replacement while they last."""
    k, p, n = grid
    rng = np.random.default_rng(seed)
    column = {pid: j for j, pid in enumerate(patient_ids)}
    pools: dict[int, list[int]] = {}
    picks = np.empty(len(slice_patients), dtype=np.int64)
    for i, pid in enumerate(slice_patients):
        b = column[pid]
        if not pools.get(b):
            pools[b] = [int(v) for v in rng.permutation(k * n)]
        cell = pools[b].pop()
        picks[i] = (cell // n) * p * n + b * n + cell % n
    return picks


def _realism(subjects: dict, backgrounds: torch.Tensor, fake: dict, out: dict, seed: int) -> dict:
    """Classifier two-sample tests, real vs generated: random-filter VGG features of nodule-centred patches (16 px:
    the nodule; 32 px: with its surroundings) and the seven measured descriptors. The generated set holds one
    output of each real slice's own profile (:func:`matched_outputs`), outputs without a nodule included. Real
    slices are grouped by patient, generated ones by background, so the folds never split a group. Beside each,
    the same test with real nodules pasted onto the evaluation backgrounds as "generated" (:func:`paste_nodules`):
    what a perfect nodule generator would score on these backgrounds."""
    rng = np.random.default_rng(seed)
    k, p, n = fake["image"].shape[:3]
    real_images = _scaled(np.stack([s["image_hu"] for s in subjects["slices"]]))
    real_masks = torch.from_numpy(np.stack([s["mask"] for s in subjects["slices"]]))[:, None]
    real_groups = np.array([s["patient_id"] for s in subjects["slices"]])
    m = real_images.shape[0]
    picks = matched_outputs(real_groups, subjects["patient_ids"], (k, p, n), seed)
    fake_images = fake["image"].reshape(k * p * n, 1, *fake["image"].shape[-2:])[picks]
    fake_masks = (fake["mask"].reshape(k * p * n, 1, *fake["mask"].shape[-2:]) > 0)[picks]
    fake_groups = np.repeat(np.arange(k), p * n)[picks]
    paste_bg = rng.integers(0, backgrounds.shape[0], m)
    pasted = paste_nodules(real_images, real_masks, backgrounds[paste_bg])
    extractor = get_extractor("vgg19_random0_relu3_1_meanstd_64")
    result = {}
    for name, size in (("nodule_patches", 16), ("context_patches", 32)):
        real_f = extractor(crop_patches(real_images, real_masks, size)).numpy()
        fake_f = extractor(crop_patches(fake_images, fake_masks, size)).numpy()
        paste_f = extractor(crop_patches(pasted, real_masks, size)).numpy()
        result[name] = {**two_sample_auc(real_f, fake_f, real_groups=real_groups, generated_groups=fake_groups,
                                         seed=seed),
                        "features": extractor.name, "patch_size": size,
                        "pasted_real": two_sample_auc(real_f, paste_f, real_groups=real_groups,
                                                      generated_groups=paste_bg, seed=seed)["auc"]}
    fake_desc = np.where(out["contains"][..., None], out["descriptors"], np.nan).reshape(-1, len(DESCRIPTORS))[picks]
    real_desc = np.stack([s["descriptors"] for s in subjects["slices"]])
    result["descriptors"] = two_sample_auc(real_desc, fake_desc, real_groups=real_groups,
                                           generated_groups=fake_groups, dims=None, seed=seed)
    return result


def _radiomics_rows(clusters: np.ndarray, subjects: dict, out: dict, spacings, per_cluster: int, seed: int) -> dict:
    """IBSI radiomic features (MIRP) of up to ``per_cluster`` patients per cluster: each patient's largest real
    nodule slice and its first generated output that contains a nodule (backgrounds, then noise draws, in order)."""
    rng = np.random.default_rng(seed)
    ids = subjects["patient_ids"]
    if per_cluster < 1:
        nan = {f: float("nan") for f in RADIOMIC_FEATURES}
        return {c: {"patients": [], "real": nan, "generated": nan} for c in range(int(clusters.max()) + 1)}
    largest = {}
    for s in subjects["slices"]:
        if s["patient_id"] not in largest or s["mask"].sum() > largest[s["patient_id"]]["mask"].sum():
            largest[s["patient_id"]] = s
    result = {}
    for c in range(int(clusters.max()) + 1):
        members = np.flatnonzero(clusters == c)
        chosen = sorted(rng.choice(members, min(per_cluster, members.size), replace=False).tolist())
        real_rows, fake_rows = [], []
        for i in chosen:
            s = largest[ids[i]]
            real_rows.append(radiomic_features(s["image_hu"], s["mask"], s["spacing_mm"]))
            hits = np.argwhere(out["contains"][:, i, :])
            if hits.size:
                kb, kn = hits[0]
                fake_rows.append(radiomic_features(out["hu"][kb, i, kn], out["masks"][kb, i, kn], spacings[kb]))
        result[c] = {"patients": [ids[i] for i in chosen],
                     "real": ({f: float(np.nanmean([r[f] for r in real_rows])) for f in RADIOMIC_FEATURES}
                              if real_rows else {f: float("nan") for f in RADIOMIC_FEATURES}),
                     "generated": ({f: float(np.nanmean([r[f] for r in fake_rows])) for f in RADIOMIC_FEATURES}
                                   if fake_rows else {f: float("nan") for f in RADIOMIC_FEATURES})}
    return result


def _map_rows(clusters: np.ndarray, subjects: dict, out: dict, phenotypes: list[str] | None, attribution: np.ndarray,
              gene_names: list[str], top_k: int, radiomics: dict) -> list[dict]:
    rows = []
    gen = np.where(out["contains"][..., None], out["descriptors"], np.nan)
    for c in range(int(clusters.max()) + 1):
        members = np.flatnonzero(clusters == c)
        row = {"cluster": c, "num_subjects": int(members.size)}
        if phenotypes is not None:
            row["phenotypes"] = ";".join(f"{k}:{v}" for k, v in sorted(Counter(phenotypes[i] for i in members).items()))
        for j, key in enumerate(DESCRIPTORS):
            values = subjects["real"][members, j]
            row[key], row[key + "_std"] = float(np.nanmean(values)), float(np.nanstd(values))
            g = gen[:, members, :, j]
            row["generated_" + key] = float(np.nanmean(g)) if np.isfinite(g).any() else float("nan")
        row["margin_sharpness"] = row["boundary_gradient"]
        row["margin_sharpness_std"] = row["boundary_gradient_std"]
        for f in RADIOMIC_FEATURES:
            row["radiomics_" + f] = radiomics[c]["real"][f]
            row["generated_radiomics_" + f] = radiomics[c]["generated"][f]
        row["radiomics_patients"] = ";".join(radiomics[c]["patients"])
        row["top_genes"] = ";".join(name for name, _ in top_genes(attribution[c], gene_names, top_k))
        rows.append(row)
    return rows


def _write_csv(rows: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(buffer.getvalue(), path)


def _check_targets(report: dict, phenotypes_known: bool) -> dict:
    t = TARGETS
    out = {}
    p = report["models"]["proposed"]
    bg = p["table1"]["background_region"]
    out["background_ssim"] = bg["ssim"] >= t["background_ssim"]
    out["background_psnr_of_mean_mse"] = bg["psnr_of_mean_mse"] >= t["background_psnr"]
    out["nodule_fraction"] = p["nodules"]["value"] >= t["nodule_fraction"]
    out["two_sample_auc_nodule_patches"] = p["realism"]["nodule_patches"]["auc"] <= t["two_sample_auc"]
    for key in ("diameter_mm", "mean_hu"):
        out[f"spearman_{key}"] = p["follows_genes"][key]["all"]["rho"] >= t["spearman"]
    out["noise_over_gene_area"] = p["swaps"]["area_px"]["noise_over_gene"] >= t["noise_over_gene"]
    if phenotypes_known:
        out["same_over_cross_hu"] = p["swaps"]["mean_hu"]["same_over_cross"] <= t["same_over_cross"]
        codes = report["gene_codes"]
        out["code_knn"] = codes["proposed code"]["knn"]["mean"] >= t["code_knn"]
        for name, comp in report["code_comparisons"].items():
            ci = comp["all"]["ci95"]
            ok = ci is not None and ci[0] > 0
            if name.endswith("raw genes"):
                ok = ok and comp["all"]["difference"] >= t["code_minus_raw"]
            out[name] = ok
        out["judge_lopo"] = report["judge"]["lopo_accuracy"] >= t["judge"]
    return {k: bool(v) for k, v in out.items()}


def evaluate(
    proposed: Model,
    dataset_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    baseline: Model | None = None,
    truth_csv: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    num_backgrounds: int = 8,
    num_noise: int = 6,
    background_max_centre_hu: float | None = -600.0,
    n_clusters: int = 3,
    top_k: int = 5,
    erosion: int = 5,
    cv_shuffles: int = 200,
    null_permutations: int = 200,
    radiomics_per_cluster: int = 4,
    metrics: Sequence[str] = DEFAULT_METRICS,
    metric_options: dict | None = None,
    num_bootstrap: int = 1000,
    utility_dir: str | Path | None = None,
    settings: dict | None = None,
) -> dict:
    """Run the evaluation described in the module docstring; returns what metrics.json holds.

    Args:
        proposed, baseline: the trained models (:func:`gan_core.models.read_model`); the baseline is optional.
        dataset_dir: the prepared dataset (read only).
        truth_csv: ``patient_id,phenotype`` table of the hidden truth (the demo cohort's ``phenotypes.csv``);
            ``None`` on real data, where the phenotype-based measures are skipped.
        num_backgrounds: fixed backgrounds (evenly spaced over the prepared ones) for every profile.
        num_noise: fixed noise draws for every profile and background.
        background_max_centre_hu: only backgrounds with lung at the centre (as training draws them; None: all).
        n_clusters: k of k-means on the gene representations.
        erosion: of the background region in Table 1 (pixels, as the loss).
        cv_shuffles: CV shuffles of the k-NN accuracies; null_permutations: label permutations of the null.
        radiomics_per_cluster: patients per proposed-code cluster whose nodules MIRP describes.
        metrics, metric_options, num_bootstrap: the shared metrics on nodule patches (:mod:`gan_core.evaluation.metrics`).
        utility_dir: a finished utility study (``utility.json``) whose curve ``summary.png`` shows, if any.
    """
    check_metrics(metrics, metric_options, num_bootstrap)
    utility = read_utility_result(utility_dir)
    datalist = load_datalist(dataset_dir)
    subjects = load_subjects(datalist)
    ids = subjects["patient_ids"]
    phenotype_of = read_phenotypes(truth_csv)
    notes = []
    if phenotype_of is not None:
        missing = [p for p in ids if p not in phenotype_of]
        if missing:
            raise BundleInputError(f"no phenotype for {len(missing)} prepared patients (e.g. {missing[0]})",
                                   path=truth_csv, field="patient_id",
                                   hint="pass the truth table of the cohort this dataset was prepared from")
        phenotypes = [phenotype_of[p] for p in ids]
    else:
        phenotypes = None
        notes.append("no truth table (truth_csv): the phenotype-based measures (k-NN, silhouette by phenotype, nulls, "
                     "code comparisons, the judge, controllability, same- vs cross-phenotype swaps) are skipped")
        logger.warning(notes[-1])
    models = {"proposed": proposed.load(device)}
    if baseline is not None:
        models["baseline"] = baseline.load(device)
    else:
        notes.append("no baseline model: the MC-GAN baseline is left out")
        logger.warning(notes[-1])

    all_backgrounds = usable_backgrounds(datalist["backgrounds"], background_max_centre_hu)
    backgrounds, spacings = _even_backgrounds(all_backgrounds, num_backgrounds)
    genes = torch.from_numpy(subjects["genes"])
    splits = _split_masks(ids, subjects["training_ids"])
    heldout_backgrounds = [b for b in all_backgrounds if b["patient_id"] not in subjects["training_ids"]]
    if not splits["heldout"].any() or not heldout_backgrounds:
        raise BundleInputError("the shared metrics need held-out patients with usable backgrounds, the dataset has "
                               f"{int(splits['heldout'].sum())} held-out patient(s) and {len(heldout_backgrounds)} such "
                               "background(s)", path=Path(dataset_dir) / "datalist.json", field="validation",
                               hint="prepare the dataset with held-out (validation) patients")
    real_patches, real_training = _real_patches(subjects)
    real_desc = np.stack([s["descriptors"] for s in subjects["slices"]])
    real_fraction = _real_nodule_fraction(subjects, seed)

    report: dict = {"num_patients": len(ids), "num_training_patients": int(splits["training"].sum()),
                    "num_heldout_patients": int(splits["heldout"].sum()), "num_backgrounds": len(backgrounds),
                    "num_noise_draws": int(num_noise), "models": {}, "notes": notes}
    fakes, outs = {}, {}
    for name, generator in models.items():
        noise = noise_draws(int(generator.noise_dim), num_noise, seed)
        fakes[name] = generate_grid(generator, backgrounds, genes, noise, device)
        outs[name] = measure_outputs(fakes[name], spacings)
        entry = {"table1": _table1(fakes[name], backgrounds, erosion),
                 "nodules": _fraction_ci(outs[name]["contains"], seed),
                 "realism": _realism(subjects, backgrounds, fakes[name], outs[name], seed),
                 "follows_genes": _follows_genes(outs[name], subjects, splits, seed),
                 "swaps": _swaps(outs[name], subjects, phenotypes)}
        entry["nodules"]["by_split"] = {s: float(outs[name]["contains"][:, m].mean()) for s, m in splits.items() if m.any()}
        entry["nodules"]["real_reference"] = real_fraction
        report["models"][name] = entry
        logger.info("%s: Table 1 background %s, nodule fraction %.3f", name, entry["table1"]["background_region"],
                    entry["nodules"]["value"])

    with torch.no_grad():
        representations = {"raw genes": subjects["genes"].astype(np.float64)}
        if "baseline" in models:
            representations["baseline code"] = models["baseline"].encode_genes(genes.to(device)).cpu().double().numpy()
        representations["proposed code"] = models["proposed"].encode_genes(genes.to(device)).cpu().double().numpy()
    scores, comparisons = _code_scores(representations, phenotypes, splits, n_clusters=n_clusters, seed=seed,
                                       cv_shuffles=cv_shuffles, null_permutations=null_permutations)
    clusters = np.asarray(scores["proposed code"]["clusters"])
    report["gene_codes"] = {n: {k: v for k, v in s.items() if k != "clusters"} for n, s in scores.items()}
    report["code_comparisons"] = comparisons

    if phenotypes is not None:
        slice_labels = [phenotype_of[s["patient_id"]] for s in subjects["slices"]]
        judge = descriptor_judge(real_desc, slice_labels, [s["patient_id"] for s in subjects["slices"]])
        report["judge"] = {k: v for k, v in judge.items() if k != "model"}
        for name, out in outs.items():
            report["models"][name]["controllability"] = _controllability(judge, out, phenotypes, splits)

    gene_names = Path(datalist["gene_names"]).read_text().split()
    attribution = gene_attribution(models["proposed"].encode_genes, genes.to(device), clusters)
    radiomics = _radiomics_rows(clusters, subjects, outs["proposed"], spacings, radiomics_per_cluster, seed)
    rows = _map_rows(clusters, subjects, outs["proposed"], phenotypes, attribution, gene_names, top_k, radiomics)
    report["radiogenomic_map"] = rows
    report["radiomics_subsample"] = {
        "per_cluster": int(radiomics_per_cluster), "library": "mirp (IBSI)", "features": list(RADIOMIC_FEATURES),
        "how": "per cluster, up to radiomics_per_cluster patients drawn with the evaluation seed; each patient's "
               "largest real nodule slice, and its first generated output that contains a nodule"}

    heldout_inputs, used_backgrounds = _heldout_input_patches(
        models["proposed"], heldout_backgrounds, num_backgrounds, genes[torch.from_numpy(splits["heldout"])], num_noise,
        seed, device)
    report["shared_metric_sets"] = {
        "generated": f"{len(heldout_inputs)} nodule patches drawn for the {int(splits['heldout'].sum())} held-out patients' "
                     f"gene profiles on {used_backgrounds} of their "
                     f"{len(heldout_backgrounds)} usable backgrounds x {num_noise} noise draws",
        "train": "the training patients' real nodule patches", "heldout": "the held-out patients' real nodule patches"}
    sets = SampleSets(heldout_inputs, real_patches[torch.from_numpy(real_training)],
                      real_patches[torch.from_numpy(~real_training)])
    results = compute_metrics(list(metrics), sets, seed=seed, num_bootstrap=num_bootstrap, options=metric_options)
    report["targets"] = {"thresholds": TARGETS, "holds": _check_targets(report, phenotypes is not None)}

    embeddings = {n: embed_tsne(f, seed) for n, f in representations.items()}
    with atomic_dir(output_dir, record=RUN_INFO, kind=KIND, setting="evaluation_dir") as work:
        write_metrics_json(work / "metrics.json", results, **report)
        _write_csv(rows, work / "radiogenomic_map.csv")
        plot_radiogenomic_map(rows, work / "radiogenomic_map.png")
        shown = phenotypes if phenotypes is not None else ["unknown"] * len(ids)
        code_panels = {n: {"silhouette": s.get("label_silhouette", s["kmeans_silhouette"]), "ari": s.get("ari", float("nan")),
                           "knn_accuracy": s.get("knn", {}).get("mean", float("nan"))} for n, s in scores.items()}
        plot_code_maps(embeddings, clusters, shown, code_panels, work / "gene_code_tsne.png")
        plot_follows_genes(report["models"], work / "follows_genes.png")
        for key in ("memorisation_pixel", "memorisation_features"):
            if key in results and results[key]["details"].get("closest_pairs"):
                save_closest_pairs(sets, results[key], work / f"closest_{key.split('_')[1]}.png",
                                   display=lambda x: ((x[0].numpy().T + 1.0) / 2.0))
        examples = _synthesis_columns(subjects, backgrounds, fakes)
        save_image_grid(examples, work / "synthesis.png", title="one background, one row per gene profile")
        plot_summary(report, results, examples, embeddings, clusters, shown, work / "summary.png", utility)
        write_run_info(work, run_info(KIND, settings=settings, datalist=Path(dataset_dir) / "datalist.json", seed=seed))
    logger.info("evaluation written to %s", output_dir)
    return {**report, "metrics": results}


def _synthesis_columns(subjects: dict, backgrounds: torch.Tensor, fakes: dict) -> list[tuple[str, torch.Tensor]]:
    ids = subjects["patient_ids"]
    n_show = min(6, len(ids))
    largest = {}
    for s in subjects["slices"]:
        if s["patient_id"] not in largest or s["mask"].sum() > largest[s["patient_id"]]["mask"].sum():
            largest[s["patient_id"]] = s
    shown = np.unique(np.linspace(0, len(ids) - 1, n_show).round().astype(int))
    references = _scaled(np.stack([largest[ids[i]]["image_hu"] for i in shown]))
    columns = [("profile's real nodule", references), ("background", backgrounds[:1].expand(len(shown), -1, -1, -1))]
    for name, fake in fakes.items():
        for j in range(min(2, fake["image"].shape[2])):
            columns.append((f"{name}, noise {j}", fake["image"][0, shown, j]))
    return columns
