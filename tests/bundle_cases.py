"""Tiny, fast settings of each bundle's real configs, shared by the cross-bundle operations tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class BundleCase:
    """A bundle run at toy size: its raw demo cohort is written by ``make_raw(dir)``."""

    name: str
    make_raw: callable
    overrides: dict = field(default_factory=dict)
    prepared: bool = True  # False: the bundle trains on its raw cohort directly (dataset_dir = raw_dir)
    prepare_key: str = "datalist"  # the train.json key whose evaluation prepares the data

    @property
    def configs(self) -> Path:
        return REPO / f"{self.name}_bundle" / "configs"

    def settings(self, raw_dir: Path, work: Path) -> dict:
        return {
            "raw_dir": str(raw_dir),
            "dataset_dir": str(work / "prepared") if self.prepared else str(raw_dir),
            "output_dir": str(work / "out"),
            **self.overrides,
        }

    def cli(self, run_id: str, config_files: list[str], settings: dict, *extra: str) -> list[str]:
        """A ``python -m monai.bundle run`` command line with every setting as an override."""
        files = [str(self.configs / f) for f in config_files]
        command = [sys.executable, "-m", "monai.bundle", "run", run_id,
                   "--config_file", files[0] if len(files) == 1 else json.dumps(files)]
        for key, value in settings.items():
            command += [f"--{key}", value if isinstance(value, str) else repr(value)]
        return command + list(extra)


def radiogan_raw(path: Path) -> Path:
    from bundles.phantoms.pet import write_pet_cohort

    return write_pet_cohort(path, subjects=10, seed=3, shape=(12, 8, 40))


RADIOGAN = BundleCase(
    "radiogan",
    radiogan_raw,
    {"first_grid": [3, 5], "g_channels": [8, 4, 4], "image_size": [24, 40], "d_channels": [4] * 8,
     "train#dataloader#batch_size": 2, "sample_every_n_epochs": 1},
)

def ctstyle_raw(path: Path) -> Path:
    from bundles.phantoms.ctseg import write_ctseg_cohort

    return write_ctseg_cohort(path, subjects=4, slices_per_subject=2, size=32, seed=1)


CTSTYLE = BundleCase(
    "ctstyle",
    ctstyle_raw,
    {"image_size": 32, "loss_size": 32, "g_base_channels": 4, "g_num_levels": 3, "g_max_channels": 8,
     "d_base_channels": 4, "d_num_layers": 2, "d_max_channels": 8},
    prepared=False,
    prepare_key="cohort_dir",
)

def radiogenomic_raw(path: Path) -> Path:
    from bundles.phantoms.nsclc import write_nsclc_cohort

    return write_nsclc_cohort(path, subjects=4, seed=0, n_genes=40, size=128, workers=1)


RADIOGENOMIC = BundleCase(
    "radiogenomic",
    radiogenomic_raw,
    {"image_size": 32, "g_channels": 4, "d_channels": 4, "gene_hidden": 16, "sample_every_n_epochs": 1,
     "train#dataloader#batch_size": 4},
)

CASES = [RADIOGENOMIC, RADIOGAN, CTSTYLE]


# one thread per process: runs compared for equality must do their float reductions in the same order
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def run(command: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)}\nexit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result
