"""Demo cohort for CT generation from six-label maps: axial chest CT slices + label maps, NIfTI and DICOM.

Tree written by :func:`write_demo_cohort`::

    <out>/<PatientID>/ct_sNNN.nii.gz      (S, S) float32 HU, full 4x4 RAS affine of that slice
    <out>/<PatientID>/label_sNNN.nii.gz   (S, S) uint8 in {0, 50, 100, 150, 200, 230} (see ``chest.LABELS``)
    <out>/<PatientID>/dicom/1-NNN.dcm     the same CT slices as one DICOM series

Patients differ in body size, fat, lung size and heart position and size (``chest.make_chest``: content),
and in scanner style: noise 8-40 HU, blur 0.5-1.0 px and noise grain 0.4-1.0 px per patient (style).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.uid import generate_uid

from gan_core.errors import BundleInputError
from gan_core.fileio import atomic_dir, atomic_path
from gan_core.io.dicom_series import write_series
from gan_core.phantoms import write_demo_record
from gan_core.phantoms.chest import finish, make_chest
from gan_core.phantoms.parallel import map_patients

FIELD_OF_VIEW_MM = 340.0
SLICE_SPACING_MM = 5.0


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(image, tmp)


def _patient(out: Path, pid: str, index: int, seed: int, size: int, slices: int) -> None:
    rng = np.random.default_rng([seed, 3, index])
    spacing = (FIELD_OF_VIEW_MM / size, FIELD_OF_VIEW_MM / size, SLICE_SPACING_MM)
    chest = make_chest(rng, (size, size, slices), spacing)
    # each patient's own scanner style (dose and reconstruction kernel), so style differs between patients
    style = {"noise_hu": rng.uniform(8.0, 40.0), "blur_px": rng.uniform(0.5, 1.0), "grain_px": rng.uniform(0.4, 1.0)}
    hu = np.round(finish(chest.hu, rng, **style)).astype(np.float32)
    folder = out / pid
    folder.mkdir(parents=True)
    for k in range(slices):
        affine = chest.affine.copy()
        affine[:3, 3] += k * affine[:3, 2]  # the slice's own origin; the z column keeps the slice spacing
        _save_nifti(hu[:, :, k], affine, folder / f"ct_s{k:03d}.nii.gz")
        _save_nifti(chest.labels[:, :, k], affine, folder / f"label_s{k:03d}.nii.gz")
    study_uid = generate_uid(entropy_srcs=["ctseg", str(seed), pid, "study"])
    write_series(hu, chest.affine, folder / "dicom", lock=False, modality="CT", patient_id=pid, study_uid=study_uid,
                 series_description="CHEST AXIAL", dataset_tags={"RescaleSlope": 1, "RescaleIntercept": -1024})


def write_demo_cohort(out_dir, subjects: int = 12, slices_per_subject: int = 20, size: int = 256,
                       seed: int = 0, workers: int | None = None) -> Path:
    """Write the ctseg demo cohort (deterministic for ``seed``) into ``out_dir`` (absent or empty).

    Args:
        subjects: patients ``CT-001`` ...; slices_per_subject: axial slices 5 mm apart through the chest.
        size: in-plane matrix S over a 340 mm field of view.
        workers: processes writing patients (default up to 4); the output does not depend on it.
    """
    out_dir = Path(out_dir)
    if subjects < 1 or slices_per_subject < 1:
        raise BundleInputError("subjects and slices_per_subject must be at least 1", field="subjects",
                               hint="pass at least one subject and one slice")
    with atomic_dir(out_dir, record=None, setting="out_dir") as work:
        calls = [(work, f"CT-{i + 1:03d}", i, seed, size, slices_per_subject) for i in range(subjects)]
        map_patients(_patient, calls, workers, "ctseg")
        write_demo_record(work, "ctseg demo cohort", subjects=subjects, slices_per_subject=slices_per_subject,
                          size=size, seed=seed)
    return out_dir
