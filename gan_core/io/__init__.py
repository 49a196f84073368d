"""Readers and writers the bundles share: DICOM series, NIfTI slices, safe file names, synthetic DICOM's parts."""

from gan_core.io.dicom_series import DicomSeries, read_series, write_series

__all__ = ["DicomSeries", "read_series", "write_series"]
