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
    root = demo.BUNDLES[sorted(demo.BUNDLES)[0]]
    recipe = demo.training_recipe(root, ["train.json", "train_variant.json"], ["--train#trainer#max_epochs", "2"])
    assert recipe["configs"] == ["train.json", "train_variant.json"] and recipe["version"].count(".") == 2

    demo.forget_stale_training(out, recipe)  # trained before recipes were recorded: stale
    assert sorted(p.name for p in out.iterdir()) == ["evaluation"]
    assert json.loads(demo.MANIFEST.read_text())["trainings"] == {str(out): recipe}

    _finished_training(out)
    demo.forget_stale_training(out, recipe)  # the same recipe: kept, to be resumed
    assert (out / "checkpoints" / "checkpoint_latest.pt").read_bytes() == b"weights"

    demo.forget_stale_training(out, {**recipe, "version": "9.9.9"})  # another bundle version: stale
    assert not (out / "checkpoints").exists() and (out / "evaluation" / "metrics.json").is_file()


def test_a_demo_dataset_of_another_version_is_prepared_anew_and_a_dataset_of_yours_is_kept(demo, tmp_path,
                                                                                            monkeypatch):
    root = tmp_path / "radiogan_bundle"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "metadata.json").write_text(json.dumps({"version": "1.0.0"}))
    dataset = root / "data" / "prepared"
    preparations = []

    def prepare(command):  # stands in for the bundle's preparation command: writes the dataset
        preparations.append(command)
        dataset.mkdir(parents=True, exist_ok=True)
        (dataset / "datalist.json").write_text(json.dumps({"prepared_by_call": len(preparations)}))

    monkeypatch.setattr(demo, "run", prepare)
    demo.step_prepare(root)  # first demo: prepared, recorded
    out = root / "outputs"
    demo.forget_stale_training(out, demo.training_recipe(root, ["train.json"], []))
    demo.step_prepare(root)  # same version: kept
    assert len(preparations) == 1 and str(out) in json.loads(demo.MANIFEST.read_text())["trainings"]

    (root / "configs" / "metadata.json").write_text(json.dumps({"version": "1.1.0"}))
    demo.step_prepare(root)  # another version: prepared anew, and the training on the old dataset is forgotten
    manifest = json.loads(demo.MANIFEST.read_text())
    assert len(preparations) == 2 and json.loads((dataset / "datalist.json").read_text())["prepared_by_call"] == 2
    assert manifest["preparations"] == {str(dataset): {"version": "1.1.0"}} and manifest["trainings"] == {}

    mine = tmp_path / "other_bundle"
    (mine / "configs").mkdir(parents=True)
    (mine / "configs" / "metadata.json").write_text(json.dumps({"version": "2.0.0"}))
    (mine / "data" / "prepared").mkdir(parents=True)
    (mine / "data" / "prepared" / "datalist.json").write_text("my dataset")
    demo.step_prepare(mine)  # a dataset the demo did not write: used as it is
    assert len(preparations) == 2 and (mine / "data" / "prepared" / "datalist.json").read_text() == "my dataset"


def test_a_bundles_trainings_are_train_json_and_each_overlay_beside_it(demo, tmp_path):
    root = tmp_path / "x_bundle"
    (root / "configs").mkdir(parents=True)
    for name in ("train.json", "multi_gpu_train.json", "train_baseline.json", "train_ablation.json", "export.json"):
        (root / "configs" / name).write_text("{}")
    assert demo.variants(root) == ["", "ablation", "baseline"]  # multi-GPU training is an overlay of another kind
    assert demo._files("export", "baseline") == ["export.json", "export_baseline.json"]
    assert demo._files("train", "") == ["train.json"]
