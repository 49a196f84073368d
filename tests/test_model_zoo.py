"""Every bundle folder passes the model zoo's static checks (ci/verify_bundle.py of Project-MONAI/model-zoo) and
follows the project's config conventions. The ckpt_export check from models/model.pt runs in test_operations."""

from __future__ import annotations

import json
import re
import shutil
from importlib import metadata

import pytest
from bundle_cases import CASE_BY_NAME, REPO

from bundles import bundle_names
from bundles.errors import BundleInputError
from bundles.metadata import measured_eval_metrics, required_packages

SCHEMA = REPO / "tests" / "data" / "meta_schema_20240725.json"
BUNDLES = bundle_names()


def test_bundles_are_found_by_their_folders_and_each_has_a_toy_test_case():
    assert BUNDLES == ["ctstyle", "radiogan", "radiogenomic"]
    assert set(CASE_BY_NAME) == set(BUNDLES)


@pytest.mark.parametrize("name", BUNDLES)
def test_necessary_and_preferred_files(name):
    root = REPO / f"{name}_bundle"
    for path in ("configs/metadata.json", "LICENSE", "configs/inference.json", "configs/train.json",
                 "configs/prepare.json", "configs/evaluate.json", "configs/multi_gpu_train.json",
                 "configs/logging.conf", "docs/README.md", "docs/data_license.txt"):
        assert (root / path).is_file(), path


@pytest.mark.parametrize("name", BUNDLES)
def test_metadata_validates_against_the_zoo_schema_and_its_version_is_in_the_changelog(name, tmp_path):
    from monai.bundle import verify_metadata

    meta_file = REPO / f"{name}_bundle" / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    assert meta["schema"].endswith("/meta_schema_20240725.json")
    schema = tmp_path / "schema.json"
    shutil.copy(SCHEMA, schema)  # the file the zoo downloads from the schema URL (no network here)
    verify_metadata(meta_file=str(meta_file), filepath=str(schema))
    assert meta["version"] in meta["changelog"]
    for io in ("inputs", "outputs"):
        for spec in meta["network_data_format"][io].values():
            assert isinstance(spec["num_channels"], int)


@pytest.mark.parametrize("name", BUNDLES)
def test_metadata_versions_and_required_packages_are_what_the_bundle_uses(name):
    meta = json.loads((REPO / f"{name}_bundle" / "configs" / "metadata.json").read_text())
    assert meta["monai_version"] == metadata.version("monai")  # both pinned in pyproject.toml
    assert meta["pytorch_version"] == metadata.version("torch").split("+")[0]
    assert meta["numpy_version"].split(".")[0] == metadata.version("numpy").split(".")[0]
    required = meta["required_packages_version"]
    assert set(required) == set(required_packages(REPO / f"{name}_bundle"))
    assert required["gan-bundles"] == metadata.version("gan-bundles")
    assert all(re.fullmatch(r"\d+(\.\d+)*", v) for v in required.values())


@pytest.mark.parametrize("name", BUNDLES)
def test_eval_metrics_are_measured_numbers(name):
    meta = json.loads((REPO / f"{name}_bundle" / "configs" / "metadata.json").read_text())

    def numbers(value):
        if isinstance(value, dict):
            return all(numbers(v) for v in value.values())
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    metrics = {k: v for k, v in meta["eval_metrics"].items() if k != "note"}
    assert metrics and numbers(metrics), meta["eval_metrics"]
    evaluate = json.loads((REPO / f"{name}_bundle" / "configs" / "evaluate.json").read_text())
    assert set(metrics) <= set(evaluate["eval_metrics"]) | set(evaluate["metrics"])  # what the evaluation measures
    assert set(evaluate["eval_metrics"]) <= set(metrics) and meta["eval_metrics"]["note"]


def test_eval_metrics_are_read_from_an_evaluations_metrics_json(tmp_path):
    bundle = tmp_path / "toy_bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "evaluate.json").write_text(json.dumps(
        {"metrics": ["fid", "kid"], "eval_metrics": {"dice": "summary.dice.mean"}}))
    results = {"summary": {"dice": {"mean": 0.812345}}, "metrics": {"fid": {"value": 12.3456}, "kid": {"value": None}}}
    (tmp_path / "metrics.json").write_text(json.dumps(results))
    assert measured_eval_metrics(bundle, tmp_path / "metrics.json") == {"dice": 0.8123, "fid": 12.35}
    (tmp_path / "old.json").write_text(json.dumps({"metrics": {}}))
    with pytest.raises(BundleInputError, match="summary.dice"):
        measured_eval_metrics(bundle, tmp_path / "old.json")


RUN_IDS = {"prepare.json": "preparation", "train.json": "training", "inference.json": "inference",
           "evaluate.json": "evaluation", "utility.json": "utility"}


@pytest.mark.parametrize("name", BUNDLES)
def test_one_run_id_convention_and_checks_before_work(name):
    configs = REPO / f"{name}_bundle" / "configs"
    for file, run_id in RUN_IDS.items():
        config = json.loads((configs / file).read_text())
        assert isinstance(config[run_id], list) and config["run"] == f"@{run_id}", file
        assert config["initialize"][0] == "$bundles.config.check_command_line()", file
        assert any(item.startswith("$bundles.config.check_settings(") for item in config["initialize"]), file
        assert config["bundle_root"] == f"$bundles.bundle_root('{name}_bundle')"
    train = json.loads((configs / "train.json").read_text())
    assert train["training"][0] == "@start_run"  # the run claims its output folder before any data is read
    assert "network" in train["train"]["save_dict"]  # the settings travel with the weights
    for file in ("inference.json", "evaluate.json"):
        text = (configs / file).read_text()
        assert "datalist'][" not in text and "bundles.models.read_model" in text  # networks from the model's record only
    assert (configs / "multi_gpu_train.json").read_text() == (REPO / "radiogan_bundle" / "configs" /
                                                               "multi_gpu_train.json").read_text()


@pytest.mark.parametrize("name", BUNDLES)
def test_network_settings_have_one_home(name):
    """The generator's settings are written once (train.json's "network"); no other config repeats them."""
    configs = REPO / f"{name}_bundle" / "configs"
    network = json.loads((configs / "train.json").read_text())["network"]
    for file in ("inference.json", "evaluate.json", "prepare.json"):
        config = json.loads((configs / file).read_text())
        repeated = set(network) & set(config) - {"image_size"}
        assert not repeated, (file, repeated)
