"""What every run records and guards: ``run_info.json``, the training output folder, enough data for a batch.

Each command's output carries a ``run_info.json``: the command line, the merged config files with the
command-line overrides, the settings it ran with, the seed, the git commit, package versions, and the
SHA-256 of the datalist it read. Its ``"written_by"`` stamp also marks the folder as this project's
(:mod:`gan_core.fileio`): a folder without one is never replaced.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from gan_core.errors import BundleInputError
from gan_core.fileio import (
    acquire_lock,
    atomic_write_text,
    file_sha256,
    folder_kind,
    remove_leftovers,
    written_by,
)

logger = logging.getLogger(__name__)

RUN_INFO = "run_info.json"
TRAINING = "training run"
# what a training writes into its output folder, besides config_*.json copies and its evaluation/inference folders
TRAINING_OUTPUTS = ("checkpoints", "samples", "shards", "losses.jsonl", "loss_curves.png", "mlruns.db", RUN_INFO)
PACKAGES = ("gan_core", "monai", "torch", "pytorch-ignite", "numpy", "nibabel", "pydicom", "highdicom", "itk",
            "mlflow", "scikit-learn", "scipy", "matplotlib")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The commit of the git checkout holding the active bundle (``+dirty`` when it has uncommitted changes), if the
    bundle is in one."""
    from gan_core.bundle import active_bundle

    folder = active_bundle() or Path.cwd()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if commit and dirty else commit or None


def command_line_config() -> dict | None:
    """The merged config files and overrides of this ``python -m monai.bundle run`` command (else ``None``)."""
    from monai.bundle import ConfigParser

    from gan_core.config import _overrides, config_files_argument, under_bundle_cli

    if not under_bundle_cli(sys.argv):
        return None
    overrides = _overrides(sys.argv)
    files = config_files_argument(sys.argv)
    return {"config_files": files, "overrides": {k: v for k, v in overrides.items() if k != "config_file"},
            "config": ConfigParser.load_config_files(files) if files else {}}


def run_info(kind: str, *, settings: dict | None = None, datalist: str | os.PathLike | None = None,
             seed: int | None = None) -> dict:
    """The ``run_info.json`` record of a run of ``kind`` (``"training run"``, ``"inference"``, ...), with the number
    of PyTorch threads: results of the same seed change with it (the order of floating-point sums differs)."""
    import torch

    return {
        "written_by": written_by(kind),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "config": command_line_config(),
        "settings": settings or {},
        "seed": seed,
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "datalist": None if datalist is None else {"path": str(datalist), "sha256": file_sha256(datalist)},
    }


def write_run_info(folder: str | os.PathLike, info: dict) -> Path:
    path = Path(folder) / RUN_INFO
    atomic_write_text(json.dumps(info, indent=1, default=str), path)
    return path


def check_enough_data(num_items: int, batch_size: int, what: str, path: str | os.PathLike | None = None) -> None:
    """Refuse a training set smaller than one batch per process (the loader drops incomplete batches)."""
    import torch.distributed as dist

    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if num_items // world < batch_size:
        per = f" ({num_items // world} per process of {world})" if world > 1 else ""
        raise BundleInputError(
            f"{num_items} {what}{per} make no batch of {batch_size}: nothing would be trained",
            path=path, field="train#dataloader#batch_size",
            hint=f"pass --train#dataloader#batch_size {max(1, num_items // world)} or less, or add data",
        )


def start_training(output_dir: str | os.PathLike, *, resume: bool, datalist: str | os.PathLike,
                   num_items: int, batch_size: int, settings: dict, seed: int) -> dict:
    """Claim ``output_dir`` for this training and record it; called first by every ``training`` run id.

    Takes the folder's lock for the whole process (one training per folder; the ranks of a torchrun job count
    as one), refuses a folder that holds another run's checkpoints unless ``resume`` (and a resume on another
    dataset), refuses a folder of files this project did not write, removes leftovers of killed jobs, refuses
    a dataset smaller than one batch and writes ``run_info.json`` (a resumed run keeps the first one's
    record and adds its own under ``"resumed"``).
    """
    from gan_core.config import as_flag

    output_dir = Path(output_dir).resolve()
    resume = as_flag(resume, "resume")
    check_enough_data(num_items, batch_size, "training items", datalist)
    if int(os.environ.get("RANK", "0")) != 0:
        return {}
    acquire_lock(output_dir)
    info = run_info(TRAINING, settings=settings, datalist=datalist, seed=seed)
    latest = output_dir / "checkpoints" / "checkpoint_latest.pt"
    previous = _read_json(output_dir / RUN_INFO)
    if latest.exists() and not resume:
        raise BundleInputError("holds the checkpoints of an earlier training", path=output_dir, field="output_dir",
                               hint="pass --resume true to continue it, or choose a new --output_dir")
    if output_dir.is_dir() and previous is None and _foreign_entries(output_dir):
        raise BundleInputError("holds files that this project did not write; a training never writes there",
                               path=output_dir, field="output_dir", hint="choose a new or empty --output_dir")
    if resume and latest.exists() and previous and previous.get("datalist"):
        before, now = previous["datalist"].get("sha256"), info["datalist"]["sha256"]
        if before != now:
            raise BundleInputError(
                f"the run was trained on the dataset {previous['datalist'].get('path')} (sha256 {str(before)[:12]}), "
                f"not on {datalist} (sha256 {now[:12]})",
                path=output_dir, field="dataset_dir",
                hint="resume with the dataset it was trained on, or train into a new --output_dir")
    for path in remove_leftovers(output_dir):
        logger.info("removed the leftover of an interrupted job: %s", path)
    if resume and latest.exists() and previous:
        info = {**previous, "resumed": [*previous.get("resumed", []), info]}
    write_run_info(output_dir, info)
    return info


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _foreign_entries(folder: Path) -> list[Path]:
    """Visible entries of a folder that no command of this project wrote (its own outputs have a run_info)."""
    foreign = []
    for path in folder.iterdir():
        if path.name.startswith(".") or path.name in TRAINING_OUTPUTS or path.name.startswith("config_"):
            continue
        if path.is_dir() and folder_kind(path, RUN_INFO) is not None:
            continue
        foreign.append(path)
    return foreign
