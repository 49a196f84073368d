"""A synthetic CT slice and its nodule mask as DICOM: CT Image Storage + a one-segment SEG.

The nodule mask (uint8 / bool {0, 1}, (X, Y)) is one segment "Nodule" (SCT Morphologically abnormal structure /
Nodule), written even when empty: the generator's own mask, so the algorithm is AUTOMATIC (see
:mod:`gan_core.io.synthetic_dicom` for the CT object and the marking every object carries).
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from gan_core.errors import BundleInputError
from gan_core.io.synthetic_dicom import (
    SyntheticProvenance,
    algorithm_identification,
    as_numpy,
    save_dicom,
    segmentation,
    synthetic_ct,
)


def synthetic_nodule_seg(ct: Dataset, nodule_mask, provenance: SyntheticProvenance) -> hd.seg.Segmentation:
    """One-segment ("Nodule") BINARY SEG of ``ct``; ``nodule_mask`` (X, Y) uint8 / bool in {0, 1}."""
    mask = as_numpy(nodule_mask)
    if mask.shape != (ct.Columns, ct.Rows):
        raise BundleInputError(f"nodule mask shape {mask.shape} differs from the image's {(ct.Columns, ct.Rows)}",
                               field="nodule_mask", hint='pass the mask generated with this image')
    values = np.unique(mask)
    if not np.isin(values, (0, 1)).all():
        raise BundleInputError(f"nodule mask must hold only 0 and 1, found {values[:10].tolist()}",
                               field="nodule_mask", hint="threshold the mask (mask > 0.5) before writing")
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Nodule",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_identification(provenance))
    return segmentation(ct, mask.astype(np.uint8), [description], provenance, "nodule mask")


def write_synthetic_ct_nodule(hu, nodule_mask, affine, ct_path, seg_path,
                              provenance: SyntheticProvenance) -> tuple[Path, Path]:
    """radiogenomic: a synthetic CT slice (X, Y) in HU and its nodule mask (X, Y) {0, 1} as CT + SEG files.

    The SEG shares the CT's study, patient and frame of reference and references the CT. Returns the paths.
    """
    ct = synthetic_ct(hu, affine, provenance, what=f"CT {provenance.bundle}")
    seg = synthetic_nodule_seg(ct, nodule_mask, provenance)
    return save_dicom(ct, ct_path), save_dicom(seg, seg_path)
