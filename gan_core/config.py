"""Settings that arrive from bundle configs and the ``python -m monai.bundle`` command line, checked before work.

Every config's ``initialize`` list calls :func:`check_command_line` (an override that names no setting of
the config is refused, with the closest names) and :func:`check_settings` (each setting's type and range),
so a bad setting ends the command with one ``error:`` line before any data is read.
"""

from __future__ import annotations

import ast
import difflib
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from gan_core.errors import BundleInputError

logger = logging.getLogger(__name__)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", "none", ""}


def as_flag(value: bool | int | str | None, key: str) -> bool:
    """A boolean setting from a config or the command line, where ``--amp false`` arrives as "false".

    Raises:
        BundleInputError: a string that is neither true nor false (``key`` names the setting).
    """
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise BundleInputError(f"expected true or false, got {value!r}", field=key, hint=f"pass --{key} true or false")
    return bool(value)


# ---------------------------------------------------------------------------------------------- settings
def _integer(minimum: int) -> Callable[[object, str], None]:
    def check(value, key):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise BundleInputError(f"must be an integer >= {minimum}, got {value!r}", field=key,
                                   hint=f"pass --{key} with a whole number of at least {minimum}")
    return check


def _positive_number(value, key) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise BundleInputError(f"must be a number > 0, got {value!r}", field=key, hint=f"pass --{key} with a positive number")


def _non_negative_number(value, key) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise BundleInputError(f"must be a number >= 0, got {value!r}", field=key, hint=f"pass --{key} with a number >= 0")


def _fraction(value, key) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise BundleInputError(f"must be a number in [0, 1), got {value!r}", field=key, hint=f"pass --{key} 0.2, for example")


def _probability(value, key) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise BundleInputError(f"must be a probability in [0, 1], got {value!r}", field=key, hint=f"pass --{key} 0.5, for example")


def _flag(value, key) -> None:
    as_flag(value, key)


def _file_stem(value, key) -> None:
    if not isinstance(value, str) or not value or "/" in value or "\\" in value or value.startswith("."):
        raise BundleInputError(f"must be a file name without folders or suffix, got {value!r}", field=key,
                               hint=f"pass --{key} model, for example")


def _optional(check):
    def optional(value, key):
        if value is not None:
            check(value, key)
    return optional


def check_device(device, key: str = "device") -> torch.device:
    """A torch device that exists on this machine.

    Raises:
        BundleInputError: not a device name, or a CUDA device this PyTorch build or machine does not have.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise BundleInputError(f"not a device name: {device!r}", field=key,
                               hint="pass --device cpu or --device cuda:0") from err
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise BundleInputError(f"{device!r} asked for, but this PyTorch build or machine has no CUDA device",
                                   field=key, hint="pass --device cpu, or run on a GPU machine with a CUDA build of torch")
        index = 0 if parsed.index is None else parsed.index
        if index >= torch.cuda.device_count():
            raise BundleInputError(f"{device!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist",
                                   field=key, hint="pass --device cuda:0")
    elif parsed.type != "cpu":
        raise BundleInputError(f"device type {parsed.type!r} is not supported", field=key,
                               hint="pass --device cpu or --device cuda:N")
    return parsed


# The check of each setting, by the name configs use for it (the last part of its config id).
CHECKS: dict[str, Callable[[object, str], None]] = {
    "device": lambda v, k: check_device(v, k),
    "batch_size": _integer(1),
    "max_epochs": _integer(1),
    "lr": _positive_number,
    "ema_half_life": _non_negative_number,
    "seed": _integer(0),
    "num_threads": _optional(_integer(1)),
    "amp": _flag,
    "resume": _flag,
    "overwrite": _flag,
    "perturb": _flag,
    "write_dicom": _flag,
    "onnx": _flag,
    "name": _file_stem,
    "image_fusion": _flag,
    "sample_every_n_epochs": _integer(1),
    "num_backgrounds": _integer(1),
    "num_profiles": _integer(1),
    "num_per_class": _integer(1),
    "num_eval_patients": _integer(1),
    "classifier_epochs": _integer(1),
    "validation_fraction": _fraction,
    "translation": _fraction,
    "cutout": _fraction,
    "warp_prob": _probability,
    "warp_magnitude": _fraction,
    "warp_smoothness": _positive_number,
    "heldout_per_class": _integer(0),
    "image_size": _integer(8),
    "loss_size": _optional(_integer(8)),
    "backgrounds_per_patient": _integer(1),
    "slices_per_background": _integer(1),
    "voi_mm": _positive_number,
    "spacing_mm": _positive_number,
    "suv_max": _positive_number,
    "weight": _non_negative_number,
}


def check_settings(settings: dict) -> None:
    """Check each ``{config id: value}`` with the rule of its last id part (``train#dataloader#batch_size``
    -> ``batch_size``; names starting with ``w_`` or ``weight_`` are non-negative loss weights).

    Raises:
        BundleInputError: the first setting that breaks its rule (named by its config id).
    """
    for key, value in settings.items():
        key = key.replace("::", "#")  # MONAI rewrites '#' as '::' inside expressions, string literals included
        name = key.split("#")[-1]
        if name.startswith(("w_", "weight_", "lambda_")):
            name = "weight"
        if name == "amp_dtype":
            if value not in ("float16", "bfloat16"):
                raise BundleInputError(f"must be float16 or bfloat16, got {value!r}", field=key,
                                       hint="pass --amp_dtype bfloat16")
            continue
        if name not in CHECKS:
            raise ValueError(f"no rule to check the setting {key!r}")  # a config names a setting with no rule
        CHECKS[name](value, key)


def set_num_threads(num_threads: int | None) -> None:
    """``torch.set_num_threads`` unless ``None`` (PyTorch's default: one thread per core).

    On a machine shared with other jobs, a training that keeps PyTorch's default competes for every core: an
    epoch measured 6 s alone took 150 s beside other processes; one or two threads per job avoid that.
    """
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
        logger.info("PyTorch uses %d thread(s)", torch.get_num_threads())


# ---------------------------------------------------------------------------------------- command line
# Arguments of `monai.bundle run` itself (not config overrides).
_RUN_ARGUMENTS = {"run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file"}


def under_bundle_cli(argv: list[str]) -> bool:
    """True in a ``python -m monai.bundle ...`` process (``run``, ``ckpt_export``, ...; ``torchrun -m`` too)."""
    return bool(argv) and Path(argv[0]).parts[-3:] == ("monai", "bundle", "__main__.py")


def _overrides(argv: list[str]) -> dict[str, str]:
    """``--key value`` / ``--key=value`` pairs of a ``monai.bundle run`` command line (a bare flag -> "True")."""
    pairs, i = {}, 2
    while i < len(argv):
        token = argv[i]
        if token.startswith("--"):
            key, eq, value = token[2:].partition("=")
            if not eq:
                if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    value, i = argv[i + 1], i + 1
                else:
                    value = "True"
            pairs[key] = value
        i += 1
    return pairs


def _config_files(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            return [str(v) for v in ast.literal_eval(value)]
        except (ValueError, SyntaxError) as err:
            raise BundleInputError(f"not a list of files: {value}", field="config_file",
                                   hint="pass --config_file \"['a.json','b.json']\"") from err
    return [v for v in value.split(",") if v]


def config_files_argument(argv: list[str]) -> list[str]:
    """The files of ``--config_file`` on a ``python -m monai.bundle`` command line (empty when there is none)."""
    value = _overrides(argv).get("config_file")
    return [] if value is None else _config_files(value)


def _items(config, prefix: str = "") -> Iterator[tuple[str, object]]:
    """``(id, value)`` of every config id (``a``, ``a#b``, ``a#0#c``) of a parsed JSON config."""
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for key, value in items:
        key = f"{prefix}{key}"
        yield key, value
        yield from _items(value, key + "#")


def _suggestions(key: str, values: dict, components: set[str]) -> list[str]:
    """Up to three settings named like ``key``: components are not settings, and a component's argument wired to
    a setting (``"path": "@ckpt_path"``) stands for that setting."""
    names = {}
    for name, value in values.items():
        parent = name.rpartition("#")[0]
        if name in components or name.endswith("#_target_"):
            continue
        wired = parent in components and isinstance(value, str) and re.fullmatch(r"@[\w#]+", value)
        names[name] = value[1:] if wired else name
    close = difflib.get_close_matches(key, sorted(names), n=3, cutoff=0.6)
    return list(dict.fromkeys(names[name] for name in close))


def check_command_line(argv: list[str] | None = None) -> None:
    """Under ``python -m monai.bundle run``: refuse an override that names no setting of the config files.

    MONAI adds an unknown key silently (``--train#dataloader#batch_sise 4`` would train with the default
    batch size), so each ``--key`` must already exist in the merged config files; with ``--tracking``, the
    tracking settings' keys are allowed too. A component (a dict with ``_target_``, such as ``model``) is
    what the config builds from its settings, not a setting: overriding it is refused with the settings it
    reads, and the closest names suggested for a misspelt key are settings only. Does nothing outside that
    command line.

    Raises:
        BundleInputError: an unknown key, with the closest known settings, or a component.
    """
    from monai.bundle import ConfigParser
    from monai.bundle.utils import DEFAULT_EXP_MGMT_SETTINGS

    from gan_core.bundle import bundle_of

    argv = sys.argv if argv is None else argv
    if not under_bundle_cli(argv) or len(argv) < 2 or argv[1] != "run":
        return
    overrides = _overrides(argv)
    if "config_file" not in overrides:
        return
    files = _config_files(overrides["config_file"])
    if "bundle_root" in overrides and Path(overrides["bundle_root"]).resolve() != bundle_of(files[0]):
        raise BundleInputError(f"is not the bundle of the config file {files[0]}", field="--bundle_root",
                               hint="leave --bundle_root out: a command reads and writes only in its config's bundle")
    config = ConfigParser.load_config_files(files)
    values = dict(_items(config))
    known = set(values)
    if "tracking" in overrides:
        settings = DEFAULT_EXP_MGMT_SETTINGS.get(overrides["tracking"])
        if settings is None and Path(overrides["tracking"]).is_file():
            settings = ConfigParser.load_config_file(overrides["tracking"])
        known |= set((settings or {}).get("configs", {}))
    components = {name for name, value in values.items() if isinstance(value, dict) and "_target_" in value}
    for key in overrides:
        if key in components:
            references = dict.fromkeys(re.findall(r"@([\w#]+)", json.dumps(values[key])))
            inputs = [f"--{ref}" for ref in references if ref in known and ref not in components]
            hint = f"set {' or '.join(inputs)} instead" if inputs else f"override its arguments (--{key}#<name>)"
            raise BundleInputError("is built by the config, not a setting", field=f"--{key}", hint=hint)
        if key in _RUN_ARGUMENTS or key in known:
            continue
        close = _suggestions(key, values, components)
        hint = f"did you mean {' or '.join('--' + c for c in close)}?" if close else "check the spelling in the config"
        raise BundleInputError(f"no such setting in {', '.join(files)}", field=f"--{key}", hint=hint)
