"""The model zoo user's path, for every bundle and for a fourth bundle made by copying one under a new name: the
folder copied outside the repository, a fresh virtual environment holding only the core's wheel and the packages
the bundle's ``metadata.json`` names (installed the way the zoo's ``ci/get_bundle_requirements.py`` lists them, the
wheel standing in for the package index), the whole chain at toy size (preparation -> training -> export ->
inference -> evaluation), then the zoo's pre-merge checks and ``monai.bundle.load`` on the exported folder
(``tests/zoo_checks.py``). The bundles in the repository are not touched.

All cases share one environment (about a minute to build), built once for the pytest session under a lock that
the pytest-xdist workers share; the installs into it take the same lock."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from bundle_cases import CASE_BY_NAME, CASES, NOT_COPIED, REPO
from bundle_cases import run as run_command

from gan_core.bundle import find_bundles

pytestmark = pytest.mark.slow

SCHEMA = REPO / "tests" / "data" / "meta_schema_20240725.json"
FOURTH = "petmip"  # a new bundle: a copy of radiogan_bundle under another name, no file changed


def zoo_requirements(metadata: dict) -> list[str]:
    """The lines ``ci/get_bundle_requirements.py`` writes for a bundle (MONAI, PyTorch, NumPy, required packages)."""
    lines = [f"monai=={metadata['monai_version']}", f"torch=={metadata['pytorch_version']}",
             f"numpy=={metadata['numpy_version']}"]
    for key in ("optional_packages_version", "required_packages_version"):
        lines += [f"{name}=={version}" for name, version in metadata.get(key, {}).items()]
    return lines


def run(command: list, cwd: Path, timeout: float = 600) -> str:
    """The stdout of a command run as the shared tests run one (one thread, unbuffered); fails with its output."""
    return run_command([str(c) for c in command], cwd=cwd, timeout=timeout).stdout


@contextmanager
def session_lock(folder: Path):
    """An exclusive lock on ``folder/.lock``, shared by the pytest-xdist workers of one session."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def zoo_venv(tmp_path_factory):
    """(python of a fresh venv, folder holding the core's wheel, the session's lock folder): only pip and the zoo
    CI's own jsonschema in it yet. The wheel is built from a copy of the core's source, outside the repository."""
    session = tmp_path_factory.getbasetemp()
    root = (session.parent if os.environ.get("PYTEST_XDIST_WORKER") else session) / "zoo_venv"  # one per session
    python, wheels = root / "venv" / "bin" / "python", root / "wheels"
    with session_lock(root):
        if not (root / "ready").exists():
            source = root / "source"
            shutil.rmtree(source, ignore_errors=True)
            shutil.copytree(REPO / "gan_core", source / "gan_core", ignore=shutil.ignore_patterns("__pycache__"))
            for name in ("pyproject.toml", "README.md"):
                shutil.copy(REPO / name, source / name)
            run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels, source],
                cwd=root)
            run([sys.executable, "-m", "venv", "--clear", root / "venv"], cwd=root)
            # what the zoo's CI installs before its checks (requirements-dev.txt): the metadata schema's validator
            run([python, "-m", "pip", "install", "--quiet", "--no-compile", "jsonschema"], cwd=root)
            (root / "ready").write_text("")
    return python, wheels, root


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("name", [*(case.name for case in CASES), FOURTH])
def test_a_bundle_copied_out_of_the_repository_runs_and_passes_the_zoo_checks(name, zoo_venv, tmp_path):
    python, wheels, lock = zoo_venv
    source = CASE_BY_NAME["radiogan" if name == FOURTH else name]
    repository_files = _tree(source.root)
    tree = tmp_path / "models"  # the zoo's models/ folder: bundles side by side
    bundle = source.copy_to(tree / f"{name}_bundle")
    for script in ("run_chain.py", "zoo_checks.py"):
        shutil.copy(REPO / "tests" / script, tmp_path / script)

    metadata = json.loads((bundle.configs / "metadata.json").read_text())
    (tmp_path / "requirements.txt").write_text("\n".join(zoo_requirements(metadata)) + "\n")
    with session_lock(lock):
        run([python, "-m", "pip", "install", "--quiet", "--no-compile", "--find-links", wheels, "-r",
             tmp_path / "requirements.txt"], cwd=tmp_path, timeout=900)
    core = run([python, "-c", "import gan_core; print(gan_core.__file__)"], cwd=tmp_path).strip()
    assert "site-packages" in core and not core.startswith(str(REPO))  # the wheel, not the source tree

    chain = json.loads(run([python, tmp_path / "run_chain.py", bundle.root, tmp_path / "work"], cwd=tmp_path)
                       .splitlines()[-1])
    assert {"model.pt", "model.json", "model.ts"} <= set(chain["files"]["models"])
    assert "manifest.json" in chain["files"]["inference"] and "metrics.json" in chain["files"]["evaluation"]
    checks = json.loads(run([python, tmp_path / "zoo_checks.py", bundle.root, SCHEMA], cwd=tmp_path).splitlines()[-1])
    assert checks["passed"] == ["large_files", "files", "changelog", "metadata_schema", "ckpt_export", "load_inference"]
    assert _tree(source.root) == repository_files  # nothing written into the repository's bundle

    if name == FOURTH:  # beside the others, the demo and the shared tests find it by its folder
        for case in CASES:
            shutil.copytree(case.root, tree / case.root.name, ignore=NOT_COPIED)
        demo = tree / "tools"
        shutil.copytree(REPO / "tools", demo)
        listed = run([python, demo / "demo.py", "--list"], cwd=tmp_path)
        assert f"{FOURTH}: {tree / f'{FOURTH}_bundle'} (trainings: train)" in listed
        assert [p.name for p in find_bundles(tree)] == sorted([*(c.root.name for c in CASES), f"{FOURTH}_bundle"])
