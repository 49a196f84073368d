"""bundles.io.synthetic_dicom: dciodvfy-clean CT / SEG / PET of synthetic images, read back by pydicom, highdicom
and ITK; clearly marked and carrying nothing of their inputs. Also: the demo cohorts' DICOM is dciodvfy-clean."""

import hashlib
import shutil
import subprocess
from datetime import UTC, datetime

import highdicom as hd
import itk
import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.transforms import LoadImage

from bundles.errors import BundleInputError
from bundles.io.dicom_series import read_series, write_series
from bundles.io.seg import read_seg
from bundles.io.suv import suv_factor
from bundles.io.synthetic_dicom import (
    SyntheticProvenance,
    file_sha256,
    write_synthetic_ct,
    write_synthetic_ct_labels,
    write_synthetic_ct_nodule,
    write_synthetic_pet_mip,
)
from bundles.transforms.labels import LABEL_VALUES, SEGMENT_NAMES
from bundles.transforms.suv import LoadPETSUV
from bundles.workflows.radiogan_inference import mip_affine

SHAPE = (40, 30)  # (X, Y): 40 columns, 30 rows
SHA = "0123456789abcdef" * 4


def _rotated_affine(degrees=30.0, dx=0.7, dy=0.8, dz=2.5, origin=(12.0, -30.0, 40.0)) -> np.ndarray:
    """RAS affine of an axial slice rotated in-plane, third column along the DICOM slice normal."""
    a = np.deg2rad(degrees)
    row, col = np.array([np.cos(a), np.sin(a), 0.0]), np.array([-np.sin(a), np.cos(a), 0.0])  # LPS
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * dx, col * dy, np.cross(row, col) * dz
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


AFFINE = _rotated_affine()


def _provenance(bundle="radiogenomic_bundle", index=7, description=""):
    return SyntheticProvenance(bundle=bundle, bundle_version="1.2.3", model_sha256=SHA, index=index,
                               description=description)


def _hu(seed=0):
    return np.random.default_rng(seed).uniform(-1024.0, 3071.0, SHAPE)


def _label_map():
    labels = np.zeros(SHAPE)
    labels[4:36, 3:27] = 50
    labels[8:18, 8:22] = 100
    labels[22:30, 8:16] = 150
    labels[19:21, 20:26] = 200  # no spinal cord: absent labels give no segment
    return labels


def _dciodvfy_errors(path, iod: str) -> list[str]:
    """The lines of ``dciodvfy path`` that report an error; the validated IOD must be ``iod``."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) not installed")
    result = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    assert iod in lines, f"dciodvfy did not validate {path} as {iod}:\n" + "\n".join(lines)
    return [line for line in lines if "Error" in line]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[10:21, 5:13] = 1
    suv = np.random.default_rng(2).uniform(0.0, 25.0, (48, 100))
    suv[3, 4] = 27.5
    ct, seg = write_synthetic_ct_nodule(_hu(), mask, AFFINE, root / "nodule" / "ct" / "ct.dcm",
                                        root / "nodule" / "seg.dcm", _provenance())
    ct2, seg2 = write_synthetic_ct_labels(_hu(1), _label_map(), AFFINE, root / "labels" / "ct.dcm",
                                          root / "labels" / "seg.dcm", _provenance("ctstyle_bundle", 3))
    pet = write_synthetic_pet_mip(suv, mip_affine(2.0), root / "mip" / "mip.dcm",
                                  _provenance("radiogan_bundle", 11, "lymphoma"))
    return {"ct": ct, "seg": seg, "mask": mask, "ct2": ct2, "seg2": seg2, "pet": pet, "suv": suv}


@pytest.mark.parametrize(("key", "iod"), [("ct", "CTImage"), ("seg", "Segmentation"), ("ct2", "CTImage"),
                                          ("seg2", "Segmentation"), ("pet", "PETImage")])
def test_dciodvfy_reports_no_error(written, key, iod):
    assert _dciodvfy_errors(written[key], iod) == []


@pytest.mark.parametrize(("key", "seed"), [("ct", 0), ("ct2", 1)])
def test_ct_reads_back_as_hu_within_half_a_unit(written, key, seed):
    hu, path = _hu(seed), written[key]
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.RescaleType == "HU"
    assert (ds.Rows, ds.Columns) == (SHAPE[1], SHAPE[0]) and ds.pixel_array.dtype == np.int16
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.abs(values.T - hu).max() <= 0.5
    assert np.abs(hd.imread(path).get_frame(1).T - hu).max() <= 0.5
    # geometry: RAS affine -> LPS direction cosines, spacing and position; our reader gives the affine back
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ AFFINE
    row, col = lps[:3, 0] / 0.7, lps[:3, 1] / 0.8
    np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], np.concatenate([row, col]), atol=1e-9)
    np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], lps[:3, 3], atol=1e-9)
    assert [float(v) for v in ds.PixelSpacing] == [0.8, 0.7] and float(ds.SliceThickness) == 2.5
    series = read_series(path.parent, modality="CT")
    np.testing.assert_allclose(series.affine, AFFINE, atol=1e-6)
    assert np.abs(series.volume[:, :, 0] - hu).max() <= 0.5


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


def test_label_seg_rebuilds_the_map_without_air(written):
    ct, seg = pydicom.dcmread(written["ct2"]), hd.seg.segread(written["seg2"])
    labels = _label_map()
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
    np.testing.assert_array_equal(rebuilt, labels)
    assert seg.StudyInstanceUID == ct.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID


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
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ AFFINE
    for key, seed in (("ct", 0), ("ct2", 1)):
        image = itk.imread(str(written[key]))
        assert np.abs(itk.array_from_image(image)[0].T - _hu(seed)).max() <= 0.5  # (1, rows, columns)
        np.testing.assert_allclose(np.asarray(image.GetOrigin()), lps[:3, 3], atol=1e-6)
        np.testing.assert_allclose(np.asarray(image.GetSpacing())[:2], [0.7, 0.8], atol=1e-9)
        np.testing.assert_allclose(np.asarray(image.GetDirection())[:, :2],
                                   np.stack([lps[:3, 0] / 0.7, lps[:3, 1] / 0.8], axis=1), atol=1e-6)
    image = itk.imread(str(written["pet"]))
    slope = float(pydicom.dcmread(written["pet"]).RescaleSlope)
    assert np.abs(itk.array_from_image(image)[0].T - written["suv"]).max() <= slope / 2 + 1e-9
    mip = np.diag([-1.0, -1.0, 1.0, 1.0]) @ mip_affine(2.0)  # LPS: columns to the left, rows upwards
    np.testing.assert_allclose(np.asarray(image.GetSpacing())[:2], [2.0, 2.0])
    np.testing.assert_allclose(np.asarray(image.GetDirection())[:, :2], mip[:3, :2] / 2.0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(image.GetOrigin()), mip[:3, 3], atol=1e-9)


@pytest.mark.parametrize("key", ["ct", "seg", "ct2", "seg2", "pet"])
def test_marked_synthetic_with_new_identity(written, key):
    ds = pydicom.dcmread(written[key])
    index, bundle = {"ct": (7, "radiogenomic_bundle"), "seg": (7, "radiogenomic_bundle"),
                     "ct2": (3, "ctstyle_bundle"), "seg2": (3, "ctstyle_bundle"),
                     "pet": (11, "radiogan_bundle")}[key]
    assert str(ds.PatientName) == f"SYNTHETIC^{index}" and ds.PatientID == f"SYN-{index}"
    assert ds.PatientBirthDate == "" and ds.PatientSex == ""
    assert ds.SeriesDescription.startswith("SYNTHETIC") and ds.StudyDescription.startswith("SYNTHETIC")
    assert ds.Manufacturer == "gan-bundles" and ds.ManufacturerModelName == bundle
    assert ds.SoftwareVersions == "1.2.3" and ds.DeviceSerialNumber == SHA[:16]
    moment = datetime.strptime(ds.ContentDate + ds.ContentTime.split(".")[0], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 600 and ds.TimezoneOffsetFromUTC == "+0000"
    if key.startswith("seg"):
        assert list(ds.ImageType) == ["DERIVED", "PRIMARY"]  # fixed by the Segmentation IOD
        assert ds.ContentLabel == "SYNTHETIC"
    else:
        # PET Image requires value 2 PRIMARY; CT takes the DERIVED \ SECONDARY of a generated image
        assert list(ds.ImageType[:2]) == ["DERIVED", "PRIMARY" if key == "pet" else "SECONDARY"]
        assert ds.BurnedInAnnotation == "NO"
        assert ds.ImageComments.startswith("SYNTHETIC") and SHA in ds.ImageComments
    if key == "pet":
        assert ds.SeriesDescription == "SYNTHETIC PET MIP lymphoma"


def test_every_call_makes_a_new_study(tmp_path):
    mask = np.zeros(SHAPE, dtype=bool)
    paths = [write_synthetic_ct_nodule(_hu(), mask, AFFINE, tmp_path / f"ct{i}.dcm", tmp_path / f"seg{i}.dcm",
                                       _provenance()) for i in range(2)]
    (ct_a, seg_a), (ct_b, _) = [[pydicom.dcmread(p) for p in pair] for pair in paths]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert ct_a[keyword].value != ct_b[keyword].value, keyword
    assert seg_a.NumberOfFrames == 1  # an empty mask still gives a valid one-frame SEG
    assert not hd.seg.segread(paths[0][1]).get_pixels_by_source_instance([ct_a.SOPInstanceUID]).any()


def _element_texts(ds: pydicom.Dataset):
    """Every element value of a dataset and its file meta, recursively into sequences, as text."""
    elements = list(ds.file_meta.iterall()) + list(ds.iterall())
    for element in elements:
        if element.VR == "SQ":
            continue  # iterall visits the items' elements
        value = element.value
        if isinstance(value, bytes):
            yield value.decode("latin-1")
        elif isinstance(value, (list, pydicom.multival.MultiValue)):
            yield "\\".join(str(v) for v in value)
        else:
            yield str(value)


def test_nothing_of_the_inputs_is_written(tmp_path):
    secret_study = "1.3.6.1.4.1.5962.99.1.4242.4242"
    rng = np.random.default_rng(5)
    # a NIfTI slice whose header carries text, and a CT DICOM of a real-looking patient
    nifti_affine = _rotated_affine(degrees=10)
    image = nib.Nifti1Image(rng.uniform(-1000, 1000, SHAPE).astype(np.float32), nifti_affine)
    image.header["descrip"] = b"PATIENT SECRET"
    image.header["aux_file"] = b"MRN123"
    nib.save(image, tmp_path / "slice.nii.gz")
    source = write_series(rng.uniform(-1000, 1000, (*SHAPE, 2)), AFFINE, tmp_path / "source", modality="CT",
                          patient_id="MRN123", study_uid=secret_study,
                          dataset_tags={"PatientName": "Doe^Jane", "InstitutionName": "General Hospital",
                                        "PatientBirthDate": "19700101", "AccessionNumber": "ACC98765"})
    headers = [pydicom.dcmread(f) for f in source]
    secrets = {"PATIENT SECRET", "Doe^Jane", "MRN123", secret_study, "General Hospital", "19700101", "ACC98765",
               str(headers[0].SeriesInstanceUID), str(headers[0].FrameOfReferenceUID),
               *(str(h.SOPInstanceUID) for h in headers)}

    nifti = LoadImage(image_only=True)(tmp_path / "slice.nii.gz")  # a MetaTensor with the header in its meta
    dicom = read_series(tmp_path / "source").to_metatensor()  # (1, X, Y, Z) with the series identity in meta
    dicom_slice = dicom[0, :, :, 0]
    out = tmp_path / "out"
    files = [
        *write_synthetic_ct_nodule(nifti, nifti > 0, nifti.affine, out / "a.dcm", out / "a_seg.dcm", _provenance()),
        *write_synthetic_ct_labels(dicom_slice, np.where(dicom_slice.numpy() > 0, 100, 50), dicom.affine,
                                   out / "b.dcm", out / "b_seg.dcm", _provenance("ctstyle_bundle")),
        write_synthetic_pet_mip(dicom_slice.abs() / 100, nifti.affine, out / "c.dcm", _provenance("radiogan_bundle")),
    ]
    for path in files:
        ds = pydicom.dcmread(path)
        texts = [t.lower() for t in _element_texts(ds)]
        assert len(texts) > 40
        for secret in secrets:
            leaked = [t for t in texts if secret.lower() in t]
            assert not leaked, f"{path.name} carries {secret!r}: {leaked[:3]}"
            assert secret.encode() not in path.read_bytes(), f"{path.name} holds the bytes of {secret!r}"
        assert ds.StudyInstanceUID != secret_study


def test_bad_inputs_name_the_problem_and_leave_no_file(tmp_path):
    target = tmp_path / "x.dcm"
    sheared = AFFINE.copy()
    sheared[:3, 1] += 0.3 * sheared[:3, 0]
    cases = [
        (lambda: write_synthetic_ct(_hu(), sheared, target, _provenance()), "affine"),
        (lambda: write_synthetic_ct(np.full(SHAPE, np.nan), AFFINE, target, _provenance()), "hu"),
        (lambda: write_synthetic_ct(_hu()[..., None], AFFINE, target, _provenance()), "hu"),
        (lambda: write_synthetic_ct(_hu() * 100, AFFINE, target, _provenance()), "hu"),
        (lambda: write_synthetic_ct_nodule(_hu(), np.full(SHAPE, 2), AFFINE, target, tmp_path / "s.dcm",
                                           _provenance()), "nodule_mask"),
        (lambda: write_synthetic_ct_nodule(_hu(), np.zeros((3, 3)), AFFINE, target, tmp_path / "s.dcm",
                                           _provenance()), "nodule_mask"),
        (lambda: write_synthetic_ct_labels(_hu(), np.full(SHAPE, 75), AFFINE, target, tmp_path / "s.dcm",
                                           _provenance()), "label_map"),
        (lambda: write_synthetic_ct_labels(_hu(), np.zeros(SHAPE), AFFINE, target, tmp_path / "s.dcm",
                                           _provenance()), "label_map"),
        (lambda: write_synthetic_pet_mip(np.full((4, 4), np.inf), mip_affine(), target, _provenance()), "suv"),
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
        write_synthetic_pet_mip(np.ones((4, 4)), mip_affine(), tmp_path / "x.nii", _provenance())


def test_file_sha256(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"weights")
    assert file_sha256(tmp_path / "w.pt") == hashlib.sha256(b"weights").hexdigest()


@pytest.mark.slow
def test_demo_cohorts_are_dciodvfy_clean(tmp_path):
    from bundles.phantoms.nsclc import write_nsclc_cohort
    from bundles.phantoms.pet import write_pet_cohort

    nsclc = write_nsclc_cohort(tmp_path / "nsclc", subjects=2, n_genes=20, size=64, workers=1)
    pet = write_pet_cohort(tmp_path / "pet", subjects=2, shape=(12, 8, 40))  # variants bqml and philips_suv
    ct = sorted(nsclc.glob("R01-001/*/3.*/*.dcm"))[0]
    seg = sorted(nsclc.glob("R01-001/*/1000.*/*.dcm"))[0]
    pets = [sorted(pet.glob(f"PET-00{i}/*/*/*.dcm"))[0] for i in (1, 2)]
    assert _dciodvfy_errors(ct, "CTImage") == []
    assert _dciodvfy_errors(seg, "Segmentation") == []
    for path in pets:
        assert _dciodvfy_errors(path, "PETImage") == []
        assert float(pydicom.dcmread(path).RescaleIntercept) == 0
