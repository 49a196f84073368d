"""scripts.datalist on the TCIA layout: CT (not PET) chosen, who lacks what reported, bad inputs named."""

import logging
import shutil

import pytest
from scripts.datalist import nsclc_datalist
from scripts.demo_cohort import write_demo_cohort

from gan_core.errors import BundleInputError


@pytest.fixture(scope="module")
def nsclc(tmp_path_factory):
    # Six patients: the sixth also has a PET series in its study.
    return write_demo_cohort(tmp_path_factory.mktemp("nsclc") / "raw", subjects=6, n_genes=20, size=64)


def test_nsclc_picks_ct_not_pet(nsclc):
    entries, skipped = nsclc_datalist(nsclc)
    assert [e["patient_id"] for e in entries] == [f"R01-00{i}" for i in range(1, 7)] and not skipped
    pet_study = next(nsclc.glob("R01-006/*/4.000000-PET*")).parent
    sixth = entries[5]
    assert "THORAX" in sixth["image"] and sixth["image"].startswith(str(pet_study))
    assert sixth["seg"].endswith("1-1.dcm") and "Segmentation" in sixth["seg"]


def test_nsclc_reports_missing_seg_and_genes(nsclc, tmp_path, caplog):
    raw = tmp_path / "raw"
    shutil.copytree(nsclc, raw)
    shutil.rmtree(next(raw.glob("R01-002/*/1000.000000-*")))
    lines = (raw / "genes.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    keep = [i for i, name in enumerate(header) if name != "R01-003"]
    genes = tmp_path / "genes.tsv"
    genes.write_text("\n".join("\t".join(line.split("\t")[i] for i in keep) for line in lines) + "\n")
    with caplog.at_level(logging.WARNING):
        entries, skipped = nsclc_datalist(raw, genes)
    assert [e["patient_id"] for e in entries] == ["R01-001", "R01-004", "R01-005", "R01-006"]
    assert "lack SEG: R01-002" in caplog.text and "lack genes: R01-003" in caplog.text
    reasons = {s["patient_id"]: s["reason"] for s in skipped}
    assert set(reasons) == {"R01-002", "R01-003"}
    assert "no DICOM SEG series" in reasons["R01-002"] and "no column in the gene table" in reasons["R01-003"]


def test_nsclc_gene_table_without_common_patients(nsclc, tmp_path):
    genes = tmp_path / "genes.tsv"
    genes.write_text("gene\tX-1\tX-2\nTP53\t1\t2\n")
    with pytest.raises(BundleInputError) as err:
        nsclc_datalist(nsclc, genes)
    assert err.value.path == str(genes) and "no patient in common" in err.value.problem


def test_nsclc_non_dicom_file_named(nsclc, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(nsclc, raw)
    series = next(raw.glob("R01-001/*/3.000000-*"))
    (series / "0-000.txt").write_text("notes")
    with pytest.raises(BundleInputError) as err:
        nsclc_datalist(raw)
    assert err.value.path == str(series / "0-000.txt")


def test_nsclc_a_truncated_seg_is_named_in_the_skip_reason(nsclc, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(nsclc, raw)
    seg = next(raw.glob("R01-002/*/1000.000000-*/1-1.dcm"))
    seg.write_bytes(seg.read_bytes()[:500])  # the header stops before Modality: not SEG, not CT
    entries, skipped = nsclc_datalist(raw)
    assert "R01-002" not in [e["patient_id"] for e in entries]
    (reason,) = [s["reason"] for s in skipped if s["patient_id"] == "R01-002"]
    assert str(seg) in reason and "truncated" in reason
