"""A user's own data is safe: one-way data flow, nothing of theirs replaced or deleted, every failure one line.

Most cases run in-process through the same entry points as ``python -m monai.bundle run`` (``run_workflow``) and
the same error boundary (``user_error`` checks the printed line); one test per command kind runs the real CLI.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from bundle_cases import (
    CTSTYLE,
    ENV,
    ERROR_LINE,
    RADIOGAN,
    RADIOGENOMIC,
    REPO,
    prepare_case,
    run,
    run_workflow,
    tree_hash,
    user_error,
)

from bundles.config import check_command_line, check_settings
from bundles.errors import BundleInputError
from bundles.fileio import (
    acquire_lock,
    atomic_dir,
    atomic_path,
    atomic_torch_save,
    release_lock,
    remove_leftovers,
)
from bundles.io.names import safe_name
from bundles.runs import start_training


@pytest.fixture(scope="module")
def ctseg_raw(tmp_path_factory):
    """The user's raw CT / label-map pairs (4 patients, 32 px): the fastest real-format cohort."""
    return CTSTYLE.make_raw(tmp_path_factory.mktemp("user") / "raw")


@pytest.fixture
def bundle_data_unchanged():
    """No command of a test may write a demo cohort into a bundle's own data folder."""
    before = {case.name: sorted(p.name for p in (case.root / "data").glob("*")) for case in (RADIOGENOMIC, RADIOGAN,
                                                                                             CTSTYLE)}
    yield
    after = {case.name: sorted(p.name for p in (case.root / "data").glob("*")) for case in (RADIOGENOMIC, RADIOGAN,
                                                                                            CTSTYLE)}
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
    # a dataset of another bundle is refused by this bundle's readers
    error = user_error(run_workflow, RADIOGAN, "training", "train.json", dataset_dir=str(dataset),
                       output_dir=str(tmp_path / "out"))
    assert "not a radiogan dataset" in str(error) and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def traversal_cohort(tmp_path_factory):
    """One PET study whose DICOM PatientID (and label row) is ``../../escaped``."""
    from bundles.phantoms.pet import write_pet_cohort

    root = tmp_path_factory.mktemp("traversal")
    raw = write_pet_cohort(root / "raw", subjects=1, seed=5, shape=(12, 8, 40))
    for path in raw.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.PatientID = "../../escaped"
        ds.save_as(path)
    (raw / "labels.csv").write_text("patient_id,label\n../../escaped,normal\n")
    return root, raw


def test_identifiers_become_file_names_only_through_the_sanitiser(traversal_cohort):
    root, raw = traversal_cohort
    dataset = root / "deep" / "prepared"
    prepare_case(RADIOGAN, raw, dataset, heldout_per_class=0)
    written = [p for p in root.rglob("*") if p.is_file() and raw not in p.parents and p.suffix != ".lock"]
    assert written and all(dataset in p.parents or p.parent == dataset.parent for p in written)  # nothing escaped
    assert not (root / "escaped").exists() and not (root.parent / "escaped").exists()
    datalist = json.loads((dataset / "datalist.json").read_text())
    item = datalist["training"][0]
    assert item["patient_id"] == "../../escaped"  # the original ID stays in the datalist
    assert item["image"] == f"images/{safe_name('../../escaped')}.nii.gz" and ".." not in item["image"]


@pytest.mark.parametrize("identifier", ["../../escaped", "..", ".", "a/b\\c", "x\x00y", "R01-001 ", "é" * 200, ""])
def test_safe_name_never_gives_a_path(identifier):
    name = safe_name(identifier)
    assert name and "/" not in name and "\\" not in name and ".." not in name and not name.startswith((".", "-"))
    assert name.isprintable() and len(name) <= 64
    assert safe_name("R01-001") == "R01-001"
    assert safe_name("a/b") != safe_name("a_b")  # a changed name carries a hash of the original


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


def test_the_joint_warp_settings_are_checked_by_their_rules():
    check_settings({"warp_prob": 1.0, "warp_magnitude": 0.05, "warp_smoothness": 0.125})
    for key, bad in (("warp_prob", 1.5), ("warp_magnitude", 1.0), ("warp_smoothness", 0.0), ("warp_prob", True)):
        error = user_error(check_settings, {key: bad})
        assert error.field == key and repr(bad) in str(error)


def test_every_config_checks_only_settings_it_has_rules_for():
    with pytest.raises(ValueError, match="no rule"):
        check_settings({"surprise": 1})


def test_a_dataset_smaller_than_one_batch_is_an_error_naming_both_numbers(ctstyle_prepared, tmp_path):
    error = user_error(_train, ctstyle_prepared, tmp_path / "out", **{"train#dataloader#batch_size": 50})
    assert "4 training items" in str(error) and "batch of 50" in str(error)
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
from bundles.fileio import acquire_lock
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


# ----------------------------------------------------------------------------------------- files on disk
def test_leftovers_of_killed_jobs_are_removed_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    torn = out / "checkpoints" / ".checkpoint_latest.pt.ab12cd_9.tmp.pt"
    torn.write_bytes(b"half")
    work = out / ".inference.partial-123-abcdef12"
    work.mkdir()
    sibling = tmp_path / ".out.old-123-abcdef12"
    sibling.mkdir()
    keep = [out / "checkpoints" / "checkpoint_latest.pt", out / ".hidden_by_user", out / "notes.tmp.txt"]
    for path in keep:
        path.write_text("keep")
    acquire_lock(out)
    try:
        removed = remove_leftovers(out)
    finally:
        release_lock(out)
    assert set(removed) == {torn, work, sibling}
    assert all(p.exists() for p in keep) and not torn.exists() and not work.exists() and not sibling.exists()


def test_written_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("{}")
        atomic_torch_save({"x": torch.zeros(1)}, tmp_path / "b.pt")
    finally:
        os.umask(old)
    for name in ("a.json", "b.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644


def test_a_full_disk_is_one_error_line_and_leaves_the_last_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint_latest.pt"
    atomic_torch_save({"iteration": 1}, target)
    before = target.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(torch, "save", full_disk)
    error = user_error(atomic_torch_save, {"iteration": 2}, target)
    assert "no space left" in str(error) and str(target) in str(error)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_training_with_an_unreachable_tracking_server_stops_before_the_first_iteration(ctstyle_prepared, tmp_path):
    start = time.monotonic()
    error = user_error(_train, ctstyle_prepared, tmp_path / "out", tracking="mlflow", tracking_uri="http://127.0.0.1:9")
    assert error.field == "tracking_uri" and "does not answer" in str(error)
    assert time.monotonic() - start < 60 and not (tmp_path / "out" / "checkpoints").exists()


def test_an_unreachable_or_unwritable_tracking_store_is_refused_within_seconds(tmp_path):
    from bundles.engines.tracking import check_tracking_store

    start = time.monotonic()
    error = user_error(check_tracking_store, "http://127.0.0.1:9")
    assert error.field == "tracking_uri" and time.monotonic() - start < 10
    assert "file store" in str(user_error(check_tracking_store, str(tmp_path / "mlruns")))
    check_tracking_store(f"sqlite:///{tmp_path}/new/mlruns.db")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        if not os.access(readonly, os.W_OK):  # root writes anywhere: the check cannot be shown as root
            user_error(check_tracking_store, f"sqlite:///{readonly}/mlruns.db")
    finally:
        readonly.chmod(0o700)


def test_a_patient_whose_data_the_chain_cannot_use_is_skipped_with_its_reason(monkeypatch):
    from monai.transforms import Compose

    from bundles.workflows import radiogenomic_prepare

    def no_lung(data):
        raise BundleInputError("no lung region", path="ct", field="lung", hint="check the CT")

    monkeypatch.setattr(radiogenomic_prepare, "load_patient", lambda entry: {"image": 0, "mask": 0})
    chain = Compose([no_lung])  # MONAI's Compose wraps the error in a RuntimeError
    with pytest.raises(BundleInputError, match="no lung region"):
        radiogenomic_prepare._patient_items({"patient_id": "P", "seg": "s"}, chain, chain, seed=0)


def test_a_corrupt_gene_table_and_a_multi_frame_dicom_are_user_errors(tmp_path):
    import gzip

    from bundles.io.dicom_series import read_series
    from bundles.io.genes import read_gene_table

    table = tmp_path / "genes.txt.gz"
    table.write_bytes(gzip.compress(b"gene\tA\tB\nG1\t1\t2\n")[:-12] + b"garbage!")
    assert "unreadable gene table" in str(user_error(read_gene_table, table))
    from bundles.io.dicom_series import write_series

    files = write_series(np.zeros((4, 4, 2)), np.eye(4), tmp_path / "series", modality="CT", patient_id="P",
                         study_uid="1.2.3")
    ds = pydicom.dcmread(files[0])
    ds.NumberOfFrames = 2
    ds.Modality = "RTDOSE"
    ds.save_as(files[0])
    error = user_error(read_series, tmp_path / "series")
    assert error.field == "NumberOfFrames" and "multi-frame" in str(error)


# ------------------------------------------------------------------------------------ synthetic outputs
def test_synthetic_images_carry_no_header_field_of_their_inputs(tmp_path):
    from bundles.models import Model, build_network
    from bundles.workflows.radiogenomic_inference import synthesise

    network = {"builder": "bundles.networks.radiogenomic.build_generator", "model_type": "proposed",
               "image_fusion": True, "num_genes": 4, "image_size": 32, "base_channels": 4, "code_dim": 8,
               "noise_dim": 2, "hidden": 8}
    model = Model(tmp_path / "m.pt", network, {"gene_names": list("abcd"), "gene_mean": [0.0] * 4,
                                                "gene_std": [1.0] * 4}, build_network(network).state_dict())
    image = nib.Nifti1Image(np.full((32, 32), -800.0, np.float32), np.diag([0.7, 0.7, 2.0, 1.0]))
    image.header["descrip"] = b"PATIENT Jane Doe MRN123"
    image.header["aux_file"] = b"jane.nii"
    image.header["intent_name"] = b"MRN123"
    image.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"Jane Doe comment"))
    secret = tmp_path / "Jane_Doe_MRN123.nii.gz"
    nib.save(image, secret)
    np.save(tmp_path / "MRN123_genes.npy", np.zeros(4, np.float32))
    synthesise(model, [secret], [tmp_path / "MRN123_genes.npy"], tmp_path / "out")
    outputs = [p for p in (tmp_path / "out").iterdir() if p.suffix != ".json"]
    for path in outputs:
        assert "MRN123" not in path.name and "Jane" not in path.name
        if path.name.endswith(".nii.gz"):
            out = nib.load(path)
            assert out.header["descrip"].tobytes().startswith(b"SYNTHETIC")
            assert out.header["aux_file"].tobytes().strip(b"\0") == b"" and not out.header.extensions
            assert b"MRN123" not in out.header.binaryblock and b"Jane" not in out.header.binaryblock
            np.testing.assert_allclose(out.affine, image.affine)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["backgrounds"] == [str(secret)]  # the index -> input map stays with the user


# --------------------------------------------------------------------------------------- the real CLI
@pytest.mark.slow
def test_the_readme_own_data_commands_train_on_that_data_and_leave_it_untouched(tmp_path, bundle_data_unchanged):
    """README "On your own data", run as written (plus toy sizes) on a real-format cohort elsewhere on disk."""
    raw = RADIOGENOMIC.make_raw(tmp_path / "NSCLC Radiogenomics")
    genes = tmp_path / "GSE103584_R01_NSCLC_RNAseq.txt.gz"
    import gzip

    genes.write_bytes(gzip.compress((raw / "genes.tsv").read_bytes()))
    (raw / "genes.tsv").unlink()
    (raw / "phenotypes.csv").unlink()
    (raw / "demo_cohort.json").unlink(missing_ok=True)
    raw_hash = tree_hash(raw)
    dataset = tmp_path / "prepared" / "radiogenomic"
    run(RADIOGENOMIC.cli("preparation", ["prepare.json"], {"raw_dir": str(raw), "genes_path": str(genes),
                                                          "dataset_dir": str(dataset), "image_size": 32}))
    dataset_hash = tree_hash(dataset)
    out = tmp_path / "runs" / "first"
    run(RADIOGENOMIC.cli("training", ["train.json"], {"dataset_dir": str(dataset), "output_dir": str(out),
                                                      "train#trainer#max_epochs": 1, **RADIOGENOMIC.train}))
    assert tree_hash(dataset) == dataset_hash and tree_hash(raw) == raw_hash
    info = json.loads((out / "run_info.json").read_text())
    assert info["datalist"]["path"] == str(dataset / "datalist.json")
    assert (out / "checkpoints" / "checkpoint_latest.pt").is_file()
    assert not list(tmp_path.rglob("demo_cohort.json")) and not list(tmp_path.rglob("phenotypes.csv"))
    # a bad setting on the real command line: one error line, nothing written
    result = subprocess.run(RADIOGENOMIC.cli("training", ["train.json"], {"dataset_dir": str(dataset),
                                                                         "output_dir": str(tmp_path / "x"),
                                                                         "lr": -1}),
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert ERROR_LINE.match(result.stderr.strip().splitlines()[-1]) and not (tmp_path / "x").exists()
    shutil.rmtree(out)


def test_a_model_of_another_bundle_is_refused_by_inference_and_export(tmp_path):
    from bundles.export import export_model
    from bundles.models import build_network, read_model

    network = {"builder": "bundles.networks.radiogan.RadioGANGenerator", "latent_dim": 8, "num_classes": 5,
               "first_grid": [3, 5], "channels": [4, 4]}
    ckpt = tmp_path / "radiogan.pt"
    atomic_torch_save({"generator": build_network(network).state_dict(), "network": {"network": network}}, ckpt)
    error = user_error(read_model, ckpt, "radiogenomic")
    assert "not of the radiogenomic bundle" in str(error) and error.field == "ckpt_path"
    bundle = tmp_path / "my_copy_of_the_radiogenomic_bundle"  # any folder name: the family comes from train.json
    shutil.copytree(RADIOGENOMIC.configs, bundle / "configs")
    assert "not of the radiogenomic bundle" in str(user_error(export_model, bundle, ckpt))
    assert not (bundle / "models").exists()
