"""tools/make_demo_data.py: writes the cohorts deterministically and reports bad output folders."""

import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "make_demo_data.py"


def _module():
    spec = importlib.util.spec_from_file_location("make_demo_data", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _main():
    return _module().main


def test_nsclc_deterministic_from_the_command_line(tmp_path, capsys):
    main = _main()
    for run in ("a", "b"):
        assert main(["--cohort", "nsclc", "--out", str(tmp_path / run), "--subjects", "1", "--genes", "30",
                     "--seed", "5"]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert any(f.name == "genes.tsv" for f in files) and any(f.suffix == ".dcm" for f in files)
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert "nsclc:" in capsys.readouterr().out


def test_ctseg_default_size(tmp_path):
    """One default-size ctseg patient: 20 slices of 256 x 256 (about 1 s)."""
    assert _main()(["--cohort", "ctseg", "--out", str(tmp_path / "c"), "--subjects", "1"]) == 0
    assert len(list((tmp_path / "c" / "CT-001").glob("label_s*.nii.gz"))) == 20


def test_existing_output_is_an_error(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    module = _module()
    with pytest.raises(SystemExit) as exit_status:  # through the tools' error boundary, as on the command line
        module.run_tool(module.main, ["--cohort", "ctseg", "--out", str(tmp_path / "x"), "--subjects", "1"])
    assert exit_status.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'x'}") and "already exists" in last and " -> " in last
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
