"""``bundle_root`` and a bundle's own ``scripts`` come from where the config file is: from the repository root, from
inside the bundle folder and from a copy elsewhere, through MONAI's command line and its Python API; several
bundles take turns in one process, each keeping its own modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_cases import CASES, ENV, ERROR_LINE, REPO

from gan_core.bundle import activate, active_bundle, bundle_of, config_bundle
from gan_core.errors import BundleInputError

PROBE = {"probe": ["$print('BUNDLE_ROOT=' + @bundle_root + ' SCRIPTS=' + scripts.__file__)"], "run": "@probe"}


def _root_and_scripts(config: str, cwd: Path, probe_dir: Path) -> tuple[str, str]:
    """Run the ``probe`` run id of ``config`` + a probe overlay (in ``probe_dir``) with MONAI's command line in
    ``cwd``: the bundle_root and the scripts package the config got."""
    probe = probe_dir / "probe_overlay.json"
    probe.write_text(json.dumps(PROBE))
    result = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "probe", "--config_file",
                             json.dumps([config, str(probe)])], cwd=cwd, env=ENV, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("BUNDLE_ROOT="))
    root, scripts = line.removeprefix("BUNDLE_ROOT=").split(" SCRIPTS=")
    return root, scripts


@pytest.mark.slow
def test_the_command_line_takes_the_bundle_of_its_config_file_wherever_it_runs(tmp_path):
    case = CASES[0]
    # (a) from the repository root, (b) from inside a bundle folder, (c) a copy outside the repository
    root, scripts = _root_and_scripts(f"{case.root.name}/configs/export.json", REPO, tmp_path)
    assert root == str(case.root) and scripts == str(case.root / "scripts" / "__init__.py")
    copy = case.copy_to(tmp_path / "copied" / case.root.name)
    root, scripts = _root_and_scripts("configs/export.json", copy.root, tmp_path)
    assert root == str(copy.root) and scripts == str(copy.root / "scripts" / "__init__.py")
    root, scripts = _root_and_scripts(str(copy.configs / "export.json"), tmp_path, tmp_path)
    assert root == str(copy.root) and Path(scripts).parent.parent == copy.root
    # another bundle's folder as bundle_root is refused in one line, before anything runs
    other = CASES[1].root
    result = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "export", "--config_file",
                             str(copy.configs / "export.json"), "--bundle_root", str(other)], cwd=tmp_path, env=ENV,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert ERROR_LINE.match(last) and "--bundle_root" in last and "is not the bundle of the config file" in last


def test_the_python_api_takes_the_bundle_of_the_config_file(tmp_path, monkeypatch):
    from monai.bundle import ConfigWorkflow

    for case in CASES:
        monkeypatch.chdir(REPO)
        workflow = ConfigWorkflow(config_file=f"{case.root.name}/configs/export.json", workflow_type=None)
        workflow.initialize()
        assert workflow.parser.get_parsed_content("bundle_root") == str(case.root)
        assert active_bundle() == case.root  # its imports made its own scripts the importable ones
    copy = CASES[0].copy_to(tmp_path / CASES[0].root.name)
    monkeypatch.chdir(copy.root)
    workflow = ConfigWorkflow(config_file="configs/export.json", workflow_type=None)
    workflow.initialize()
    assert workflow.parser.get_parsed_content("models_dir") == str(copy.root / "models")
    assert active_bundle() == copy.root


def test_bundles_take_turns_in_one_process_each_keeping_its_own_modules():
    first, second = CASES[0].root, CASES[1].root
    a = activate(first)
    import scripts.networks as networks_of_a

    b = activate(second)
    import scripts.networks as networks_of_b

    assert a is not b and networks_of_a is not networks_of_b
    assert Path(networks_of_b.__file__).parents[1] == second
    assert activate(first) is a and sys.modules["scripts.networks"] is networks_of_a  # the same module objects
    assert sys.path[0] == str(first) and active_bundle() == first


def test_a_folder_without_scripts_is_not_a_bundle(tmp_path):
    (tmp_path / "configs").mkdir()
    with pytest.raises(BundleInputError, match="no scripts/__init__.py") as caught:
        activate(tmp_path)
    assert caught.value.field == "bundle_root"


def test_bundle_of_a_config_file_and_no_bundle_outside_a_config(tmp_path, monkeypatch):
    assert bundle_of(tmp_path / "b_bundle" / "configs" / "train.json") == tmp_path / "b_bundle"
    assert bundle_of(tmp_path / "flat" / "train.json") == tmp_path / "flat"  # MONAI's rule for a config elsewhere
    monkeypatch.delitem(sys.modules, "scripts", raising=False)  # no bundle active, no config being read
    with pytest.raises(BundleInputError, match="cannot tell which bundle") as caught:
        config_bundle()
    assert caught.value.hint
