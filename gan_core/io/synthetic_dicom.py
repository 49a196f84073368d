"""Synthetic images as valid DICOM that nobody can mistake for a patient's: the parts the bundles share.

The generators produce 2D images; each bundle writes them as DICOM that a PACS and a viewer accept (``dciodvfy``
reports no error) and that pydicom, highdicom and ITK read back as the same values: a CT slice in HU
(:func:`write_synthetic_ct`, here), with a SEG of its nodule (radiogenomic) or of its label map (ctstyle), or a PET
MIP in SUV (RadioGAN); the SEG and PET writers live in those bundles' ``scripts`` and are built from the parts here
(:func:`image_dataset`, :func:`segmentation`, :func:`save_dicom`, ...)::

    provenance = SyntheticProvenance(bundle="radiogenomic_bundle", bundle_version="0.7.0",
                                     model_sha256=file_sha256("models/model.pt"), index=7)
    write_synthetic_ct(hu, affine, "out/ct.dcm", provenance)

Arrays (numpy, or tensors on any device) are in MONAI / NIfTI axis order, (X, Y): x = columns (axis 0), y = rows
(axis 1); ``affine`` is the 4x4 voxel -> RAS mm matrix of the slice, whose first two columns must be orthogonal; the
length of its third column becomes SliceThickness. A MetaTensor's meta data is never read.

- CT slice: **CT Image Storage**, pixel data int16 with RescaleSlope 1, RescaleIntercept 0 and RescaleType HU, so
  the stored value is the HU rounded to an integer (read back within 0.5 HU). Inputs outside int16 are refused.
- SEG (:func:`segmentation`): highdicom ``Segmentation``, BINARY, on the CT slice, one frame per segment, read back
  exactly; it shares the CT's study, patient and frame of reference and references the CT. Its algorithm is
  AUTOMATIC and identified as the bundle (:func:`algorithm_identification`).

Marking (every object): new Study, Series, SOP Instance and Frame of Reference UIDs; PatientName
``SYNTHETIC^<index>``, PatientID ``SYN-<index>``, empty birth date and sex; StudyDescription and SeriesDescription
starting with "SYNTHETIC"; ImageType DERIVED (value 2 SECONDARY for CT, PRIMARY where the IOD prescribes it);
BurnedInAnnotation NO; ImageComments and DerivationDescription saying what generated it; Manufacturer = the project,
ManufacturerModelName = the bundle, SoftwareVersions = its version, DeviceSerialNumber = the first 16 hex digits of
the model's sha256; every date and time = the moment of writing (UTC). Nothing is copied from any input except the
geometry of ``affine``. Not used: Synthetic Data (0008,001C), which the dciodvfy of Debian 12 reports as unknown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from gan_core.errors import BundleInputError
from gan_core.fileio import atomic_path, file_sha256
from gan_core.io.dicom_series import set_int16_pixel_module

PROJECT = "gan-bundles"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

INT16_RANGE = (-32768, 32767)
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
                                   field="model_sha256", hint="use gan_core.fileio.file_sha256(weights)")
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


@dataclass(frozen=True)
class Plane:
    """DICOM geometry of a 2D image: LPS direction cosines, spacings (mm) and the first pixel's position."""

    row_cosines: np.ndarray  # (3,) direction of increasing column index (array axis 0, x)
    column_cosines: np.ndarray  # (3,) direction of increasing row index (array axis 1, y)
    spacing_x: float  # mm between columns
    spacing_y: float  # mm between rows
    position: np.ndarray  # (3,) LPS mm of pixel (row 0, column 0)
    thickness: float  # mm, length of the affine's third column (0 when it is zero)


def as_numpy(value) -> np.ndarray:
    """An array from a numpy array, a list or a (Meta)Tensor on any device (its meta data is not looked at)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def plane_of(affine, shape: tuple[int, ...], field: str = "affine") -> Plane:
    """Validate a slice's 4x4 RAS affine and convert it to DICOM (LPS) geometry."""
    affine = as_numpy(affine).astype(np.float64)
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
    return Plane(row, col, dx, dy, lps[:3, 3].copy(), float(np.linalg.norm(lps[:3, 2])))


def ds_number(x: float) -> str:
    return format_number_as_ds(float(x))


def now_utc() -> tuple[str, str]:
    """(DA, TM) of this moment in UTC."""
    moment = datetime.now(UTC)
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S.%f")


def code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
    return item


def image_dataset(sop_class: str, modality: str, plane: Plane, shape: tuple[int, int],
                   provenance: SyntheticProvenance, what: str, image_type: list[str]) -> Dataset:
    """A new study / series / instance with every marking attribute and the geometry, without pixel data."""
    date, time = now_utc()
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
    ds.ImageOrientationPatient = [ds_number(v) for v in np.concatenate([plane.row_cosines, plane.column_cosines])]
    ds.ImagePositionPatient = [ds_number(v) for v in plane.position]
    ds.PixelSpacing = [ds_number(plane.spacing_y), ds_number(plane.spacing_x)]  # [between rows, between columns]
    ds.SliceThickness = ds_number(plane.thickness) if plane.thickness > 0 else ""
    set_int16_pixel_module(ds, shape)
    return ds


def finite_2d(image, name: str) -> np.ndarray:
    array = as_numpy(image).astype(np.float64)
    if array.ndim != 2:
        raise BundleInputError(f"{name} must be a 2D (X, Y) array, got shape {array.shape}", field=name, hint='pass one 2D slice')
    if not np.isfinite(array).all():
        raise BundleInputError(f"{name} holds {int((~np.isfinite(array)).sum())} non-finite value(s)", field=name,
                               hint="the generator produced NaN/inf; check the model and its input")
    return array


def set_pixels(ds: Dataset, stored: np.ndarray) -> None:
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
    hu = finite_2d(hu, "hu")
    plane = plane_of(affine, hu.shape)
    stored = np.rint(hu)
    if stored.min() < INT16_RANGE[0] or stored.max() > INT16_RANGE[1]:
        raise BundleInputError(f"HU values from {hu.min():.6g} to {hu.max():.6g} do not fit int16", field="hu",
                               hint="a CT slice holds HU in about [-1024, 3071]; check the output scaling")
    ds = image_dataset(CT_IMAGE_STORAGE, "CT", plane, hu.shape, provenance, what, ["DERIVED", "SECONDARY", "AXIAL"])
    ds.PatientPosition = ""  # type 2C: unknown for a synthetic slice
    ds.KVP = ""
    ds.AcquisitionNumber = ""
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = ["40", "-600"], ["400", "1500"]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
    set_pixels(ds, stored)
    return ds


def segmentation(ct: Dataset, pixels: np.ndarray, descriptions: list[hd.seg.SegmentDescription],
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
    date, time = now_utc()  # highdicom dates the instance in local time; every date here is UTC
    seg.SeriesDate, seg.SeriesTime = date, time
    seg.ContentDate, seg.ContentTime = date, time
    seg.InstanceCreationDate, seg.InstanceCreationTime = date, time
    seg.TimezoneOffsetFromUTC = "+0000"
    return seg


def algorithm_identification(provenance: SyntheticProvenance) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=provenance.bundle, version=provenance.bundle_version,
        family=codes.DCM.ArtificialIntelligence, source=provenance.project,
        parameters={"model_sha256": str(provenance.model_sha256).lower()})








def save_dicom(dataset: Dataset, path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".dcm":
        raise BundleInputError("a DICOM output must end in .dcm", path=path, hint='name the file <something>.dcm')
    with atomic_path(path) as tmp:
        dataset.save_as(tmp, enforce_file_format=True)
    return path


def write_synthetic_ct(hu, affine, path, provenance: SyntheticProvenance) -> Path:
    """Write a synthetic CT slice (X, Y) in HU as a CT Image Storage file ``path`` (.dcm); returns ``path``."""
    return save_dicom(synthetic_ct(hu, affine, provenance), path)








__all__ = ["CT_IMAGE_STORAGE", "INT16_RANGE", "PROJECT", "Plane", "SyntheticProvenance",
           "algorithm_identification", "as_numpy", "code_item", "ds_number", "file_sha256", "finite_2d",
           "image_dataset", "now_utc", "plane_of", "save_dicom", "segmentation", "set_pixels", "synthetic_ct",
           "write_synthetic_ct"]
