"""The one exception type a user of the bundles sees, and the error boundary that prints it as one line.

Every user-facing command (``python -m monai.bundle run ...`` with any bundle config, every ``tools/*.py``)
ends an expected failure with one line on stderr, and a non-zero exit::

    error: <file or setting>: <what is wrong> -> <what to do>

Expected failures are :class:`BundleInputError` (raised by the project wherever a user's data or settings
are at fault) and the operating-system and library errors that a user's environment causes (a full disk, a
read-only folder, a CUDA device on a CPU-only build, ...), which :func:`as_input_error` translates. Anything
else is a bug and keeps its traceback. ``BUNDLES_TRACEBACK=1`` prints the traceback of expected failures too.
"""

from __future__ import annotations

import errno
import os
import sys
from os import PathLike


class BundleInputError(ValueError):
    """Bad input that the user can fix: names the file or setting, what is wrong and what to do.

    Args:
        problem: what is wrong, in one sentence.
        path: the file or folder concerned (or ``None``).
        field: the DICOM keyword, column, config key or array name concerned (or ``None``).
        hint: what the user can do about it.
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
        if self.path is not None and field is not None:
            location = f"{self.path} [{field}]"
        else:
            location = self.path if self.path is not None else field
        message = problem if location is None else f"{location}: {problem}"
        if hint:
            message += f" -> {hint}"
        super().__init__(message)


def find_input_error(error: BaseException | None) -> BundleInputError | None:
    """The BundleInputError behind ``error`` (MONAI's config parser and ``Compose`` wrap errors raised inside)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, BundleInputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


_OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free disk space or choose a folder on another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free space in your quota or choose another folder"),
    errno.EACCES: ("permission denied", "choose a folder you can write to (or fix its permissions)"),
    errno.EPERM: ("operation not permitted", "choose a folder you can write to (or fix its permissions)"),
    errno.EROFS: ("the file system is read-only", "choose a writable folder"),
}


def as_input_error(error: BaseException) -> BundleInputError | None:
    """The user-fixable error behind ``error``, or ``None`` for a bug.

    Looks through the chain of causes for a :class:`BundleInputError`, an ``OSError`` a user's environment
    causes (full disk, permissions, read-only file system) or a CUDA request on a build without CUDA.
    """
    found = find_input_error(error)
    if found is not None:
        return found
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _OS_ERRORS:
            problem, hint = _OS_ERRORS[error.errno]
            return BundleInputError(problem, path=error.filename or "output", hint=hint)
        text = str(error)
        if "Torch not compiled with CUDA enabled" in text or "no CUDA GPUs are available" in text:
            return BundleInputError("this PyTorch build has no CUDA device", field="device",
                                    hint="run with --device cpu, or install a CUDA build of torch on a GPU machine")
        error = error.__cause__ or error.__context__
    return None


def report(error: BaseException) -> int | None:
    """Print ``error: ...`` for a user-fixable error and return the exit status 2; ``None`` for a bug.

    ``BUNDLES_TRACEBACK=1`` prints the traceback first (the error line stays the last line).
    """
    input_error = as_input_error(error)
    if input_error is None:
        return None
    if os.environ.get("BUNDLES_TRACEBACK") == "1":
        import traceback

        traceback.print_exception(error)
    print(f"error: {input_error}", file=sys.stderr, flush=True)
    return 2


def install_excepthook() -> None:
    """Make an uncaught user-fixable error end the process as one ``error:`` line (exit status 1).

    Installed once a bundle's code is imported under ``python -m monai.bundle`` (:mod:`gan_core.bundle`), where
    MONAI's config parser would otherwise show a long traceback. Other exceptions keep the default traceback.
    """
    previous = sys.excepthook
    if getattr(previous, "reports_input_errors", False):
        return

    def hook(exc_type, exc, tb):
        if report(exc) is None:
            previous(exc_type, exc, tb)

    hook.reports_input_errors = True
    sys.excepthook = hook


def run_tool(main, *args, **kwargs):
    """Run a command-line tool's ``main`` and return its result; a user-fixable error exits with one ``error:``
    line and status 2."""
    try:
        return main(*args, **kwargs)
    except KeyboardInterrupt:
        print(f"error: {sys.argv[0]}: interrupted -> run the command again", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # the boundary: every expected failure becomes one line
        status = report(err)
        if status is None:
            raise
        sys.exit(status)
