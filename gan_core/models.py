"""Trained models: safe checkpoint loading, the network record a checkpoint carries, and the bundle's models/.

A training checkpoint holds, beside the weights, a ``"network"`` entry (:class:`NetworkRecord`): the settings the
generator was built with (``{"builder": "scripts.networks.<callable>", <argument>: value, ...}``, a callable of the
bundle's own ``scripts/networks.py``) and what inference
needs to read a user's input (``"inputs"``: for radiogenomic the gene names and standardisation statistics, for
RadioGAN the class names, pixel spacing and SUV scale, ...). The export step writes the generator's bare
state dict to ``models/model.pt`` (the model-zoo layout) and the record beside it as ``models/model.json``.
Inference, evaluation and export build ``network_def`` from that record alone (:func:`read_model`), so they need
no prepared dataset; a checkpoint that does not fit the record is refused with one line.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from gan_core.errors import BundleInputError

NETWORK_MODULE = "scripts.networks"  # a bundle's own networks: <bundle>/scripts/networks.py


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The bare network inside a DistributedDataParallel wrapper (checkpoints hold bare state dicts)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only, never code.

    Raises:
        BundleInputError: the file is missing, empty, truncated or not a PyTorch file, is not a dictionary,
            or is a pickle that would run code (refused, not executed).
    """
    path = Path(path)
    if not path.is_file():
        raise BundleInputError("checkpoint file not found", path=path,
                               hint="check the path, or train / export a model first")
    if path.stat().st_size == 0:
        raise BundleInputError("the checkpoint file is empty", path=path,
                               hint="it was cut short: use another checkpoint or train again")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise BundleInputError(
            f"refused to load: not a plain-weights checkpoint ({str(err).splitlines()[0][:200]})",
            path=path,
            hint="only load checkpoints written by these bundles or from a source you trust",
        ) from err
    except Exception as err:  # torch.load raises many types for damaged or foreign files
        raise BundleInputError(f"not a readable PyTorch checkpoint ({type(err).__name__}: "
                               f"{str(err).splitlines()[0][:200]})", path=path,
                               hint="the file is truncated or of another kind: use another checkpoint") from err
    if not isinstance(checkpoint, dict):
        raise BundleInputError(f"holds a {type(checkpoint).__name__}, not a checkpoint dictionary", path=path,
                               hint="pass a checkpoint written by training or by the export step")
    return checkpoint


def load_state_into(module: torch.nn.Module, state: dict, path: str | os.PathLike, key: str) -> None:
    """Load ``state`` into ``module``, turning a key/shape mismatch into an error naming what differs."""
    target = unwrap(module)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BundleInputError(f"checkpoint entry '{key}' is not a state dict of tensors", path=path, field=key,
                               hint="pass a checkpoint written by training or by the export step")
    own = target.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or mismatched:
        details = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if keys:
                details.append(f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}")
        raise BundleInputError(
            f"checkpoint entry '{key}' does not fit the {type(target).__name__} of the settings "
            f"({'; '.join(details)})",
            path=path,
            field=key,
            hint="the weights were written by another network or configuration: use the settings they were "
            "trained with (models/model.json or the training checkpoint)",
        )
    target.load_state_dict(state)


def network_builder(network: dict, path: str | os.PathLike | None = None):
    """The callable a record's ``builder`` names: ``scripts.networks.<callable>`` of the active bundle.

    Only callables of the bundle's own ``scripts/networks.py`` are built: a record file names no arbitrary code.

    Raises:
        BundleInputError: the builder is not a network of this bundle (a model of another bundle or version).
    """
    target = network.get("builder") if isinstance(network, dict) else None
    module, _, name = str(target).rpartition(".")
    if not isinstance(target, str) or module != NETWORK_MODULE:
        raise BundleInputError(f"the network record names {target!r}, not a network {NETWORK_MODULE}.<name> of a "
                               "bundle", path=path, field="network#builder",
                               hint="use a model written by this bundle's training and export steps")
    builder = getattr(importlib.import_module(NETWORK_MODULE), name, None)
    if builder is None:
        raise BundleInputError(f"holds a generator {target} that this bundle's scripts/networks.py does not define",
                               path=path, field="network#builder", hint="pass a model trained with this bundle")
    return builder


def build_network(network: dict) -> torch.nn.Module:
    """Build ``{"builder": "scripts.networks.<callable>", <argument>: value, ...}`` (``builder`` rather than MONAI's
    ``_target_``, so that a config can hold the record as a plain dict)."""
    builder = network_builder(network)
    target = network["builder"]
    kwargs = {k: v for k, v in network.items() if k != "builder"}
    try:
        return builder(**kwargs)
    except Exception as err:  # a setting the network refuses, or a record with arguments it does not take
        named = [key for key in kwargs if re.search(rf"\b{re.escape(key)}\b", str(err))]
        raise BundleInputError(f"cannot build {target} from the network settings ({err})",
                               field=f"network#{named[0]}" if named else "network",
                               hint="correct that setting (train.json's `network`), or use a model written by this "
                               "version of the bundles") from err


def _plain(value):
    """JSON-friendly copy of a record (tuples -> lists, tensors -> lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


class NetworkRecord:
    """The generator's settings and input conventions, saved in every checkpoint under ``"network"``.

    Put it in a trainer's ``save_dict``: ``state_dict()`` gives ``{"network": {...}, "inputs": {...}}`` and
    ``load_state_dict`` (on resume) refuses a checkpoint built with other settings, naming the first one.

    Args:
        network: ``{"builder": "scripts.networks.<callable>", <argument>: value}`` (plain values).
        inputs: what inference needs to read a user's input (plain values; may be empty).
    """

    def __init__(self, network: dict, inputs: dict | None = None):
        self.network = _plain(dict(network))
        self.inputs = _plain(dict(inputs or {}))

    def build(self) -> torch.nn.Module:
        return build_network(self.network)

    def check(self) -> None:
        """Build the network once and discard it, so that a setting it refuses stops a run before the run writes
        anything. The random state is restored: the training's weights stay those its seed gives."""
        with torch.random.fork_rng(devices=[]):
            self.build()

    def state_dict(self) -> dict:
        return {"network": self.network, "inputs": self.inputs}

    def load_state_dict(self, state: dict) -> None:
        saved = _plain(state.get("network", {}))
        for key in sorted(set(saved) | set(self.network)):
            if saved.get(key) != self.network.get(key):
                raise BundleInputError(
                    f"the checkpoint's generator was built with {key}={saved.get(key)!r}, the settings give "
                    f"{self.network.get(key)!r}",
                    field=f"network#{key}",
                    hint=f"resume with --network#{key} {json.dumps(saved.get(key))}, or train into a new --output_dir",
                )


@dataclass
class Model:
    """A trained generator as read from disk: its record, its weights and where they came from."""

    path: Path
    network: dict
    inputs: dict
    state: dict = field(repr=False)

    def build(self) -> torch.nn.Module:
        """The network of the record, untrained."""
        return build_network(self.network)

    def load(self, device: str | torch.device = "cpu", network: torch.nn.Module | None = None) -> torch.nn.Module:
        """The network with its trained weights, in eval mode on ``device``."""
        network = self.build() if network is None else network
        load_state_into(network, self.state, self.path, "generator")
        return network.to(device).eval()

    @property
    def sha256(self) -> str:
        """Checksum of the weights (tensor bytes in key order): the same for a checkpoint and its export."""
        digest = hashlib.sha256()
        for key in sorted(self.state):
            digest.update(key.encode())
            digest.update(self.state[key].detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


def record_path(model_path: str | os.PathLike) -> Path:
    """``models/model.pt`` -> ``models/model.json`` (the record beside exported weights)."""
    return Path(model_path).with_suffix(".json")


def read_model(path: str | os.PathLike) -> Model:
    """Read a training checkpoint (``generator`` + ``network`` entries) or exported weights + their record.

    A checkpoint with a moving average of the generator's weights (``generator_ema``,
    :mod:`gan_core.engines.averaging`) gives the average: the network inference and export use.

    Raises:
        BundleInputError: unreadable file, no generator weights, no record of the network settings, or a generator
            that the active bundle's ``scripts/networks.py`` does not define (a model of another bundle).
    """
    path = Path(path)
    checkpoint = load_checkpoint(path)
    if "generator" in checkpoint:
        if "network" not in checkpoint:
            raise BundleInputError("the checkpoint has no 'network' record of its generator's settings", path=path,
                                   field="network", hint="it was written by an older version: train again")
        record = checkpoint["network"]
        state = checkpoint.get("generator_ema", checkpoint["generator"])  # the weight average, when trained with one
    else:
        sidecar = record_path(path)
        if not sidecar.is_file():
            raise BundleInputError(f"bare weights without their record {sidecar.name} beside them", path=path,
                                   field="network", hint="export the model with the bundle's export step, which writes both")
        try:
            record = json.loads(sidecar.read_text())
        except ValueError as err:
            raise BundleInputError(f"not valid JSON ({err})", path=sidecar, hint="export the model again") from err
        state = checkpoint
    if not isinstance(record, dict) or not isinstance(record.get("network"), dict):
        raise BundleInputError("the record has no 'network' settings", path=path, field="network",
                               hint="export the model again with the bundle's export step")
    network_builder(record["network"], path)
    return Model(path=path, network=record["network"], inputs=record.get("inputs", {}), state=state)

