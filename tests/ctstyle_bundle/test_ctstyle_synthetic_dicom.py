"""A synthetic CT slice and the six-label map it came from as CT + SEG: valid (dciodvfy), the map rebuilt exactly
from the SEG (air omitted), marked synthetic, nothing of the inputs written, bad maps named."""

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_checks import (
    AFFINE,
    SHAPE,
    check_marked,
    check_no_secret,
    dciodvfy_errors,
    provenance,
    random_hu,
    secret_inputs,
)
from scripts.labels import LABEL_VALUES, SEGMENT_NAMES
from scripts.synthetic_dicom import write_synthetic_ct_labels

from gan_core.errors import BundleInputError


def _label_map():
    labels = np.zeros(SHAPE)
    labels[4:36, 3:27] = 50
    labels[8:18, 8:22] = 100
    labels[22:30, 8:16] = 150
    labels[19:21, 20:26] = 200  # no spinal cord: absent labels give no segment
    return labels


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    ct, seg = write_synthetic_ct_labels(random_hu(1), _label_map(), AFFINE, root / "ct" / "ct.dcm", root / "seg.dcm",
                                        provenance("ctstyle_bundle", 3))
    return {"ct": ct, "seg": seg}


@pytest.mark.parametrize(("key", "iod"), [("ct", "CTImage"), ("seg", "Segmentation")])
def test_dciodvfy_reports_no_error(written, key, iod):
    assert dciodvfy_errors(written[key], iod) == []


def test_label_seg_rebuilds_the_map_without_air(written):
    ct, seg = pydicom.dcmread(written["ct"]), hd.seg.segread(written["seg"])
    names = [s.SegmentLabel for s in seg.SegmentSequence]
    assert names == ["body", "lungs", "heart_vessels", "bone"]  # present labels in order, no air, no spinal cord
    assert [s.SegmentNumber for s in seg.SegmentSequence] == [1, 2, 3, 4]
    types = [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence]
    assert types == ["87784001", "39607008", "113257007", "272673000"]
    pixels = seg.get_pixels_by_source_instance([ct.SOPInstanceUID])[0]  # (rows, columns, segments)
    rebuilt = np.zeros(SHAPE)
    for s, name in enumerate(names):
        assert not (rebuilt[pixels[:, :, s].T > 0] > 0).any()  # segments do not overlap
        rebuilt[pixels[:, :, s].T > 0] = LABEL_VALUES[SEGMENT_NAMES.index(name)]
    np.testing.assert_array_equal(rebuilt, _label_map())
    assert seg.StudyInstanceUID == ct.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    assert np.abs(ct.pixel_array.T - random_hu(1)).max() <= 0.5


@pytest.mark.parametrize("key", ["ct", "seg"])
def test_marked_synthetic(written, key):
    check_marked(written[key], 3, "ctstyle_bundle")


def test_nothing_of_the_inputs_is_written(tmp_path):
    _, dicom, secrets = secret_inputs(tmp_path)
    hu = dicom[0, :, :, 0]
    for path in write_synthetic_ct_labels(hu, np.where(hu.numpy() > 0, 100, 50), dicom.affine,
                                          tmp_path / "out" / "b.dcm", tmp_path / "out" / "b_seg.dcm",
                                          provenance("ctstyle_bundle")):
        check_no_secret(path, secrets)


def test_bad_maps_name_the_problem_and_leave_no_file(tmp_path):
    for labels in (np.full(SHAPE, 75), np.zeros(SHAPE)):  # an unknown value; air alone
        with pytest.raises(BundleInputError) as err:
            write_synthetic_ct_labels(random_hu(), labels, AFFINE, tmp_path / "x.dcm", tmp_path / "s.dcm",
                                      provenance())
        assert err.value.field == "label_map"
    assert sorted(p.name for p in tmp_path.iterdir()) == []
