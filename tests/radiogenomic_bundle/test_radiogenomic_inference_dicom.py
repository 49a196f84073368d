"""radiogenomic's inference writes DICOM beside its NIfTI: valid (dciodvfy), equal to the NIfTI within the stored
precision, and carrying no identifier of any input."""

from __future__ import annotations

import highdicom as hd
import nibabel as nib
import numpy as np
from dicom_checks import check_dicom, model_of, secret_nifti


def test_radiogenomic_inference_dicom(tmp_path):
    from scripts.inference import synthesise

    network = {"builder": "scripts.networks.build_generator", "model_type": "proposed",
               "image_fusion": True, "num_genes": 4, "image_size": 32, "base_channels": 4, "code_dim": 8,
               "noise_dim": 2, "hidden": 8}
    model = model_of(network, {"gene_names": list("abcd"), "gene_mean": [0.0] * 4, "gene_std": [1.0] * 4})
    affine = np.array([[-0.7, 0, 0, 30.0], [0, -0.7, 0, 12.0], [0, 0, 2.5, -80.0], [0, 0, 0, 1]])
    rng = np.random.default_rng(0)
    background = secret_nifti(rng.uniform(-1000, 200, (32, 32)).astype(np.float32), affine,
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
