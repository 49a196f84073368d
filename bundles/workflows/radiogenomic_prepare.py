"""Radiogenomic preparation: TCIA-style CT + SEG tree and a GEO gene table -> 2D nodule / background dataset.

Per patient (``bundles.io.datalists.nsclc_datalist``: CT series, SEG, gene column), two MONAI ``Compose``
chains run on ``{"image": CT MetaTensor (1, X, Y, Z) HU, "mask": nodule MetaTensor (1, X, Y, Z) uint8}``:

- nodule chain (:func:`build_nodule_chain`): 60 mm VOI on the nodule centroid, HU clipped to [-1000, 500],
  one 2D item per axial slice that contains nodule;
- background chain (:func:`build_background_chain`): lung mask, centres 5-25 mm inside the lung away from the
  nodule, a 60 mm VOI per centre, HU clipped, ``slices_per_background`` random axial slices per VOI.

Both are declared in ``radiogenomic_bundle/configs/prepare.json`` and passed in; the defaults here build the
same chains. Genes: patients without a nodule slice dropped, genes with any NA in the table removed (the paper's
5172), genes constant over the training patients removed, each gene z-scored with the training
patients' mean and standard deviation (saved, so a new profile is standardised the same way:
:func:`standardise_genes`). Validation = held-out patients.

Prepared dataset (written to ``<dataset_dir>.partial`` then renamed)::

    images/<pid>_sNNN.nii.gz        (S, S) float32 HU in [-1000, 500], full 4x4 RAS affine of the slice
    masks/<pid>_sNNN.nii.gz         (S, S) uint8 {0, 1}, same affine
    backgrounds/<pid>_vV_sNNN.nii.gz  (S, S) float32 HU, nodule-free
    genes/<pid>.npy                 (G,) float32 standardised expression
    gene_names.txt                  G lines, the order of the vectors
    gene_stats.npz                  mean (G,), std (G,) float64 (raw units), names (G,)
    datalist.json                   {"training": [...], "validation": [...], "backgrounds": [... + "split"],
                                     "gene_names", "gene_stats", "num_genes", "image_size", "settings", "skipped"}
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from tqdm import tqdm

from bundles.errors import BundleInputError
from bundles.fileio import atomic_path, atomic_write_text, replace_dir
from bundles.io.datalists import nsclc_datalist
from bundles.io.dicom_series import read_series
from bundles.io.genes import GeneTable, read_gene_table
from bundles.io.seg import read_seg
from bundles.transforms.intensity import ClipHUd
from bundles.transforms.lung import LungMaskd, RandBackgroundCentersd
from bundles.transforms.voi import CropVOId, NoduleSlicesd, RandAxialSlicesd

logger = logging.getLogger(__name__)

DATALIST = "datalist.json"


def build_nodule_chain(
    image_size: int = 128, voi_mm: float = 60.0, slice_spacing_mm: float | None = None
) -> Compose:
    """CT + nodule mask (1, X, Y, Z) -> list of 2D items {"image" (1, S, S) HU, "mask" (1, S, S), "slice_index"}."""
    return Compose(
        [
            CropVOId(
                keys=["image", "mask"],
                mask_key="mask",
                size_mm=voi_mm,
                image_size=image_size,
                slice_spacing_mm=slice_spacing_mm,
            ),
            ClipHUd(keys="image"),
            NoduleSlicesd(keys=["image", "mask"], mask_key="mask"),
        ]
    )


def build_background_chain(
    image_size: int = 128,
    voi_mm: float = 60.0,
    slice_spacing_mm: float | None = None,
    backgrounds_per_patient: int = 2,
    slices_per_background: int = 20,
    min_mm: float = 5.0,
    max_mm: float = 25.0,
    nodule_margin_mm: float = 5.0,
) -> Compose:
    """CT + nodule mask (1, X, Y, Z) -> list (per VOI) of lists of 2D items {"image" (1, S, S) HU,
    "voi_center_mm", "slice_index"}; randomness from ``set_random_state``."""
    return Compose(
        [
            LungMaskd(image_key="image", lung_key="lung"),
            RandBackgroundCentersd(
                lung_key="lung",
                mask_key="mask",
                num_centers=backgrounds_per_patient,
                min_mm=min_mm,
                max_mm=max_mm,
                voi_mm=voi_mm,
                nodule_margin_mm=nodule_margin_mm,
            ),
            CropVOId(
                keys="image",
                center_key="voi_center_mm",
                size_mm=voi_mm,
                image_size=image_size,
                slice_spacing_mm=slice_spacing_mm,
            ),
            ClipHUd(keys="image"),
            RandAxialSlicesd(keys="image", num_slices=slices_per_background),
        ],
        map_items=2,
    )


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


def standardise_genes(values: np.ndarray, gene_names: list[str], stats_path: str | os.PathLike) -> np.ndarray:
    """Raw expression profiles -> standardised vectors in the prepared dataset's gene order.

    Args:
        values: (n_genes, n_profiles) raw values, rows named by ``gene_names`` (e.g. a ``GeneTable``).
        stats_path: the dataset's ``gene_stats.npz``.

    Returns:
        (n_profiles, G) float32.

    Raises:
        BundleInputError: a gene of the dataset missing from ``gene_names`` or NA in a profile.
    """
    stats = np.load(stats_path)
    index = {g: i for i, g in enumerate(gene_names)}
    missing = [g for g in stats["names"] if g not in index]
    if missing:
        raise BundleInputError(
            f"{len(missing)} genes of the training set are missing, e.g. {missing[:5]}",
            path=stats_path,
            field="gene_names",
            hint="give a profile with every trained gene",
        )
    rows = np.asarray(values, dtype=np.float64)[[index[g] for g in stats["names"]]]
    if np.isnan(rows).any():
        bad = [str(g) for g, r in zip(stats["names"], rows, strict=True) if np.isnan(r).any()]
        raise BundleInputError(
            f"NA in {len(bad)} trained genes, e.g. {bad[:5]}",
            path=stats_path,
            field="genes",
            hint="the generator needs every trained gene measured",
        )
    return ((rows - stats["mean"][:, None]) / stats["std"][:, None]).T.astype(np.float32)


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
            hint="pass genes_path=<GSE103584_R01_NSCLC_RNAseq.txt.gz>",
        )
    return found[0]


def prepare_dataset(
    raw_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    genes_path: str | os.PathLike | None = None,
    *,
    image_size: int = 128,
    voi_mm: float = 60.0,
    slice_spacing_mm: float | None = None,
    backgrounds_per_patient: int = 2,
    slices_per_background: int = 20,
    validation_fraction: float = 0.2,
    seed: int = 0,
    nodule_chain: Callable | None = None,
    background_chain: Callable | None = None,
) -> dict:
    """Prepare the 2D radiogenomic dataset (layout in the module docstring); replaces ``dataset_dir``.

    Args:
        raw_dir: TCIA-style tree ``<PatientID>/<study>/<series>/*.dcm`` with CT and SEG series.
        genes_path: GEO table (tab-separated, patient IDs in the first row); default ``raw_dir/genes.tsv``.
        image_size, voi_mm, slice_spacing_mm, backgrounds_per_patient, slices_per_background: build the default
            chains when ``nodule_chain`` / ``background_chain`` are not given (see :func:`build_nodule_chain`,
            :func:`build_background_chain`); ``image_size`` is also checked against the chains' output.
        validation_fraction: share of patients held out (at least one when there are two or more).
        seed: split and background sampling (per patient, so a patient's backgrounds do not depend on the others).

    Returns:
        The datalist (absolute paths), also written to ``dataset_dir/datalist.json``.

    Raises:
        BundleInputError: no patient with CT, SEG and genes; no patient left after skipping unreadable ones; no
            usable gene. A patient whose CT or SEG is unreadable, or whose SEG is empty, is skipped with a warning.
    """
    raw_dir, dataset_dir = Path(raw_dir).resolve(), Path(dataset_dir).resolve()
    genes_path = _default_genes_path(raw_dir) if genes_path is None else Path(genes_path)
    nodule_chain = nodule_chain or build_nodule_chain(image_size, voi_mm, slice_spacing_mm)
    background_chain = background_chain or build_background_chain(
        image_size, voi_mm, slice_spacing_mm, backgrounds_per_patient, slices_per_background
    )
    table = read_gene_table(genes_path)
    entries = nsclc_datalist(raw_dir, genes_path)  # only patients with CT, SEG and a gene column

    partial = dataset_dir.with_name(dataset_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for sub in ("images", "masks", "backgrounds", "genes"):
        (partial / sub).mkdir(parents=True)
    nodules: dict[str, list[dict]] = {}
    backgrounds: list[dict] = []
    skipped: list[dict] = []

    def final(path: Path) -> str:
        return str(dataset_dir / path.relative_to(partial))

    try:
        for entry in tqdm(entries, desc="radiogenomic preparation", unit="patient"):
            pid = entry["patient_id"]
            try:
                data = load_patient(entry)
                nodule_items = nodule_chain(data)
            except BundleInputError as err:
                logger.warning("skipping patient %s: %s", pid, err)
                skipped.append({"patient_id": pid, "reason": str(err)})
                continue
            if not nodule_items:
                logger.warning("skipping patient %s: the SEG holds no nodule voxel inside the VOI", pid)
                skipped.append({"patient_id": pid, "reason": "no nodule slice"})
                continue
            try:
                if hasattr(background_chain, "set_random_state"):
                    background_chain.set_random_state(seed=_patient_seed(seed, pid))
                background_items = [s for voi in background_chain(data) for s in voi]
            except BundleInputError as err:
                logger.warning("patient %s: no background slices: %s", pid, err)
                background_items = []
            if not background_items:
                logger.warning(
                    "patient %s: no room in the lungs for a nodule-free %g mm background VOI", pid, voi_mm
                )
            nodules[pid] = []
            for item in nodule_items:
                k = item["slice_index"]
                _check_slice(item["image"], image_size, pid)
                image_path, mask_path = (
                    partial / "images" / f"{pid}_s{k:03d}.nii.gz",
                    partial / "masks" / f"{pid}_s{k:03d}.nii.gz",
                )
                _save_slice(item["image"], image_path, np.float32)
                _save_slice(item["mask"], mask_path, np.uint8)
                nodules[pid].append(
                    {
                        "patient_id": pid,
                        "image": final(image_path),
                        "mask": final(mask_path),
                        "slice_index": k,
                    }
                )
            voi_index = -1
            last_center = None
            for item in background_items:
                if item["voi_center_mm"] != last_center:
                    voi_index, last_center = voi_index + 1, item["voi_center_mm"]
                _check_slice(item["image"], image_size, pid)
                path = partial / "backgrounds" / f"{pid}_v{voi_index}_s{item['slice_index']:03d}.nii.gz"
                _save_slice(item["image"], path, np.float32)
                backgrounds.append(
                    {
                        "patient_id": pid,
                        "image": final(path),
                        "voi_center_mm": item["voi_center_mm"],
                        "slice_index": item["slice_index"],
                    }
                )
        if not nodules:
            raise BundleInputError(
                "no patient could be prepared",
                path=raw_dir,
                field="patients",
                hint=f"reasons: {[s['reason'] for s in skipped][:3]}",
            )

        patient_ids = sorted(nodules)
        training_ids, validation_ids = _split(patient_ids, validation_fraction, seed)
        if len(training_ids) < 2:
            raise BundleInputError(
                f"{len(training_ids)} training patient(s) after holding out {len(validation_ids)}: the genes "
                "cannot be standardised (a z-score needs two patients or more)",
                path=raw_dir,
                field="validation_fraction",
                hint="add patients (demo_subjects) or lower validation_fraction",
            )
        names, standardised, mean, std = _gene_matrix(table, patient_ids, training_ids, genes_path)
        gene_files = {}
        for pid, vector in zip(patient_ids, standardised, strict=True):
            with atomic_path(partial / "genes" / f"{pid}.npy") as tmp:
                np.save(tmp, vector)
            gene_files[pid] = str(dataset_dir / "genes" / f"{pid}.npy")
        atomic_write_text("\n".join(names) + "\n", partial / "gene_names.txt")
        with atomic_path(partial / "gene_stats.npz") as tmp:
            np.savez(tmp, mean=mean, std=std, names=np.asarray(names))

        def items(ids: list[str]) -> list[dict]:
            return [{**it, "genes": gene_files[pid]} for pid in ids for it in nodules[pid]]

        datalist = {
            "training": items(training_ids),
            "validation": items(validation_ids),
            "backgrounds": [
                {**b, "split": "validation" if b["patient_id"] in validation_ids else "training"}
                for b in backgrounds
            ],
            "gene_names": str(dataset_dir / "gene_names.txt"),
            "gene_stats": str(dataset_dir / "gene_stats.npz"),
            "num_genes": len(names),
            "image_size": int(image_size),
            "settings": {
                "raw_dir": str(raw_dir),
                "genes_path": str(genes_path),
                "voi_mm": voi_mm,
                "seed": seed,
                "validation_fraction": validation_fraction,
            },
            "skipped": skipped,
        }
        atomic_write_text(json.dumps(datalist, indent=1), partial / DATALIST)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_dir(partial, dataset_dir)
    logger.info(
        "prepared %s: %d training and %d validation nodule slices (%d + %d patients), %d backgrounds, %d genes",
        dataset_dir,
        len(datalist["training"]),
        len(datalist["validation"]),
        len(training_ids),
        len(validation_ids),
        len(backgrounds),
        len(names),
    )
    return datalist


def _check_slice(image: torch.Tensor, image_size: int, pid: str) -> None:
    if tuple(image.shape) != (1, image_size, image_size):
        raise BundleInputError(
            f"patient {pid}: the preprocessing chain gave a slice of shape {tuple(image.shape)}, "
            f"not (1, {image_size}, {image_size})",
            field="image_size",
            hint="give the chains' CropVOId the same image_size as the preparation",
        )


def load_datalist(dataset_dir: str | os.PathLike) -> dict:
    """Read ``dataset_dir/datalist.json``; BundleInputError when it is missing or not a radiogenomic datalist."""
    path = Path(dataset_dir) / DATALIST
    if not path.is_file():
        raise BundleInputError(
            "prepared datalist not found",
            path=path,
            hint="run the preparation (prepare.json) or point dataset_dir at a prepared dataset",
        )
    datalist = json.loads(path.read_text())
    for key in ("training", "validation", "backgrounds", "gene_names", "num_genes", "image_size"):
        if key not in datalist:
            raise BundleInputError("not a radiogenomic datalist", path=path, field=key)
    return datalist


def ensure_prepared(
    raw_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    *,
    demo_subjects: int = 24,
    seed: int = 0,
    overwrite: bool = False,
    **prepare_kwargs,
) -> dict:
    """Return the prepared datalist, creating what is missing first.

    When ``raw_dir`` does not exist the demo cohort (``bundles.phantoms.nsclc.write_nsclc_cohort``,
    ``demo_subjects`` patients) is written there; when ``dataset_dir/datalist.json`` is missing, was prepared
    for another ``image_size``, or ``overwrite`` is set, :func:`prepare_dataset` runs with ``prepare_kwargs``.
    """
    raw_dir, dataset_dir = Path(raw_dir), Path(dataset_dir)
    if not raw_dir.exists():
        from bundles.phantoms.nsclc import write_nsclc_cohort

        logger.warning(
            "raw folder %s does not exist: writing the demo NSCLC cohort (%d subjects, seed %d) there",
            raw_dir,
            demo_subjects,
            seed,
        )
        write_nsclc_cohort(raw_dir, subjects=demo_subjects, seed=seed)
    if not overwrite and (dataset_dir / DATALIST).is_file():
        datalist = load_datalist(dataset_dir)
        wanted = int(prepare_kwargs.get("image_size", datalist["image_size"]))
        if datalist["image_size"] == wanted:
            logger.info("using the prepared dataset in %s", dataset_dir)
            return datalist
        logger.warning(
            "%s was prepared at %d px, %d px wanted: preparing again",
            dataset_dir,
            datalist["image_size"],
            wanted,
        )
    else:
        logger.info("preparing %s from %s", dataset_dir, raw_dir)
    return prepare_dataset(raw_dir, dataset_dir, seed=seed, **prepare_kwargs)
