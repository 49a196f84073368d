"""A synthetic CT slice and its nodule mask as CT + SEG: valid (dciodvfy), the SEG exact and referencing the CT,
marked synthetic, nothing of the inputs written, bad masks named; the demo cohort's CT and SEG are valid too."""

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
from scripts.seg import read_seg
from scripts.synthetic_dicom import write_synthetic_ct_nodule

from gan_core.errors import BundleInputError
from gan_core.io.dicom_series import read_series


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("nodule")
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[10:21, 5:13] = 1
    ct, seg = write_synthetic_ct_nodule(random_hu(), mask, AFFINE, root / "ct" / "ct.dcm", root / "seg.dcm",
                                        provenance())
    return {"ct": ct, "seg": seg, "mask": mask}


@pytest.mark.parametrize(("key", "iod"), [("ct", "CTImage"), ("seg", "Segmentation")])
def test_dciodvfy_reports_no_error(written, key, iod):
    assert dciodvfy_errors(written[key], iod) == []


def test_nodule_seg_is_exact_and_references_the_ct(written):
    ct, seg_path = pydicom.dcmread(written["ct"]), written["seg"]
    seg = hd.seg.segread(seg_path)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.SegmentationType == "BINARY"
    assert [(s.SegmentNumber, s.SegmentLabel) for s in seg.SegmentSequence] == [(1, "Nodule")]
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "27925004"  # SCT Nodule
    pixels = seg.get_pixels_by_source_instance([ct.SOPInstanceUID])  # (1, rows, columns, segments)
    np.testing.assert_array_equal(pixels[0, :, :, 0].T, written["mask"])
    # references: the CT's series and instance, the same study, patient and frame of reference
    assert seg.StudyInstanceUID == ct.StudyInstanceUID and seg.SeriesInstanceUID != ct.SeriesInstanceUID
    assert seg.PatientID == ct.PatientID and seg.FrameOfReferenceUID == ct.FrameOfReferenceUID
    (ref_series,) = seg.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == ct.SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in ref_series.ReferencedInstanceSequence] == [ct.SOPInstanceUID]
    # our own reader places it on the CT grid too
    reference = read_series(written["ct"].parent, modality="CT")
    np.testing.assert_array_equal(read_seg(seg_path, reference)[:, :, 0], written["mask"])


@pytest.mark.parametrize("key", ["ct", "seg"])
def test_marked_synthetic(written, key):
    ds = check_marked(written[key], 7, "radiogenomic_bundle")
    if key == "seg":
        assert list(ds.ImageType) == ["DERIVED", "PRIMARY"] and ds.ContentLabel == "SYNTHETIC"  # the SEG IOD's


def test_an_empty_mask_gives_a_valid_one_frame_seg_of_a_new_study(tmp_path):
    mask = np.zeros(SHAPE, dtype=bool)
    paths = [write_synthetic_ct_nodule(random_hu(), mask, AFFINE, tmp_path / f"ct{i}.dcm", tmp_path / f"seg{i}.dcm",
                                       provenance()) for i in range(2)]
    (ct_a, seg_a), (ct_b, _) = [[pydicom.dcmread(p) for p in pair] for pair in paths]
    assert ct_a.StudyInstanceUID != ct_b.StudyInstanceUID
    assert seg_a.NumberOfFrames == 1
    assert not hd.seg.segread(paths[0][1]).get_pixels_by_source_instance([ct_a.SOPInstanceUID]).any()


def test_nothing_of_the_inputs_is_written(tmp_path):
    nifti, _, secrets = secret_inputs(tmp_path)
    for path in write_synthetic_ct_nodule(nifti, nifti > 0, nifti.affine, tmp_path / "out" / "a.dcm",
                                          tmp_path / "out" / "a_seg.dcm", provenance()):
        check_no_secret(path, secrets)


def test_bad_masks_name_the_problem_and_leave_no_file(tmp_path):
    for mask in (np.full(SHAPE, 2), np.zeros((3, 3))):
        with pytest.raises(BundleInputError) as err:
            write_synthetic_ct_nodule(random_hu(), mask, AFFINE, tmp_path / "x.dcm", tmp_path / "s.dcm", provenance())
        assert err.value.field == "nodule_mask"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_demo_cohorts_ct_and_seg_are_dciodvfy_clean(tmp_path):
    from scripts.demo_cohort import write_demo_cohort

    nsclc = write_demo_cohort(tmp_path / "nsclc", subjects=2, n_genes=20, size=64, workers=1)
    assert dciodvfy_errors(sorted(nsclc.glob("R01-001/*/3.*/*.dcm"))[0], "CTImage") == []
    assert dciodvfy_errors(sorted(nsclc.glob("R01-001/*/1000.*/*.dcm"))[0], "Segmentation") == []
