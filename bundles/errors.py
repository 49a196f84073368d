"""The one exception type a user of the bundles sees for problems with their own data or settings."""

from __future__ import annotations

import os
import sys
from os import PathLike


class BundleInputError(ValueError):
    """Bad input that the user can fix: names the file, the field and what to do.

    Args:
        problem: what is wrong, in one sentence.
        path: the file or folder concerned (or ``None``).
        field: the DICOM tag, column, config key or array name concerned (or ``None``).
        hint: what the user can do about it (or ``None``).
    """

    def __init__(
        self,
        problem: str,
        path: str | PathLike | None = None,
        field: str | None = None,
        hint: str | None = None,
    ):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.field = field
        self.hint = hint
        parts = []
        if self.path is not None:
            parts.append(f"{self.path}:")
        if field is not None:
            parts.append(f"[{field}]")
        parts.append(problem)
        message = " ".join(parts)
        if hint:
            message += f" -> {hint}"
        super().__init__(message)


def find_input_error(error: BaseException | None) -> BundleInputError | None:
    """The BundleInputError behind ``error`` (MONAI's config parser wraps errors raised in expressions)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, BundleInputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def install_excepthook() -> None:
    """Print a user's input error as one clear line instead of the traceback MONAI's CLI would show.

    Set ``BUNDLES_TRACEBACK=1`` to see the full traceback as well. Other errors are untouched.
    """
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        input_error = find_input_error(exc)
        if input_error is None or os.environ.get("BUNDLES_TRACEBACK") == "1":
            previous(exc_type, exc, tb)
        if input_error is not None:
            print(f"error: {input_error}", file=sys.stderr)
            if os.environ.get("BUNDLES_TRACEBACK") != "1":
                print("(set BUNDLES_TRACEBACK=1 for the full traceback)", file=sys.stderr)

    sys.excepthook = hook
