"""Operations on every bundle's real configs at toy size: MLflow server tracking, TorchScript/ONNX export,
torchrun multi-process training, and SIGKILL + resume reproducing an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from bundle_cases import CASES, ENV, REPO, run

from bundles.engines.handlers import load_checkpoint, read_loss_history

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name)
def case(request, tmp_path_factory):
    """(case, raw demo cohort) for each bundle."""
    bundle_case = request.param
    raw = bundle_case.make_raw(tmp_path_factory.mktemp(bundle_case.name) / "raw")
    return bundle_case, raw


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
    bundle_case, raw = case
    work = tmp_path_factory.mktemp(f"{bundle_case.name}_tracked")
    settings = {**bundle_case.settings(raw, work), "train#trainer#max_epochs": 2}
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
    assert "max_epochs" in data.params and "batch_size" in data.params
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert any(p.endswith(".json") for p in artifacts), artifacts  # the executed config
    grids = [a.path for a in client.list_artifacts(runs[0].info.run_id, "samples")]
    assert grids and all(p.endswith(".png") for p in grids)


def test_export_torchscript_and_onnx_match_eager(tracked_run, tmp_path):
    from bundles.export import export_generator

    bundle_case, settings, _ = tracked_run
    ckpt = Path(settings["output_dir"]) / "checkpoints" / "checkpoint_latest.pt"
    overrides = {k: v for k, v in settings.items() if "#" not in k}
    report = export_generator(REPO / f"{bundle_case.name}_bundle", ckpt, tmp_path, onnx=True, **overrides)
    assert report.torchscript_max_abs_diff <= 1e-5
    assert report.onnx_max_abs_diff <= 1e-4
    # MONAI's own CLI writes the same TorchScript generator
    cli_ts = tmp_path / "cli.ts"
    command = [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(cli_ts),
               "--ckpt_file", str(ckpt), "--key_in_ckpt", "generator",
               "--config_file", str(bundle_case.configs / "inference.json"),
               "--meta_file", str(bundle_case.configs / "metadata.json")]
    for key, value in overrides.items():
        command += [f"--{key}", value if isinstance(value, str) else repr(value)]
    run(command)
    data = torch.load(tmp_path / "export_check.pt", weights_only=True)
    outputs = torch.jit.load(str(cli_ts))(*data["inputs"])
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    for a, b in zip(outputs, data["outputs"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_torchrun_two_processes_train_on_disjoint_shards(case, tmp_path):
    bundle_case, raw = case
    settings = {**bundle_case.settings(raw, tmp_path), "train#trainer#max_epochs": 1}
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


KILL_DRIVER = """
import os, signal, sys
from ignite.engine import Events
from monai.bundle import ConfigParser
config_file, kill_at, settings = sys.argv[1], int(sys.argv[2]), __import__("json").loads(sys.argv[3])
parser = ConfigParser()
parser.read_config(config_file)
for key, value in settings.items():
    parser[key] = value
parser.get_parsed_content("initialize")  # seeds, as `monai.bundle run` does
for handler in parser["train"]["handlers"]:
    if handler["_target_"].endswith("AtomicCheckpointSaver"):
        handler["every_n_iterations"] = 1
trainer = parser.get_parsed_content("train#trainer")
def arm(engine):  # registered at start, so it runs after every handler the config attaches
    engine.add_event_handler(Events.ITERATION_COMPLETED(once=kill_at), lambda e: os.kill(os.getpid(), signal.SIGKILL))
if kill_at:
    trainer.add_event_handler(Events.STARTED, arm)
parser.get_parsed_content("training")
"""


def test_sigkill_mid_epoch_then_resume_reproduces_the_uninterrupted_losses(case, tmp_path):
    bundle_case, raw = case
    train_json = str(bundle_case.configs / "train.json")
    reference = {**bundle_case.settings(raw, tmp_path / "ref"), "train#trainer#max_epochs": 3}
    # prepare once, so that both runs start from the same RNG state when they build their networks
    run(bundle_case.cli(bundle_case.prepare_key, ["train.json"], reference))
    run([sys.executable, "-c", KILL_DRIVER, train_json, "0", json.dumps(reference)])
    expected = read_loss_history(tmp_path / "ref" / "out" / "losses.jsonl")
    per_epoch = max(h["iteration"] for h in expected) // 3
    assert per_epoch >= 2, "the toy cohort must give at least two iterations per epoch"
    kill_at = per_epoch + 1  # the first iteration of epoch 2: mid-epoch

    killed = {**bundle_case.settings(raw, tmp_path / "run"), "train#trainer#max_epochs": 3}
    killed["dataset_dir"] = reference["dataset_dir"]
    crashed = subprocess.run([sys.executable, "-c", KILL_DRIVER, train_json, str(kill_at), json.dumps(killed)],
                             cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "run" / "out" / "checkpoints" / "checkpoint_latest.pt")
    assert ckpt["trainer"]["iteration"] == kill_at

    run(bundle_case.cli("training", ["train.json"], killed, "--resume", "True"))
    resumed = read_loss_history(tmp_path / "run" / "out" / "losses.jsonl")
    assert [h["iteration"] for h in resumed] == [h["iteration"] for h in expected]
    for got, want in zip(resumed[kill_at:], expected[kill_at:], strict=True):
        assert got["epoch"] == want["epoch"]
        for term in want:
            assert got[term] == pytest.approx(want[term], rel=1e-5, abs=1e-6), (got["iteration"], term)
