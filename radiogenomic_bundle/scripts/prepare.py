"""Radiogenomic preparation: TCIA-style CT + SEG tree and a GEO gene table -> 2D nodule / background dataset.

Per patient (``scripts.datalist.nsclc_datalist``: CT series, SEG, gene column), two MONAI ``Compose``
chains, declared once in ``radiogenomic_bundle/configs/prepare.json``, run on ``{"image": CT MetaTensor
(1, X, Y, Z) HU, "mask": nodule MetaTensor (1, X, Y, Z) uint8}``:

- ``nodule_chain``: 60 mm VOI on the nodule centroid, HU clipped to [-1000, 500], one 2D item per axial slice
  that contains nodule;
- ``background_chain``: lung mask, centres 5-25 mm inside the lung away from the nodule, a 60 mm VOI per
  centre, HU clipped, ``slices_per_background`` random axial slices per VOI.

A patient whose data the chains cannot use (no lung region, an unreadable SEG, ...) is skipped with its reason,
in the log and in the datalist's ``"skipped"``. Genes: patients without a nodule slice dropped, genes with any NA
in the table removed (the paper's 5172), genes constant over the training patients removed, each gene z-scored
with the training patients' mean and standard deviation (saved, so a new profile is standardised the same way:
:func:`standardise_genes`). Validation = held-out patients. File names come from patient IDs only through
:func:`gan_core.io.names.safe_name`; the datalist keeps the original ID.

Prepared dataset (built in a private work folder, swapped into place when complete; paths relative)::

    images/<id>_sNNN.nii.gz        (S, S) float32 HU in [-1000, 500], full 4x4 RAS affine of the slice
    masks/<id>_sNNN.nii.gz         (S, S) uint8 {0, 1}, same affine
    backgrounds/<id>_vV_sNNN.nii.gz  (S, S) float32 HU, nodule-free
    genes/<id>.npy                 (G,) float32 standardised expression
    gene_names.txt                 G lines, the order of the vectors
    gene_stats.npz                 mean (G,), std (G,) float64 (raw units), names (G,)
    datalist.json                  {"training": [...], "validation": [...], "backgrounds": [... + "split"],
                                    "gene_names", "gene_stats", "num_genes", "image_size", "settings", "skipped",
                                    "descriptor_names"}; each nodule slice's entry carries "descriptors", the
                                    seven measurements of its nodule (scripts.nodules)
    run_info.json                  the command, settings, versions (gan_core.runs)
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from tqdm import tqdm

from gan_core import datasets
from gan_core.errors import BundleInputError, find_input_error
from gan_core.fileio import atomic_path, atomic_write_text
from gan_core.io.dicom_series import read_series
from gan_core.io.names import safe_name

from .datalist import nsclc_datalist
from .genes import GeneTable, read_gene_table
from .nodules import DESCRIPTORS, descriptor_matrix, nodule_descriptors
from .seg import read_seg

logger = logging.getLogger(__name__)

BUNDLE = "radiogenomic"
DATALIST = datasets.DATALIST


def load_patient(entry: dict) -> dict:
    """Datalist entry {"patient_id", "image": CT folder, "seg": SEG file} -> {"patient_id", "image": MetaTensor
    (1, X, Y, Z) float32 HU, "mask": MetaTensor (1, X, Y, Z) uint8 {0, 1} on the CT grid}."""
    series = read_series(entry["image"], modality="CT")
    image = series.to_metatensor()
    nodule = (read_seg(entry["seg"], series) > 0).astype(np.uint8)
    mask = MetaTensor(
        torch.from_numpy(nodule[None]),
        affine=image.affine.clone(),
        meta={"filename_or_obj": str(entry["seg"])},
    )
    return {"patient_id": entry["patient_id"], "image": image, "mask": mask}


def _patient_seed(seed: int, patient_id: str) -> int:
    """A seed per patient that does not depend on which other patients are in the cohort."""
    return zlib.crc32(f"{seed}:{patient_id}".encode()) & 0x7FFFFFFF


def _save_slice(item: MetaTensor, path: Path, dtype: type) -> None:
    """(1, S, S) MetaTensor -> 2D NIfTI with the slice's 4x4 RAS affine."""
    image = nib.Nifti1Image(
        np.asarray(item.detach().cpu()[0], dtype=dtype), np.asarray(item.affine, dtype=np.float64)
    )
    image.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(image, tmp)


def _split(patient_ids: list[str], validation_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Sorted (training, validation) patient IDs; at least one of each when there are two patients or more."""
    ids = sorted(patient_ids)
    n_val = int(round(validation_fraction * len(ids)))
    if validation_fraction > 0 and len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)
    held = set(np.random.default_rng(seed).permutation(ids)[:n_val].tolist())
    return [p for p in ids if p not in held], [p for p in ids if p in held]


def _gene_matrix(table: GeneTable, patient_ids: list[str], training_ids: list[str], path: Path):
    """-> (names, standardised (n_patients, G) float32, mean (G,), std (G,)) after dropping NA / constant genes."""
    complete = table.complete_genes().subset(patient_ids)
    n_na = len(table.gene_names) - len(complete.gene_names)
    train_cols = [patient_ids.index(p) for p in training_ids]
    mean = complete.values[:, train_cols].mean(axis=1)
    std = complete.values[:, train_cols].std(axis=1)
    keep = std > 1e-12 * np.maximum(1.0, np.abs(mean))
    logger.info(
        "genes: %d in the table, %d with NA removed, %d constant over the training patients removed, %d kept",
        len(table.gene_names),
        n_na,
        int((~keep).sum()),
        int(keep.sum()),
    )
    if not keep.any():
        raise BundleInputError(
            f"no gene is complete (no NA) and varying over the {len(patient_ids)} patients with images",
            path=path,
            hint="check the gene table's NA values and that its columns are the imaged patients",
        )
    names = [g for g, k in zip(complete.gene_names, keep, strict=True) if k]
    mean, std = mean[keep], std[keep]
    standardised = ((complete.values[keep] - mean[:, None]) / std[:, None]).T.astype(np.float32)
    return names, standardised, mean, std


def standardise_genes(values: np.ndarray, gene_names: list[str], stats: dict, source: str | os.PathLike) -> np.ndarray:
    """Raw expression profiles -> standardised vectors in the trained gene order.

    Args:
        values: (n_genes, n_profiles) raw values, rows named by ``gene_names`` (e.g. a ``GeneTable``).
        stats: ``{"gene_names": (G,), "gene_mean": (G,), "gene_std": (G,)}`` of the training patients (a
            model's record inputs, or :func:`model_inputs` of a dataset).
        source: the file the profiles come from (for messages).

    Returns:
        (n_profiles, G) float32.

    Raises:
        BundleInputError: a trained gene missing from ``gene_names`` or NA in a profile.
    """
    trained = [str(g) for g in stats["gene_names"]]
    index = {g: i for i, g in enumerate(gene_names)}
    missing = [g for g in trained if g not in index]
    if missing:
        raise BundleInputError(f"{len(missing)} of the {len(trained)} trained genes are missing, e.g. {missing[:5]}",
                               path=source, field="gene names", hint="give profiles with every trained gene")
    rows = np.asarray(values, dtype=np.float64)[[index[g] for g in trained]]
    if np.isnan(rows).any():
        bad = [g for g, r in zip(trained, rows, strict=True) if np.isnan(r).any()]
        raise BundleInputError(f"NA in {len(bad)} trained genes, e.g. {bad[:5]}", path=source, field="genes",
                               hint="the generator needs every trained gene measured: impute them or drop the profile")
    mean = np.asarray(stats["gene_mean"], dtype=np.float64)[:, None]
    std = np.asarray(stats["gene_std"], dtype=np.float64)[:, None]
    return ((rows - mean) / std).T.astype(np.float32)


def _default_genes_path(raw_dir: Path) -> Path:
    """``raw_dir/genes.tsv`` (the demo cohort's), else the one GEO RNA-seq table in ``raw_dir``."""
    if (raw_dir / "genes.tsv").is_file():
        return raw_dir / "genes.tsv"
    found = sorted(raw_dir.glob("*RNAseq*.txt*"))
    if len(found) != 1:
        raise BundleInputError(
            "no gene table given and none (or several) found in the raw folder",
            path=raw_dir,
            field="genes_path",
            hint="pass --genes_path <GSE103584_R01_NSCLC_RNAseq.txt.gz>",
        )
    return found[0]


def _patient_items(entry: dict, nodule_chain: Callable, background_chain: Callable, seed: int):
    """(nodule items, background items) of one patient; BundleInputError when the patient cannot be used."""
    pid = entry["patient_id"]
    try:
        data = load_patient(entry)
        nodule_items = nodule_chain(data)
    except Exception as err:  # MONAI's Compose wraps the chains' BundleInputError in a RuntimeError
        found = find_input_error(err)
        if found is None:
            raise
        raise found from None
    if not nodule_items:
        raise BundleInputError("the SEG holds no nodule voxel inside the VOI", path=entry["seg"], field="segment",
                               hint="check that the SEG segments this patient's nodule")
    try:
        if hasattr(background_chain, "set_random_state"):
            background_chain.set_random_state(seed=_patient_seed(seed, pid))
        background_items = [s for voi in background_chain(data) for s in voi]
    except Exception as err:
        found = find_input_error(err)
        if found is None:
            raise
        logger.warning("patient %s: no background slices: %s", pid, found)
        background_items = []
    return nodule_items, background_items


def prepare_dataset(
    raw_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    genes_path: str | os.PathLike | None = None,
    *,
    nodule_chain: Callable,
    background_chain: Callable,
    image_size: int,
    voi_mm: float = 60.0,
    validation_fraction: float = 0.2,
    seed: int = 0,
    overwrite: bool = False,
    settings: dict | None = None,
) -> dict:
    """Prepare the 2D radiogenomic dataset (layout in the module docstring) from an existing raw folder.

    Args:
        raw_dir: TCIA-style tree ``<PatientID>/<study>/<series>/*.dcm`` with CT and SEG series.
        dataset_dir: a missing or empty folder, or one this preparation wrote (replaced only with ``overwrite``).
        genes_path: GEO table (tab-separated, patient IDs in the first row); default ``raw_dir/genes.tsv``.
        nodule_chain, background_chain: the chains of prepare.json (see the module docstring).
        image_size: the side of the slices the chains give (checked).
        voi_mm: recorded in the datalist.
        validation_fraction: share of patients held out (at least one when there are two or more).
        seed: split and background sampling (per patient, so a patient's backgrounds do not depend on the others).
        settings: the preparation settings recorded in the datalist (training refuses a dataset prepared with
            another ``image_size`` than it asks for).

    Returns:
        The datalist (absolute paths).

    Raises:
        BundleInputError: no patient with CT, SEG and genes; no patient left after skipping unusable ones; no
            usable gene; a dataset_dir that is not this preparation's to write.
    """
    raw_dir = Path(raw_dir).resolve()
    datasets.check_folders(raw_dir, dataset_dir)
    genes_path = _default_genes_path(raw_dir) if genes_path is None else Path(genes_path)
    table = read_gene_table(genes_path)
    entries, incomplete = nsclc_datalist(raw_dir, genes_path)  # only patients with CT, SEG and a gene column
    settings = {"image_size": int(image_size), "voi_mm": float(voi_mm), "seed": int(seed),
                "validation_fraction": float(validation_fraction), "raw_dir": str(raw_dir),
                "genes_path": str(genes_path), **(settings or {})}
    nodules: dict[str, list[dict]] = {}
    backgrounds: list[dict] = []
    skipped: list[dict] = list(incomplete)
    with datasets.write_dataset(dataset_dir, bundle=BUNDLE, overwrite=overwrite, settings=settings, seed=seed) as work:
        for sub in ("images", "masks", "backgrounds", "genes"):
            (work / sub).mkdir()
        names: dict[str, str] = {}
        for entry in tqdm(entries, desc="radiogenomic preparation", unit="patient"):
            pid = entry["patient_id"]
            try:
                nodule_items, background_items = _patient_items(entry, nodule_chain, background_chain, seed)
            except BundleInputError as err:
                logger.warning("skipping patient %s: %s", pid, err)
                skipped.append({"patient_id": pid, "reason": str(err)})
                continue
            if not background_items:
                logger.warning("patient %s: no room in the lungs for a nodule-free %g mm background VOI", pid, voi_mm)
            name = names[pid] = safe_name(pid)
            nodules[pid] = []
            for item in nodule_items:
                k = item["slice_index"]
                _check_slice(item["image"], image_size, pid)
                image_path = work / "images" / f"{name}_s{k:03d}.nii.gz"
                mask_path = work / "masks" / f"{name}_s{k:03d}.nii.gz"
                _save_slice(item["image"], image_path, np.float32)
                _save_slice(item["mask"], mask_path, np.uint8)
                nodules[pid].append({"patient_id": pid, "image": datasets.relative(image_path, work),
                                     "mask": datasets.relative(mask_path, work), "slice_index": k,
                                     "descriptors": _slice_descriptors(item["image"], item["mask"])})
            voi_index, last_center = -1, None
            for item in background_items:
                if item["voi_center_mm"] != last_center:
                    voi_index, last_center = voi_index + 1, item["voi_center_mm"]
                _check_slice(item["image"], image_size, pid)
                path = work / "backgrounds" / f"{name}_v{voi_index}_s{item['slice_index']:03d}.nii.gz"
                _save_slice(item["image"], path, np.float32)
                backgrounds.append({"patient_id": pid, "image": datasets.relative(path, work),
                                    "voi_center_mm": item["voi_center_mm"], "slice_index": item["slice_index"],
                                    "centre_hu": round(centre_hu(np.asarray(item["image"].detach().cpu()[0])), 2)})
        if not nodules:
            raise BundleInputError("no patient could be prepared", path=raw_dir, field="patients",
                                   hint=f"fix the reasons logged for each patient, e.g. {skipped[0]['reason']}"
                                   if skipped else "check the tree layout <PatientID>/<study>/<series>/*.dcm")
        patient_ids = sorted(nodules)
        training_ids, validation_ids = _split(patient_ids, validation_fraction, seed)
        if len(training_ids) < 2:
            raise BundleInputError(
                f"{len(training_ids)} training patient(s) after holding out {len(validation_ids)}: the genes "
                "cannot be standardised (a z-score needs two patients or more)",
                path=raw_dir,
                field="validation_fraction",
                hint="add patients or lower validation_fraction",
            )
        gene_names, standardised, mean, std = _gene_matrix(table, patient_ids, training_ids, genes_path)
        gene_files = {}
        for pid, vector in zip(patient_ids, standardised, strict=True):
            with atomic_path(work / "genes" / f"{names[pid]}.npy") as tmp:
                np.save(tmp, vector)
            gene_files[pid] = f"genes/{names[pid]}.npy"
        atomic_write_text("\n".join(gene_names) + "\n", work / "gene_names.txt")
        with atomic_path(work / "gene_stats.npz") as tmp:
            np.savez(tmp, mean=mean, std=std, names=np.asarray(gene_names))

        def items(ids: list[str]) -> list[dict]:
            return [{**it, "genes": gene_files[pid]} for pid in ids for it in nodules[pid]]

        datalist = {
            "training": items(training_ids),
            "validation": items(validation_ids),
            "backgrounds": [{**b, "split": "validation" if b["patient_id"] in validation_ids else "training"}
                            for b in backgrounds],
            "gene_names": "gene_names.txt",
            "gene_stats": "gene_stats.npz",
            "num_genes": len(gene_names),
            "image_size": int(image_size),
            "skipped": skipped,
            "descriptor_names": list(DESCRIPTORS),
        }
        datasets.save_datalist(work, datalist, bundle=BUNDLE, settings=settings)
    logger.info(
        "prepared %s: %d training and %d validation nodule slices (%d + %d patients), %d backgrounds, %d genes",
        dataset_dir, len(datalist["training"]), len(datalist["validation"]), len(training_ids), len(validation_ids),
        len(backgrounds), len(gene_names),
    )
    return load_datalist(dataset_dir)


def centre_hu(image_hu: np.ndarray) -> float:
    """Mean HU of the central disk (radius S / 8) of an (S, S) slice: where the generator draws its nodule (real
    nodule slices are centred on the nodule); lung is about -850 HU, chest wall and mediastinum above 0."""
    image = np.asarray(image_hu, np.float64)
    rows, cols = np.mgrid[: image.shape[0], : image.shape[1]]
    centre = ((rows - (image.shape[0] - 1) / 2) ** 2 + (cols - (image.shape[1] - 1) / 2) ** 2
              <= (min(image.shape) / 8.0) ** 2)
    return float(image[centre].mean())


def usable_backgrounds(entries: list[dict], max_centre_hu: float | None = -600.0) -> list[dict]:
    """The background entries whose central disk is lung (:func:`centre_hu` <= ``max_centre_hu``), so that the
    nodule the generator draws at the centre lies in the lung (about 5 % of the demo's slices cut the chest wall
    at their centre; the paper's VOIs are centred inside the lung). ``None`` keeps every entry; measured from the
    files for entries prepared without ``centre_hu``.

    Raises:
        BundleInputError: no background is left.
    """
    if max_centre_hu is None:
        return list(entries)
    kept = []
    for entry in entries:
        value = entry.get("centre_hu")
        if value is None:
            value = centre_hu(np.asarray(nib.load(entry["image"]).dataobj, np.float64).squeeze())
        if value <= max_centre_hu:
            kept.append(entry)
    if not kept:
        raise BundleInputError(f"no background slice has lung (<= {max_centre_hu} HU) at its centre",
                               field="background_max_centre_hu",
                               hint="raise --background_max_centre_hu, or pass null to use every background")
    return kept


def _slice_descriptors(image: MetaTensor, mask: MetaTensor) -> dict[str, float]:
    """The measured descriptors of one (1, S, S) nodule slice in HU and its mask (spacing from the affine)."""
    affine = np.asarray(image.affine, dtype=np.float64)
    spacing = (float(np.linalg.norm(affine[:3, 0])), float(np.linalg.norm(affine[:3, 1])))
    values = nodule_descriptors(np.asarray(image.detach().cpu()[0], np.float64),
                                np.asarray(mask.detach().cpu()[0]) > 0, spacing)
    return {k: round(v, 6) for k, v in values.items()}


def _check_slice(image: torch.Tensor, image_size: int, pid: str) -> None:
    if tuple(image.shape) != (1, image_size, image_size):
        raise BundleInputError(
            f"patient {pid}: the preprocessing chain gave a slice of shape {tuple(image.shape)}, "
            f"not (1, {image_size}, {image_size})",
            field="image_size",
            hint="give the chains' CropVOId the same image_size as the preparation",
        )


def load_datalist(dataset_dir: str | os.PathLike, image_size: int | None = None) -> dict:
    """The prepared radiogenomic datalist (absolute paths); ``image_size``, when given, must be the prepared one."""
    return datasets.load_datalist(dataset_dir, bundle=BUNDLE, expected={"image_size": image_size})


def run_preparation(
    raw_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    *,
    demo_raw_dir: str | os.PathLike,
    demo_dataset_dir: str | os.PathLike,
    demo_subjects: int | None = None,
    demo_gene_model: str = "default",
    **prepare_kwargs,
) -> dict:
    """The ``preparation`` run id: the demo cohort on the demo path (see :mod:`gan_core.datasets`),
    then :func:`prepare_dataset`. ``demo_gene_model`` "hard" writes the demo cohort whose raw genes do not separate
    the phenotypes (131 patients with genes; ``bundles/phantoms/README.md``); ``demo_subjects`` None keeps the
    gene model's own cohort size."""
    from .demo_cohort import write_demo_cohort

    seed = prepare_kwargs.get("seed", 0)
    raw = datasets.raw_folder(raw_dir, dataset_dir, demo_raw_dir=demo_raw_dir, demo_dataset_dir=demo_dataset_dir,
                              write_demo=lambda path: write_demo_cohort(path, subjects=demo_subjects, seed=seed,
                                                                         gene_model=demo_gene_model),
                              what="<PatientID>/<study>/<series>/*.dcm CT and SEG series and a GEO gene table")
    return prepare_dataset(raw, dataset_dir, **prepare_kwargs)


def slice_descriptors(entries: list[dict]) -> np.ndarray:
    """(N, 7) measured descriptors of prepared nodule slices (their datalist entries), in the order of
    ``scripts.nodules.DESCRIPTORS``; measured from the slice files when an entry lacks them (a dataset
    prepared before the preparation wrote them)."""
    rows = []
    for entry in entries:
        if "descriptors" in entry:
            rows.append(entry["descriptors"])
            continue
        image = nib.load(entry["image"])
        affine = np.asarray(image.affine, dtype=np.float64)
        spacing = (float(np.linalg.norm(affine[:3, 0])), float(np.linalg.norm(affine[:3, 1])))
        rows.append(nodule_descriptors(np.asarray(image.dataobj, np.float64).squeeze(),
                                       np.asarray(nib.load(entry["mask"]).dataobj).squeeze() > 0, spacing))
    return descriptor_matrix(rows)


def training_items(datalist: dict) -> list[dict]:
    """The training slices as training reads them: each prepared entry (image, mask, genes) plus

    - ``patient_index``: the patient's position among the sorted training patient IDs (who is who in a batch,
      for mismatched pairs of different patients and for sampling every patient equally);
    - ``appearance``: (7,) the patient's nodule as measured on its slices: the mean over the patient's training
      slices of each descriptor, standardised with the mean and standard deviation over all training slices.
      Only the training patients' own real images and masks enter; never the hidden phenotype;
    - ``slice_quantile``: [lo, hi], the bounds of the slice's quantile by nodule area among its patient's slices
      (rank r of n, ties in slice order: [r / n, (r + 1) / n]).
    """
    entries = datalist["training"]
    if not entries:
        raise BundleInputError("the prepared dataset has no training slice", path=datalist.get("gene_stats"),
                               field="training", hint="prepare a dataset with at least one training patient")
    values = slice_descriptors(entries)
    finite = np.isfinite(values).all(axis=1)
    mean = values[finite].mean(axis=0) if finite.any() else np.zeros(values.shape[1])
    std = values[finite].std(axis=0) if finite.sum() > 1 else np.ones(values.shape[1])
    standardised = (values - mean) / np.where(std > 1e-9, std, 1.0)
    patients = sorted({e["patient_id"] for e in entries})
    index_of = {p: i for i, p in enumerate(patients)}
    rows = {p: [i for i, e in enumerate(entries) if e["patient_id"] == p] for p in patients}
    items: list[dict] = [{}] * len(entries)
    for pid, members in rows.items():
        usable = [i for i in members if finite[i]]
        appearance = standardised[usable].mean(axis=0) if usable else np.zeros(values.shape[1])
        areas = np.nan_to_num(values[members, 0], nan=0.0)
        ranks = np.empty(len(members), dtype=np.int64)
        ranks[np.argsort(areas, kind="stable")] = np.arange(len(members))
        for i, rank in zip(members, ranks, strict=True):
            e = entries[i]
            items[i] = {"image": e["image"], "mask": e["mask"], "genes": e["genes"], "patient_index": index_of[pid],
                        "appearance": [float(v) for v in appearance],
                        "slice_quantile": [float(rank / len(members)), float((rank + 1) / len(members))]}
    return items


def model_inputs(datalist: dict) -> dict:
    """What inference needs to read a user's input, recorded with the trained generator: the gene names and
    their standardisation statistics (raw GEO profiles are standardised with them), the slice size and HU window."""
    stats = np.load(datalist["gene_stats"])
    return {"gene_names": [str(g) for g in stats["names"]], "gene_mean": stats["mean"].tolist(),
            "gene_std": stats["std"].tolist(), "image_size": int(datalist["image_size"]),
            "hu_window": [-1000.0, 500.0]}
