"""MLflow tracking: a check of the tracking store before training starts, and what ``--tracking`` misses."""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from ignite.engine import Engine, Events

from gan_core.engines.handlers import is_main_process
from gan_core.errors import BundleInputError

logger = logging.getLogger(__name__)

STORE_CHECK_TIMEOUT_S = 5.0


def check_tracking_store(uri: str, timeout_s: float = STORE_CHECK_TIMEOUT_S) -> None:
    """Refuse a tracking store that training could not write to, within ``timeout_s`` seconds.

    ``http(s)://`` servers must answer MLflow's ``/health`` (or its REST API); ``sqlite:///`` stores need a
    writable folder; plain paths and ``file:`` URIs are refused (MLflow >= 3.13 no longer accepts the file
    store). Other schemes (``postgresql://``, ``databricks``, ...) are left to MLflow.

    Raises:
        BundleInputError: the store is unreachable or unwritable.
    """
    parsed = urlparse(str(uri))
    if parsed.scheme in ("http", "https"):
        base = str(uri).rstrip("/")
        for path in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
            try:
                with urllib.request.urlopen(base + path, timeout=timeout_s) as reply:
                    if reply.status < 500:
                        return
            except urllib.error.HTTPError as err:
                if err.code < 500 and path != "/health":
                    return
            except (OSError, ValueError) as err:
                raise BundleInputError(f"the MLflow tracking server does not answer ({err})", field="tracking_uri",
                                       hint=f"start the server at {uri}, fix --tracking_uri, or train without "
                                       "--tracking") from None
        raise BundleInputError("the MLflow tracking server answers with errors", field="tracking_uri",
                               hint=f"check the server at {uri}, or train without --tracking")
    if parsed.scheme == "sqlite":
        path = Path(parsed.path[1:] if parsed.path.startswith("//") else parsed.path)
        folder = path.parent
        while not folder.exists():
            folder = folder.parent
        if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise BundleInputError("the MLflow store cannot be written", path=path, field="tracking_uri",
                                   hint="choose a writable --output_dir or --tracking_uri sqlite:///<writable path>")
        return
    if parsed.scheme in ("", "file"):
        raise BundleInputError(f"{uri!r} is a file store, which MLflow no longer accepts", field="tracking_uri",
                               hint="pass --tracking_uri sqlite:///<path>/mlruns.db or an http:// server")


class MLflowExtras:
    """Check the tracking store first, then complete what ``--tracking mlflow`` records.

    MONAI's MLFlowHandler (added by ``--tracking``) logs the "loss" dict, the generator's learning rate and
    the executed config. Before it starts (this handler's STARTED hook runs first, as it is attached first),
    its tracking store is checked with :func:`check_tracking_store`, so an unreachable server is one error line
    instead of minutes of retries. Each epoch this handler adds ``params`` (a flat dict from the config),
    the discriminator's learning rate and every sample grid PNG (artifact folder ``samples``), and once the
    executed config that ``--tracking`` wrote to ``output_dir/config_<time>.json`` (MONAI's handler misses it
    when ``--output_dir`` is given as a plain path on the command line). Without ``--tracking`` it does nothing.
    """

    def __init__(self, params: dict | None = None, output_dir: str | None = None):
        self.params = params or {}
        self.output_dir = None if output_dir is None else Path(output_dir)
        self._started = False

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.check_store)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    @staticmethod
    def _mlflow_handlers(engine: Engine) -> list:
        from monai.handlers import MLFlowHandler

        owners = []
        for handler, _, _ in engine._event_handlers.get(Events.STARTED, []):
            owner = getattr(handler, "__self__", None)
            if isinstance(owner, MLFlowHandler):
                owners.append(owner)
        return owners

    def check_store(self, engine: Engine) -> None:
        if is_main_process():
            for handler in self._mlflow_handlers(engine):
                check_tracking_store(handler.client.tracking_uri)

    def __call__(self, engine: Engine) -> None:
        runs = [(h.client, h.cur_run.info.run_id) for h in self._mlflow_handlers(engine) if h.cur_run is not None]
        if not runs or not is_main_process():
            return
        client, run_id = runs[0]
        if not self._started:
            from mlflow.entities import Param

            params = [Param(k, str(v)) for k, v in self.params.items()]
            if params:
                client.log_batch(run_id, params=params)
            configs = sorted(self.output_dir.glob("config_*.json")) if self.output_dir else []
            if configs:
                client.log_artifact(run_id, str(configs[-1]))
            self._started = True
        for i, group in enumerate(engine.d_optimizer.param_groups):
            client.log_metric(run_id, f"d_lr_group_{i}", float(group["lr"]), step=engine.state.iteration)
        grid = getattr(engine.state, "sample_grid", None)
        if grid:
            client.log_artifact(run_id, grid, artifact_path="samples")
