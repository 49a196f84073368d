"""Each bundle's inference writes DICOM beside its NIfTI: valid (dciodvfy), equal to the NIfTI within the stored
precision, and carrying no identifier of any input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from bundles.models import Model, build_network

SECRETS = ["Doe^Jane", "MRN123", "General Hospital", "Jane_Doe", "1.2.826.0.1.999"]


def _secret_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    """A NIfTI input whose header carries identifying values (as a user's file may)."""
    image = nib.Nifti1Image(data, affine)
    image.header["descrip"] = b"Doe^Jane MRN123"
    image.header["aux_file"] = b"MRN123"
    image.header["intent_name"] = b"General Hosp"
    image.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"Doe^Jane General Hospital 1.2.826.0.1.999"))
    nib.save(image, path)
    return path


def _element_values(ds: pydicom.Dataset):
    for element in ds.iterall():
        if element.VR != "SQ" and element.tag != 0x7FE00010:
            yield str(element.value)
    for element in ds.file_meta:
        yield str(element.value)


def check_dicom(path: Path) -> pydicom.Dataset:
    """dciodvfy reports no error (when installed) and no element holds an input's identifier."""
    if shutil.which("dciodvfy"):
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (path, errors)
    ds = pydicom.dcmread(path)
    for value in _element_values(ds):
        assert not any(secret in value for secret in SECRETS), (path, value)
    assert ds.PatientName.family_name == "SYNTHETIC" and ds.SeriesDescription.startswith("SYNTHETIC")
    return ds


def _model(network: dict, inputs: dict) -> Model:
    torch.manual_seed(0)
    return Model(Path("model.pt"), network, inputs, build_network(network).state_dict())


def test_radiogenomic_inference_dicom(tmp_path):
    from bundles.workflows.radiogenomic_inference import synthesise

    network = {"builder": "bundles.networks.radiogenomic.build_generator", "model_type": "proposed",
               "image_fusion": True, "num_genes": 4, "image_size": 32, "base_channels": 4, "code_dim": 8,
               "noise_dim": 2, "hidden": 8}
    model = _model(network, {"gene_names": list("abcd"), "gene_mean": [0.0] * 4, "gene_std": [1.0] * 4})
    affine = np.array([[-0.7, 0, 0, 30.0], [0, -0.7, 0, 12.0], [0, 0, 2.5, -80.0], [0, 0, 0, 1]])
    rng = np.random.default_rng(0)
    background = _secret_nifti(rng.uniform(-1000, 200, (32, 32)).astype(np.float32), affine,
                               tmp_path / "Jane_Doe_MRN123.nii.gz")
    np.save(tmp_path / "MRN123.npy", np.zeros(4, np.float32))
    synthesise(model, [background], [tmp_path / "MRN123.npy"], tmp_path / "out", bundle_version="9.9.9")
    out = tmp_path / "out"
    hu = np.asarray(nib.load(out / "b00_g00_image.nii.gz").dataobj)
    mask = np.asarray(nib.load(out / "b00_g00_mask.nii.gz").dataobj)
    ct = check_dicom(out / "dicom" / "b00_g00" / "ct.dcm")
    seg = check_dicom(out / "dicom" / "b00_g00" / "seg.dcm")
    assert ct.SoftwareVersions == "9.9.9" and ct.DeviceSerialNumber == model.sha256[:16]
    np.testing.assert_allclose(ct.pixel_array.T * float(ct.RescaleSlope) + float(ct.RescaleIntercept), hu, atol=0.5)
    np.testing.assert_allclose(np.asarray(ct.PixelSpacing, float), [0.7, 0.7])
    assert seg.StudyInstanceUID == ct.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    pixels = hd.seg.segread(out / "dicom" / "b00_g00" / "seg.dcm").get_pixels_by_source_instance(
        source_sop_instance_uids=[ct.SOPInstanceUID], segment_numbers=[1])
    np.testing.assert_array_equal(pixels[0, :, :, 0].T, mask)


def test_ctstyle_inference_dicom(tmp_path):
    from bundles.transforms.labels import LABEL_VALUES
    from bundles.workflows.ctstyle_inference import run_inference

    network = {"builder": "bundles.networks.ctstyle.CTStyleGenerator", "noise_dim": 200, "base_channels": 4,
               "num_levels": 3, "max_channels": 8, "noise_grid": 4}
    model = _model(network, {"image_size": 32})
    label = np.zeros((32, 32), np.uint8)
    label[4:28, 4:28] = 50
    label[8:16, 8:24] = 100
    label[18:24, 10:20] = 150
    label[14:18, 24:27] = 200
    affine = np.diag([-0.8, -0.8, 5.0, 1.0])
    maps = _secret_nifti(label, affine, tmp_path / "Jane_Doe_MRN123_label.nii.gz")
    run_inference(model, maps, tmp_path / "out", seeds=[3], bundle_version="9.9.9")
    folder = tmp_path / "out" / "map00"
    hu = np.asarray(nib.load(folder / "seed_003.nii.gz").dataobj)
    ct = check_dicom(folder / "seed_003_ct.dcm")
    check_dicom(folder / "seed_003_seg.dcm")
    np.testing.assert_allclose(ct.pixel_array.T.astype(float), hu, atol=0.5)
    seg = hd.seg.segread(folder / "seed_003_seg.dcm")
    rebuilt = np.zeros_like(label)
    for number in seg.segment_numbers:
        name = seg.get_segment_description(number).SegmentLabel
        pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=[ct.SOPInstanceUID],
                                                   segment_numbers=[number])[0, :, :, 0].T
        from bundles.transforms.labels import SEGMENT_NAMES

        rebuilt[pixels > 0] = LABEL_VALUES[SEGMENT_NAMES.index(name)]
    np.testing.assert_array_equal(rebuilt, label)


def test_radiogan_inference_dicom(tmp_path):
    from bundles.workflows.radiogan_inference import generate_images

    network = {"builder": "bundles.networks.radiogan.RadioGANGenerator", "latent_dim": 8, "num_classes": 5,
               "first_grid": [3, 5], "channels": [4, 4]}
    model = _model(network, {"classes": ["normal", "head_neck", "oesophagus", "lung", "lymphoma"],
                             "spacing_mm": [2.0, 2.0], "suv_max": 30.0})
    generate_images(model, tmp_path / "out", classes=["lung"], num_per_class=2, bundle_version="9.9.9")
    out = tmp_path / "out"
    for i in range(2):
        suv = np.asarray(nib.load(out / f"lung_{i:03d}.nii.gz").dataobj)
        ds = check_dicom(out / "dicom" / f"lung_{i:03d}.dcm")
        assert ds.Units == "GML" and "lung" in ds.SeriesDescription
        slope = float(ds.RescaleSlope)
        np.testing.assert_allclose(ds.pixel_array.T * slope, suv, atol=slope / 2 + 1e-6)
        np.testing.assert_allclose(np.asarray(ds.PixelSpacing, float), [2.0, 2.0])
    uids = {pydicom.dcmread(out / "dicom" / f"lung_{i:03d}.dcm").StudyInstanceUID for i in range(2)}
    assert len(uids) == 2  # every synthetic image is a new study


@pytest.mark.slow
def test_itk_reads_the_inference_dicom_as_the_nifti(tmp_path):
    import itk

    from bundles.workflows.radiogan_inference import generate_images

    network = {"builder": "bundles.networks.radiogan.RadioGANGenerator", "latent_dim": 8, "num_classes": 5,
               "first_grid": [3, 5], "channels": [4, 4]}
    model = _model(network, {"classes": ["normal", "head_neck", "oesophagus", "lung", "lymphoma"],
                             "spacing_mm": [2.0, 2.0], "suv_max": 30.0})
    generate_images(model, tmp_path / "out", classes=[0], num_per_class=1)
    suv = np.asarray(nib.load(tmp_path / "out" / "normal_000.nii.gz").dataobj)
    image = itk.imread(str(tmp_path / "out" / "dicom" / "normal_000.dcm"), itk.F)
    values = itk.array_from_image(image).squeeze().T
    slope = float(pydicom.dcmread(tmp_path / "out" / "dicom" / "normal_000.dcm").RescaleSlope)
    np.testing.assert_allclose(values, suv, atol=slope / 2 + 1e-6)
