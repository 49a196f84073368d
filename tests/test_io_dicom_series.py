"""gan_core.io.dicom_series: round trip, agreement with MONAI's ITKReader, and each bad-input case."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
from monai.data import MetaTensor
from monai.transforms import LoadImage

from gan_core.errors import BundleInputError
from gan_core.io.dicom_series import read_series, write_series

AXIAL = np.array([[-0.7, 0, 0, 12.0], [0, -0.8, 0, -30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1]])
# Sagittal-like, with the slice step against the normal: the reader must re-sort the slices.
OBLIQUE = np.array([[0, 0, -2.0, 5.0], [0.7, 0, 0, -3.0], [0, -0.8, 0, 12.0], [0, 0, 0, 1]])


def _volume(seed=0, shape=(12, 10, 6)):
    return np.random.default_rng(seed).uniform(-1000, 1500, shape).astype(np.float32)


def _write(tmp_path, name="series", volume=None, affine=AXIAL, **kwargs):
    volume = _volume() if volume is None else volume
    kwargs = {"modality": "CT", "patient_id": "P1", "study_uid": "1.2.826.0.1.3680043.8.498.1"} | kwargs
    return write_series(volume, affine, tmp_path / name, **kwargs)


def test_round_trip_values_affine_and_tags(tmp_path):
    volume = _volume()
    files = _write(tmp_path, volume=volume)
    assert [f.name for f in files] == [f"1-{k:03d}.dcm" for k in range(1, 7)]
    series = read_series(tmp_path / "series")
    assert series.volume.shape == (12, 10, 6) and series.volume.dtype == np.float32
    ds = pydicom.dcmread(files[0])
    assert ds.PixelRepresentation == 1 and ds.BitsAllocated == 16 and ds.Modality == "CT"
    assert float(ds.RescaleSlope) > 0
    assert np.abs(series.volume - volume).max() <= float(ds.RescaleSlope) * 0.51
    np.testing.assert_allclose(series.affine, AXIAL, atol=1e-6)
    assert [float(v) for v in ds.PixelSpacing] == [0.8, 0.7]
    assert float(ds.SliceThickness) == 2.5
    assert [float(v) for v in pydicom.dcmread(files[2]).ImagePositionPatient] == pytest.approx([-12.0, 30.0, 45.0])
    assert len({str(h.SOPInstanceUID) for h in series.headers}) == 6
    assert len({str(h.SeriesInstanceUID) for h in series.headers}) == 1
    assert all("PixelData" not in h for h in series.headers)


@pytest.mark.slow  # importing ITK takes ~5 s
@pytest.mark.parametrize("affine", [AXIAL, OBLIQUE])
def test_affine_and_values_match_monai_itkreader(tmp_path, affine):
    _write(tmp_path, affine=affine, dataset_tags={"RescaleSlope": 1, "RescaleIntercept": -1024})
    ours = read_series(tmp_path / "series").to_metatensor()
    itk = LoadImage(reader="ITKReader", image_only=True, ensure_channel_first=True)(str(tmp_path / "series"))
    assert isinstance(ours, MetaTensor) and ours.shape == itk.shape
    np.testing.assert_array_equal(ours.affine.numpy(), itk.affine.numpy())
    np.testing.assert_array_equal(ours.numpy(), itk.numpy().astype(np.float32))
    assert ours.meta["Modality"] == "CT" and ours.meta["filename_or_obj"] == str(tmp_path / "series")


def test_fixed_rescale_gives_integer_hu(tmp_path):
    volume = np.round(_volume())
    _write(tmp_path, volume=volume, dataset_tags={"RescaleSlope": 1, "RescaleIntercept": -1024})
    series = read_series(tmp_path / "series")
    np.testing.assert_array_equal(series.volume, volume)
    assert {float(h.RescaleIntercept) for h in series.headers} == {-1024.0}


def test_per_slice_rescale_and_slice_tags(tmp_path):
    volume = _volume() * np.arange(1, 7, dtype=np.float32)  # very different ranges per slice
    _write(
        tmp_path,
        volume=volume,
        modality="PT",
        per_slice_rescale=True,
        slice_tags=lambda k: {"AcquisitionTime": f"1200{k:02d}"},
    )
    series = read_series(tmp_path / "series", modality="PT")
    slopes = [float(h.RescaleSlope) for h in series.headers]
    assert len(set(slopes)) == 6
    for k, slope in enumerate(slopes):
        assert np.abs(series.volume[..., k] - volume[..., k]).max() <= slope * 0.51
    assert [h.AcquisitionTime for h in series.headers] == [f"1200{k:02d}" for k in range(6)]


def test_choose_series_by_uid_or_modality(tmp_path):
    files_ct = _write(tmp_path, name="a", series_uid="1.2.3.1")
    files_pt = _write(tmp_path, name="b", series_uid="1.2.3.2", modality="PT", volume=_volume(1))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in files_ct + files_pt:
        (mixed / f"{f.parent.name}{f.name}").write_bytes(f.read_bytes())
    with pytest.raises(BundleInputError) as err:
        read_series(mixed)
    assert err.value.field == "SeriesInstanceUID" and Path(err.value.path).parent == mixed
    assert read_series(mixed, series_uid="1.2.3.2").headers[0].Modality == "PT"
    assert str(read_series(mixed, modality="CT").headers[0].SeriesInstanceUID) == "1.2.3.1"
    with pytest.raises(BundleInputError) as err:
        read_series(mixed, modality="MR")
    assert err.value.field == "Modality"


def test_non_dicom_file(tmp_path):
    _write(tmp_path)
    (tmp_path / "series" / "notes.txt").write_text("not an image")
    with pytest.raises(BundleInputError) as err:
        read_series(tmp_path / "series")
    assert err.value.path.endswith("notes.txt") and "not a DICOM" in str(err.value)


def test_truncated_file(tmp_path):
    files = _write(tmp_path)
    files[3].write_bytes(files[3].read_bytes()[:-100])
    with pytest.raises(BundleInputError) as err:
        read_series(tmp_path / "series")
    assert err.value.path == str(files[3])


def _edit(path, **tags):
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


def test_mixed_orientation(tmp_path):
    files = _write(tmp_path)
    _edit(files[2], ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    with pytest.raises(BundleInputError) as err:
        read_series(tmp_path / "series")
    assert err.value.field == "ImageOrientationPatient" and err.value.path == str(files[2])


def test_mixed_pixel_spacing(tmp_path):
    files = _write(tmp_path)
    _edit(files[4], PixelSpacing=[0.9, 0.7])
    with pytest.raises(BundleInputError) as err:
        read_series(tmp_path / "series")
    assert err.value.field == "PixelSpacing" and err.value.path == str(files[4])


def test_missing_slice(tmp_path):
    files = _write(tmp_path)
    files[3].unlink()
    with pytest.raises(BundleInputError) as err:
        read_series(tmp_path / "series")
    assert err.value.field == "ImagePositionPatient" and err.value.path == str(files[4])
    assert "missing" in err.value.problem


def test_duplicate_slice(tmp_path):
    files = _write(tmp_path)
    ds = pydicom.dcmread(files[1])
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.save_as(tmp_path / "series" / "copy.dcm")
    with pytest.raises(BundleInputError) as err:
        read_series(tmp_path / "series")
    assert err.value.field == "ImagePositionPatient" and "same position" in err.value.problem


def test_missing_folder_and_missing_tag(tmp_path):
    with pytest.raises(BundleInputError):
        read_series(tmp_path / "nowhere")
    files = _write(tmp_path)
    ds = pydicom.dcmread(files[0])
    del ds.ImagePositionPatient
    ds.save_as(files[0])
    with pytest.raises(BundleInputError) as err:
        read_series(tmp_path / "series")
    assert err.value.field == "ImagePositionPatient" and err.value.path == str(files[0])


def test_write_refuses_existing_folder_and_leaves_no_partial(tmp_path):
    _write(tmp_path)
    before = sorted(p.name for p in (tmp_path / "series").iterdir())
    with pytest.raises(BundleInputError, match="never replaced"):
        _write(tmp_path)
    assert sorted(p.name for p in (tmp_path / "series").iterdir()) == before
    with pytest.raises(ValueError):  # values beyond int16 with a fixed pair
        _write(tmp_path, name="big", volume=_volume() * 100, dataset_tags={"RescaleSlope": 1, "RescaleIntercept": 0})
    assert not (tmp_path / "big").exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]
