"""scripts.seg: a highdicom SEG written for a CT series reads back in place; bad SEGs are refused."""

import numpy as np
import pydicom
import pytest
from scripts.seg import read_seg, write_seg

from gan_core.errors import BundleInputError
from gan_core.io.dicom_series import read_series, write_series

AFFINE = np.array([[-0.7, 0, 0, 12.0], [0, -0.8, 0, -30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1]])


def _ct(tmp_path, name="ct", series_uid=None):
    volume = np.full((24, 20, 8), -800.0, dtype=np.float32)
    return write_series(volume, AFFINE, tmp_path / name, modality="CT", patient_id="R01-001",
                        study_uid="1.2.826.0.1.3680043.8.498.7", series_uid=series_uid)


def _mask():
    mask = np.zeros((24, 20, 8), dtype=bool)
    mask[5:11, 3:9, 2:5] = True
    mask[7, 12, 6] = True  # a separate voxel on another slice, off-centre in-plane
    return mask


def test_seg_round_trip_and_tags(tmp_path):
    files = _ct(tmp_path)
    path = write_seg(_mask(), files, tmp_path / "seg" / "1-1.dcm")
    ds = pydicom.dcmread(path)
    ct = pydicom.dcmread(files[0])
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    assert ds.SeriesInstanceUID != ct.SeriesInstanceUID
    assert ds.FrameOfReferenceUID == ct.FrameOfReferenceUID and ds.PatientID == "R01-001"
    assert int(ds.NumberOfFrames) == 4  # empty frames omitted
    mask = read_seg(path, read_series(tmp_path / "ct"))
    assert mask.dtype == np.uint8 and mask.shape == (24, 20, 8)
    np.testing.assert_array_equal(mask, _mask().astype(np.uint8))


def test_frames_placed_by_position_not_order(tmp_path):
    files = _ct(tmp_path)
    path = write_seg(_mask(), files, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(path)
    # Reverse the frame order (descriptions and pixel data together): placement must not change.
    n, rows, cols = int(ds.NumberOfFrames), ds.Rows, ds.Columns
    bits = np.unpackbits(np.frombuffer(ds.PixelData, np.uint8), bitorder="little")[: n * rows * cols]
    frames = bits.reshape(n, rows, cols)[::-1]
    ds.PixelData = np.packbits(frames.ravel(), bitorder="little").tobytes()
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence(list(ds.PerFrameFunctionalGroupsSequence)[::-1])
    ds.save_as(path)
    np.testing.assert_array_equal(read_seg(path, read_series(tmp_path / "ct")), _mask().astype(np.uint8))


def test_wrong_number_of_frames_is_tolerated(tmp_path):
    files = _ct(tmp_path)
    path = write_seg(_mask(), files, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = int(ds.NumberOfFrames) + 3  # as in TCIA's R01-008
    ds.save_as(path)
    np.testing.assert_array_equal(read_seg(path, read_series(tmp_path / "ct")), _mask().astype(np.uint8))


def test_seg_of_another_series_is_refused(tmp_path):
    files = _ct(tmp_path, "a", series_uid="1.2.3.1")
    _ct(tmp_path, "b", series_uid="1.2.3.2")
    path = write_seg(_mask(), files, tmp_path / "seg.dcm")
    with pytest.raises(BundleInputError) as err:
        read_seg(path, read_series(tmp_path / "b"))
    assert err.value.field == "ReferencedSeriesSequence" and err.value.path == str(path)


def test_frame_off_the_grid_is_refused(tmp_path):
    files = _ct(tmp_path)
    path = write_seg(_mask(), files, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(path)
    position = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    position.ImagePositionPatient = [*position.ImagePositionPatient[:2], float(position.ImagePositionPatient[2]) + 1.0]
    ds.save_as(path)
    with pytest.raises(BundleInputError) as err:
        read_seg(path, read_series(tmp_path / "ct"))
    assert err.value.field == "ImagePositionPatient"


def test_not_a_seg(tmp_path):
    files = _ct(tmp_path)
    with pytest.raises(BundleInputError) as err:
        read_seg(files[0], read_series(tmp_path / "ct"))
    assert err.value.field == "SOPClassUID" and err.value.path == str(files[0])
