"""ctstyle's inference writes DICOM beside its NIfTI: valid (dciodvfy), equal to the NIfTI within the stored
precision, and carrying no identifier of any input."""

from __future__ import annotations

import highdicom as hd
import nibabel as nib
import numpy as np
from dicom_checks import check_dicom, model_of, secret_nifti


def test_ctstyle_inference_dicom(tmp_path):
    from scripts.inference import run_inference
    from scripts.labels import LABEL_VALUES

    network = {"builder": "scripts.networks.CTStyleGenerator", "noise_dim": 200, "base_channels": 4,
               "num_levels": 3, "max_channels": 8, "noise_grid": 4}
    model = model_of(network, {"image_size": 32})
    label = np.zeros((32, 32), np.uint8)
    label[4:28, 4:28] = 50
    label[8:16, 8:24] = 100
    label[18:24, 10:20] = 150
    label[14:18, 24:27] = 200
    affine = np.diag([-0.8, -0.8, 5.0, 1.0])
    maps = secret_nifti(label, affine, tmp_path / "Jane_Doe_MRN123_label.nii.gz")
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
        from scripts.labels import SEGMENT_NAMES

        rebuilt[pixels > 0] = LABEL_VALUES[SEGMENT_NAMES.index(name)]
    np.testing.assert_array_equal(rebuilt, label)
