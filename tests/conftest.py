"""Test-wide settings, and one bundle's ``scripts`` at a time.

Every bundle's own code is a package called ``scripts`` (the model zoo's layout), so the tests of several bundles
share one process the way :func:`gan_core.bundle.activate` lets bundle commands do: the tests of a bundle live in
``tests/<name>_bundle/``, and before such a test module is imported and before each of its tests runs, that bundle's
``scripts`` is made the importable one (its modules are imported once and kept while another bundle's are active).
Shared tests run a bundle through its configs (which import the config's own ``scripts``) or call ``activate``.

Under pytest-xdist (``make test`` runs two workers on the 2-core CI machine) each worker computes with one thread,
so the workers share the cores instead of each oversubscribing them.
"""

import os
import sys
from pathlib import Path

import pytest
import torch

from gan_core.bundle import activate

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(REPO / "tools"))  # the tests read the tools' own functions (bundle_imports, update_metadata)

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def bundle_of_test(path: Path) -> Path | None:
    """``tests/<name>_bundle/test_*.py`` -> ``<repo>/<name>_bundle``; None for a shared test."""
    folder = Path(path).resolve().parent
    if folder.parent == TESTS and (REPO / folder.name / "scripts").is_dir():
        return REPO / folder.name
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collectstart(collector):
    if isinstance(collector, pytest.Module) and (bundle := bundle_of_test(collector.path)) is not None:
        activate(bundle)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if (bundle := bundle_of_test(item.path)) is not None:
        activate(bundle)


TOY_NETWORKS = '''
import torch


class TinyGenerator(torch.nn.Module):
    """z (B, latent) -> (B, 1, 4, 4); refuses an unknown mode, as a real network refuses a bad setting."""

    def __init__(self, latent: int = 2, mode: str = "linear"):
        super().__init__()
        if mode not in ("linear", "tanh"):
            raise ValueError(f"mode must be linear or tanh, got {mode!r}")
        self.fc = torch.nn.Linear(latent, 16)
        self.bn = torch.nn.BatchNorm1d(16)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(z)).view(-1, 1, 4, 4)
'''


@pytest.fixture
def toy_bundle(tmp_path):
    """A minimal bundle folder (``configs/metadata.json``, ``scripts/networks.py`` with ``TinyGenerator``), active:
    the core's tests build networks from records without any real bundle."""
    root = tmp_path / "toy_bundle"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "metadata.json").write_text('{"version": "0.0.1", "name": "toy"}')
    (root / "scripts").mkdir()
    (root / "scripts" / "__init__.py").write_text("")
    (root / "scripts" / "networks.py").write_text(TOY_NETWORKS)
    activate(root)
    return root
