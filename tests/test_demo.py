"""`make demo` resumes its own earlier training only when the bundle version and the demo's overrides are the same."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("demo", REPO / "tools" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "MANIFEST", tmp_path / "manifest.json")
    return module


def _finished_training(folder: Path) -> None:
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint_latest.pt").write_bytes(b"weights")
    (folder / "losses.jsonl").write_text("{}\n")
    (folder / "run_info.json").write_text("{}")


def test_a_demo_run_of_another_recipe_is_trained_anew_and_nothing_else_is_touched(demo, tmp_path):
    out = tmp_path / "outputs"
    _finished_training(out)
    (out / "evaluation").mkdir()
    (out / "evaluation" / "metrics.json").write_text("{}")
    recipe = demo.training_recipe(REPO / "radiogan_bundle", ["--objective", "paper"])
    assert recipe["overrides"] == ["--objective", "paper"] and recipe["version"].count(".") == 2

    demo.forget_stale_training(out, recipe)  # trained before recipes were recorded: stale
    assert sorted(p.name for p in out.iterdir()) == ["evaluation"]
    assert json.loads(demo.MANIFEST.read_text())["trainings"] == {str(out): recipe}

    _finished_training(out)
    demo.forget_stale_training(out, recipe)  # the same recipe: kept, to be resumed
    assert (out / "checkpoints" / "checkpoint_latest.pt").read_bytes() == b"weights"

    demo.forget_stale_training(out, {**recipe, "version": "9.9.9"})  # another bundle version: stale
    assert not (out / "checkpoints").exists() and (out / "evaluation" / "metrics.json").is_file()
