"""Readers and writers for the public data layouts: DICOM series, DICOM SEG, gene tables, datalists."""

from gan_core.io.dicom_series import DicomSeries, read_series, write_series

__all__ = ["DicomSeries", "read_series", "write_series"]
