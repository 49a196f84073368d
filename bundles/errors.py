"""The one exception type a user of the bundles sees for problems with their own data or settings."""

from __future__ import annotations

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
