"""Crash-safe, concurrency-safe writing: atomic files, atomic folders, folder locks, and leftover cleaning.

- A file output is written to a hidden temporary name beside it (``.<name>.<random>.tmp<suffix>``) and renamed
  onto its name when complete (:func:`atomic_path`), with the permissions the user's umask gives.
- A folder output is built in a hidden sibling unique to the job (``.<name>.partial-<pid>-<random>``) and
  swapped into place when complete (:func:`atomic_dir`). Its record file (``manifest.json``, ``metrics.json``,
  ``datalist.json``, ...) carries ``"written_by": {"program": "gan-bundles", "kind": ...}``: only a folder that
  is missing, empty, or holds such a record of the same kind is ever replaced; anything else is the user's
  and is refused.
- One job at a time writes a folder: :func:`folder_lock` takes an operating-system lock (``flock``) on the
  hidden sibling ``.<name>.lock``, which the kernel releases when the process ends, however it ends. The ranks
  of one ``torchrun`` job count as one job (only rank 0 locks).
- Leftovers of killed jobs (temporary files, ``.partial-*`` and ``.old-*`` folders) are removed by the next
  job that holds the lock (:func:`remove_leftovers`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from gan_core.errors import BundleInputError

PROGRAM = "gan-bundles"

_TMP_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp")
_WORK_DIR = re.compile(r"^\.(?P<name>.+)\.(partial|old)-\d+-[0-9a-f]{8}$")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (a checkpoint, a datalist, an exported model), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file under the current umask."""
    return 0o666 & ~_umask()


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    A crash (or exception) inside the block leaves ``target`` as it was and removes the temporary file (a
    killed process leaves it for :func:`remove_leftovers`), so readers never see a half-written file. The
    suffix is kept so writers that infer the format from the name (nibabel, matplotlib) still work.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _file_mode())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_torch_save(obj: object, target: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_path`, fsync'ed before the rename."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(text: str, target: str | os.PathLike) -> None:
    """Write a text file (JSON, CSV) atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)


# ------------------------------------------------------------------------------------------------ locks
_held: dict[Path, int] = {}


def _is_main_rank() -> bool:
    """False in a non-zero rank of a ``torchrun`` job (rank 0 locks for the whole job)."""
    return int(os.environ.get("RANK", "0")) == 0


def _lock_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


def acquire_lock(folder: str | os.PathLike) -> Path:
    """Take the exclusive lock of ``folder`` for the rest of this process (or until :func:`release_lock`).

    Returns the lock file. Taking a lock this process already holds is a no-op.

    Raises:
        BundleInputError: another job holds it (its PID is named).
    """
    folder = Path(folder).resolve()
    if folder in _held or not _is_main_rank():
        return _lock_path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = _lock_path(folder)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, _file_mode())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if err.errno in (errno.EAGAIN, errno.EACCES):
            raise BundleInputError(
                f"another job is writing this folder (PID {holder})",
                path=folder,
                hint="wait until it has finished, or choose another folder",
            ) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[folder] = fd
    return path


def release_lock(folder: str | os.PathLike) -> None:
    """Release a lock taken by :func:`acquire_lock` (the lock file stays: removing it would race)."""
    fd = _held.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive lock of ``folder`` for the block (a lock this process already held stays held)."""
    folder = Path(folder).resolve()
    already = folder in _held
    acquire_lock(folder)
    try:
        yield
    finally:
        if not already:
            release_lock(folder)


def _is_locked(folder: Path) -> bool:
    """Whether another job holds ``folder``'s lock now (without taking it)."""
    path = _lock_path(folder)
    if folder.resolve() in _held or not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Remove what killed jobs left: the ``.<name>.partial-*`` / ``.<name>.old-*`` work folders beside
    ``folder``, and inside it (its visible subfolders included) temporary files and the work folders of
    outputs that nobody is writing now.

    Call only while holding ``folder``'s lock. Returns what was removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    for path in folder.parent.iterdir() if folder.parent.is_dir() else []:
        match = _WORK_DIR.match(path.name)
        if match and match["name"] == folder.name and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    stack = [folder] if folder.is_dir() else []
    while stack:
        current = stack.pop()
        for path in current.iterdir():
            match = _WORK_DIR.match(path.name)
            if path.is_symlink():
                continue
            if path.is_dir() and match:
                if not _is_locked(current / match["name"]):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            elif path.is_dir() and not path.name.startswith("."):
                stack.append(path)
            elif path.is_file() and _TMP_FILE.match(path.name):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


# ------------------------------------------------------------------------------------- folder outputs
def written_by(kind: str) -> dict:
    """The ownership stamp a record file carries: ``{"program": "gan-bundles", "kind": kind}``."""
    return {"program": PROGRAM, "kind": kind}


def folder_kind(folder: str | os.PathLike, record: str) -> str | None:
    """The ``kind`` of a folder this project wrote (read from its ``record`` JSON file), else ``None``."""
    path = Path(folder) / record
    try:
        stamp = json.loads(path.read_text()).get("written_by", {})
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(stamp, dict) and stamp.get("program") == PROGRAM:
        return stamp.get("kind")
    return None


def check_replaceable(target: Path, record: str, kind: str, replace: bool, setting: str, how: str) -> None:
    """Refuse to write ``target`` unless it is missing, empty, or an earlier output of the same ``kind``.

    Args:
        record: the record file that identifies an output of ``kind`` (``manifest.json``, ...).
        replace: whether an earlier output of the same kind may be replaced.
        setting: the config key that names ``target`` (for the message).
        how: what to pass to replace it (for the message), e.g. ``"--overwrite true"``.
    """
    if not target.exists():
        return
    if not target.is_dir():
        raise BundleInputError("is a file, not a folder", path=target, field=setting,
                               hint=f"choose a new folder for {setting}")
    if not any(target.iterdir()):
        return
    found = folder_kind(target, record)
    if found == kind:
        if replace:
            return
        raise BundleInputError(f"holds an earlier {kind}", path=target, field=setting,
                               hint=f"pass {how} to replace it, or choose a new folder")
    what = f"a {found}" if found else "files that this project did not write"
    raise BundleInputError(f"holds {what}; it is never replaced", path=target, field=setting,
                           hint=f"choose a new or empty folder for {setting}")


@contextmanager
def atomic_dir(target: str | os.PathLike, *, record: str | None, kind: str | None = None, replace: bool = True,
               setting: str = "output folder", how: str = "--overwrite true", lock: bool = True) -> Iterator[Path]:
    """Build a folder output in a private work folder and swap it onto ``target`` when the block succeeds.

    The caller writes everything into the yielded folder, including ``record`` (a JSON file with
    ``"written_by": written_by(kind)``) when given. ``target`` is checked with :func:`check_replaceable` (without
    a record: it must be missing or empty), locked for the block (``lock=False`` when it lies inside another
    job's private work folder), and leftovers of killed jobs beside it are removed first. On success an earlier
    ``target`` is swapped out and removed (it was this project's own output of the same kind); on failure
    nothing changes.
    """
    target = Path(target).resolve()
    with folder_lock(target) if lock else nullcontext():
        if lock:
            remove_leftovers(target)
        if record is None:
            if target.exists() and (not target.is_dir() or any(target.iterdir())):
                raise BundleInputError("already exists and is not empty; it is never replaced", path=target,
                                       field=setting, hint=f"choose a new or empty folder for {setting}")
        else:
            check_replaceable(target, record, kind, replace, setting, how)
        token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        work = target.parent / f".{target.name}.partial-{token}"
        work.mkdir(parents=True)
        os.chmod(work, 0o777 & ~_umask())
        try:
            yield work
            if record is not None and not (work / record).is_file():
                raise RuntimeError(f"{work}: the output's record file {record} was not written")
            old = target.parent / f".{target.name}.old-{token}"
            if target.exists():
                os.replace(target, old)
            os.replace(work, target)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
