"""Synthetic images as valid DICOM that nobody can mistake for a patient's: CT slices with their SEG, PET MIPs.

The three bundles' generators produce 2D images: radiogenomic a CT slice in HU from a nodule mask, ctstyle a CT
slice in HU from a six-label map, RadioGAN a coronal PET maximum-intensity projection in SUV. These writers store
them as DICOM a PACS and a viewer accept (``dciodvfy`` reports no error) and that every DICOM reader of this
project (pydicom, highdicom, ITK) reads back as the same HU / SUV / masks.

API (every writer writes through :func:`bundles.fileio.atomic_path` and returns the written path(s))::

    provenance = SyntheticProvenance(bundle="radiogenomic_bundle", bundle_version="0.3.0",
                                     model_sha256=file_sha256("models/model.pt"), index=7)
    ct_path, seg_path = write_synthetic_ct_nodule(hu, nodule_mask, affine, "out/ct.dcm", "out/seg.dcm", provenance)
    ct_path, seg_path = write_synthetic_ct_labels(hu, label_map, affine, "out/ct.dcm", "out/seg.dcm", provenance)
    pet_path = write_synthetic_pet_mip(suv, mip_affine(2.0), "out/mip.dcm", provenance)
    write_synthetic_ct(hu, affine, "out/ct.dcm", provenance)  # a CT slice alone

``synthetic_ct`` / ``synthetic_pet_mip`` (pydicom Datasets) and ``synthetic_nodule_seg`` /
``synthetic_label_seg`` (highdicom Segmentations of a CT Dataset) build the objects without writing them.

Arrays (numpy, or tensors on any device) are in MONAI / NIfTI axis order, (X, Y): x = columns (axis 0), y = rows
(axis 1); ``affine`` is the 4x4 voxel -> RAS mm matrix of the slice (the NIfTI's, a 2D MetaTensor's ``.affine``, or
``bundles.workflows.radiogan_inference.mip_affine``), whose first two columns must be orthogonal; the length of its
third column becomes the CT's SliceThickness. A MetaTensor's meta data is never read.

Objects written (one IOD each, chosen so that dciodvfy reports no error):

- CT slice: **CT Image Storage** (1.2.840.10008.5.1.4.1.1.2), pixel data int16 with RescaleSlope 1,
  RescaleIntercept 0 and RescaleType HU, so the stored value is the HU rounded to an integer (read back within
  0.5 HU by pydicom ``pixel_array * slope + intercept``, ``highdicom.imread(...).get_frame(1)`` and
  ``itk.imread``). Inputs outside the int16 range are refused.
- Masks: **Segmentation Storage** (highdicom ``Segmentation``, BINARY) on the CT slice: one frame per segment,
  read back exactly (``highdicom.seg.segread(...).get_pixels_by_source_instance``). It shares the CT's
  study, patient and frame of reference and references the CT (ReferencedSeriesSequence >
  ReferencedInstanceSequence and each frame's source image). The nodule mask (uint8 / bool {0, 1}) is one
  segment "Nodule" (SCT Morphologically abnormal structure / Nodule), written even when empty. The six-label
  map of ctstyle gives one segment per label present in the map *except air*: air (value 0) is the background
  of a SEG (the pixels in no segment), so writing it would only duplicate the complement of the others.
  Segments are numbered in label order (body 1, lungs 2, ...) where present, labelled with the names of
  ``bundles.transforms.labels.SEGMENT_NAMES`` and coded with SNOMED CT concepts of DICOM CID 7150/7151/7166
  (pydicom's ``codes``, the dictionary highdicom uses): body soft tissue -> Tissue / Soft tissue, lungs ->
  Anatomical structure / Lung, heart and vessels -> Anatomical structure / Cardiovascular system, bone ->
  Tissue / Bone, spinal cord -> Anatomical structure / Spinal cord. The map is rebuilt exactly as
  ``LABEL_VALUES[SEGMENT_NAMES.index(label)]`` per segment, 0 elsewhere. The algorithm is AUTOMATIC and
  identified as the bundle (name, version, model checksum, family Artificial Intelligence): the masks are
  the generator's conditioning input, not drawn on the image.
- PET MIP: **PET Image Storage** (1.2.840.10008.5.1.4.1.1.128) with Units GML and SeriesType
  WHOLE BODY \\ REPROJECTION (ReprojectionMethod MAX PIXEL). A classic PET image rather than a highdicom
  Parametric Map because ITK (itk 5.4, GDCM) cannot open a Parametric Map at all, with float or with
  RWVM-scaled integer pixels ("Could not create IO object"), while every reader applies the Modality LUT
  (RescaleSlope) of a PET image. Units GML (g/ml) is the DICOM unit of SUVbw; pixel data int16, RescaleIntercept 0 (the PET Image module allows no other value) and
  RescaleSlope = max |SUV| / 32767, so SUV is read back within slope / 2 (about 1.5e-5 of the maximum). The
  same linear map is also given as a Real World Value Mapping item with the UCUM unit ``{SUVbw}g/ml``
  ("Standardized Uptake Value body weight", CID 85), so readers that prefer RWVM (highdicom) name the unit.
  The PET acquisition attributes the IOD requires but a synthetic image lacks are empty (type 2) or the
  honest generic value (CountsSource EMISSION, DecayCorrection START with DecayFactor 1, CorrectedImage
  ATTN \\ DECY because SUV is defined on corrected images, NumberOfSlices 1); the radiopharmaceutical is
  FDG, the tracer the model learnt. ``bundles.io.suv.suv_factor`` reads it as SUV with factor 1. The
  geometry is ``mip_affine``'s as given: rows run upwards (+S), so a viewer that shows row 0 at the top and
  does not reorient shows the head at the bottom (its orientation labels say so).

Marking (every object): a new StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID and FrameOfReferenceUID
(``pydicom.uid.generate_uid``); PatientName ``SYNTHETIC^<index>``, PatientID ``SYN-<index>``, empty birth date
and sex; StudyDescription and SeriesDescription starting with "SYNTHETIC"; ImageType DERIVED \\ SECONDARY for the
CT (the PET Image and Segmentation IODs prescribe value 2 PRIMARY: DERIVED \\ PRIMARY there); BurnedInAnnotation NO;
ImageComments and DerivationDescription saying what generated it; Manufacturer = the project ("gan-bundles"),
ManufacturerModelName = the bundle, SoftwareVersions = the bundle version, DeviceSerialNumber = the first 16
hex digits of the model's sha256; StudyDate/Time, SeriesDate/Time, ContentDate/Time and InstanceCreation
Date/Time = the moment of writing (UTC, TimezoneOffsetFromUTC +0000). Nothing is copied from any input except
the geometry of ``affine``: a caller has no way to pass other header values. The SEG's ContentLabel is
SYNTHETIC. Not used: Synthetic Data (0008,001C), newer than the dicom3tools of Debian 12, whose dciodvfy
reports it as an unknown standard attribute (an error).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from bundles.errors import BundleInputError
from bundles.fileio import atomic_path
from bundles.io.dicom_series import set_int16_pixel_module
from bundles.transforms.labels import LABEL_VALUES, SEGMENT_NAMES, label_indices

PROJECT = "gan-bundles"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
SUV_BW_UNIT = Code("{SUVbw}g/ml", "UCUM", "Standardized Uptake Value body weight")

# ctstyle labels -> (segmented property category, segmented property type); air (0) is the SEG background.
LABEL_CODES: dict[str, tuple[Code, Code]] = {
    "body": (codes.SCT.Tissue, codes.SCT.SoftTissue),
    "lungs": (codes.SCT.AnatomicalStructure, codes.SCT.Lung),
    "heart_vessels": (codes.SCT.AnatomicalStructure, codes.SCT.CardiovascularSystem),
    "bone": (codes.SCT.Tissue, codes.SCT.Bone),
    "spinal_cord": (codes.SCT.AnatomicalStructure, codes.SCT.SpinalCord),
}

_INT16 = (-32768, 32767)
_ORTHO_TOL = 1e-4  # |cos| between the in-plane axes of the affine


@dataclass(frozen=True)
class SyntheticProvenance:
    """Who made a synthetic image, written into the equipment attributes of every object.

    Attributes:
        bundle: the bundle's name, e.g. "radiogenomic_bundle" (ManufacturerModelName).
        bundle_version: the bundle's version from configs/metadata.json (SoftwareVersions).
        model_sha256: hex sha256 of the generator weights (:func:`file_sha256`); at least 16 hex digits, the
            first 16 become DeviceSerialNumber.
        index: the sample's number: PatientName ``SYNTHETIC^<index>``, PatientID ``SYN-<index>``.
        description: optional words appended to the descriptions, e.g. the RadioGAN class ("lymphoma").
        project: the project (Manufacturer).
    """

    bundle: str
    bundle_version: str
    model_sha256: str
    index: int
    description: str = ""
    project: str = PROJECT

    def __post_init__(self):
        for name in ("bundle", "bundle_version", "project"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or len(value) > 64 or "\\" in value:
                raise BundleInputError(f"{name} must be a non-empty text of at most 64 characters without '\\', "
                                       f"got {value!r}", field=name, hint='shorten the text and remove backslashes')
        if not re.fullmatch(r"[0-9a-fA-F]{16,64}", str(self.model_sha256)):
            raise BundleInputError(f"model_sha256 must be 16 to 64 hex digits, got {self.model_sha256!r}",
                                   field="model_sha256", hint="use bundles.io.synthetic_dicom.file_sha256(weights)")
        if isinstance(self.index, bool) or not isinstance(self.index, (int, np.integer)) or self.index < 0:
            raise BundleInputError(f"index must be a non-negative integer, got {self.index!r}", field="index", hint='pass a whole number >= 0')
        if len(self.description) > 40 or "\\" in self.description:
            raise BundleInputError("description must be at most 40 characters without '\\'", field="description", hint='shorten the description')

    @property
    def patient_name(self) -> str:
        return f"SYNTHETIC^{int(self.index)}"

    @property
    def patient_id(self) -> str:
        return f"SYN-{int(self.index)}"

    @property
    def checksum(self) -> str:
        """The first 16 hex digits of the model's sha256, lower case."""
        return str(self.model_sha256)[:16].lower()

    def series_description(self, what: str) -> str:
        """``SYNTHETIC <what> [<description>]`` (at most 64 characters)."""
        return " ".join(part for part in ("SYNTHETIC", what, self.description) if part)[:64]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (e.g. the generator checkpoint), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class _Plane:
    """DICOM geometry of a 2D image: LPS direction cosines, spacings (mm) and the first pixel's position."""

    row_cosines: np.ndarray  # (3,) direction of increasing column index (array axis 0, x)
    column_cosines: np.ndarray  # (3,) direction of increasing row index (array axis 1, y)
    spacing_x: float  # mm between columns
    spacing_y: float  # mm between rows
    position: np.ndarray  # (3,) LPS mm of pixel (row 0, column 0)
    thickness: float  # mm, length of the affine's third column (0 when it is zero)


def _numpy(value) -> np.ndarray:
    """An array from a numpy array, a list or a (Meta)Tensor on any device (its meta data is not looked at)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _plane(affine, shape: tuple[int, ...], field: str = "affine") -> _Plane:
    """Validate a slice's 4x4 RAS affine and convert it to DICOM (LPS) geometry."""
    affine = _numpy(affine).astype(np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise BundleInputError(f"affine must be a finite 4x4 matrix, got shape {affine.shape}", field=field, hint='pass the 4x4 RAS affine of the NIfTI slice')
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    dx, dy = float(np.linalg.norm(lps[:3, 0])), float(np.linalg.norm(lps[:3, 1]))
    if dx <= 0 or dy <= 0:
        raise BundleInputError("affine has a zero in-plane axis (pixel spacing 0)", field=field, hint='pass an affine with non-zero pixel spacing')
    row, col = lps[:3, 0] / dx, lps[:3, 1] / dy
    if abs(float(np.dot(row, col))) > _ORTHO_TOL:
        raise BundleInputError("the affine's first two columns are not orthogonal (sheared pixels cannot be "
                               "written as DICOM ImageOrientationPatient)", field=field,
                               hint="resample the image onto an orthogonal grid first")
    if len(shape) != 2 or min(shape) < 1:
        raise BundleInputError(f"image must be 2D (X, Y), got shape {tuple(shape)}", field="image", hint='pass one 2D slice')
    return _Plane(row, col, dx, dy, lps[:3, 3].copy(), float(np.linalg.norm(lps[:3, 2])))


def _ds(x: float) -> str:
    return format_number_as_ds(float(x))


def _now() -> tuple[str, str]:
    """(DA, TM) of this moment in UTC."""
    moment = datetime.now(UTC)
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S.%f")


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
    return item


def _image_dataset(sop_class: str, modality: str, plane: _Plane, shape: tuple[int, int],
                   provenance: SyntheticProvenance, what: str, image_type: list[str]) -> Dataset:
    """A new study / series / instance with every marking attribute and the geometry, without pixel data."""
    date, time = _now()
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    # SOP Common
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.TimezoneOffsetFromUTC = "+0000"
    # Patient (pseudonymous; nothing known)
    ds.PatientName = provenance.patient_name
    ds.PatientID = provenance.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    # General Study (new)
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = "SYNTHETIC"
    ds.AccessionNumber = ""
    ds.StudyDescription = provenance.series_description(f"{modality} {provenance.bundle}")
    # General Series (new)
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = provenance.series_description(what)
    ds.ImageLaterality = "U"  # unpaired (chest, whole body): the series-level Laterality is not required
    # Frame of Reference (new: the geometry is the model's, not a scanner's)
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    # General Equipment: the generator
    ds.Manufacturer = provenance.project
    ds.ManufacturerModelName = provenance.bundle
    ds.SoftwareVersions = provenance.bundle_version
    ds.DeviceSerialNumber = provenance.checksum
    # General Image
    ds.InstanceNumber = 1
    ds.ImageType = image_type
    ds.ContentDate, ds.ContentTime = date, time
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.DerivationDescription = (f"SYNTHETIC: generated by the {provenance.bundle} model of {provenance.project}; "
                                "not an acquired image of a patient")
    ds.ImageComments = (f"SYNTHETIC image generated by {provenance.project} {provenance.bundle} "
                        f"{provenance.bundle_version}, model sha256 {str(provenance.model_sha256).lower()}. "
                        "Not a real patient; not for diagnosis.")
    # Image Plane
    ds.ImageOrientationPatient = [_ds(v) for v in np.concatenate([plane.row_cosines, plane.column_cosines])]
    ds.ImagePositionPatient = [_ds(v) for v in plane.position]
    ds.PixelSpacing = [_ds(plane.spacing_y), _ds(plane.spacing_x)]  # [between rows, between columns]
    ds.SliceThickness = _ds(plane.thickness) if plane.thickness > 0 else ""
    set_int16_pixel_module(ds, shape)
    return ds


def _finite(image, name: str) -> np.ndarray:
    array = _numpy(image).astype(np.float64)
    if array.ndim != 2:
        raise BundleInputError(f"{name} must be a 2D (X, Y) array, got shape {array.shape}", field=name, hint='pass one 2D slice')
    if not np.isfinite(array).all():
        raise BundleInputError(f"{name} holds {int((~np.isfinite(array)).sum())} non-finite value(s)", field=name,
                               hint="the generator produced NaN/inf; check the model and its input")
    return array


def _set_pixels(ds: Dataset, stored: np.ndarray) -> None:
    """(X, Y) int16 -> PixelData of (rows = Y, columns = X)."""
    ds.PixelData = np.ascontiguousarray(stored.T.astype("<i2")).tobytes()


def synthetic_ct(hu, affine, provenance: SyntheticProvenance, what: str = "CT") -> Dataset:
    """A CT Image Storage dataset of a synthetic slice (not written; see :func:`write_synthetic_ct`).

    Args:
        hu: (X, Y) float, Hounsfield units (x = columns, y = rows), within the int16 range after rounding.
        affine: 4x4 voxel -> RAS mm of the slice.
        provenance: the marking values.
        what: the series description after "SYNTHETIC".
    """
    hu = _finite(hu, "hu")
    plane = _plane(affine, hu.shape)
    stored = np.rint(hu)
    if stored.min() < _INT16[0] or stored.max() > _INT16[1]:
        raise BundleInputError(f"HU values from {hu.min():.6g} to {hu.max():.6g} do not fit int16", field="hu",
                               hint="a CT slice holds HU in about [-1024, 3071]; check the output scaling")
    ds = _image_dataset(CT_IMAGE_STORAGE, "CT", plane, hu.shape, provenance, what, ["DERIVED", "SECONDARY", "AXIAL"])
    ds.PatientPosition = ""  # type 2C: unknown for a synthetic slice
    ds.KVP = ""
    ds.AcquisitionNumber = ""
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = ["40", "-600"], ["400", "1500"]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
    _set_pixels(ds, stored)
    return ds


def _segmentation(ct: Dataset, pixels: np.ndarray, descriptions: list[hd.seg.SegmentDescription],
                  provenance: SyntheticProvenance, what: str) -> hd.seg.Segmentation:
    """A BINARY SEG of ``ct``; ``pixels`` (X, Y) uint8 holds segment numbers (0 = background)."""
    seg = hd.seg.Segmentation(
        source_images=[ct],
        pixel_array=np.ascontiguousarray(pixels.T[None]),  # (frames = 1, rows = Y, columns = X)
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=provenance.project,
        manufacturer_model_name=provenance.bundle,
        software_versions=provenance.bundle_version,
        device_serial_number=provenance.checksum,
        content_description=f"SYNTHETIC {what} ({provenance.bundle})"[:64],
        content_label="SYNTHETIC",
        series_description=provenance.series_description(f"SEG {what}"),
        omit_empty_frames=False,  # an empty mask still gives a frame (and a valid SEG)
    )
    date, time = _now()  # highdicom dates the instance in local time; every date here is UTC
    seg.SeriesDate, seg.SeriesTime = date, time
    seg.ContentDate, seg.ContentTime = date, time
    seg.InstanceCreationDate, seg.InstanceCreationTime = date, time
    seg.TimezoneOffsetFromUTC = "+0000"
    return seg


def _algorithm(provenance: SyntheticProvenance) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=provenance.bundle, version=provenance.bundle_version,
        family=codes.DCM.ArtificialIntelligence, source=provenance.project,
        parameters={"model_sha256": str(provenance.model_sha256).lower()})


def synthetic_nodule_seg(ct: Dataset, nodule_mask, provenance: SyntheticProvenance) -> hd.seg.Segmentation:
    """One-segment ("Nodule") BINARY SEG of ``ct``; ``nodule_mask`` (X, Y) uint8 / bool in {0, 1}."""
    mask = _numpy(nodule_mask)
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
        algorithm_identification=_algorithm(provenance))
    return _segmentation(ct, mask.astype(np.uint8), [description], provenance, "nodule mask")


def synthetic_label_seg(ct: Dataset, label_map, provenance: SyntheticProvenance) -> hd.seg.Segmentation:
    """BINARY SEG of ``ct`` with one segment per ctstyle label present in ``label_map`` (X, Y), air omitted.

    Raises:
        BundleInputError: a shape mismatch, values outside ``LABEL_VALUES``, or a map holding only air.
    """
    labels = _numpy(label_map)
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
            algorithm_identification=_algorithm(provenance)))
    return _segmentation(ct, pixels, descriptions, provenance, "label map")


def synthetic_pet_mip(suv, affine, provenance: SyntheticProvenance) -> Dataset:
    """A PET Image Storage dataset of a synthetic coronal MIP in SUV (not written; see write_synthetic_pet_mip).

    Args:
        suv: (S0, S1) float SUVbw (g/ml), axis 0 = columns, axis 1 = rows; stored within slope / 2 where
            slope = max |suv| / 32767.
        affine: 4x4 voxel -> RAS mm (``mip_affine``); its third column is the projection direction
            (SliceThickness is left empty: a projection has none).
        provenance: the marking values.
    """
    suv = _finite(suv, "suv")
    plane = _plane(affine, suv.shape)
    peak = float(np.abs(suv).max())
    slope = float(_ds(peak / _INT16[1])) if peak > 0 else 1.0
    stored = np.rint(suv / slope)
    if stored.min() < _INT16[0] or stored.max() > _INT16[1]:  # the DS rounding of the slope, in theory
        slope = float(_ds(slope * (1 + 1e-9)))
        stored = np.rint(suv / slope)
    # Value 2 of a PET ImageType must be PRIMARY (PET Image module); the synthetic origin is said by DERIVED,
    # the descriptions and the comments.
    ds = _image_dataset(PET_IMAGE_STORAGE, "PT", plane, suv.shape, provenance, "PET MIP", ["DERIVED", "PRIMARY"])
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
    rp.RadionuclideCodeSequence = Sequence([_code_item(codes.SCT._18Fluorine)])
    rp.RadiopharmaceuticalCodeSequence = Sequence([_code_item(codes.SCT.FluorodeoxyglucoseF18)])
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
    ds.RescaleSlope = _ds(slope)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="SUVbw", lut_explanation="Standardized Uptake Value body weight", unit=SUV_BW_UNIT,
        value_range=_INT16, slope=slope, intercept=0)
    ds.RealWorldValueMappingSequence = Sequence([mapping])
    _set_pixels(ds, stored)
    return ds


def _save(dataset: Dataset, path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".dcm":
        raise BundleInputError("a DICOM output must end in .dcm", path=path, hint='name the file <something>.dcm')
    with atomic_path(path) as tmp:
        dataset.save_as(tmp, enforce_file_format=True)
    return path


def write_synthetic_ct(hu, affine, path, provenance: SyntheticProvenance) -> Path:
    """Write a synthetic CT slice (X, Y) in HU as a CT Image Storage file ``path`` (.dcm); returns ``path``."""
    return _save(synthetic_ct(hu, affine, provenance), path)


def write_synthetic_ct_nodule(hu, nodule_mask, affine, ct_path, seg_path,
                              provenance: SyntheticProvenance) -> tuple[Path, Path]:
    """radiogenomic: a synthetic CT slice (X, Y) in HU and its nodule mask (X, Y) {0, 1} as CT + SEG files.

    The SEG shares the CT's study, patient and frame of reference and references the CT. Returns the paths.
    """
    ct = synthetic_ct(hu, affine, provenance, what=f"CT {provenance.bundle}")
    seg = synthetic_nodule_seg(ct, nodule_mask, provenance)
    return _save(ct, ct_path), _save(seg, seg_path)


def write_synthetic_ct_labels(hu, label_map, affine, ct_path, seg_path,
                              provenance: SyntheticProvenance) -> tuple[Path, Path]:
    """ctstyle: a synthetic CT slice (X, Y) in HU and the six-label map (X, Y) it came from as CT + SEG files.

    One segment per label present (air omitted, see the module docstring). Returns the paths.
    """
    ct = synthetic_ct(hu, affine, provenance, what=f"CT {provenance.bundle}")
    seg = synthetic_label_seg(ct, label_map, provenance)
    return _save(ct, ct_path), _save(seg, seg_path)


def write_synthetic_pet_mip(suv, affine, path, provenance: SyntheticProvenance) -> Path:
    """RadioGAN: a synthetic coronal PET MIP (S0, S1) in SUV as a PET Image Storage file; returns ``path``."""
    return _save(synthetic_pet_mip(suv, affine, provenance), path)


__all__ = ["LABEL_CODES", "PROJECT", "SUV_BW_UNIT", "SyntheticProvenance", "file_sha256", "synthetic_ct",
           "synthetic_label_seg", "synthetic_nodule_seg", "synthetic_pet_mip", "write_synthetic_ct",
           "write_synthetic_ct_labels", "write_synthetic_ct_nodule", "write_synthetic_pet_mip"]
