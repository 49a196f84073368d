"""Prepared datasets and the one-way data flow: raw -> ``preparation`` -> training / inference / evaluation.

- ``preparation`` is the only command that writes a dataset. It writes ``dataset_dir`` only when that folder is
  missing, empty, or holds a dataset of the same bundle that it prepared itself (recognised by the
  ``"written_by"`` stamp of its ``datalist.json``), and replaces such a dataset only with ``overwrite``. It
  refuses a ``dataset_dir`` equal to, inside, or containing ``raw_dir``, and it never deletes anything else.
- The demo cohort is written only on the demo path: the bundle's own default ``raw_dir`` *and* ``dataset_dir``
  (``<bundle>/data/raw`` and ``<bundle>/data/prepared``), when the raw folder does not exist yet. Anywhere else a
  missing ``raw_dir`` is an error.
- Training, inference and evaluation only read a prepared dataset (:func:`load_datalist`); a dataset prepared
  with other settings than a command asks for is refused with the setting, both values and the command that
  prepares it again.

Paths inside ``datalist.json`` are relative to the dataset folder (so a dataset can be moved);
:func:`load_datalist` makes them absolute.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gan_core.bundle import active_bundle
from gan_core.errors import BundleInputError
from gan_core.fileio import atomic_dir, atomic_write_text, folder_kind, written_by
from gan_core.runs import run_info, write_run_info

logger = logging.getLogger(__name__)

DATALIST = "datalist.json"
FORMAT = 2  # the layout version of a prepared dataset; older ones are refused with a re-prepare hint
PATH_KEYS = ("image", "mask", "genes", "label", "png")


def dataset_kind(bundle: str) -> str:
    return f"{bundle} dataset"


def prepare_command(bundle: str, dataset_dir: str | os.PathLike, extra: str = "") -> str:
    """The command line that prepares ``dataset_dir`` (for hints), with the active bundle's prepare.json."""
    folder = active_bundle()
    config = f"{folder if folder is not None else bundle + '_bundle'}/configs/prepare.json"
    line = (f"python -m monai.bundle run preparation --config_file {config} "
            f"--raw_dir <your raw data> --dataset_dir {dataset_dir}")
    return f"{line} {extra}".rstrip()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_folders(raw_dir: str | os.PathLike, dataset_dir: str | os.PathLike) -> None:
    """Refuse a ``dataset_dir`` equal to, inside, or containing ``raw_dir`` (preparing would touch raw data)."""
    raw, dataset = Path(raw_dir).resolve(), Path(dataset_dir).resolve()
    if _inside(dataset, raw) or _inside(raw, dataset):
        relation = "is" if raw == dataset else "is inside" if _inside(dataset, raw) else "contains"
        raise BundleInputError(f"{relation} the raw folder {raw}: preparing there could touch the raw data",
                               path=dataset, field="dataset_dir",
                               hint="choose a dataset_dir outside raw_dir (and raw_dir outside it)")


def raw_folder(raw_dir: str | os.PathLike, dataset_dir: str | os.PathLike, *, demo_raw_dir: str | os.PathLike,
               demo_dataset_dir: str | os.PathLike, write_demo: Callable[[Path], object], what: str) -> Path:
    """The raw folder to prepare; on the demo path a missing one is filled with the demo cohort first.

    Args:
        raw_dir, dataset_dir: the folders of this preparation.
        demo_raw_dir, demo_dataset_dir: the bundle's default folders (the demo path is both of them).
        write_demo: writes the demo cohort into the folder it is given.
        what: what the raw folder should hold, for the error message.

    Raises:
        BundleInputError: ``raw_dir`` does not exist and this is not the demo path.
    """
    raw = Path(raw_dir).resolve()
    if raw.is_dir():
        return raw
    demo = raw == Path(demo_raw_dir).resolve() and Path(dataset_dir).resolve() == Path(demo_dataset_dir).resolve()
    if not demo:
        raise BundleInputError(f"raw folder not found (it should hold {what})", path=raw, field="raw_dir",
                               hint="pass --raw_dir <your data>; the demo cohort is written only for the bundle's "
                               "default raw_dir and dataset_dir")
    logger.warning("demo path: %s does not exist, writing the demo cohort there", raw)
    write_demo(raw)
    return raw


@contextmanager
def write_dataset(dataset_dir: str | os.PathLike, *, bundle: str, overwrite: bool, settings: dict,
                  seed: int | None = None) -> Iterator[Path]:
    """Build a prepared dataset in a private work folder; it replaces ``dataset_dir`` when the block succeeds.

    The caller writes the files and :func:`save_datalist` into the yielded folder; ``run_info.json`` is added.
    """
    from gan_core.config import as_flag

    with atomic_dir(dataset_dir, record=DATALIST, kind=dataset_kind(bundle), replace=as_flag(overwrite, "overwrite"),
                    setting="dataset_dir", how="--overwrite true") as work:
        yield work
        write_run_info(work, run_info(dataset_kind(bundle), settings=settings, datalist=work / DATALIST, seed=seed))


def save_datalist(work: Path, datalist: dict, *, bundle: str, settings: dict) -> Path:
    """Write ``datalist.json`` (paths relative to the dataset folder) with its stamp, format and settings."""
    record = {"written_by": written_by(dataset_kind(bundle)), "format": FORMAT, "settings": settings, **datalist}
    return _write_json(record, work / DATALIST)


def _write_json(value: dict, path: Path) -> Path:
    atomic_write_text(json.dumps(value, indent=1), path)
    return path


def relative(path: str | os.PathLike, work: Path) -> str:
    """A path inside the work folder, relative to it (as the datalist stores it)."""
    return str(Path(path).relative_to(work))


def _absolute(datalist: dict, root: Path) -> dict:
    def fix(item):
        if isinstance(item, dict):
            return {k: (str(root / v) if k in PATH_KEYS and isinstance(v, str) else fix(v)) for k, v in item.items()}
        if isinstance(item, list):
            return [fix(v) for v in item]
        return item

    out = fix(datalist)
    for key in ("gene_names", "gene_stats"):
        if isinstance(out.get(key), str):
            out[key] = str(root / out[key])
    return out


def load_datalist(dataset_dir: str | os.PathLike, *, bundle: str, expected: dict | None = None) -> dict:
    """Read a prepared dataset's ``datalist.json`` (paths made absolute), refusing what does not fit.

    Args:
        bundle: ``"radiogenomic"``, ``"radiogan"`` or ``"ctstyle"``.
        expected: ``{setting: value}`` the command needs; a dataset prepared with another value is refused
            (``None`` values are not checked).

    Raises:
        BundleInputError: no datalist, a datalist of another bundle or of files this project did not prepare,
            an older format, or another value of an expected setting.
    """
    dataset_dir = Path(dataset_dir).resolve()
    path = dataset_dir / DATALIST
    if not path.is_file():
        raise BundleInputError("no prepared dataset here", path=dataset_dir, field="dataset_dir",
                               hint=f"prepare one first: {prepare_command(bundle, dataset_dir)}")
    kind = folder_kind(dataset_dir, DATALIST)
    if kind != dataset_kind(bundle):
        what = f"a {kind}" if kind else "a datalist that this project did not prepare"
        raise BundleInputError(f"holds {what}, not a {dataset_kind(bundle)}", path=path, field="dataset_dir",
                               hint=f"prepare one: {prepare_command(bundle, '<new folder>')}")
    try:
        datalist = json.loads(path.read_text())
    except ValueError as err:
        raise BundleInputError(f"not valid JSON ({err})", path=path,
                               hint=f"prepare it again: {prepare_command(bundle, dataset_dir, '--overwrite true')}") from err
    if datalist.get("format") != FORMAT:
        raise BundleInputError(f"prepared in format {datalist.get('format')}, this version reads format {FORMAT}",
                               path=path, field="format",
                               hint=f"prepare it again: {prepare_command(bundle, dataset_dir, '--overwrite true')}")
    prepared = datalist.get("settings", {})
    for key, value in (expected or {}).items():
        if value is not None and prepared.get(key) != value:
            raise BundleInputError(
                f"the dataset was prepared with {key}={json.dumps(prepared.get(key))}, this command asks for "
                f"{key}={json.dumps(value)}",
                path=path, field=key,
                hint=f"leave {key} unset to use the prepared value, or prepare again: "
                f"{prepare_command(bundle, dataset_dir, f'--{key} {json.dumps(value)} --overwrite true')}",
            )
    return _absolute(datalist, dataset_dir)


def dataset_path(dataset_dir: str | os.PathLike) -> Path:
    """The ``datalist.json`` of a dataset folder (what run_info hashes)."""
    return Path(dataset_dir).resolve() / DATALIST
