"""scripts.datalist on CT / label-map pairs: pairs found, unknown label values and missing partners named."""

import shutil

import nibabel as nib
import numpy as np
import pytest
from scripts.datalist import ctseg_datalist
from scripts.demo_cohort import write_demo_cohort

from gan_core.errors import BundleInputError


@pytest.fixture(scope="module")
def ctseg(tmp_path_factory):
    return write_demo_cohort(tmp_path_factory.mktemp("ctseg") / "raw", subjects=2, slices_per_subject=2, size=32)


def test_ctseg_pairs(ctseg):
    entries = ctseg_datalist(ctseg)
    assert len(entries) == 4 and entries[0]["patient_id"] == "CT-001"
    assert entries[1]["image"].endswith("CT-001/ct_s001.nii.gz") and entries[1]["label"].endswith("label_s001.nii.gz")


def test_ctseg_unknown_label_value_and_missing_partner(ctseg, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(ctseg, root)
    bad = root / "CT-002" / "label_s001.nii.gz"
    label = nib.load(bad)
    values = np.asarray(label.dataobj).copy()
    values[3, 4] = 120
    nib.save(nib.Nifti1Image(values, label.affine), bad)
    with pytest.raises(BundleInputError) as err:
        ctseg_datalist(root)
    assert err.value.path == str(bad) and "120" in err.value.problem
    bad.unlink()
    with pytest.raises(BundleInputError) as err:
        ctseg_datalist(root)
    assert err.value.path == str(root / "CT-002" / "ct_s001.nii.gz")
