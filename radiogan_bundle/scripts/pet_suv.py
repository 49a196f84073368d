"""Convert a PET DICOM study to an SUV (body weight) NIfTI volume and say how the factor was obtained.

    cd radiogan_bundle && python -m scripts.pet_suv STUDY_DIR OUT.nii.gz

STUDY_DIR is a PET series folder or a folder above it (a study or patient folder holding one attenuation-
corrected PET series). OUT.nii.gz is float32 SUVbw with the series' RAS affine, written atomically.
"""

from __future__ import annotations

import argparse
import sys

import nibabel as nib
import numpy as np

from gan_core.errors import run_tool
from gan_core.fileio import atomic_path

from .datalist import find_pet_series
from .transforms import LoadPETSUV


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", help="PET series folder, or a study/patient folder containing one")
    parser.add_argument("out", help="output NIfTI file (.nii or .nii.gz)")
    args = parser.parse_args(argv)
    if not args.out.endswith((".nii", ".nii.gz")):
        parser.error("OUT must end in .nii or .nii.gz")
    series_dir = find_pet_series(args.study_dir)
    suv = LoadPETSUV()(series_dir)
    volume = suv[0].numpy().astype(np.float32)
    with atomic_path(args.out) as tmp:
        nib.save(nib.Nifti1Image(volume, suv.affine.numpy()), tmp)
    print(f"series: {series_dir}")
    print(suv.meta["suv_explanation"])
    print(f"wrote {args.out}: shape {volume.shape}, SUV range {volume.min():.3f} .. {volume.max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
