"""Tiny, fast settings of each bundle's real configs, and the in-process way to run a bundle command.

``run_workflow`` runs a config's run id as ``python -m monai.bundle run`` does (MONAI's ``ConfigWorkflow``:
initialize, run, finalize), in this process, so most tests avoid the ~5 s of imports a CLI process costs;
``user_error`` passes an exception through the same error boundary the CLI uses. A few tests run the real CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

ERROR_LINE = re.compile(r"^error: .+: .+ -> .+")


@dataclass
class BundleCase:
    """A bundle run at toy size: its raw demo cohort is written by ``make_raw(dir)``.

    ``prepare`` holds preparation overrides, ``train`` training overrides (network and loop at toy size).
    """

    name: str
    make_raw: Callable[[Path], Path]
    prepare: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)

    @property
    def configs(self) -> Path:
        return REPO / f"{self.name}_bundle" / "configs"

    @property
    def root(self) -> Path:
        return REPO / f"{self.name}_bundle"

    def prepare_settings(self, raw_dir: Path, dataset_dir: Path) -> dict:
        return {"raw_dir": str(raw_dir), "dataset_dir": str(dataset_dir), **self.prepare}

    def train_settings(self, dataset_dir: Path, output_dir: Path) -> dict:
        return {"dataset_dir": str(dataset_dir), "output_dir": str(output_dir), **self.train}

    def cli(self, run_id: str, config_files: list[str], settings: dict, *extra: str) -> list[str]:
        """A ``python -m monai.bundle run`` command line with every setting as an override."""
        files = [str(self.configs / f) for f in config_files]
        command = [sys.executable, "-m", "monai.bundle", "run", run_id,
                   "--config_file", files[0] if len(files) == 1 else json.dumps(files)]
        for key, value in settings.items():
            command += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
        return command + list(extra)


def radiogan_raw(path: Path) -> Path:
    from bundles.phantoms.pet import write_pet_cohort

    return write_pet_cohort(path, subjects=10, seed=3, shape=(12, 8, 40))


def ctstyle_raw(path: Path) -> Path:
    from bundles.phantoms.ctseg import write_ctseg_cohort

    return write_ctseg_cohort(path, subjects=4, slices_per_subject=2, size=32, seed=1)


def radiogenomic_raw(path: Path) -> Path:
    from bundles.phantoms.nsclc import write_nsclc_cohort

    return write_nsclc_cohort(path, subjects=4, seed=0, n_genes=40, size=128, workers=1)


RADIOGENOMIC = BundleCase(
    "radiogenomic", radiogenomic_raw,
    prepare={"image_size": 32},
    train={"network#base_channels": 4, "d_channels": 4, "network#hidden": 16, "sample_every_n_epochs": 1,
           "train#dataloader#batch_size": 4},
)
RADIOGAN = BundleCase(
    "radiogan", radiogan_raw,
    prepare={"image_size": [24, 40], "heldout_per_class": 1},
    train={"network#channels": [8, 4, 4], "d_channels": [4] * 8, "train#dataloader#batch_size": 2,
           "sample_every_n_epochs": 1},
)
CTSTYLE = BundleCase(
    "ctstyle", ctstyle_raw,
    prepare={"image_size": 32},
    train={"loss_size": 32, "network#base_channels": 4, "network#num_levels": 3, "network#max_channels": 8,
           "d_base_channels": 4, "d_num_layers": 2, "d_max_channels": 8},
)

CASES = [RADIOGENOMIC, RADIOGAN, CTSTYLE]
CASE_BY_NAME = {case.name: case for case in CASES}


# one thread per process: runs compared for equality must do their float reductions in the same order
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def run(command: list[str], timeout: float = 300, cwd: Path = REPO, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)}\nexit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def run_workflow(case: BundleCase, run_id: str, config_files: str | list[str], **overrides):
    """Run ``run_id`` of the bundle's config(s) in this process, as ``python -m monai.bundle run`` does.

    Returns the finished ``ConfigWorkflow`` (its ``parser`` gives the objects the run built).
    """
    from monai.bundle import ConfigWorkflow

    files = [config_files] if isinstance(config_files, str) else list(config_files)
    paths = [str(case.configs / f) for f in files]
    workflow = ConfigWorkflow(config_file=paths if len(paths) > 1 else paths[0], workflow_type=None,
                              run_id=run_id, **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


def user_error(call: Callable, *args, **kwargs):
    """Call, expect a user-fixable error, and return what the CLI's error boundary prints (one line)."""
    from bundles.errors import as_input_error

    with pytest.raises(Exception) as caught:  # noqa: B017 - the boundary decides which exceptions are the user's
        call(*args, **kwargs)
    error = as_input_error(caught.value)
    assert error is not None, f"not a user error: {caught.value!r}"
    line = f"error: {error}"
    assert ERROR_LINE.match(line), line
    return error


def tree_hash(folder: Path) -> str:
    """A hash of every file's relative path, size and bytes below ``folder`` (hidden files included)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare_case(case: BundleCase, raw_dir: Path, dataset_dir: Path, **overrides):
    """Run the bundle's ``preparation`` on a raw folder (in this process)."""
    return run_workflow(case, "preparation", "prepare.json", **{**case.prepare_settings(raw_dir, dataset_dir),
                                                                **overrides})
