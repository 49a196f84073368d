"""Radiogenomic evaluation: Table 1, Fig. 4, controllability and the radiogenomic map (Xu et al., beyond the paper).

Writes into ``output_dir`` (``<output_dir>.partial`` renamed when complete):

    metrics.json             every number below, per model
    synthesis.png            fixed backgrounds x gene profiles: proposed and baseline outputs (Fig. 3 analogue)
    gene_code_tsne.png       t-SNE of raw genes, baseline code and proposed code (Fig. 4), with the scores
    radiogenomic_map.csv     one row per proposed-code cluster: nodule features, phenotype mix, top genes
    radiogenomic_map.png     the same as a figure

Table 1: MSE / SSIM / PSNR between the generated slice and its background ([0, 1] scale), over the whole
slice and over the background region (generated mask < 0, eroded by 5 pixels), for every gene profile on
``num_backgrounds`` fixed backgrounds. Fig. 4 scores per representation: silhouette of k-means clusters, ARI
of those clusters against the known phenotypes and 5-fold k-NN phenotype accuracy. Controllability: a small
CNN trained on the real nodule slices of the training patients classifies the nodules generated from each
profile; accuracy against the profile's phenotype (chance = 1 / number of phenotypes). Without a
phenotype file (real TCIA data) the phenotype-based numbers are left out.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from bundles.engines.handlers import save_image_grid
from bundles.errors import BundleInputError
from bundles.evaluation.classifier import conditional_accuracy, predict, train_classifier
from bundles.evaluation.gene_maps import (
    code_scores,
    embed_tsne,
    gene_attribution,
    nodule_features,
    plot_code_maps,
    plot_radiogenomic_map,
    top_genes,
)
from bundles.evaluation.regional import regional_metrics, to_unit_range
from bundles.fileio import atomic_dir, atomic_write_text
from bundles.losses.radiogenomic import eroded_background
from bundles.models import Model, read_model
from bundles.runs import RUN_INFO, run_info, write_run_info
from bundles.transforms.intensity import ScaleHU, hu_from_scaled
from bundles.workflows.radiogenomic_inference import fixed_noise
from bundles.workflows.radiogenomic_prepare import load_datalist

__all__ = ["baseline_model", "demo_truth", "evaluate", "load_subjects", "read_phenotypes"]

KIND = "radiogenomic evaluation"


def baseline_model(path: str | os.PathLike | None, bundle_root: str | os.PathLike) -> Model | None:
    """The MC-GAN baseline to compare with: ``path`` when given (an error if unreadable), else the bundle's
    exported ``models/baseline_model.pt`` when it exists, else ``None`` (the comparison is left out)."""
    if path is not None:
        return read_model(path, "radiogenomic")
    default = Path(bundle_root) / "models" / "baseline_model.pt"
    return read_model(default, "radiogenomic") if default.is_file() else None


def demo_truth(dataset_dir: str | os.PathLike, bundle_root: str | os.PathLike) -> str | None:
    """The demo cohort's hidden truth (``<bundle>/data/raw/phenotypes.csv``) when ``dataset_dir`` is the bundle's
    demo dataset, else ``None`` (real data has no hidden truth; pass ``--truth_csv`` for your own)."""
    demo = Path(bundle_root) / "data" / "prepared"
    truth = Path(bundle_root) / "data" / "raw" / "phenotypes.csv"
    return str(truth) if Path(dataset_dir).resolve() == demo.resolve() and truth.is_file() else None

logger = logging.getLogger(__name__)


def read_phenotypes(path: str | os.PathLike | None) -> dict[str, str] | None:
    """``patient_id,phenotype,...`` CSV -> {patient_id: phenotype}; ``None`` when ``path`` is None or missing."""
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
    """Nodule slices and genes of every prepared patient (training first, then validation).

    Returns ``{"patient_ids": [P], "training_ids": set, "genes": (P, G) float32, "slices": list of dicts
    {"patient_id", "image_hu" (S, S), "mask" (S, S) bool, "spacing_mm"}}``.
    """
    genes, slices = {}, []
    training_ids = {d["patient_id"] for d in datalist["training"]}
    for item in datalist["training"] + datalist["validation"]:
        pid = item["patient_id"]
        if pid not in genes:
            genes[pid] = np.load(item["genes"]).astype(np.float32)
        img = nib.load(item["image"])
        slices.append({
            "patient_id": pid,
            "image_hu": np.asarray(img.dataobj, np.float32).squeeze(),
            "mask": np.asarray(nib.load(item["mask"]).dataobj).squeeze() > 0,
            "spacing_mm": _spacing(img.affine),
        })
    ids = list(genes)
    return {"patient_ids": ids, "training_ids": training_ids, "genes": np.stack([genes[p] for p in ids]),
            "slices": slices}


def _scaled(images_hu: np.ndarray) -> torch.Tensor:
    """(N, S, S) HU -> (N, 1, S, S) in [-1, 1], a plain tensor (no MetaTensor bookkeeping in the networks)."""
    return ScaleHU()(torch.from_numpy(images_hu)).as_subclass(torch.Tensor).float()[:, None]


@torch.no_grad()
def _generate_all(generator, backgrounds: torch.Tensor, genes: torch.Tensor, seed: int, device) -> dict:
    """Every profile on every background: images / masks (K, P, 1, S, S) in [-1, 1]."""
    noise = fixed_noise(int(generator.noise_dim), seed).to(device).expand(genes.shape[0], -1)
    images, masks = [], []
    for k in range(backgrounds.shape[0]):
        image, mask = generator(backgrounds[k : k + 1].to(device).expand(genes.shape[0], -1, -1, -1), genes.to(device), noise)
        images.append(image.cpu())
        masks.append(mask.cpu())
    return {"image": torch.stack(images), "mask": torch.stack(masks)}


def _table1(fake: dict, backgrounds: torch.Tensor, erosion: int) -> dict:
    k, p = fake["image"].shape[:2]
    generated = to_unit_range(fake["image"].reshape(k * p, *fake["image"].shape[2:]))
    reference = to_unit_range(backgrounds[:, None].expand(-1, p, -1, -1, -1).reshape(generated.shape))
    region = eroded_background(fake["mask"].reshape(generated.shape), erosion)
    return {"whole_slice": regional_metrics(generated, reference),
            "background_region": regional_metrics(generated, reference, region)}


def _write_csv(rows: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(buffer.getvalue(), path)


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
    n_clusters: int = 3,
    top_k: int = 5,
    erosion: int = 5,
    classifier_epochs: int = 30,
    settings: dict | None = None,
) -> dict:
    """Run the evaluation described in the module docstring; returns the metrics dict.

    Args:
        proposed, baseline: the trained models (:func:`bundles.models.read_model`); the baseline is optional.
        dataset_dir: the prepared dataset (read only).
        truth_csv: ``patient_id,phenotype`` table of the hidden truth (the demo cohort's ``phenotypes.csv``);
            ``None`` on real data, where the phenotype-based numbers are left out.
        num_backgrounds: fixed backgrounds (evenly spaced over the prepared ones) for every profile.
        n_clusters: k of k-means on the gene representations.
        erosion: of the background region in Table 1 (pixels, as the loss).
    """
    datalist = load_datalist(dataset_dir)
    subjects = load_subjects(datalist)
    ids = subjects["patient_ids"]
    phenotype_of = read_phenotypes(truth_csv)
    if phenotype_of is not None:
        missing = [p for p in ids if p not in phenotype_of]
        if missing:
            raise BundleInputError(f"no phenotype for {len(missing)} prepared patients (e.g. {missing[0]})",
                                   path=truth_csv, field="patient_id",
                                   hint="pass the truth table of the cohort this dataset was prepared from")
    else:
        logger.warning("no truth table (truth_csv): the phenotype-based measures are skipped")
    models = {"proposed": proposed.load(device)}
    if baseline is not None:
        models["baseline"] = baseline.load(device)
    else:
        logger.warning("no baseline model: the MC-GAN baseline is left out")

    all_backgrounds = datalist["backgrounds"]
    picks = np.unique(np.linspace(0, len(all_backgrounds) - 1, num_backgrounds).round().astype(int))
    bg_images = [nib.load(all_backgrounds[i]["image"]) for i in picks]
    backgrounds = _scaled(np.stack([np.asarray(b.dataobj, np.float32).squeeze() for b in bg_images]))
    bg_spacing = [_spacing(b.affine) for b in bg_images]
    genes = torch.from_numpy(subjects["genes"])

    metrics: dict = {"num_patients": len(ids), "num_backgrounds": len(picks), "models": sorted(models),
                     "table1": {}, "gene_codes": {}, "controllability": {}}
    fakes = {}
    for name, generator in models.items():
        fakes[name] = _generate_all(generator, backgrounds, genes, seed, device)
        metrics["table1"][name] = _table1(fakes[name], backgrounds, erosion)
        logger.info("Table 1 %s: %s", name, metrics["table1"][name])

    # Fig. 4: raw genes vs baseline code vs proposed code
    with torch.no_grad():
        representations = {"raw genes": subjects["genes"]}
        if "baseline" in models:
            representations["baseline code"] = models["baseline"].encode_genes(genes.to(device)).cpu().numpy()
        representations["proposed code"] = models["proposed"].encode_genes(genes.to(device)).cpu().numpy()
    phenotypes = [phenotype_of[p] for p in ids] if phenotype_of else ["unknown"] * len(ids)
    scores = {}
    for name, features in representations.items():
        s = code_scores(features, phenotypes, n_clusters, seed=seed)
        if phenotype_of is None:
            s["ari"], s["knn_accuracy"] = None, None
        scores[name] = s
    clusters = np.asarray(scores["proposed code"]["clusters"])
    metrics["gene_codes"] = {n: {k: v for k, v in s.items() if k != "clusters"} for n, s in scores.items()}
    embeddings = {n: embed_tsne(f, seed) for n, f in representations.items()}

    # controllability: does a classifier of real nodules recognise the requested phenotype?
    if phenotype_of is not None:
        classes = sorted(set(phenotypes))
        label_of = {p: classes.index(phenotype_of[p]) for p in ids}
        real = [s for s in subjects["slices"] if s["patient_id"] in subjects["training_ids"]]
        held = [s for s in subjects["slices"] if s["patient_id"] not in subjects["training_ids"]]
        classifier = train_classifier(
            _scaled(np.stack([s["image_hu"] for s in real])),
            torch.tensor([label_of[s["patient_id"]] for s in real]),
            num_classes=len(classes), epochs=classifier_epochs, seed=seed,
        )
        control = {"classes": classes, "chance": 1.0 / len(classes)}
        if held:
            probs, _ = predict(classifier, _scaled(np.stack([s["image_hu"] for s in held])))
            control["classifier_on_real_validation"] = conditional_accuracy(
                probs, torch.tensor([label_of[s["patient_id"]] for s in held]), classes)
        requested = torch.tensor([label_of[p] for p in ids]).repeat(len(picks))
        for name, fake in fakes.items():
            probs, _ = predict(classifier, fake["image"].reshape(-1, 1, *fake["image"].shape[-2:]))
            control[name] = conditional_accuracy(probs, requested, classes)
        metrics["controllability"] = control

    # the radiogenomic map: clusters of the proposed code -> real and generated nodule features, genes
    gene_names = Path(datalist["gene_names"]).read_text().split()
    attribution = gene_attribution(models["proposed"].encode_genes, genes.to(device), clusters)
    largest = {}
    for s in subjects["slices"]:
        if s["patient_id"] not in largest or s["mask"].sum() > largest[s["patient_id"]]["mask"].sum():
            largest[s["patient_id"]] = s
    real_features = {p: nodule_features(s["image_hu"], s["mask"], s["spacing_mm"]) for p, s in largest.items()}
    fake_hu = hu_from_scaled(fakes["proposed"]["image"].numpy())
    fake_masks = fakes["proposed"]["mask"].numpy() > 0
    rows = []
    for c in range(int(clusters.max()) + 1):
        members = [i for i, cl in enumerate(clusters) if cl == c]
        row = {"cluster": c, "num_subjects": len(members),
               "phenotypes": ";".join(f"{k}:{v}" for k, v in sorted(Counter(phenotypes[i] for i in members).items()))}
        for key in ("diameter_mm", "mean_hu", "margin_sharpness"):
            values = np.array([real_features[ids[i]][key] for i in members])
            row[key], row[key + "_std"] = float(np.nanmean(values)), float(np.nanstd(values))
        generated = [nodule_features(fake_hu[k, i, 0], fake_masks[k, i, 0], bg_spacing[k])
                     for k in range(len(picks)) for i in members]
        for key in ("diameter_mm", "mean_hu", "margin_sharpness"):
            values = np.array([g[key] for g in generated])
            row["generated_" + key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        row["top_genes"] = ";".join(name for name, _ in top_genes(attribution[c], gene_names, top_k))
        rows.append(row)
    metrics["radiogenomic_map"] = rows

    with atomic_dir(output_dir, record=RUN_INFO, kind=KIND, setting="evaluation_dir") as work:
        atomic_write_text(json.dumps(metrics, indent=1, default=float), work / "metrics.json")
        _write_csv(rows, work / "radiogenomic_map.csv")
        plot_radiogenomic_map(rows, work / "radiogenomic_map.png")
        plot_code_maps(embeddings, clusters, phenotypes, scores, work / "gene_code_tsne.png")
        n_show = min(6, len(ids))
        references = _scaled(np.stack([largest[ids[i]]["image_hu"] for i in range(n_show)]))
        columns = [("profile's real nodule", references), ("background", backgrounds[:1].expand(n_show, -1, -1, -1))]
        for name, fake in fakes.items():
            columns.append((name, fake["image"][0, :n_show]))
        save_image_grid(columns, work / "synthesis.png", title="one background, one row per gene profile")
        write_run_info(work, run_info(KIND, settings=settings, datalist=Path(dataset_dir) / "datalist.json", seed=seed))
    logger.info("evaluation written to %s", output_dir)
    return metrics
