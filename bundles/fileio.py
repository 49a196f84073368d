"""Crash-safe file writing: every output is written to a temporary name beside it, then renamed."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` only if the block succeeds.

    A crash (or exception) inside the block leaves ``target`` as it was and removes the temporary file, so
    readers never see a half-written file. The suffix is kept so writers that infer the format from the
    name (nibabel, matplotlib) still work.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
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


def replace_dir(partial: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename a finished ``partial`` folder onto ``target``; an older ``target`` is removed only afterwards.

    Writers build a folder output in ``<target>.partial`` and call this once it is complete, so a crash
    leaves either the old folder or the new one, never a mix.
    """
    partial, target = Path(partial), Path(target)
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(partial, target)
    shutil.rmtree(old, ignore_errors=True)


def save_figure(fig, target: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it; returns the path."""
    import matplotlib.pyplot as plt

    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return Path(target)
