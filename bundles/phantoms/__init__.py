"""Demo cohorts written in real file formats (DICOM, DICOM SEG, NIfTI, TSV) from documented generative models."""
