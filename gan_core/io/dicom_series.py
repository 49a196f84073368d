"""Read and write one DICOM image series (CT, PET, MR) as a volume with a RAS affine.

Geometry follows MONAI's ``LoadImage(reader="ITKReader")``: array axes (x = columns, y = rows,
z = slices sorted by position along the slice normal ``row x column``), affine in RAS millimetres.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import torch
from monai.data import MetaTensor
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from gan_core.errors import BundleInputError
from gan_core.fileio import atomic_dir

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "PT": "1.2.840.10008.5.1.4.1.1.128",  # Positron Emission Tomography Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
}

# Tolerances: direction cosines (unitless) and lengths (relative to the slice step).
_COS_TOL = 1e-4
_REL_TOL = 1e-3


@dataclass
class DicomSeries:
    """One image series.

    Attributes:
        volume: (X, Y, Z) float32, real-world values = stored * that slice's RescaleSlope + RescaleIntercept.
        affine: 4x4 float64, voxel index -> RAS mm (MONAI convention).
        headers: one pydicom Dataset per slice, sorted along the slice normal, without pixel data.
        files: the slice files, in the same order.
    """

    volume: np.ndarray
    affine: np.ndarray
    headers: list[Dataset]
    files: list[Path]

    def to_metatensor(self) -> MetaTensor:
        """The volume as a MetaTensor of shape (1, X, Y, Z) carrying the RAS affine and the series identity."""
        folder = str(self.files[0].parent)
        affine = torch.as_tensor(self.affine, dtype=torch.float64)
        meta = {
            "filename_or_obj": folder,
            "Modality": str(self.headers[0].get("Modality", "")),
            "SeriesInstanceUID": str(self.headers[0].get("SeriesInstanceUID", "")),
            "original_affine": self.affine.copy(),
            "spatial_shape": np.asarray(self.volume.shape),
            "space": "RAS",
            "original_channel_dim": 0,
        }
        return MetaTensor(torch.from_numpy(np.ascontiguousarray(self.volume[None])), affine=affine, meta=meta)


def _read_file(path: Path) -> Dataset:
    """Read one file fully (pixel bytes loaded, not decoded); BundleInputError if it is not DICOM."""
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise BundleInputError(
            "not a DICOM file (no 'DICM' preamble)",
            path=path,
            field="File Meta Information",
            hint="remove non-DICOM files from the series folder",
        ) from err
    except (OSError, ValueError, EOFError, KeyError, TypeError) as err:
        raise BundleInputError(
            f"unreadable DICOM file ({type(err).__name__}: {err})",
            path=path,
            field="File Meta Information",
            hint="the file is truncated or corrupt; copy it again",
        ) from err
    return ds


def _single_frame(ds: Dataset, path: Path) -> None:
    """Refuse a multi-frame object among the slices of a series (this reader takes one slice per file)."""
    frames = str(ds.get("NumberOfFrames", "1") or "1").strip()
    if frames not in ("1", ""):
        raise BundleInputError(
            f"a multi-frame {ds.get('Modality', 'DICOM')} object ({frames} frames): series are read as one slice "
            "per file", path=path, field="NumberOfFrames",
            hint="remove it from the series folder (RT dose, enhanced multi-frame), or export the series as "
            "single-frame images")


def _require(ds: Dataset, keyword: str, path: Path):
    value = ds.get(keyword)
    if value is None or value == "":
        raise BundleInputError(f"missing required tag {keyword}", path=path, field=keyword,
                               hint='this series lacks a tag the reader needs: export the series again from the scanner or PACS')
    return value


def _floats(ds: Dataset, keyword: str, n: int, path: Path) -> np.ndarray:
    value = _require(ds, keyword, path)
    try:
        out = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise BundleInputError(f"{keyword} is not numeric: {value!r}", path=path, field=keyword,
                               hint='the tag is malformed: export the series again') from err
    if out.shape != (n,):
        raise BundleInputError(f"{keyword} must have {n} values, has {out.size}", path=path, field=keyword,
                               hint='the tag is malformed: export the series again')
    return out


def _select(datasets: list[tuple[Path, Dataset]], folder: Path, modality, series_uid):
    """Keep the slices of the requested modality / series; exactly one series must remain."""
    if modality is not None:
        datasets = [(p, d) for p, d in datasets if str(d.get("Modality", "")) == modality]
    if series_uid is not None:
        datasets = [(p, d) for p, d in datasets if str(d.get("SeriesInstanceUID", "")) == series_uid]
    if not datasets:
        wanted = ", ".join(
            f"{k}={v}" for k, v in (("Modality", modality), ("SeriesInstanceUID", series_uid)) if v is not None
        )
        raise BundleInputError(
            f"no DICOM slices{' with ' + wanted if wanted else ''} in this folder",
            path=folder,
            field="SeriesInstanceUID" if series_uid is not None else "Modality",
            hint='point the path at a folder of DICOM slices of one series')
    first_path, first = datasets[0]
    uid0 = str(_require(first, "SeriesInstanceUID", first_path))
    for path, ds in datasets[1:]:
        uid = str(_require(ds, "SeriesInstanceUID", path))
        if uid != uid0:
            raise BundleInputError(
                f"folder holds several series ({uid0} in {first_path.name}, {uid} here)",
                path=path,
                field="SeriesInstanceUID",
                hint="pass series_uid= (or modality=) to choose one, or split the folder",
            )
    return datasets


def _geometry(datasets: list[tuple[Path, Dataset]]):
    """Validate orientation / spacing / positions; return (sorted datasets, row, col, normal, dx, dy, dz)."""
    path0, ds0 = datasets[0]
    iop0 = _floats(ds0, "ImageOrientationPatient", 6, path0)
    ps0 = _floats(ds0, "PixelSpacing", 2, path0)
    rows0, cols0 = int(_require(ds0, "Rows", path0)), int(_require(ds0, "Columns", path0))
    row, col = iop0[:3], iop0[3:]
    normal = np.cross(row, col)
    positions = []
    for path, ds in datasets:
        if not np.allclose(_floats(ds, "ImageOrientationPatient", 6, path), iop0, atol=_COS_TOL):
            raise BundleInputError(
                f"orientation differs from {path0.name} within one series",
                path=path,
                field="ImageOrientationPatient",
                hint="the series mixes orientations (e.g. a localiser); remove the odd slices",
            )
        if not np.allclose(_floats(ds, "PixelSpacing", 2, path), ps0, rtol=_REL_TOL, atol=0):
            raise BundleInputError(
                f"pixel spacing differs from {path0.name} ({list(ps0)}) within one series",
                path=path,
                field="PixelSpacing", hint='keep one reconstruction per series folder')
        if (int(_require(ds, "Rows", path)), int(_require(ds, "Columns", path))) != (rows0, cols0):
            raise BundleInputError(
                f"image size differs from {path0.name} ({rows0}x{cols0}) within one series", path=path, field="Rows",
                hint='keep one reconstruction per series folder')
        positions.append(float(np.dot(_floats(ds, "ImagePositionPatient", 3, path), normal)))
    order = np.argsort(positions, kind="stable")
    datasets = [datasets[i] for i in order]
    pos = np.asarray(positions)[order]
    if len(datasets) == 1:
        dz = float(ds0.get("SliceThickness") or 1.0)
    else:
        steps = np.diff(pos)
        dz = float(np.median(steps))
        for k, step in enumerate(steps):
            path = datasets[k + 1][0]
            if step < _REL_TOL * max(dz, 1e-6):
                raise BundleInputError(
                    f"two slices at the same position ({datasets[k][0].name} and this one)",
                    path=path,
                    field="ImagePositionPatient",
                    hint="duplicate slices: remove one",
                )
            if abs(step - dz) > 0.01 * dz:
                missing = round(step / dz) - 1
                problem = (
                    f"about {missing} slice(s) missing before this one (step {step:.3g} mm, usual {dz:.3g} mm)"
                    if missing >= 1
                    else f"slice spacing {step:.3g} mm differs from the usual {dz:.3g} mm"
                )
                raise BundleInputError(
                    problem, path=path, field="ImagePositionPatient", hint="the series is incomplete; copy it again"
                )
    # PixelSpacing = [row spacing (between rows, along the column direction), column spacing].
    return datasets, row, col, normal, float(ps0[1]), float(ps0[0]), dz


def _pixels(ds: Dataset, path: Path) -> np.ndarray:
    """(Y, X) float32 real-world values of one slice."""
    if "PixelData" not in ds:
        raise BundleInputError("the file has no pixel data", path=path, field="PixelData",
                               hint='remove non-image objects (reports, SR) from the series folder')
    try:
        stored = ds.pixel_array
    except Exception as err:  # decoders raise many types; the user needs the file and transfer syntax
        raise BundleInputError(
            f"pixel data cannot be decoded ({type(err).__name__}: {err})",
            path=path,
            field="PixelData",
            hint="the file is truncated (copy it again) or compressed without a decoder (install pylibjpeg)",
        ) from err
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def read_series(folder, *, modality: str | None = None, series_uid: str | None = None) -> DicomSeries:
    """Read the one series in ``folder`` (files directly inside it; dot-files are skipped).

    Args:
        folder: the series folder.
        modality: keep only slices with this Modality (e.g. "CT"), ignoring other files' series.
        series_uid: keep only slices of this SeriesInstanceUID.

    Raises:
        BundleInputError: a non-DICOM or unreadable file, several series without a choice, mixed orientation,
            pixel spacing or size, duplicate or missing slices, undecodable pixel data (file and tag named).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleInputError("series folder not found", path=folder, hint="give the folder holding the .dcm files")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not paths:
        raise BundleInputError("no files in the series folder", path=folder,
                               hint='point the path at a folder of DICOM slices')
    datasets = _select([(p, _read_file(p)) for p in paths], folder, modality, series_uid)
    for path, ds in datasets:
        _single_frame(ds, path)
    datasets, row, col, normal, dx, dy, dz = _geometry(datasets)

    slices = [_pixels(ds, path) for path, ds in datasets]
    volume = np.ascontiguousarray(np.stack(slices, axis=-1).transpose(1, 0, 2))  # (Y, X, Z) -> (X, Y, Z)

    lps = np.eye(4)
    lps[:3, 0] = row * dx
    lps[:3, 1] = col * dy
    lps[:3, 2] = normal * dz
    lps[:3, 3] = _floats(datasets[0][1], "ImagePositionPatient", 3, datasets[0][0])
    headers = []
    for _, ds in datasets:
        del ds.PixelData
        headers.append(ds)
    return DicomSeries(volume=volume, affine=LPS_TO_RAS @ lps, headers=headers, files=[p for p, _ in datasets])


def _fit_rescale(values: np.ndarray, zero_intercept: bool = False) -> tuple[float, float]:
    """(slope, intercept) mapping the value range onto the int16 range [-32767, 32767].

    With ``zero_intercept`` (PET: the PET Image module requires RescaleIntercept 0) the intercept is 0 and the
    slope maps the largest magnitude onto 32767, so non-negative values use half the int16 range.
    """
    lo, hi = float(values.min()), float(values.max())
    if zero_intercept:
        peak = max(abs(lo), abs(hi))
        return (peak / 32767.0 if peak > 0 else 1.0), 0.0
    if hi <= lo:
        return 1.0, lo
    slope = (hi - lo) / 65534.0
    return slope, lo + 32767.0 * slope


def _ds_str(x: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    return pydicom.valuerep.format_number_as_ds(float(x))


def _series_dataset(shape, modality, patient_id, study_uid, series_uid, frame_uid, series_description,
                    row, col, dx, dy, dz) -> Dataset:
    """The elements shared by every slice of a written series."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.PatientName = patient_id
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.Manufacturer = "gan_core.phantoms"
    ds.SeriesNumber = 1
    ds.SeriesDescription = series_description
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [_ds_str(v) for v in np.concatenate([row, col])]
    ds.PixelSpacing = [_ds_str(dy), _ds_str(dx)]
    ds.SliceThickness = _ds_str(dz)
    ds.SpacingBetweenSlices = _ds_str(dz)
    set_int16_pixel_module(ds, shape)
    if modality == "CT":
        ds.RescaleType = "HU"
        ds.KVP = ""  # type 2: unknown unless the caller gives it
    # Type 2 / 2C elements that dciodvfy requires (present, possibly empty); callers override via dataset_tags.
    # Image Laterality U (unpaired: chest, whole body) makes the series-level Laterality (2C) not required.
    ds.ImageLaterality = "U"
    ds.AcquisitionNumber = 1
    if modality in ("CT", "MR"):
        ds.PatientPosition = "HFS"
    if modality == "PT":
        ds.NumberOfSlices = shape[2]
        ds.CountsSource = "EMISSION"
        ds.CollimatorType = "NONE"
        ds.FrameReferenceTime = "0"  # ms from the series reference time; per-slice values via slice_tags
        ds.ActualFrameDuration = ""  # ms; unknown unless the caller gives it
        ds.PatientOrientationCodeSequence = [_code("102538003", "SCT", "recumbent")]
        ds.PatientOrientationCodeSequence[0].PatientOrientationModifierCodeSequence = [
            _code("40199007", "SCT", "supine")]
        ds.PatientGantryRelationshipCodeSequence = [_code("102540008", "SCT", "headfirst")]
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """One item of a DICOM code sequence."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def set_int16_pixel_module(ds: Dataset, shape: tuple[int, ...]) -> None:
    """The Image Pixel module of a single-channel signed 16-bit slice of ``shape`` (X, Y) = (columns, rows)."""
    ds.Rows, ds.Columns = shape[1], shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1


def write_series(
    volume: np.ndarray,
    affine: np.ndarray,
    out_dir,
    *,
    modality: str,
    patient_id: str,
    study_uid: str,
    series_uid: str | None = None,
    dataset_tags: dict | None = None,
    per_slice_rescale: bool = False,
    slice_tags: Callable[[int], dict] | None = None,
    series_description: str = "",
    lock: bool = True,
) -> list[Path]:
    """Write a volume as one DICOM series ``out_dir/1-NNN.dcm`` (built in a work folder, then swapped into place
    by :func:`gan_core.fileio.atomic_dir`; ``lock=False`` inside another writer's private work folder).

    Args:
        volume: (X, Y, Z) real-world values (HU, Bq/ml, ...).
        affine: 4x4 voxel -> RAS mm, columns orthogonal (no shear); slice k lies at ``affine @ (0, 0, k, 1)``.
        out_dir: the series folder to create (must not exist).
        modality: "CT", "PT" or "MR" (sets the SOP class).
        patient_id, study_uid: identity; ``series_uid`` is derived from them and the description when None.
        dataset_tags: pydicom keyword -> value for every slice (applied after the defaults). Giving both
            ``RescaleSlope`` and ``RescaleIntercept`` fixes the pair (e.g. 1 and -1024 for CT); otherwise the pair
            is fitted to the value range (for PT with RescaleIntercept 0, as the PET Image module requires).
            The defaults include elements dciodvfy checks: ImageLaterality U (unpaired body part; a caller
            imaging a paired part sets ImageLaterality / Laterality), AcquisitionNumber, PatientPosition HFS
            for CT/MR, an empty KVP for CT; for PT NumberOfSlices, ImageIndex, CountsSource EMISSION,
            CollimatorType NONE, FrameReferenceTime 0, an empty ActualFrameDuration and the patient orientation
            code sequences (recumbent, supine, headfirst). The SUV tags (Units, SeriesType, CorrectedImage,
            DecayCorrection, the radiopharmaceutical, acquisition times) are the caller's: no default is right.
        per_slice_rescale: fit a (slope, intercept) per slice instead of one for the series.
        slice_tags: slice index k -> extra keyword -> value for that slice (e.g. AcquisitionTime).

    Stored values are int16 (PixelRepresentation 1). Returns the written files, in slice order.
    """
    volume = np.asarray(volume, dtype=np.float64)
    affine = np.asarray(affine, dtype=np.float64)
    if volume.ndim != 3 or affine.shape != (4, 4):
        raise ValueError(f"volume must be (X, Y, Z) and affine 4x4, got {volume.shape} and {affine.shape}")
    if modality not in SOP_CLASS:
        raise ValueError(f"modality must be one of {sorted(SOP_CLASS)}, got {modality!r}")
    out_dir = Path(out_dir)
    dataset_tags = dict(dataset_tags or {})
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    dx, dy, dz = (float(np.linalg.norm(lps[:3, i])) for i in range(3))
    row, col, step = lps[:3, 0] / dx, lps[:3, 1] / dy, lps[:3, 2] / dz
    if abs(np.dot(row, col)) > _COS_TOL or abs(np.dot(row, step)) > _COS_TOL or abs(np.dot(col, step)) > _COS_TOL:
        raise ValueError("affine columns must be orthogonal")
    normal = np.cross(row, col)

    fixed = None
    if "RescaleSlope" in dataset_tags and "RescaleIntercept" in dataset_tags:
        fixed = (float(dataset_tags.pop("RescaleSlope")), float(dataset_tags.pop("RescaleIntercept")))
    elif not per_slice_rescale:
        fixed = _fit_rescale(volume, zero_intercept=modality == "PT")

    series_uid = series_uid or generate_uid(entropy_srcs=[study_uid, patient_id, modality, series_description])
    frame_uid = generate_uid(entropy_srcs=[study_uid, "FrameOfReferenceUID"])
    ds = _series_dataset(volume.shape, modality, patient_id, study_uid, series_uid, frame_uid, series_description,
                         row, col, dx, dy, dz)
    for keyword, value in dataset_tags.items():
        setattr(ds, keyword, value)
    n = volume.shape[2]
    width = max(3, len(str(n)))
    names = []
    previous_slice_tags: dict = {}
    with atomic_dir(out_dir, record=None, setting="out_dir", lock=lock) as partial:
        for k in range(n):
            if fixed is not None:
                slope, intercept = fixed
            else:
                slope, intercept = _fit_rescale(volume[:, :, k], zero_intercept=modality == "PT")
            slope, intercept = float(_ds_str(slope)), float(_ds_str(intercept))  # the values a reader will see
            stored = np.rint((volume[:, :, k] - intercept) / slope)
            if stored.min() < -32768 or stored.max() > 32767:
                raise ValueError(f"slice {k}: values do not fit int16 with slope {slope} and intercept {intercept}")
            position = lps[:3, 3] + k * lps[:3, 2]
            sop_uid = generate_uid(entropy_srcs=[series_uid, str(k)])
            # One dataset reused for every slice: only the per-slice elements change.
            ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
            ds.SOPInstanceUID = sop_uid
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [_ds_str(v) for v in position]
            ds.SliceLocation = _ds_str(np.dot(position, normal))
            ds.RescaleSlope = _ds_str(slope)
            ds.RescaleIntercept = _ds_str(intercept)
            for keyword in previous_slice_tags:
                delattr(ds, keyword)
            if modality == "PT":
                ds.ImageIndex = k + 1  # the PET Image module's slice index (1 = first slice of the series)
            previous_slice_tags = slice_tags(k) if slice_tags is not None else {}
            for keyword, value in previous_slice_tags.items():
                setattr(ds, keyword, value)
            ds.PixelData = np.ascontiguousarray(stored.T.astype("<i2")).tobytes()  # (Y, X) rows of columns
            name = f"1-{k + 1:0{width}d}.dcm"
            ds.save_as(partial / name, enforce_file_format=True)
            names.append(name)
    return [out_dir / name for name in names]
