"""DICOM SEG: write a binary mask referencing a CT series (highdicom), read one back onto its reference grid."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from gan_core.errors import BundleInputError
from gan_core.fileio import atomic_path
from gan_core.io.dicom_series import DicomSeries

logger = logging.getLogger(__name__)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
HIGHDICOM_UID_ROOT = "1.2.826.0.1.3680043.10.511."  # highdicom.UID() draws random UIDs under this root


def write_seg(mask: np.ndarray, reference_files: list[Path], out_path, *, segment_label: str = "Nodule") -> Path:
    """Write a binary one-segment DICOM SEG for the series in ``reference_files``.

    Args:
        mask: (X, Y, Z) bool, on the grid of the reference series, z in the order of ``reference_files``
            (the order ``write_series`` returns and ``read_series`` sorts to).
        reference_files: the slice files of the segmented series.
        out_path: the .dcm file to write (atomically).
        segment_label: the segment's label.

    Empty frames are omitted, as TCIA's SEGs do; UIDs and dates derive from the reference, so the same inputs
    give the same file.
    """
    mask = np.asarray(mask, dtype=bool)
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in reference_files]
    if mask.ndim != 3 or mask.shape != (sources[0].Columns, sources[0].Rows, len(sources)):
        raise ValueError(f"mask shape {mask.shape} does not match the reference series")
    if not mask.any():
        raise ValueError("mask is empty")
    ref_uid = str(sources[0].SeriesInstanceUID)
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=segment_label,
        segmented_property_category=Code("49755003", "SCT", "Morphologically Altered Structure"),
        segmented_property_type=Code("27925004", "SCT", "Nodule"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    with warnings.catch_warnings():  # TCIA-style PatientName "R01-001" has one component; that is intended
        warnings.filterwarnings("ignore", message=".*intended person name.*")
        seg = _segmentation(sources, mask, description, ref_uid)
    # Dated like the image (not "now") so the same inputs give the same bytes.
    seg.InstanceCreationDate = seg.ContentDate = str(sources[0].get("ContentDate") or sources[0].StudyDate)
    seg.InstanceCreationTime = seg.ContentTime = str(sources[0].get("ContentTime") or sources[0].StudyTime)
    for item in seg.get("ContributingEquipmentSequence", []):
        item.ContributionDateTime = seg.ContentDate + seg.ContentTime
    _derandomise_uids(seg, ref_uid)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        seg.save_as(tmp)
    return out_path


def _derandomise_uids(seg: pydicom.Dataset, ref_uid: str) -> None:
    """Replace the random UIDs highdicom draws (e.g. DimensionOrganizationUID) by ones derived from ``ref_uid``."""
    fresh: dict[str, str] = {}
    for element in seg.iterall():
        if element.VR == "UI" and str(element.value).startswith(HIGHDICOM_UID_ROOT):
            old = str(element.value)
            element.value = fresh.setdefault(old, generate_uid(entropy_srcs=[ref_uid, "SEG", str(len(fresh))]))


def _segmentation(sources, mask, description, ref_uid) -> hd.seg.Segmentation:
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=np.ascontiguousarray(mask.transpose(2, 1, 0)),  # (frames = Z, rows = Y, columns = X)
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=generate_uid(entropy_srcs=[ref_uid, "SEG series"]),
        series_number=1000,
        sop_instance_uid=generate_uid(entropy_srcs=[ref_uid, "SEG instance"]),
        instance_number=1,
        manufacturer="gan_core.phantoms",
        manufacturer_model_name="write_seg",
        software_versions="1",
        device_serial_number="0",
        series_description="Segmentation",
    )


def _frame_values(ds: pydicom.Dataset, seg_path: Path, n_frames: int) -> np.ndarray:
    """(n_frames, Rows, Columns) uint8 pixel values, tolerating a wrong NumberOfFrames in uncompressed data."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    bits = int(ds.BitsAllocated)
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        values = ds.pixel_array.reshape(-1, rows, cols)
    else:
        raw = np.frombuffer(ds.PixelData, dtype=np.uint8)
        if bits == 1:
            raw = np.unpackbits(raw, bitorder="little")
        elif bits != 8:
            raise BundleInputError(f"unsupported BitsAllocated {bits} for a SEG", path=seg_path, field="BitsAllocated",
                                   hint='save the SEG as BINARY (1 bit) or FRACTIONAL (8 bit)')
        if raw.size < n_frames * rows * cols:
            raise BundleInputError(
                f"pixel data holds {raw.size // (rows * cols)} frames, the frame descriptions list {n_frames}",
                path=seg_path,
                field="PixelData", hint='the SEG is malformed: export it again')
        values = raw[: n_frames * rows * cols].reshape(n_frames, rows, cols)
    if values.shape[0] != n_frames:
        raise BundleInputError(
            f"{values.shape[0]} frames decoded, {n_frames} described", path=seg_path, field="NumberOfFrames",
            hint='the SEG is malformed: export it again')
    if str(ds.get("SegmentationType", "BINARY")) == "FRACTIONAL":
        return (values > int(ds.get("MaximumFractionalValue", 255)) / 2).astype(np.uint8)
    return values.astype(np.uint8)


def _frame_tag(ds, frame, sequence: str, keyword: str, seg_path: Path):
    """A plane attribute from the frame's functional groups, else from the shared ones."""
    for groups in (frame, ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None):
        if groups is not None and sequence in groups and keyword in groups[sequence][0]:
            return np.asarray([float(v) for v in groups[sequence][0][keyword]])
    raise BundleInputError(f"frame without {sequence} > {keyword}", path=seg_path, field=keyword,
                           hint='the SEG is malformed: export it again')


def read_seg(seg_path, reference: DicomSeries) -> np.ndarray:
    """Read a DICOM SEG onto the grid of its reference series.

    Args:
        seg_path: the SEG file.
        reference: the segmented series, as ``read_series`` returns it.

    Returns:
        (X, Y, Z) uint8 aligned with ``reference.volume``: 0 outside, the segment number inside. Frames are placed
        by their ImagePositionPatient, whatever their order or number.

    Raises:
        BundleInputError: not a SEG, a SEG referencing another series, a frame whose orientation, spacing or
            position does not fall on a slice of the reference, or pixel data shorter than the frames described.
    """
    seg_path = Path(seg_path)
    try:
        ds = pydicom.dcmread(seg_path)
    except Exception as err:  # pydicom raises several types for non-DICOM or truncated files
        raise BundleInputError(f"unreadable DICOM file ({type(err).__name__}: {err})", path=seg_path,
                               hint='the file is damaged or not DICOM: export it again') from err
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        raise BundleInputError("not a DICOM Segmentation object", path=seg_path, field="SOPClassUID",
                               hint='point the seg path at a DICOM SEG file')
    ref_header = reference.headers[0]
    ref_uid = str(ref_header.SeriesInstanceUID)
    if "ReferencedSeriesSequence" in ds:
        named = [str(item.SeriesInstanceUID) for item in ds.ReferencedSeriesSequence]
        if ref_uid not in named:
            raise BundleInputError(
                f"the SEG references series {', '.join(named)}, not the image series {ref_uid}",
                path=seg_path,
                field="ReferencedSeriesSequence",
                hint="pair each SEG with the series it was drawn on",
            )
    elif str(ds.get("FrameOfReferenceUID", "")) != str(ref_header.get("FrameOfReferenceUID", "")):
        raise BundleInputError(
            "the SEG names no referenced series and its frame of reference differs from the image's",
            path=seg_path,
            field="FrameOfReferenceUID", hint='use the SEG made on this CT series')
    if (int(ds.Rows), int(ds.Columns)) != (int(ref_header.Rows), int(ref_header.Columns)):
        raise BundleInputError(
            f"SEG frames are {ds.Rows}x{ds.Columns}, the image {ref_header.Rows}x{ref_header.Columns}",
            path=seg_path,
            field="Rows", hint='use the SEG made on this CT series')

    frames = ds.PerFrameFunctionalGroupsSequence
    declared = int(ds.get("NumberOfFrames", len(frames)))
    if declared != len(frames):
        logger.warning(
            "%s: NumberOfFrames says %d but %d frames are described; using the descriptions",
            seg_path,
            declared,
            len(frames),
        )
    values = _frame_values(ds, seg_path, len(frames))

    ref_iop = np.asarray([float(v) for v in ref_header.ImageOrientationPatient])
    ref_spacing = np.asarray([float(v) for v in ref_header.PixelSpacing])
    ras_to_voxel = np.linalg.inv(reference.affine)
    shape = reference.volume.shape
    out = np.zeros(shape, dtype=np.uint8)
    for i, frame in enumerate(frames):
        if not np.allclose(_frame_tag(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient", seg_path),
                           ref_iop, atol=1e-4):
            raise BundleInputError(
                f"frame {i + 1} is not oriented like the image", path=seg_path, field="ImageOrientationPatient",
                hint='use the SEG made on this CT series')
        if not np.allclose(_frame_tag(ds, frame, "PixelMeasuresSequence", "PixelSpacing", seg_path),
                           ref_spacing, rtol=1e-3):
            raise BundleInputError(f"frame {i + 1} has another pixel spacing", path=seg_path, field="PixelSpacing",
                                   hint='use the SEG made on this CT series')
        lps = _frame_tag(ds, frame, "PlanePositionSequence", "ImagePositionPatient", seg_path)
        ijk = (ras_to_voxel @ np.array([-lps[0], -lps[1], lps[2], 1.0]))[:3]
        k = int(round(ijk[2]))
        if np.abs(ijk[:2]).max() > 1e-2 or abs(ijk[2] - k) > 1e-2 or not 0 <= k < shape[2]:
            raise BundleInputError(
                f"frame {i + 1} at {list(lps)} mm is not on a slice of the image (voxel {np.round(ijk, 3).tolist()})",
                path=seg_path,
                field="ImagePositionPatient", hint='use the SEG made on this CT series')
        segment = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber) if (
            "SegmentIdentificationSequence" in frame
        ) else 1
        plane = values[i].T  # (rows, columns) -> (X, Y)
        out[:, :, k][plane > 0] = segment
    return out
