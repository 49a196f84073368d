"""The MONAI datalist of a TCIA NSCLC Radiogenomics tree (CT series + DICOM SEG per patient) and its GEO gene table."""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom

from gan_core.errors import BundleInputError

from .genes import read_gene_table

logger = logging.getLogger(__name__)


def _first_header(series_dir: Path) -> tuple[Path, pydicom.Dataset] | None:
    """The first DICOM file of a folder and its header (no pixels); None for a folder without files."""
    files = sorted(p for p in series_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        return None
    try:
        return files[0], pydicom.dcmread(files[0], stop_before_pixels=True)
    except Exception as err:  # pydicom raises several types for non-DICOM or truncated files
        raise BundleInputError(f"not a readable DICOM file ({type(err).__name__}: {err})", path=files[0],
                               field="File Meta Information", hint="remove non-DICOM files from the tree") from err


def _patient_series(patient_dir: Path) -> tuple[dict[str, Path], list[tuple[Path, pydicom.Dataset]], list[Path]]:
    """CT series folders by SeriesInstanceUID, the SEG files (path, header), and the first files whose header
    ends before its Modality (truncated), below one patient folder."""
    cts: dict[str, Path] = {}
    segs: list[tuple[Path, pydicom.Dataset]] = []
    truncated: list[Path] = []
    for series_dir in sorted(p for p in patient_dir.glob("*/*") if p.is_dir()):
        first = _first_header(series_dir)
        if first is None:
            continue
        path, header = first
        modality = str(header.get("Modality", ""))
        if modality == "CT":
            cts[str(header.get("SeriesInstanceUID", ""))] = series_dir
        elif modality == "SEG":
            segs.append((path, header))
        elif "Modality" not in header:
            truncated.append(path)
    return cts, segs, truncated


def nsclc_datalist(raw_dir, genes_path=None) -> tuple[list[dict], list[dict]]:
    """One entry per patient who has a CT series, a SEG of it and (when a gene table is given) a gene column.

    Layout: ``raw_dir/<PatientID>/<study>/<series>/*.dcm`` (TCIA). The CT series is chosen by Modality (PET and
    other series are skipped); with several CT series, the one the SEG references. Patients lacking the image,
    the SEG or genes are reported in the log.

    Args:
        raw_dir: the TCIA tree.
        genes_path: GEO table (first row = patient IDs); ``raw_dir/genes.tsv`` when None and that file exists.

    Returns:
        (entries ``[{"patient_id", "image": CT series folder, "seg": SEG file}]`` sorted by patient ID, with
        absolute paths; skipped patients ``[{"patient_id", "reason"}]``).

    Raises:
        BundleInputError: no such folder, a gene table with no patient in common with the images, or no patient
            with everything.
    """
    raw_dir = Path(raw_dir).resolve()
    if not raw_dir.is_dir():
        raise BundleInputError("NSCLC folder not found", path=raw_dir, hint="give the TCIA NSCLC-Radiogenomics folder")
    if genes_path is None and (raw_dir / "genes.tsv").is_file():
        genes_path = raw_dir / "genes.tsv"
    gene_ids = None if genes_path is None else set(read_gene_table(genes_path).patient_ids)

    entries, lacking, skipped = [], {"image": [], "SEG": [], "genes": []}, []
    patients = sorted(p for p in raw_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for patient_dir in patients:
        pid = patient_dir.name
        cts, segs, truncated = _patient_series(patient_dir)
        reasons = []
        damaged = [f"{path}: a DICOM header without Modality (a truncated file?), copy that series again"
                   for path in truncated]
        if gene_ids is not None and pid not in gene_ids:
            lacking["genes"].append(pid)
            reasons.append(f"no column in the gene table {genes_path}")
        if not segs:
            lacking["SEG"].append(pid)
            reasons.append(f"no DICOM SEG series under {patient_dir}")
            if not cts:
                lacking["image"].append(pid)
                reasons.append("no CT series")
            skipped.append({"patient_id": pid, "reason": "; ".join(reasons + damaged)})
            continue
        seg_path, seg = segs[0]
        if len(segs) > 1:
            logger.warning("%s: %d SEG series, using %s", pid, len(segs), seg_path)
        referenced = [str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])]
        image = next((cts[uid] for uid in referenced if uid in cts), None)
        if image is None and not referenced and len(cts) == 1:
            image = next(iter(cts.values()))
        if image is None:
            lacking["image"].append(pid)
            reasons.append(f"no CT series that the SEG {seg_path.name} references")
        if reasons:
            skipped.append({"patient_id": pid, "reason": "; ".join(reasons + damaged)})
            continue
        entries.append({"patient_id": pid, "image": str(image), "seg": str(seg_path)})

    for what, who in lacking.items():
        if who:
            logger.warning("%d patient(s) lack %s: %s", len(who), what, ", ".join(who))
    if gene_ids is not None and not gene_ids & {p.name for p in patients}:
        raise BundleInputError(
            f"the gene table has no patient in common with the {len(patients)} image folders",
            path=genes_path,
            field="patient IDs (first row)",
            hint=f"the first row must hold the PatientIDs used as folder names in {raw_dir} (e.g. R01-001)",
        )
    if not entries:
        raise BundleInputError("no patient has a CT series, a SEG and genes", path=raw_dir,
                               hint="check the tree layout <PatientID>/<study>/<series>/*.dcm")
    logger.info("nsclc datalist: %d of %d patients complete", len(entries), len(patients))
    return entries, skipped
