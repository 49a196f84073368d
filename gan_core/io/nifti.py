"""Reading a user's NIfTI file with one-line errors (nibabel raises several types for damaged files)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from gan_core.errors import BundleInputError


def read_nifti(path: str | Path, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(voxel array as float32, 4x4 affine) of a NIfTI file, every voxel decoded.

    Raises:
        BundleInputError: a missing file, or one nibabel cannot read (not NIfTI, truncated or corrupt gzip),
            naming the file and ``field``.
    """
    path = Path(path)
    if not path.is_file():
        raise BundleInputError("file not found", path=path, field=field, hint="check the path")
    try:
        image = nib.load(str(path))
        return np.asarray(image.dataobj, dtype=np.float32), image.affine
    except Exception as err:  # nibabel raises ImageFileError, OSError, EOFError, zlib.error, ...
        raise BundleInputError(f"not a readable NIfTI file ({type(err).__name__}: {err})", path=path, field=field,
                               hint="re-export it as an intact .nii.gz file") from err
