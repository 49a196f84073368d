"""Demo cohorts written in real file formats (DICOM, DICOM SEG, NIfTI, TSV) from documented generative models."""

from __future__ import annotations

import json
from pathlib import Path

from bundles.fileio import atomic_write_text, written_by

DEMO_RECORD = "demo_cohort.json"


def write_demo_record(folder: Path, kind: str, **settings) -> Path:
    """``demo_cohort.json`` in a demo cohort's root: what wrote it, with which settings (``make clean-outputs``
    and a reader of the folder can tell a demo cohort from a user's data)."""
    path = Path(folder) / DEMO_RECORD
    atomic_write_text(json.dumps({"written_by": written_by(kind), "settings": settings}, indent=1), path)
    return path
