"""A synthetic coronal PET MIP in SUV as DICOM: PET Image Storage.

A classic PET image rather than a highdicom Parametric Map because ITK (itk 5.4, GDCM) cannot open a Parametric Map at
all, while every reader applies the Modality LUT (RescaleSlope) of a PET image. Units GML (g/ml) is the DICOM unit of
SUVbw; pixel data int16, RescaleIntercept 0 (the PET Image module allows no other value) and RescaleSlope =
max |SUV| / 32767, so SUV is read back within slope / 2 (about 1.5e-5 of the maximum). The same linear map is also
given as a Real World Value Mapping item with the UCUM unit ``{SUVbw}g/ml``, so readers that prefer RWVM (highdicom)
name the unit. SeriesType WHOLE BODY \\ REPROJECTION (ReprojectionMethod MAX PIXEL). The PET acquisition attributes
the IOD requires but a synthetic image lacks are empty (type 2) or the honest generic value (CountsSource EMISSION,
DecayCorrection START with DecayFactor 1, CorrectedImage ATTN \\ DECY because SUV is defined on corrected images,
NumberOfSlices 1); the radiopharmaceutical is FDG, the tracer the model learnt, so ``scripts.suv.suv_factor`` reads it
as SUV with factor 1. The geometry is ``mip_affine``'s as given: rows run upwards (+S), so a viewer that shows row 0 at
the top and does not reorient shows the head at the bottom (its orientation labels say so). See
:mod:`gan_core.io.synthetic_dicom` for the marking every object carries.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from gan_core.io.synthetic_dicom import (
    INT16_RANGE,
    SyntheticProvenance,
    code_item,
    ds_number,
    finite_2d,
    image_dataset,
    plane_of,
    save_dicom,
    set_pixels,
)

PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
SUV_BW_UNIT = Code("{SUVbw}g/ml", "UCUM", "Standardized Uptake Value body weight")


def synthetic_pet_mip(suv, affine, provenance: SyntheticProvenance) -> Dataset:
    """A PET Image Storage dataset of a synthetic coronal MIP in SUV (not written; see write_synthetic_pet_mip).

    Args:
        suv: (S0, S1) float SUVbw (g/ml), axis 0 = columns, axis 1 = rows; stored within slope / 2 where
            slope = max |suv| / 32767.
        affine: 4x4 voxel -> RAS mm (``mip_affine``); its third column is the projection direction
            (SliceThickness is left empty: a projection has none).
        provenance: the marking values.
    """
    suv = finite_2d(suv, "suv")
    plane = plane_of(affine, suv.shape)
    peak = float(np.abs(suv).max())
    slope = float(ds_number(peak / INT16_RANGE[1])) if peak > 0 else 1.0
    stored = np.rint(suv / slope)
    if stored.min() < INT16_RANGE[0] or stored.max() > INT16_RANGE[1]:  # the DS rounding of the slope, in theory
        slope = float(ds_number(slope * (1 + 1e-9)))
        stored = np.rint(suv / slope)
    # Value 2 of a PET ImageType must be PRIMARY (PET Image module); the synthetic origin is said by DERIVED,
    # the descriptions and the comments.
    ds = image_dataset(PET_IMAGE_STORAGE, "PT", plane, suv.shape, provenance, "PET MIP", ["DERIVED", "PRIMARY"])
    ds.SliceThickness = ""  # a projection through the whole body has no slice thickness
    # PET Series: the values are SUVbw already
    ds.Units = "GML"
    ds.SeriesType = ["WHOLE BODY", "REPROJECTION"]
    ds.ReprojectionMethod = "MAX PIXEL"
    ds.CountsSource = "EMISSION"
    ds.CorrectedImage = ["ATTN", "DECY"]
    ds.DecayCorrection = "START"
    ds.NumberOfSlices = 1
    ds.CollimatorType = "NONE"
    # PET Isotope: FDG, the tracer of the training data; no dose or time (there was no injection)
    rp = Dataset()
    rp.Radiopharmaceutical = "Fluorodeoxyglucose"
    rp.RadionuclideCodeSequence = Sequence([code_item(codes.SCT._18Fluorine)])
    rp.RadiopharmaceuticalCodeSequence = Sequence([code_item(codes.SCT.FluorodeoxyglucoseF18)])
    ds.RadiopharmaceuticalInformationSequence = Sequence([rp])
    # NM/PET Patient Orientation: unknown
    ds.PatientOrientationCodeSequence = Sequence()
    ds.PatientGantryRelationshipCodeSequence = Sequence()
    # PET Image
    ds.ImageIndex = 1
    ds.FrameReferenceTime = "0"
    ds.ActualFrameDuration = ""
    ds.DecayFactor = "1"
    ds.AcquisitionDate = ""
    ds.AcquisitionTime = ""
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = ds_number(slope)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="SUVbw", lut_explanation="Standardized Uptake Value body weight", unit=SUV_BW_UNIT,
        value_range=INT16_RANGE, slope=slope, intercept=0)
    ds.RealWorldValueMappingSequence = Sequence([mapping])
    set_pixels(ds, stored)
    return ds


def write_synthetic_pet_mip(suv, affine, path, provenance: SyntheticProvenance) -> Path:
    """RadioGAN: a synthetic coronal PET MIP (S0, S1) in SUV as a PET Image Storage file; returns ``path``."""
    return save_dicom(synthetic_pet_mip(suv, affine, provenance), path)
