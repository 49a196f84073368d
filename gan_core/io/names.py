"""The one way identifiers from DICOM tags, CSV files and folder names become parts of file names."""

from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_NAME_LENGTH = 64

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(identifier: object, max_length: int = MAX_NAME_LENGTH) -> str:
    """A file-name-safe form of ``identifier`` (a PatientID, a CSV value, a folder name).

    Letters, digits and ``. _ + -`` are kept; every other run of characters (path separators, ``..``, control
    characters, spaces, non-ASCII letters after accent folding) becomes ``_``; leading dots and dashes are
    dropped, so a name is never hidden, never ``.`` or ``..`` and never read as an option. A name that had to
    change, or is longer than ``max_length``, gets a short hash of the original so that two different IDs
    never share a file name. The original ID belongs in the datalist beside the file name.

    >>> safe_name("R01-001")
    'R01-001'
    >>> safe_name("../../escaped").startswith("escaped_")
    True
    """
    original = str(identifier)
    folded = unicodedata.normalize("NFKD", original).encode("ascii", "ignore").decode("ascii")
    name = _UNSAFE.sub("_", folded).replace("..", "_").lstrip(".-_")
    if name == original and 0 < len(name) <= max_length:
        return name
    digest = hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    stem = name[: max_length - len(digest) - 1].rstrip("._-")
    return f"{stem}_{digest}" if stem else f"id_{digest}"
