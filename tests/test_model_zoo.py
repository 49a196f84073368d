"""Every bundle folder follows the model zoo's layout and conventions (its ``ci/verify_bundle.py`` static checks) and
this project's: found by its folder, its own code in ``scripts/`` importing no other bundle's, metadata that pins the
core's wheel and every package its code imports, one run id per config, network settings in one place. The
checks that need an exported model (ckpt_export, ``monai.bundle.load``) run on each bundle in
``test_zoo_user_path.py``."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from importlib import metadata

import pytest
from bundle_cases import CASES, REPO
from bundle_imports import CORE, bundle_imports, core_modules, core_users
from update_metadata import measured_eval_metrics, required_packages

from gan_core.bundle import find_bundles
from gan_core.errors import BundleInputError

SCHEMA = REPO / "tests" / "data" / "meta_schema_20240725.json"
NAMES = [case.name for case in CASES]
RUN_IDS = {"prepare.json": "preparation", "train.json": "training", "export.json": "export",
           "inference.json": "inference", "evaluate.json": "evaluation", "utility.json": "utility"}


def test_bundles_are_found_by_their_folders(tmp_path):
    for name in ("b_bundle", "a_bundle", "not_a_bundle"):
        (tmp_path / name / "configs").mkdir(parents=True)
        (tmp_path / name / "scripts").mkdir()
    for name in ("a_bundle", "b_bundle"):
        (tmp_path / name / "configs" / "metadata.json").write_text("{}")
        (tmp_path / name / "scripts" / "__init__.py").write_text("")
    (tmp_path / "not_a_bundle" / "configs" / "metadata.json").write_text("{}")  # no scripts package
    assert [p.name for p in find_bundles(tmp_path)] == ["a_bundle", "b_bundle"]
    assert [case.root for case in CASES] == find_bundles(REPO) and len(CASES) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_necessary_and_preferred_files(name):
    root = REPO / f"{name}_bundle"
    for path in ("configs/metadata.json", "LICENSE", "configs/inference.json", "configs/train.json",
                 "configs/prepare.json", "configs/export.json", "configs/evaluate.json",
                 "configs/multi_gpu_train.json", "configs/logging.conf", "configs/toy.json", "scripts/__init__.py",
                 "scripts/networks.py", "scripts/demo_cohort.py", "docs/README.md", "docs/data_license.txt"):
        assert (root / path).is_file(), path


@pytest.mark.parametrize("name", NAMES)
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


@pytest.mark.parametrize("name", NAMES)
def test_metadata_pins_the_core_wheel_and_every_package_the_bundle_imports(name):
    meta = json.loads((REPO / f"{name}_bundle" / "configs" / "metadata.json").read_text())
    assert meta["monai_version"] == metadata.version("monai")  # both pinned in pyproject.toml
    assert meta["pytorch_version"] == metadata.version("torch").split("+")[0]
    assert meta["numpy_version"].split(".")[0] == metadata.version("numpy").split(".")[0]
    required = meta["required_packages_version"]
    assert set(required) == set(required_packages(REPO / f"{name}_bundle"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == CORE and required[CORE] == project["version"] == metadata.version(CORE)
    assert all(re.fullmatch(r"\d+(\.\d+)*", v) for v in required.values())


def test_the_core_holds_only_what_two_or_more_bundles_use():
    users = core_users(REPO)
    assert set(users) == core_modules()
    alone = {module: bundles for module, bundles in users.items() if len(bundles) < 2}
    assert not alone, alone


@pytest.mark.parametrize("name", NAMES)
def test_a_bundles_scripts_import_no_other_bundles_code(name):
    imports = bundle_imports(REPO / f"{name}_bundle")
    assert not imports.forbidden, imports.forbidden
    assert imports.scripts and all(module.startswith("scripts.") for module in imports.scripts)
    text = "".join(p.read_text() for p in (REPO / f"{name}_bundle").rglob("*.json"))
    others = [case.root.name for case in CASES if case.name != name]
    assert not [other for other in others if other in text]  # no config names another bundle's folder


def test_a_forbidden_import_is_found(tmp_path):
    root = tmp_path / "x_bundle"
    (root / "configs").mkdir(parents=True)
    (root / "scripts").mkdir()
    (root / "scripts" / "__init__.py").write_text("")
    (root / "scripts" / "a.py").write_text("from scripts.b import f\nfrom ..radiogan_bundle import x\n"
                                           "import radiogan_bundle.scripts.networks\nfrom .b import g\n")
    (root / "scripts" / "b.py").write_text("def f(): ...\ndef g(): ...\n")
    forbidden = bundle_imports(root).forbidden
    assert len(forbidden) == 3 and all(line.startswith("scripts/a.py: ") for line in forbidden), forbidden


@pytest.mark.parametrize("name", NAMES)
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


@pytest.mark.parametrize("name", NAMES)
def test_one_run_id_convention_and_checks_before_work(name):
    configs = REPO / f"{name}_bundle" / "configs"
    for file, run_id in RUN_IDS.items():
        config = json.loads((configs / file).read_text())
        assert isinstance(config[run_id], list) and config["run"] == f"@{run_id}", file
        assert config["initialize"][0] == "$gan_core.config.check_command_line()", file
        assert any(item.startswith("$gan_core.config.check_settings(") for item in config["initialize"]), file
        assert config["bundle_root"] == "$gan_core.bundle.root()", file  # from the config file's folder
        assert config["imports"][:2] == ["$import gan_core", "$from gan_core.bundle import scripts"], file
    train = json.loads((configs / "train.json").read_text())
    assert train["training"][0] == "@start_run"  # the run claims its output folder before any data is read
    assert "network" in train["train"]["save_dict"]  # the settings travel with the weights
    assert train["network"]["builder"].startswith("scripts.networks.")
    for file in ("inference.json", "evaluate.json"):
        text = (configs / file).read_text()
        assert "datalist'][" not in text and "gan_core.models.read_model" in text  # networks from the model's record only
    assert (configs / "multi_gpu_train.json").read_text() == (CASES[0].configs / "multi_gpu_train.json").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_network_settings_have_one_home(name):
    """The generator's settings are written once (train.json's "network"); no other config repeats them."""
    configs = REPO / f"{name}_bundle" / "configs"
    network = json.loads((configs / "train.json").read_text())["network"]
    for file in ("inference.json", "evaluate.json", "prepare.json", "export.json"):
        config = json.loads((configs / file).read_text())
        repeated = set(network) & set(config) - {"image_size"}
        assert not repeated, (file, repeated)
