"""A user's own data is safe, shown with ctstyle's commands: one-way data flow, nothing of theirs replaced or
deleted, every failure one line.

Most cases run in-process through the same entry points as ``python -m monai.bundle run`` (``run_workflow``) and
the same error boundary (``user_error`` checks the printed line); one test per command kind runs the real CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from bundle_cases import CASE_BY_NAME, CASES, ENV, REPO, prepare_case, run_workflow, tree_hash, user_error

from gan_core.config import check_command_line
from gan_core.errors import BundleInputError
from gan_core.fileio import (
    atomic_dir,
    atomic_path,
    release_lock,
)
from gan_core.runs import start_training

CTSTYLE = CASE_BY_NAME["ctstyle"]


@pytest.fixture(scope="module")
def ctseg_raw(tmp_path_factory):
    """The user's raw CT / label-map pairs (4 patients, 32 px): the fastest real-format cohort."""
    return CTSTYLE.make_raw(tmp_path_factory.mktemp("user") / "raw")


@pytest.fixture
def bundle_data_unchanged():
    """No command of a test may write a demo cohort into a bundle's own data folder."""
    before = {case.name: sorted(p.name for p in (case.root / "data").glob("*")) for case in CASES}
    yield
    after = {case.name: sorted(p.name for p in (case.root / "data").glob("*")) for case in CASES}
    assert after == before


# ------------------------------------------------------------------------------------------- preparation
def test_dataset_dir_equal_to_inside_or_containing_raw_dir_is_refused(ctseg_raw, tmp_path, bundle_data_unchanged):
    before = tree_hash(ctseg_raw)
    for dataset in (ctseg_raw, ctseg_raw / "prepared", ctseg_raw.parent):
        error = user_error(prepare_case, CTSTYLE, ctseg_raw, dataset)
        assert error.field == "dataset_dir" and "raw folder" in str(error)
    assert tree_hash(ctseg_raw) == before


def test_a_typo_in_raw_dir_is_an_error_and_no_demo_cohort_is_written(tmp_path, bundle_data_unchanged):
    typo = tmp_path / "my_dtaa"
    error = user_error(prepare_case, CTSTYLE, typo, tmp_path / "prepared")
    assert error.field == "raw_dir" and "not found" in str(error) and "demo cohort is written only" in str(error)
    assert not typo.exists() and not (tmp_path / "prepared").exists()


def test_a_folder_of_the_user_s_files_is_never_used_as_dataset_dir(ctseg_raw, tmp_path, bundle_data_unchanged):
    foreign = tmp_path / "my_folder"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    (foreign / "datalist.json").write_text('{"training": []}')  # a MONAI datalist of the user's, not ours
    before = tree_hash(foreign)
    error = user_error(prepare_case, CTSTYLE, ctseg_raw, foreign)
    assert "never replaced" in str(error) and error.field == "dataset_dir"
    assert tree_hash(foreign) == before
    error = user_error(prepare_case, CTSTYLE, ctseg_raw, foreign, overwrite=True)  # not even with overwrite
    assert tree_hash(foreign) == before


@pytest.mark.parametrize("damage", ["not gzip", "truncated"])
def test_a_damaged_nifti_slice_is_one_error_naming_it_and_nothing_is_written(ctseg_raw, tmp_path, damage):
    raw = tmp_path / "raw"
    shutil.copytree(ctseg_raw, raw)
    ct = sorted(raw.glob("*/ct_s*.nii.gz"))[1]
    ct.write_bytes(b"not a NIfTI file" if damage == "not gzip" else ct.read_bytes()[: ct.stat().st_size // 2])
    before = tree_hash(raw)
    error = user_error(prepare_case, CTSTYLE, raw, tmp_path / "prepared")
    assert Path(error.path) == ct and error.field == "image" and "not a readable NIfTI file" in str(error)
    assert tree_hash(raw) == before and not (tmp_path / "prepared").exists()


def test_an_empty_folder_is_prepared_and_its_own_dataset_replaced_only_with_overwrite(ctseg_raw, tmp_path):
    dataset = tmp_path / "prepared"
    dataset.mkdir()
    prepare_case(CTSTYLE, ctseg_raw, dataset)
    before = tree_hash(dataset)
    error = user_error(prepare_case, CTSTYLE, ctseg_raw, dataset)
    assert "earlier ctstyle dataset" in str(error) and "--overwrite true" in str(error)
    assert tree_hash(dataset) == before
    prepare_case(CTSTYLE, ctseg_raw, dataset, overwrite=True)
    assert json.loads((dataset / "datalist.json").read_text())["written_by"]["kind"] == "ctstyle dataset"
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name or ".old" in p.name]
    # a dataset of another bundle is refused by that bundle's readers
    other = next(case for case in CASES if case.name != CTSTYLE.name)
    error = user_error(run_workflow, other, "training", "train.json", dataset_dir=str(dataset),
                       output_dir=str(tmp_path / "out"))
    assert f"not a {other.name} dataset" in str(error) and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def ctstyle_prepared(ctseg_raw, tmp_path_factory):
    dataset = tmp_path_factory.mktemp("ctstyle") / "prepared"
    prepare_case(CTSTYLE, ctseg_raw, dataset)
    return dataset


def _train(dataset, out, **extra):
    settings = {**CTSTYLE.train_settings(dataset, out), "loss_size": None, "train#trainer#max_epochs": 1,
                "train#trainer#epoch_length": 1, **extra}
    return run_workflow(CTSTYLE, "training", "train.json", **settings)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("train#dataloader#batch_size", 0, "integer >= 1"), ("train#trainer#max_epochs", 0, "integer >= 1"),
    ("lr", -0.1, "number > 0"), ("device", "cuda:0", "CUDA"), ("device", "tpu", "not a device name"),
    ("amp_dtype", "float8", "float16 or bfloat16"), ("resume", "maybe", "true or false"), ("num_threads", 0, ">= 1"),
    ("network#no_such_argument", 1, "cannot build"),  # the network refuses it: before run_info.json is written
    ("network#num_levels", 5, "at least 64 px"),  # the toy slices are 32 px: the first batch would fail
])
def test_each_bad_setting_is_refused_before_any_work(ctstyle_prepared, tmp_path, key, value, words):
    if key == "device" and value == "cuda:0" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    error = user_error(_train, ctstyle_prepared, tmp_path / "out", **{key: value})
    assert error.field == key and words in str(error)
    assert not (tmp_path / "out").exists()


def test_a_misspelt_setting_on_the_command_line_is_refused_with_the_closest_name():
    argv = [str(Path("x") / "monai" / "bundle" / "__main__.py"), "run", "training",
            "--config_file", str(CTSTYLE.configs / "train.json"), "--train#dataloader#batch_sise", "4"]
    error = user_error(check_command_line, argv)
    assert error.field == "--train#dataloader#batch_sise" and "--train#dataloader#batch_size" in str(error)
    argv[-2:] = ["--trian#trainer#max_epochs", "5"]
    assert "--train#trainer#max_epochs" in str(user_error(check_command_line, argv))
    argv[-2:] = ["--tracking_uri", "http://x"]  # a tracking key, allowed only with --tracking
    user_error(check_command_line, argv)
    check_command_line([*argv, "--tracking", "mlflow"])


def test_a_component_is_not_a_setting_and_is_never_the_suggestion_for_one():
    argv = [str(Path("x") / "monai" / "bundle" / "__main__.py"), "run", "inference",
            "--config_file", str(CTSTYLE.configs / "inference.json"), "--model_path", "my.pt"]
    error = user_error(check_command_line, argv)  # "model" is close but is the network built from ckpt_path
    assert error.field == "--model_path" and "--ckpt_path" in str(error) and "--model?" not in str(error)
    argv[-2:] = ["--model", "my.pt"]
    error = user_error(check_command_line, argv)
    assert error.field == "--model" and "not a setting" in str(error) and "set --ckpt_path instead" in str(error)
    argv[-2:] = ["--ckpt_path", "my.pt"]
    check_command_line(argv)


def test_a_dataset_smaller_than_one_batch_is_an_error_naming_both_numbers(ctstyle_prepared, tmp_path):
    error = user_error(_train, ctstyle_prepared, tmp_path / "out", **{"train#dataloader#batch_size": 50})
    assert "12 training items" in str(error) and "batch of 50" in str(error)
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_retraining_into_a_used_output_dir_needs_resume(ctstyle_prepared, tmp_path):
    out = tmp_path / "out"
    _train(ctstyle_prepared, out)
    before = tree_hash(out)
    error = user_error(_train, ctstyle_prepared, out)
    assert "earlier training" in str(error) and "--resume true" in str(error)
    assert tree_hash(out) == before
    _train(ctstyle_prepared, out, resume=True)  # resuming a finished run trains nothing more
    assert json.loads((out / "run_info.json").read_text())["resumed"]


def test_a_folder_of_the_user_s_files_is_never_a_training_output_dir(ctstyle_prepared, tmp_path):
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine")
    error = user_error(_train, ctstyle_prepared, foreign)
    assert "did not write" in str(error) and sorted(p.name for p in foreign.iterdir())[-1] == "thesis.tex"
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]


HOLD_LOCK = """
import sys, time
from gan_core.fileio import acquire_lock
acquire_lock(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_job_on_the_same_folder_is_refused_naming_the_holder(ctstyle_prepared, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        error = user_error(start_training, out, resume=False, datalist=ctstyle_prepared / "datalist.json",
                           num_items=4, batch_size=1, settings={}, seed=0)
        assert f"PID {holder.pid}" in str(error) and "another job" in str(error)
        with atomic_path(tmp_path / "x.txt") as tmp:
            tmp.write_text("x")
        with pytest.raises(BundleInputError, match=f"PID {holder.pid}"):  # an inference into that folder too
            with atomic_dir(out, record="run_info.json", kind="ctstyle inference"):
                pass
    finally:
        holder.kill()
        holder.wait()
    # a killed holder leaves no lock behind: the kernel released it
    start_training(out, resume=False, datalist=ctstyle_prepared / "datalist.json", num_items=4, batch_size=1,
                   settings={}, seed=0)
    release_lock(out)


def test_training_with_an_unreachable_tracking_server_stops_before_the_first_iteration(ctstyle_prepared, tmp_path):
    start = time.monotonic()
    error = user_error(_train, ctstyle_prepared, tmp_path / "out", tracking="mlflow", tracking_uri="http://127.0.0.1:9")
    assert error.field == "tracking_uri" and "does not answer" in str(error)
    assert time.monotonic() - start < 60 and not (tmp_path / "out" / "checkpoints").exists()


