"""A user's own data with RadioGAN's preparation: an identifier that looks like a path never becomes one."""

import json

import pydicom
import pytest
from bundle_cases import CASE_BY_NAME, prepare_case

from gan_core.io.names import safe_name

RADIOGAN = CASE_BY_NAME["radiogan"]


@pytest.fixture(scope="module")
def traversal_cohort(tmp_path_factory):
    """One PET study whose DICOM PatientID (and label row) is ``../../escaped``."""
    from scripts.demo_cohort import write_demo_cohort

    root = tmp_path_factory.mktemp("traversal")
    raw = write_demo_cohort(root / "raw", subjects=1, seed=5, shape=(12, 8, 40))
    for path in raw.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.PatientID = "../../escaped"
        ds.save_as(path)
    (raw / "labels.csv").write_text("patient_id,label\n../../escaped,normal\n")
    return root, raw


def test_identifiers_become_file_names_only_through_the_sanitiser(traversal_cohort):
    root, raw = traversal_cohort
    dataset = root / "deep" / "prepared"
    prepare_case(RADIOGAN, raw, dataset, heldout_per_class=0)
    written = [p for p in root.rglob("*") if p.is_file() and raw not in p.parents and p.suffix != ".lock"]
    assert written and all(dataset in p.parents or p.parent == dataset.parent for p in written)  # nothing escaped
    assert not (root / "escaped").exists() and not (root.parent / "escaped").exists()
    datalist = json.loads((dataset / "datalist.json").read_text())
    item = datalist["training"][0]
    assert item["patient_id"] == "../../escaped"  # the original ID stays in the datalist
    assert item["image"] == f"images/{safe_name('../../escaped')}.nii.gz" and ".." not in item["image"]
