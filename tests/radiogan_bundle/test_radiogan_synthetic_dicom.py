"""A synthetic coronal PET MIP in SUV as PET Image Storage: valid (dciodvfy), read back as SUV within half a slope by
pydicom, highdicom (through the RWVM), ITK and our loader, marked synthetic, nothing of the inputs written, bad
inputs named; the demo cohort's PET series are valid too."""

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_checks import check_marked, check_no_secret, dciodvfy_errors, provenance, secret_inputs
from scripts.inference import mip_affine
from scripts.suv import suv_factor
from scripts.synthetic_dicom import write_synthetic_pet_mip
from scripts.transforms import LoadPETSUV

from gan_core.errors import BundleInputError


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    suv = np.random.default_rng(2).uniform(0.0, 25.0, (48, 100))
    suv[3, 4] = 27.5
    path = write_synthetic_pet_mip(suv, mip_affine(2.0), tmp_path_factory.mktemp("mip") / "mip" / "mip.dcm",
                                   provenance("radiogan_bundle", 11, "lymphoma"))
    return {"pet": path, "suv": suv}


def test_dciodvfy_reports_no_error(written):
    assert dciodvfy_errors(written["pet"], "PETImage") == []


def test_pet_mip_reads_back_as_suv_within_half_a_slope(written):
    path, suv = written["pet"], written["suv"]
    ds = pydicom.dcmread(path)
    slope = float(ds.RescaleSlope)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.128" and ds.Units == "GML"
    assert float(ds.RescaleIntercept) == 0 and slope == pytest.approx(27.5 / 32767, rel=1e-9)
    tolerance = slope / 2 + 1e-9
    assert np.abs((ds.pixel_array * slope).T - suv).max() <= tolerance
    assert np.abs(hd.imread(path).get_frame(1).T - suv).max() <= tolerance  # through the RWVM
    plain = hd.imread(path).get_frame(1, apply_real_world_transform=False, apply_modality_transform=True)
    assert np.abs(plain.T - suv).max() <= tolerance
    (mapping,) = ds.RealWorldValueMappingSequence
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "{SUVbw}g/ml"
    assert float(mapping.RealWorldValueSlope) == slope
    # our PET loader: SUV factor 1 (Units GML), the MIP's geometry
    assert suv_factor([ds]).factors.tolist() == [1.0]
    loaded = LoadPETSUV()(path.parent)
    assert loaded.shape == (1, 48, 100, 1)
    assert np.abs(loaded[0, :, :, 0].numpy() - suv).max() <= slope * 0.51
    np.testing.assert_allclose(loaded.affine.numpy(), mip_affine(2.0), atol=1e-9)


@pytest.mark.slow  # ITK's first use loads its DICOM module (about 8 s)
def test_itk_reads_values_and_geometry(written):
    import itk

    image = itk.imread(str(written["pet"]))
    slope = float(pydicom.dcmread(written["pet"]).RescaleSlope)
    assert np.abs(itk.array_from_image(image)[0].T - written["suv"]).max() <= slope / 2 + 1e-9
    mip = np.diag([-1.0, -1.0, 1.0, 1.0]) @ mip_affine(2.0)  # LPS: columns to the left, rows upwards
    np.testing.assert_allclose(np.asarray(image.GetSpacing())[:2], [2.0, 2.0])
    np.testing.assert_allclose(np.asarray(image.GetDirection())[:, :2], mip[:3, :2] / 2.0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(image.GetOrigin()), mip[:3, 3], atol=1e-9)


def test_marked_synthetic(written):
    ds = check_marked(written["pet"], 11, "radiogan_bundle")
    assert list(ds.ImageType[:2]) == ["DERIVED", "PRIMARY"]  # the PET Image module requires value 2 PRIMARY
    assert ds.SeriesDescription == "SYNTHETIC PET MIP lymphoma" and ds.BurnedInAnnotation == "NO"


def test_nothing_of_the_inputs_is_written(tmp_path):
    nifti, dicom, secrets = secret_inputs(tmp_path)
    path = write_synthetic_pet_mip(dicom[0, :, :, 0].abs() / 100, nifti.affine, tmp_path / "out" / "c.dcm",
                                   provenance("radiogan_bundle"))
    check_no_secret(path, secrets)


def test_bad_inputs_name_the_problem_and_leave_no_file(tmp_path):
    with pytest.raises(BundleInputError) as err:
        write_synthetic_pet_mip(np.full((4, 4), np.inf), mip_affine(), tmp_path / "x.dcm", provenance())
    assert err.value.field == "suv"
    with pytest.raises(BundleInputError):
        write_synthetic_pet_mip(np.ones((4, 4)), mip_affine(), tmp_path / "x.nii", provenance())
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_demo_cohorts_pet_series_are_dciodvfy_clean(tmp_path):
    from scripts.demo_cohort import write_demo_cohort

    pet = write_demo_cohort(tmp_path / "pet", subjects=2, shape=(12, 8, 40))  # variants bqml and philips_suv
    for path in [sorted(pet.glob(f"PET-00{i}/*/*/*.dcm"))[0] for i in (1, 2)]:
        assert dciodvfy_errors(path, "PETImage") == []
        assert float(pydicom.dcmread(path).RescaleIntercept) == 0
