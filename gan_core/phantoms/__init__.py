"""Demo cohorts written in real file formats (DICOM, DICOM SEG, NIfTI, TSV) from documented generative models."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from gan_core.fileio import atomic_write_text, written_by

DEMO_RECORD = "demo_cohort.json"


def write_demo_record(folder: Path, kind: str, **settings) -> Path:
    """``demo_cohort.json`` in a demo cohort's root: what wrote it, with which settings (``make clean-outputs``
    and a reader of the folder can tell a demo cohort from a user's data)."""
    path = Path(folder) / DEMO_RECORD
    atomic_write_text(json.dumps({"written_by": written_by(kind), "settings": settings}, indent=1), path)
    return path


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """One item of a DICOM code sequence."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def fdg_radiopharmaceutical(start_time: str, dose_bq: float) -> Dataset:
    """One RadiopharmaceuticalInformationSequence item of F-18 FDG (start time HHMMSS, total dose in Bq)."""
    rp = Dataset()
    rp.Radiopharmaceutical = "Fluorodeoxyglucose"
    rp.RadiopharmaceuticalStartTime = start_time
    rp.RadionuclideTotalDose = pydicom.valuerep.format_number_as_ds(float(dose_bq))
    rp.RadionuclideHalfLife = "6586.2"
    rp.RadionuclidePositronFraction = "0.9673"
    rp.RadionuclideCodeSequence = Sequence([_code("77004003", "SCT", "^18^Fluorine")])
    rp.RadiopharmaceuticalCodeSequence = Sequence([_code("35321007", "SCT", "Fluorodeoxyglucose F^18^")])
    return rp
