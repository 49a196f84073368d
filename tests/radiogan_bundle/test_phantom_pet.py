"""PET demo cohort read back with pydicom / nibabel: tags, geometry, SUV of every vendor variant, datalist, tool."""

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.data import MetaTensor
from scripts.datalist import CLASSES, pet_datalist
from scripts.demo_cohort import VARIANTS, simulate_pet_suv, write_demo_cohort
from scripts.transforms import LoadPETSUV, LoadPETSUVd

from gan_core.errors import BundleInputError
from gan_core.io.dicom_series import read_series, write_series

SHAPE = (24, 16, 40)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Eight small studies: every vendor variant once, all five classes."""
    return write_demo_cohort(tmp_path_factory.mktemp("pet") / "cohort", subjects=len(VARIANTS), seed=3, shape=SHAPE)


def _studies(root: Path) -> list[dict]:
    with open(root / "truth" / "studies.csv") as f:
        return list(csv.DictReader(f))


def test_layout_labels_and_truth(cohort):
    rows = _studies(cohort)
    assert [r["variant"] for r in rows] == list(VARIANTS)
    with open(cohort / "labels.csv") as f:
        labels = list(csv.DictReader(f))
    assert [r["patient_id"] for r in labels] == [f"PET-{i:03d}" for i in range(1, 9)]
    assert {r["label"] for r in labels} == set(CLASSES)
    assert not (cohort.parent / "cohort.partial").exists()
    for row in rows:
        files = sorted((cohort / row["series_dir"]).glob("*.dcm"))
        assert len(files) == SHAPE[2]
        assert Path(row["series_dir"]).parts[0] == row["patient_id"]
        truth = nib.load(cohort / "truth" / f"{row['patient_id']}_suv.nii.gz")
        assert truth.shape == SHAPE and truth.get_data_dtype() == np.float32


def test_dicom_tags_of_every_variant(cohort):
    for row in _studies(cohort):
        files = sorted((cohort / row["series_dir"]).glob("*.dcm"))
        slices = [pydicom.dcmread(f) for f in files]
        ds = slices[0]
        variant = row["variant"]
        assert ds.Modality == "PT" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.128"
        assert ds.Units == ("CNTS" if variant.startswith("philips") else "BQML")
        assert list(ds.CorrectedImage) == ["ATTN", "DECY"]
        assert ds.DecayCorrection == ("ADMIN" if variant == "admin" else "START")
        assert float(ds.PatientWeight) == float(row["weight_kg"])
        rp = ds.RadiopharmaceuticalInformationSequence[0]
        assert float(rp.RadionuclideTotalDose) == float(row["dose_bq"])
        assert float(rp.RadionuclideHalfLife) == 6586.2
        assert ("RadiopharmaceuticalStartDateTime" in rp) == (variant != "midnight_tm")
        assert all(k in ds for k in ("SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime"))
        assert [float(v) for v in ds.PixelSpacing] == [4.06, 4.06] and float(ds.SliceThickness) == 2.0
        slopes = {float(s.RescaleSlope) for s in slices}
        assert (len(slopes) > 1) == (variant == "ge_slope")
        assert {float(s.RescaleIntercept) for s in slices} == {0.0}  # the PET Image module allows only 0
        assert rp.RadionuclideCodeSequence[0].CodeValue == "77004003" and float(ds.ActualFrameDuration) == 150000
        has_suv_scale = (0x7053, 0x1000) in ds
        assert has_suv_scale == (variant == "philips_suv")
        if variant.startswith("philips"):
            assert ds.private_block(0x7053, "Philips PET Private Group")[0x09].value > 0
        if variant == "midnight_tm":
            rp_time, series_time = rp.RadiopharmaceuticalStartTime, ds.SeriesTime
            assert rp_time > series_time  # injected before midnight, scanned after it
        if variant == "reprocessed":
            assert ds.SeriesTime > min(s.AcquisitionTime for s in slices)
        if variant == "timezone":
            assert ds.TimezoneOffsetFromUTC == "+0200" and rp.RadiopharmaceuticalStartDateTime.endswith("+0000")


def test_suv_of_every_variant_matches_truth_within_half_a_percent(cohort):
    for row in _studies(cohort):
        suv = LoadPETSUV()(cohort / row["series_dir"])
        truth = nib.load(cohort / "truth" / f"{row['patient_id']}_suv.nii.gz")
        assert isinstance(suv, MetaTensor) and suv.shape == (1, *SHAPE)
        np.testing.assert_allclose(suv.affine.numpy(), truth.affine, atol=1e-4)
        expected = np.asarray(truth.dataobj)
        np.testing.assert_allclose(suv[0].numpy(), expected, rtol=0.005, atol=1e-3, err_msg=row["variant"])
        body = expected > 0.3
        assert abs(suv[0].numpy()[body].mean() / expected[body].mean() - 1) < 0.005
        assert suv.meta["units"] == "SUVbw" and suv.meta["suv_branch"]


def test_series_reads_like_the_written_geometry(cohort):
    row = _studies(cohort)[0]
    series = read_series(cohort / row["series_dir"])
    truth = nib.load(cohort / "truth" / f"{row['patient_id']}_suv.nii.gz")
    assert series.volume.shape == SHAPE
    np.testing.assert_allclose(np.abs(np.diag(series.affine))[:3], [4.06, 4.06, 2.0], atol=1e-6)
    assert series.affine[0, 0] < 0 and series.affine[1, 1] < 0 and series.affine[2, 2] > 0
    np.testing.assert_allclose(series.affine, truth.affine, atol=1e-4)


def test_datalist_and_loader(cohort):
    entries = pet_datalist(cohort)
    assert [e["patient_id"] for e in entries] == [f"PET-{i:03d}" for i in range(1, 9)]
    assert [e["label_name"] for e in entries] == [CLASSES[i % 5] for i in range(8)]
    assert all(CLASSES[e["label"]] == e["label_name"] for e in entries)
    loaded = LoadPETSUVd("image")(entries[0])
    assert loaded["image"].shape == (1, *SHAPE) and loaded["label"] == 0


def test_datalist_bad_inputs(cohort, tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("patient_id,label\nPET-001,normal\nPET-002,melanoma\n")
    with pytest.raises(BundleInputError, match="row 3") as err:
        pet_datalist(cohort, bad)
    assert err.value.field == "label" and "melanoma" in str(err.value)
    bad.write_text("patient,label\nPET-001,normal\n")
    with pytest.raises(BundleInputError) as err:
        pet_datalist(cohort, bad)
    assert err.value.field == "patient_id"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleInputError, match="empty"):
        pet_datalist(empty)
    with pytest.raises(BundleInputError, match="not found"):
        pet_datalist(tmp_path / "missing")


def test_study_without_suv_tags_is_named_at_load(tmp_path):
    root = tmp_path / "site"
    volume = np.random.default_rng(0).uniform(0, 5000, (6, 5, 4))
    write_series(volume, np.diag([-4.0, -4.0, 2.0, 1.0]), root / "P1" / "study" / "pet", modality="PT",
                 patient_id="P1", study_uid="1.2.826.0.1.3680043.8.498.7", dataset_tags={"Units": "BQML"})
    (root / "labels.csv").write_text("patient_id,label\nP1,lung\n")
    entries = pet_datalist(root)
    assert entries == [{"patient_id": "P1", "image": str(root / "P1" / "study" / "pet"), "label": 3,
                        "label_name": "lung"}]
    with pytest.raises(BundleInputError) as err:
        LoadPETSUVd("image")(entries[0])
    assert err.value.field == "CorrectedImage" and "1-001.dcm" in str(err.value)


def test_pet_suv_tool(cohort, tmp_path, capsys):
    from scripts import pet_suv

    tool = vars(pet_suv)
    row = next(r for r in _studies(cohort) if r["variant"] == "midnight_tm")
    out = tmp_path / "suv.nii.gz"
    assert tool["main"]([str(cohort / row["patient_id"]), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "day before the scan" in printed and "SUV factor" in printed
    written = nib.load(out)
    truth = nib.load(cohort / "truth" / f"{row['patient_id']}_suv.nii.gz")
    assert written.get_data_dtype() == np.float32
    np.testing.assert_allclose(np.asarray(written.dataobj), np.asarray(truth.dataobj), rtol=0.005, atol=1e-3)
    with pytest.raises(SystemExit) as exit_status:  # through the tools' error boundary, as on the command line
        tool["run_tool"](tool["main"], [str(cohort / "truth"), str(tmp_path / "x.nii.gz")])
    assert exit_status.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Modality" in last and " -> " in last
    assert not (tmp_path / "x.nii.gz").exists()


def test_refuses_a_non_empty_output_folder(cohort):
    with pytest.raises(BundleInputError, match="not empty"):
        write_demo_cohort(cohort, subjects=1)


@pytest.mark.parametrize("label", CLASSES[1:])
def test_lesions_are_visible_on_the_coronal_mip(label):
    for seed in range(3):
        with_lesions, info = simulate_pet_suv(label=label, rng=np.random.default_rng(seed))
        without, _ = simulate_pet_suv(label=label, rng=np.random.default_rng(seed), lesions=False)
        mip, base = with_lesions.max(axis=1), without.max(axis=1)  # coronal: along anterior-posterior (y)
        gains = []
        for lesion in info["lesions"]:
            x, _, z = (int(round(c)) for c in lesion["centre_vox"])
            gains.append(mip[x, z] - base[x, z])
        assert info["lesions"] and min(gains) > 1.0 and max(gains) > 4.0, (label, seed, gains)


def test_simulation_is_deterministic_and_physiological():
    a, info = simulate_pet_suv(rng=np.random.default_rng(5))
    b, _ = simulate_pet_suv(rng=np.random.default_rng(5))
    c, _ = simulate_pet_suv(rng=np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert info["lesions"] == [] and a.dtype == np.float32 and a.min() >= 0
    nz = a.shape[2]
    head, pelvis = a[:, :, int(0.85 * nz):], a[:, :, : int(0.2 * nz)]
    assert head.max() > 4.0 and pelvis.max() > 6.0  # brain and bladder uptake
    assert a[0, 0, :].max() < 0.05  # air in the corner of the field of view
