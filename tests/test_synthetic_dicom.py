"""The shared synthetic DICOM parts: a CT slice in HU that dciodvfy, pydicom, highdicom, ITK and our reader accept,
marked as synthetic, carrying nothing of its inputs; bad inputs named, no file left. The SEG and PET writers built on
these parts are tested with their bundles."""

import hashlib

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_checks import (
    AFFINE,
    SHA,
    SHAPE,
    check_marked,
    check_no_secret,
    dciodvfy_errors,
    provenance,
    random_hu,
    secret_inputs,
)

from gan_core.errors import BundleInputError
from gan_core.fileio import file_sha256
from gan_core.io.dicom_series import read_series
from gan_core.io.synthetic_dicom import SyntheticProvenance, write_synthetic_ct


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    return write_synthetic_ct(random_hu(), AFFINE, tmp_path_factory.mktemp("synthetic") / "ct" / "ct.dcm",
                              provenance())


def test_dciodvfy_reports_no_error(ct):
    assert dciodvfy_errors(ct, "CTImage") == []


def test_ct_reads_back_as_hu_within_half_a_unit(ct):
    hu = random_hu()
    ds = pydicom.dcmread(ct)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.RescaleType == "HU"
    assert (ds.Rows, ds.Columns) == (SHAPE[1], SHAPE[0]) and ds.pixel_array.dtype == np.int16
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.abs(values.T - hu).max() <= 0.5
    assert np.abs(hd.imread(ct).get_frame(1).T - hu).max() <= 0.5
    # geometry: RAS affine -> LPS direction cosines, spacing and position; our reader gives the affine back
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ AFFINE
    row, col = lps[:3, 0] / 0.7, lps[:3, 1] / 0.8
    np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], np.concatenate([row, col]), atol=1e-9)
    np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], lps[:3, 3], atol=1e-9)
    assert [float(v) for v in ds.PixelSpacing] == [0.8, 0.7] and float(ds.SliceThickness) == 2.5
    series = read_series(ct.parent, modality="CT")
    np.testing.assert_allclose(series.affine, AFFINE, atol=1e-6)
    assert np.abs(series.volume[:, :, 0] - hu).max() <= 0.5


@pytest.mark.slow  # ITK's first use loads its DICOM module (about 8 s)
def test_itk_reads_values_and_geometry(ct):
    import itk

    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ AFFINE
    image = itk.imread(str(ct))
    assert np.abs(itk.array_from_image(image)[0].T - random_hu()).max() <= 0.5  # (1, rows, columns)
    np.testing.assert_allclose(np.asarray(image.GetOrigin()), lps[:3, 3], atol=1e-6)
    np.testing.assert_allclose(np.asarray(image.GetSpacing())[:2], [0.7, 0.8], atol=1e-9)
    np.testing.assert_allclose(np.asarray(image.GetDirection())[:, :2],
                               np.stack([lps[:3, 0] / 0.7, lps[:3, 1] / 0.8], axis=1), atol=1e-6)


def test_marked_synthetic_with_new_identity(ct):
    ds = check_marked(ct, 7, "radiogenomic_bundle")
    # CT takes the DERIVED \ SECONDARY of a generated image
    assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"] and ds.BurnedInAnnotation == "NO"
    assert ds.ImageComments.startswith("SYNTHETIC") and SHA in ds.ImageComments


def test_every_call_makes_a_new_study(tmp_path):
    a, b = (pydicom.dcmread(write_synthetic_ct(random_hu(), AFFINE, tmp_path / f"ct{i}.dcm", provenance()))
            for i in range(2))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert a[keyword].value != b[keyword].value, keyword


def test_nothing_of_the_inputs_is_written(tmp_path):
    nifti, dicom, secrets = secret_inputs(tmp_path)
    out = tmp_path / "out"
    files = [write_synthetic_ct(nifti, nifti.affine, out / "a.dcm", provenance()),
             write_synthetic_ct(dicom[0, :, :, 0], dicom.affine, out / "b.dcm", provenance())]
    for path in files:
        check_no_secret(path, secrets)


def test_bad_inputs_name_the_problem_and_leave_no_file(tmp_path):
    target = tmp_path / "x.dcm"
    sheared = AFFINE.copy()
    sheared[:3, 1] += 0.3 * sheared[:3, 0]
    cases = [
        (lambda: write_synthetic_ct(random_hu(), sheared, target, provenance()), "affine"),
        (lambda: write_synthetic_ct(np.full(SHAPE, np.nan), AFFINE, target, provenance()), "hu"),
        (lambda: write_synthetic_ct(random_hu()[..., None], AFFINE, target, provenance()), "hu"),
        (lambda: write_synthetic_ct(random_hu() * 100, AFFINE, target, provenance()), "hu"),
        (lambda: SyntheticProvenance("b", "1", "not-a-hash", 0), "model_sha256"),
        (lambda: SyntheticProvenance("b", "1", SHA, -1), "index"),
        (lambda: SyntheticProvenance("", "1", SHA, 0), "bundle"),
    ]
    for call, field in cases:
        with pytest.raises(BundleInputError) as err:
            call()
        assert err.value.field == field
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(BundleInputError):
        write_synthetic_ct(random_hu(), AFFINE, tmp_path / "x.nii", provenance())


def test_file_sha256_reads_the_whole_file(tmp_path):
    data = bytes(range(256)) * 8192  # 2 MiB: more than one read block
    (tmp_path / "w.pt").write_bytes(data)
    assert file_sha256(tmp_path / "w.pt") == hashlib.sha256(data).hexdigest()
    assert file_sha256(tmp_path / "w.pt") != hashlib.sha256(data[: 1 << 20]).hexdigest()
