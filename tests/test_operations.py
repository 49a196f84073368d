"""Operations on every bundle's real configs at toy size, through the real command line: MLflow server tracking,
the bundle's export step and MONAI's ckpt_export from models/model.pt, torchrun multi-process training, and a
SIGKILL in the middle of a checkpoint write followed by a resume that reproduces the uninterrupted run exactly.

Each CLI process pays MONAI's eager imports (~15 s of CPU on the CI machine), so only the steps whose point is a
separate process run as one (the killed training, torchrun, the tracked training, MONAI's ckpt_export); the
dataset, the export step and the SIGKILL test's reference and resumed runs run in this process, as the CLI
runs them."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml
from bundle_cases import CASES, ENV, REPO, BundleCase, prepare_case, run, run_workflow, user_error

from gan_core.bundle import read_configs
from gan_core.engines.handlers import read_loss_history
from gan_core.errors import BundleInputError
from gan_core.export import export_model
from gan_core.models import load_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=[pytest.param(c, id=c.name) for c in CASES])
def case(request, tmp_path_factory):
    """(case, prepared dataset) for each bundle: its raw demo cohort prepared once per worker."""
    bundle_case = request.param
    root = tmp_path_factory.mktemp(bundle_case.name)
    raw = bundle_case.make_raw(root / "raw")
    prepare_case(bundle_case, raw, root / "prepared")
    return bundle_case, root / "prepared"


@contextmanager
def one_thread():
    """Compute with one thread, as the CLI runs under ENV: runs compared bit for bit reduce in the same order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on loopback with a SQLite backend and a local artifact store."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
         "--workers", "1"],
        stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError((root / "server.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        else:
            raise RuntimeError("mlflow server did not start in 60 s: " + (root / "server.log").read_text()[-3000:])
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def tracked_run(case, mlflow_server, tmp_path_factory):
    """A 2-epoch CLI training logged to the MLflow server: (case, settings, experiment name)."""
    bundle_case, prepared = case
    work = tmp_path_factory.mktemp(f"{bundle_case.name}_tracked")
    settings = {**bundle_case.train_settings(prepared, work / "out"), "train#trainer#max_epochs": 2}
    experiment = f"test_{bundle_case.name}"
    run(bundle_case.cli("training", ["train.json"], settings, "--tracking", "mlflow",
                        "--tracking_uri", mlflow_server, "--experiment_name", experiment))
    return bundle_case, settings, experiment


def test_mlflow_server_receives_losses_learning_rates_params_config_and_sample_grids(tracked_run, mlflow_server):
    import mlflow

    bundle_case, settings, experiment = tracked_run
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    data = runs[0].data
    losses = read_loss_history(Path(settings["output_dir"]) / "losses.jsonl")
    for term, value in losses[-1].items():
        if term not in ("epoch", "iteration"):
            history = client.get_metric_history(runs[0].info.run_id, term)
            assert len(history) == len(losses), term
            assert history[-1].value == pytest.approx(value, rel=1e-6), term
    assert {"lr_group_0", "d_lr_group_0"} <= set(data.metrics)
    assert {"max_epochs", "batch_size", "network"} <= set(data.params)
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert any(p.endswith(".json") for p in artifacts), artifacts  # the executed config
    grids = [a.path for a in client.list_artifacts(runs[0].info.run_id, "samples")]
    assert grids and all(p.endswith(".png") for p in grids)


def test_the_export_step_then_monai_ckpt_export_work_from_models_model_pt(tracked_run, tmp_path):
    bundle_case, settings, _ = tracked_run
    bundle = bundle_case.copy_to(tmp_path / bundle_case.root.name).root
    ckpt = Path(settings["output_dir"]) / "checkpoints" / "checkpoint_latest.pt"
    copy = BundleCase(bundle)
    run_workflow(copy, "export", "export.json", ckpt_path=str(ckpt))  # the bundle's own step, in-process
    report = json.loads((bundle / "models" / "model_export.json").read_text())
    assert report["torchscript_max_abs_diff"] <= 1e-5 and report["onnx_max_abs_diff"] <= 1e-4
    record = json.loads((bundle / "models" / "model.json").read_text())
    assert record["network"]["builder"].startswith("scripts.networks.") and record["bundle"] == bundle.name
    listed = yaml.safe_load((bundle / "large_files.yml").read_text())["large_files"]
    assert {e["path"] for e in listed} == {f"models/model{s}" for s in (".pt", ".json", ".ts", ".onnx")}
    for entry in listed:
        assert entry["hash_val"] == hashlib.sha256((bundle / entry["path"]).read_bytes()).hexdigest()
    # a second export is refused without --overwrite; exporting models/model.pt itself re-creates TorchScript only
    before = (bundle / "models" / "model.pt").read_bytes()
    with pytest.raises(BundleInputError, match="pass --overwrite true to replace it"):
        export_model(bundle, ckpt, onnx=False)
    export_model(bundle, bundle / "models" / "model.pt", onnx=False)
    assert (bundle / "models" / "model.pt").read_bytes() == before
    # MONAI's own command, from a folder outside the repository, with the zoo's arguments only
    cli_ts = tmp_path / "cli.ts"
    run([sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(cli_ts),
         "--ckpt_file", str(bundle / "models" / "model.pt"), "--meta_file", str(bundle / "configs" / "metadata.json"),
         "--config_file", str(bundle / "configs" / "inference.json"), "--bundle_root", str(bundle)],
        cwd=tmp_path)
    model = torch.jit.load(str(bundle / "models" / "model.ts"))
    cli = torch.jit.load(str(cli_ts))
    inputs = _example_inputs(bundle)
    for a, b in zip(_tuple(cli(*inputs)), _tuple(model(*inputs)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def _example_inputs(bundle: Path):
    parser = read_configs(bundle, "inference.json")
    torch.manual_seed(1)
    return tuple(parser.get_parsed_content("export_inputs"))


def _tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def test_torchrun_two_processes_train_on_disjoint_shards(case, tmp_path):
    bundle_case, prepared = case
    settings = {**bundle_case.train_settings(prepared, tmp_path / "out"), "train#trainer#max_epochs": 1}
    command = bundle_case.cli("training", ["train.json", "multi_gpu_train.json"], settings)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *command[1:]]
    run(torchrun, timeout=400)
    shards = [json.loads((tmp_path / "out" / "shards" / f"rank{r}.jsonl").read_text().splitlines()[0])
              for r in (0, 1)]
    first, second = set(shards[0]["indices"]), set(shards[1]["indices"])
    assert first and second and first != second
    # disjoint shards covering the data; an odd count pads one rank with a repeated index
    assert len(first & second) <= 1
    assert first | second == set(range(max(first | second) + 1))
    ckpt = load_checkpoint(tmp_path / "out" / "checkpoints" / "checkpoint_latest.pt")
    assert ckpt["trainer"]["iteration"] >= 1
    assert not any(k.startswith("module.") for k in ckpt["generator"])  # saved without the DDP wrapper


# Runs train.json's `training` as the CLI does, saving checkpoint_latest.pt every iteration; with a kill
# iteration, that iteration's checkpoint write is torn: half the bytes reach the temporary file, a cut line is
# appended to the loss history, and the process kills itself with SIGKILL in the middle of the write.
KILL_DRIVER = """
import json, os, signal, sys
from monai.bundle import ConfigWorkflow
import gan_core.engines.handlers as handlers
from gan_core.fileio import atomic_path
config_file, kill_at, settings = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
workflow = ConfigWorkflow(config_file=config_file, workflow_type=None, run_id="training", **settings)
for handler in workflow.parser["train"]["handlers"]:
    if handler["_target_"].endswith("AtomicCheckpointSaver"):
        handler["every_n_iterations"] = 1
saved = {"count": 0}
real_save = handlers.atomic_torch_save
def torn_save(obj, target):
    if target.name == "checkpoint_latest.pt":
        saved["count"] += 1
        if saved["count"] == kill_at:
            with open(os.path.join(settings["output_dir"], "losses.jsonl"), "a") as f:
                f.write('{"epoch": 9, "iteration": 99, "d_to')
            with atomic_path(target) as tmp:
                import io, torch
                buffer = io.BytesIO()
                torch.save(obj, buffer)
                with open(tmp, "wb") as f:
                    f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
    real_save(obj, target)
handlers.atomic_torch_save = torn_save
workflow.initialize()
workflow.run()
workflow.finalize()
"""


def test_sigkill_during_a_checkpoint_write_then_resume_reproduces_the_uninterrupted_run_exactly(case, tmp_path):
    bundle_case, prepared = case
    train_json = str(bundle_case.configs / "train.json")
    reference = {**bundle_case.train_settings(prepared, tmp_path / "ref"), "train#trainer#max_epochs": 2}
    with one_thread():
        run_workflow(bundle_case, "training", "train.json", **reference)
    expected = read_loss_history(tmp_path / "ref" / "losses.jsonl")
    per_epoch = max(h["iteration"] for h in expected) // 2
    assert per_epoch >= 2, "the toy cohort must give at least two iterations per epoch"
    kill_at = per_epoch + 1  # the first iteration of epoch 2 (the last): mid-epoch, after an epoch's checkpoint

    out = tmp_path / "run"
    killed = {**bundle_case.train_settings(prepared, out), "train#trainer#max_epochs": 2}
    crashed = subprocess.run([sys.executable, "-c", KILL_DRIVER, train_json, str(kill_at), json.dumps(killed)],
                             cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    leftovers = [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers, "the torn write left its temporary file"
    ckpt = load_checkpoint(out / "checkpoints" / "checkpoint_latest.pt")
    assert ckpt["trainer"]["iteration"] == kill_at - 1  # the last complete checkpoint survived the torn write

    refused = user_error(run_workflow, bundle_case, "training", "train.json", **killed)
    assert "pass --resume true" in str(refused)
    with one_thread():
        run_workflow(bundle_case, "training", "train.json", **killed, resume=True)
    assert not [p for p in out.rglob(".*") if p.is_file() and ".tmp" in p.name], "the leftover was removed"
    lines = (out / "losses.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # valid JSON Lines: the cut line was removed
    resumed = read_loss_history(out / "losses.jsonl")
    assert resumed == expected  # bit-exact: one thread, per-iteration seeding, the same batches
    info = json.loads((out / "run_info.json").read_text())
    assert len(info["resumed"]) == 1 and info["datalist"]["sha256"] == info["resumed"][0]["datalist"]["sha256"]
