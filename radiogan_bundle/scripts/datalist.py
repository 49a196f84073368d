"""Datalist of PET studies for RadioGAN: folders of PET DICOM series + a labels CSV (patient_id,label)."""

from __future__ import annotations

import csv
import logging
from os import PathLike
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from gan_core.errors import BundleInputError

CLASSES = ("normal", "head_neck", "oesophagus", "lung", "lymphoma")  # label index = position

logger = logging.getLogger(__name__)


def _read_labels(path: Path) -> dict[str, str]:
    """patient_id -> label name; BundleInputError naming the row for a bad or unknown label."""
    if not path.is_file():
        raise BundleInputError("labels CSV not found", path=path, hint="give labels_csv= with columns patient_id,label")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for column in ("patient_id", "label"):
            if column not in columns:
                raise BundleInputError(f"the CSV has no column {column!r} (columns: {columns})", path=path,
                                       field=column, hint="the header must be: patient_id,label")
        labels: dict[str, str] = {}
        for row_number, row in enumerate(reader, start=2):
            patient, label = (row["patient_id"] or "").strip(), (row["label"] or "").strip()
            if not patient:
                raise BundleInputError(f"row {row_number} has an empty patient_id", path=path, field="patient_id",
                                       hint='fill in the patient_id of that row or remove the row')
            if label not in CLASSES:
                raise BundleInputError(f"row {row_number} (patient {patient}): label {label!r} is not one of "
                                       f"{', '.join(CLASSES)}", path=path, field="label",
                                       hint='use one of the five class names')
            if patient in labels:
                raise BundleInputError(f"row {row_number}: patient {patient} is listed twice", path=path,
                                       field="patient_id", hint='keep one row per patient')
            labels[patient] = label
    if not labels:
        raise BundleInputError("the labels CSV has no rows", path=path,
                               hint='add one row per study: patient_id,label')
    return labels


def _pet_series(root: Path) -> dict[str, list[tuple[Path, pydicom.Dataset]]]:
    """PatientID -> [(series folder, header of its first file)] for every folder holding PT DICOM files."""
    found: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()) + [root]:
        files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                       key=lambda p: (p.suffix.lower() != ".dcm", p.name))
        if not files:
            continue
        try:
            header = pydicom.dcmread(files[0], stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError):
            continue
        if str(header.get("Modality", "")) == "PT":
            found.setdefault(str(header.get("PatientID", folder.name)), []).append((folder, header))
    return found


def _choose(patient: str, series: list[tuple[Path, pydicom.Dataset]]) -> Path:
    """The one attenuation-corrected PET series of a patient (a non-corrected NAC series is ignored)."""
    if len(series) > 1:
        corrected = [(f, h) for f, h in series if "ATTN" in list(h.get("CorrectedImage", []) or [])]
        series = corrected or series
    if len(series) > 1:
        raise BundleInputError(f"patient {patient} has {len(series)} attenuation-corrected PET series: "
                               f"{', '.join(str(f) for f, _ in series)}", path=series[0][0],
                               field="SeriesInstanceUID", hint="keep one PET series per patient")
    return series[0][0]


def find_pet_series(folder: str | PathLike) -> Path:
    """The attenuation-corrected PET series folder in ``folder`` (itself, or the one below it, at any depth)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleInputError("folder not found", path=folder, hint='check the path')
    series = [s for group in _pet_series(folder).values() for s in group]
    if not series:
        raise BundleInputError("no PET (Modality PT) DICOM series in this folder", path=folder, field="Modality",
                               hint='point the path at a folder holding a PET DICOM series')
    return _choose(str(series[0][1].get("PatientID", "")), series)


def pet_datalist(root: str | PathLike, labels_csv: str | PathLike | None = None) -> list[dict]:
    """One entry per labelled patient with a PET series.

    Args:
        root: folder of studies (any depth, e.g. ``<root>/<PatientID>/<study>/<series>/*.dcm``); patients are
            matched by the PatientID tag.
        labels_csv: CSV with columns patient_id,label (label one of ``CLASSES``); default ``<root>/labels.csv``.

    Returns:
        ``[{"patient_id", "image": <PET series folder>, "label": int, "label_name": str}]`` sorted by patient.
        Patients without a PET series or without a label are logged and left out. SUV tags are checked when
        the series is loaded (``LoadPETSUVd``), which names the file and tag.

    Raises:
        BundleInputError: missing or empty root, a bad labels CSV (row named), no labelled PET series at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise BundleInputError("PET data folder not found", path=root, hint='pass --raw_dir <folder of PET studies>')
    if not any(root.iterdir()):
        raise BundleInputError("PET data folder is empty", path=root, hint="put one folder per study here")
    labels = _read_labels(Path(labels_csv) if labels_csv is not None else root / "labels.csv")
    series = _pet_series(root)
    if not series:
        raise BundleInputError("no PET (Modality PT) DICOM series under this folder", path=root, field="Modality",
                               hint='put the PET DICOM series (Modality PT) under this folder')
    unlabelled = sorted(set(series) - set(labels))
    if unlabelled:
        logger.warning("PET series without a label (left out): %s", ", ".join(unlabelled))
    no_image = sorted(set(labels) - set(series))
    if no_image:
        logger.warning("labelled patients without a PET series (left out): %s", ", ".join(no_image))
    entries = [{"patient_id": patient, "image": str(_choose(patient, series[patient])),
                "label": CLASSES.index(labels[patient]), "label_name": labels[patient]}
               for patient in sorted(set(series) & set(labels))]
    if not entries:
        raise BundleInputError("no patient has both a label and a PET series", path=root, field="PatientID",
                               hint="patient_id in the CSV must match the PatientID tag of the series")
    return entries


__all__ = ["CLASSES", "find_pet_series", "pet_datalist"]
