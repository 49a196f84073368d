"""The MONAI datalist of CT / label-map slice pairs (``<PatientID>/ct_sNNN.nii.gz`` + ``label_sNNN.nii.gz``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gan_core.errors import BundleInputError
from gan_core.io.nifti import read_nifti

CTSEG_LABELS = (0, 50, 100, 150, 200, 230)


def check_label_map(path, allowed=CTSEG_LABELS) -> np.ndarray:
    """Load a label map and refuse values outside ``allowed``; returns its values as uint8."""
    values, _ = read_nifti(path, "label")
    unknown = sorted(set(np.unique(values).tolist()) - set(allowed))
    if unknown:
        raise BundleInputError(
            f"unknown label value {unknown[0]:g}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
            path=path,
            field="label value",
            hint=f"label maps may hold only {list(allowed)}",
        )
    return values.astype(np.uint8)


def ctseg_datalist(root) -> list[dict]:
    """One entry per CT / label-map slice pair: ``root/<PatientID>/ct_sNNN.nii.gz`` + ``label_sNNN.nii.gz``.

    Returns:
        ``[{"patient_id", "image": ct path, "label": label path}]`` sorted by patient and slice (absolute paths).

    Raises:
        BundleInputError: no such folder, no pair, a CT without its label map (or the reverse), a slice nibabel
            cannot read (every voxel is decoded here, so a truncated file is found before anything is written),
            a size mismatch, or a label value outside {0, 50, 100, 150, 200, 230} (file and value named).
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise BundleInputError("CT / label-map folder not found", path=root,
                               hint='pass --raw_dir <folder of <PatientID>/ct_sNNN.nii.gz + label_sNNN.nii.gz>')
    entries = []
    for patient_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        cts = {m.group(1): p for p in patient_dir.glob("ct_s*.nii*") if (m := re.match(r"ct_s(\d+)\.nii", p.name))}
        labels = {m.group(1): p for p in patient_dir.glob("label_s*.nii*")
                  if (m := re.match(r"label_s(\d+)\.nii", p.name))}
        for key in sorted(set(cts) ^ set(labels)):
            alone = cts.get(key) or labels[key]
            raise BundleInputError("slice without its partner (ct_sNNN / label_sNNN)", path=alone,
                                   hint="every CT slice needs a label map of the same number, and the reverse")
        for key in sorted(cts):
            ct_shape = read_nifti(cts[key], "image")[0].shape
            label_shape = check_label_map(labels[key]).shape
            if ct_shape != label_shape:
                raise BundleInputError(f"label map {label_shape} and CT {ct_shape} differ in size",
                                       path=labels[key], field="shape",
                                       hint='resample the label map onto its CT slice')
            entries.append({"patient_id": patient_dir.name, "image": str(cts[key]), "label": str(labels[key])})
    if not entries:
        raise BundleInputError("no ct_sNNN.nii.gz / label_sNNN.nii.gz pairs found", path=root,
                               hint="layout: <root>/<PatientID>/ct_s000.nii.gz + label_s000.nii.gz")
    return entries
