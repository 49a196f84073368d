"""Each bundle at toy size, found by its folder, and the in-process way to run a bundle command.

A bundle's toy settings live in its own ``configs/toy.json`` (``demo_cohort``: the demo cohort writer's arguments;
one entry of overrides per run id), so the tests that serve every bundle list none: :data:`CASES` holds every
folder ``<name>_bundle/`` with ``configs/metadata.json`` and ``scripts/``. ``run_workflow`` runs a config's run id as
``python -m monai.bundle run`` does (MONAI's ``ConfigWorkflow``: initialize, run, finalize), in this process, so
most tests avoid the ~5 s of imports a CLI process costs; ``user_error`` passes an exception through the same
error boundary the CLI uses. A few tests run the real CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

from gan_core.bundle import activate, find_bundles

REPO = Path(__file__).resolve().parents[1]

ERROR_LINE = re.compile(r"^error: .+: .+ -> .+")
# what a copy of a bundle folder leaves out: the demo's data and results, exports, byte code
NOT_COPIED = shutil.ignore_patterns("data", "outputs", "models", "large_files.yml", "__pycache__", ".*.lock")


@dataclass(frozen=True)
class BundleCase:
    """A bundle folder run at toy size (``configs/toy.json``)."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name.removesuffix("_bundle")

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    @cached_property
    def toy(self) -> dict:
        return json.loads((self.configs / "toy.json").read_text())

    def make_raw(self, path: Path) -> Path:
        """Write the bundle's demo cohort at toy size into ``path``."""
        activate(self.root)
        from scripts.demo_cohort import write_demo_cohort

        return write_demo_cohort(path, **self.toy["demo_cohort"])

    def prepare_settings(self, raw_dir: Path, dataset_dir: Path) -> dict:
        return {"raw_dir": str(raw_dir), "dataset_dir": str(dataset_dir), **self.toy["preparation"]}

    def train_settings(self, dataset_dir: Path, output_dir: Path) -> dict:
        return {"dataset_dir": str(dataset_dir), "output_dir": str(output_dir), **self.toy["training"]}

    def copy_to(self, folder: Path) -> BundleCase:
        """A copy of the bundle folder (configs, scripts, docs; no data, outputs or models) as ``folder``."""
        shutil.copytree(self.root, folder, ignore=NOT_COPIED)
        return BundleCase(Path(folder).resolve())

    def cli(self, run_id: str, config_files: list[str], settings: dict, *extra: str) -> list[str]:
        """A ``python -m monai.bundle run`` command line with every setting as an override."""
        files = [str(self.configs / f) for f in config_files]
        command = [sys.executable, "-m", "monai.bundle", "run", run_id,
                   "--config_file", files[0] if len(files) == 1 else json.dumps(files)]
        for key, value in settings.items():
            command += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
        return command + list(extra)


CASES = [BundleCase(folder) for folder in find_bundles(REPO)]
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
    from gan_core.errors import as_input_error

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
