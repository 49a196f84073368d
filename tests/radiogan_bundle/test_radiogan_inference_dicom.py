"""RadioGAN's inference writes DICOM beside its NIfTI: valid (dciodvfy), equal to the NIfTI within the stored
precision, and carrying no identifier of any input."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_checks import check_dicom, model_of


def test_radiogan_inference_dicom(tmp_path):
    from scripts.inference import generate_images

    network = {"builder": "scripts.networks.RadioGANGenerator", "latent_dim": 8, "num_classes": 5,
               "first_grid": [3, 5], "channels": [4, 4]}
    model = model_of(network, {"classes": ["normal", "head_neck", "oesophagus", "lung", "lymphoma"],
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
    from scripts.inference import generate_images

    network = {"builder": "scripts.networks.RadioGANGenerator", "latent_dim": 8, "num_classes": 5,
               "first_grid": [3, 5], "channels": [4, 4]}
    model = model_of(network, {"classes": ["normal", "head_neck", "oesophagus", "lung", "lymphoma"],
                             "spacing_mm": [2.0, 2.0], "suv_max": 30.0})
    generate_images(model, tmp_path / "out", classes=[0], num_per_class=1)
    suv = np.asarray(nib.load(tmp_path / "out" / "normal_000.nii.gz").dataobj)
    image = itk.imread(str(tmp_path / "out" / "dicom" / "normal_000.dcm"), itk.F)
    values = itk.array_from_image(image).squeeze().T
    slope = float(pydicom.dcmread(tmp_path / "out" / "dicom" / "normal_000.dcm").RescaleSlope)
    np.testing.assert_allclose(values, suv, atol=slope / 2 + 1e-6)
