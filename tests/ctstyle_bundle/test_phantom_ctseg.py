"""The ctseg demo cohort read back with nibabel and pydicom: pairs, affines, label values, HU per label,
the DICOM copy, and anatomy that differs between patients."""

import json

import nibabel as nib
import numpy as np
import pytest
from scripts.demo_cohort import write_demo_cohort

from gan_core.errors import BundleInputError
from gan_core.io.dicom_series import read_series
from gan_core.phantoms.chest import LABELS

SIZE, SLICES = 256, 3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_demo_cohort(tmp_path_factory.mktemp("ctseg") / "raw", subjects=3, slices_per_subject=SLICES,
                              size=SIZE, seed=0)


def test_pairs_affines_and_labels(cohort):
    patients = sorted(p.name for p in cohort.iterdir() if p.is_dir())
    assert patients == ["CT-001", "CT-002", "CT-003"]
    record = json.loads((cohort / "demo_cohort.json").read_text())
    assert record["written_by"]["kind"] == "ctseg demo cohort" and record["settings"]["subjects"] == 3
    for pid in patients:
        for k in range(SLICES):
            ct = nib.load(cohort / pid / f"ct_s{k:03d}.nii.gz")
            label = nib.load(cohort / pid / f"label_s{k:03d}.nii.gz")
            assert ct.shape == label.shape == (SIZE, SIZE)
            assert ct.get_data_dtype() == np.float32 and label.get_data_dtype() == np.uint8
            np.testing.assert_array_equal(ct.affine, label.affine)
            assert ct.affine.shape == (4, 4) and ct.affine[2, 2] == 5.0
            assert set(np.unique(np.asarray(label.dataobj)).tolist()) <= set(LABELS)


def test_hu_per_label_and_dicom_copy(cohort):
    for pid in ("CT-001", "CT-002"):
        hu = np.stack([np.asarray(nib.load(cohort / pid / f"ct_s{k:03d}.nii.gz").dataobj) for k in range(SLICES)], -1)
        labels = np.stack([np.asarray(nib.load(cohort / pid / f"label_s{k:03d}.nii.gz").dataobj)
                           for k in range(SLICES)], -1)
        assert set(np.unique(labels).tolist()) == set(LABELS)  # all six structures appear
        assert np.median(hu[labels == 0]) == pytest.approx(-1000, abs=30)
        assert np.median(hu[labels == 100]) == pytest.approx(-850, abs=60)
        assert -150 < np.median(hu[labels == 50]) < 80
        assert 0 < np.median(hu[labels == 150]) < 90
        assert np.median(hu[labels == 200]) > 200
        assert -40 < np.median(hu[labels == 230]) < 120
        series = read_series(cohort / pid / "dicom")
        np.testing.assert_array_equal(series.volume, hu)  # integer HU, slope 1
        first = nib.load(cohort / pid / "ct_s000.nii.gz").affine
        np.testing.assert_allclose(series.affine, first, atol=1e-4)
        assert series.headers[0].Modality == "CT" and series.headers[0].PatientID == pid


def test_patients_differ_in_anatomy(cohort):
    body, lung, heart_x = [], [], []
    for pid in ("CT-001", "CT-002", "CT-003"):
        labels = np.asarray(nib.load(cohort / pid / "label_s000.nii.gz").dataobj)
        body.append((labels > 0).sum())
        lung.append((labels == 100).sum())
        heart_x.append(np.argwhere(labels == 150)[:, 0].mean())
    assert np.std(body) / np.mean(body) > 0.03 and np.std(lung) / np.mean(lung) > 0.03
    assert np.ptp(heart_x) > 1


def test_refuses_non_empty_output(cohort):
    with pytest.raises(BundleInputError) as err:
        write_demo_cohort(cohort, subjects=1)
    assert err.value.path == str(cohort)
