"""tools/make_demo_data.py: writes any bundle's demo cohort (found by its folder), deterministically, with that
cohort's own settings; unknown settings and bad output folders are one error line."""

import importlib.util
from pathlib import Path

import pytest
from bundle_cases import CASES

TOOL = Path(__file__).resolve().parents[1] / "tools" / "make_demo_data.py"


def _module():
    spec = importlib.util.spec_from_file_location("make_demo_data", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_bundles_cohort_is_deterministic_from_the_command_line(case, tmp_path, capsys):
    main = _module().main
    toy = [f"{key}={value}".replace("'", '"') for key, value in case.toy["demo_cohort"].items() if key != "seed"]
    for run in ("a", "b"):
        args = ["--bundle", str(case.root), "--out", str(tmp_path / run), "--seed", "5"]
        assert main(args + [item for pair in zip(["--set"] * len(toy), toy, strict=True) for item in pair]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and (tmp_path / "a" / "demo_cohort.json").is_file()
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert f"{case.root.name}:" in capsys.readouterr().out


def test_settings_are_read_as_json_and_an_unknown_one_is_named(tmp_path, capsys):
    module = _module()
    assert module.parse_settings(["subjects=4", "shape=[12, 8, 40]", "gene_model=hard"]) == {
        "subjects": 4, "shape": [12, 8, 40], "gene_model": "hard"}
    with pytest.raises(SystemExit) as exit_status:  # through the tools' error boundary, as on the command line
        module.run_tool(module.main, ["--bundle", str(CASES[0].root), "--out", str(tmp_path / "x"),
                                      "--set", "no_such_setting=1"])
    assert exit_status.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: --set: ") and "no_such_setting" in last and "settings of this cohort" in last
    assert not (tmp_path / "x").exists()


def test_existing_output_is_an_error(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    module = _module()
    case = CASES[0]
    settings = [f"--set={key}={value}".replace("'", '"') for key, value in case.toy["demo_cohort"].items()
                if key != "seed"]
    with pytest.raises(SystemExit) as exit_status:
        module.run_tool(module.main, ["--bundle", str(case.root), "--out", str(tmp_path / "x"), *settings])
    assert exit_status.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'x'}") and "already exists" in last and " -> " in last
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
