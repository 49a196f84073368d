"""A synthetic CT slice and the six-label map it came from as DICOM: CT Image Storage + a SEG of the labels.

The SEG holds one segment per label present in the map *except air*: air (value 0) is the background of a SEG (the
pixels in no segment), so writing it would only duplicate the complement of the others. Segments are numbered in
label order (body 1, lungs 2, ...) where present, labelled with ``SEGMENT_NAMES`` and coded with SNOMED CT concepts of
DICOM CID 7150/7151/7166 (``LABEL_CODES``); the map is rebuilt exactly as ``LABEL_VALUES[SEGMENT_NAMES.index(label)]``
per segment, 0 elsewhere. The algorithm is AUTOMATIC: the map is the generator's conditioning input, not drawn on the
image (see :mod:`gan_core.io.synthetic_dicom` for the CT object and the marking every object carries).
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from gan_core.errors import BundleInputError
from gan_core.io.synthetic_dicom import (
    SyntheticProvenance,
    algorithm_identification,
    as_numpy,
    save_dicom,
    segmentation,
    synthetic_ct,
)

from .labels import LABEL_VALUES, SEGMENT_NAMES, label_indices

# ctstyle labels -> (segmented property category, segmented property type); air (0) is the SEG background.
LABEL_CODES: dict[str, tuple[Code, Code]] = {
    "body": (codes.SCT.Tissue, codes.SCT.SoftTissue),
    "lungs": (codes.SCT.AnatomicalStructure, codes.SCT.Lung),
    "heart_vessels": (codes.SCT.AnatomicalStructure, codes.SCT.CardiovascularSystem),
    "bone": (codes.SCT.Tissue, codes.SCT.Bone),
    "spinal_cord": (codes.SCT.AnatomicalStructure, codes.SCT.SpinalCord),
}


def synthetic_label_seg(ct: Dataset, label_map, provenance: SyntheticProvenance) -> hd.seg.Segmentation:
    """BINARY SEG of ``ct`` with one segment per ctstyle label present in ``label_map`` (X, Y), air omitted.

    Raises:
        BundleInputError: a shape mismatch, values outside ``LABEL_VALUES``, or a map holding only air.
    """
    labels = as_numpy(label_map)
    if labels.shape != (ct.Columns, ct.Rows):
        raise BundleInputError(f"label map shape {labels.shape} differs from the image's {(ct.Columns, ct.Rows)}",
                               field="label_map", hint='pass the label map this image was generated from')
    index = label_indices(labels, LABEL_VALUES, field="label_map")  # 0..5, BundleInputError on unknown values
    present = [i for i in range(1, len(LABEL_VALUES)) if (index == i).any()]
    if not present:
        raise BundleInputError("the label map holds only air (0): there is no segment to write", field="label_map", hint='pass a label map with organs')
    pixels = np.zeros(labels.shape, dtype=np.uint8)
    descriptions = []
    for number, i in enumerate(present, start=1):
        name = SEGMENT_NAMES[i]
        category, kind = LABEL_CODES[name]
        pixels[index == i] = number
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name, segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_identification(provenance)))
    return segmentation(ct, pixels, descriptions, provenance, "label map")


def write_synthetic_ct_labels(hu, label_map, affine, ct_path, seg_path,
                              provenance: SyntheticProvenance) -> tuple[Path, Path]:
    """ctstyle: a synthetic CT slice (X, Y) in HU and the six-label map (X, Y) it came from as CT + SEG files.

    One segment per label present (air omitted, see the module docstring). Returns the paths.
    """
    ct = synthetic_ct(hu, affine, provenance, what=f"CT {provenance.bundle}")
    seg = synthetic_label_seg(ct, label_map, provenance)
    return save_dicom(ct, ct_path), save_dicom(seg, seg_path)
