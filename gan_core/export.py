"""The export step of every bundle (run id ``export``, ``configs/export.json``): a trained generator -> ``models/``.

Writes, for a model name (``model`` by default; radiogenomic also exports its MC-GAN baseline as
``baseline_model``)::

    models/<name>.pt            the generator's bare state dict (what MONAI's ckpt_export and the zoo expect)
    models/<name>.json          its record: network settings, input conventions, bundle version, weights checksum
    models/<name>.ts            TorchScript (MONAI ``ckpt_export``, config and metadata embedded)
    models/<name>.onnx          ONNX (optional)
    models/<name>_export.json   the largest differences from the eager generator on the same inputs
    large_files.yml             the model zoo's list of the files of models/ with their SHA-256 (bundle root)

The TorchScript file is checked in a Python process that imports neither this library nor the bundle's scripts (so
the file is self-contained) to 1e-5, the ONNX file with onnxruntime to 1e-4. An existing ``<name>.pt`` is replaced
only with ``overwrite``; exporting from ``models/<name>.pt`` itself re-creates the TorchScript and ONNX files only.
``large_files.yml`` lets a copy of the bundle be checked the zoo's way (``download_url`` finds each file present with
its hash and downloads nothing); its ``url`` fields are empty until you publish the files somewhere.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml
from monai.bundle import ckpt_export

from gan_core.bundle import activate, read_configs
from gan_core.errors import BundleInputError
from gan_core.fileio import atomic_path, atomic_torch_save, atomic_write_text, file_sha256, folder_lock
from gan_core.models import Model, read_model, record_path

logger = logging.getLogger(__name__)

TORCHSCRIPT_TOLERANCE = 1e-5
ONNX_TOLERANCE = 1e-4
LARGE_FILES = "large_files.yml"
MODEL_SUFFIXES = (".pt", ".json", ".ts", ".onnx")  # the files of models/ that large_files.yml lists, per name

_CHECK_TORCHSCRIPT = """
import json, sys, torch
data = torch.load(sys.argv[2], weights_only=True)
net = torch.jit.load(sys.argv[1])
outputs = net(*data["inputs"])
outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
diff = max(float((a - b).abs().max()) for a, b in zip(outputs, data["outputs"], strict=True))
assert not {"gan_core", "scripts"} & set(sys.modules), "the TorchScript check must import no project code"
print(json.dumps({"max_abs_diff": diff}))
"""


@dataclass
class ExportReport:
    model: str
    sha256: str
    torchscript: str
    torchscript_max_abs_diff: float
    onnx: str | None
    onnx_max_abs_diff: float | None


def _as_tuple(outputs) -> tuple[torch.Tensor, ...]:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


def write_model(model: Model, target: Path, bundle_dir: Path) -> None:
    """``target`` (bare weights) and its record beside it."""
    metadata = json.loads((bundle_dir / "configs" / "metadata.json").read_text())
    record = {"network": model.network, "inputs": model.inputs, "bundle": bundle_dir.name,
              "bundle_version": metadata.get("version"), "sha256": model.sha256, "source": str(model.path)}
    atomic_torch_save(model.state, target)
    atomic_write_text(json.dumps(record, indent=1), record_path(target))


def write_large_files(bundle_dir: Path, models_dir: Path) -> Path:
    """``large_files.yml`` at the bundle root: every model file in ``models_dir`` with its SHA-256."""
    entries = [{"path": str(path.relative_to(bundle_dir)), "url": "", "hash_val": file_sha256(path), "hash_type": "sha256"}
               for path in sorted(models_dir.iterdir()) if path.suffix in MODEL_SUFFIXES and path.is_file()
               and not path.name.endswith("_export.json")]
    text = ("# Written by the export step: the files of models/ and their SHA-256. Put each file's download address in\n"
            "# its url when you publish the bundle; a file that is present with this hash is never downloaded.\n")
    target = bundle_dir / LARGE_FILES
    atomic_write_text(text + yaml.safe_dump({"large_files": entries}, sort_keys=False), target)
    return target


def export_model(
    bundle_dir: str | Path,
    source: str | Path,
    *,
    name: str = "model",
    models_dir: str | Path | None = None,
    overwrite: bool = False,
    onnx: bool = True,
) -> ExportReport:
    """Export the generator of ``source`` (a training checkpoint, or exported weights with their record).

    Raises:
        BundleInputError: an unreadable source, or an existing ``models/<name>.pt`` without ``overwrite``.
        RuntimeError: an exported file differs from the eager network by more than the tolerance.
    """
    bundle_dir = Path(bundle_dir).resolve()
    activate(bundle_dir)  # the generator is one of this bundle's networks
    model = read_model(source)
    models_dir = Path(models_dir or bundle_dir / "models").resolve()
    target = models_dir / f"{name}.pt"
    with folder_lock(models_dir):
        if Path(source).resolve() != target:
            if target.exists() and not overwrite:
                raise BundleInputError("an exported model is already there", path=target, field="name",
                                       hint="pass --overwrite true to replace it, or --name <another name>")
            write_model(model, target, bundle_dir)
        parser = read_configs(bundle_dir, "inference.json")
        parser["ckpt_path"] = str(target)
        generator = model.load("cpu")
        torch.manual_seed(0)
        inputs = tuple(parser.get_parsed_content("export_inputs"))
        with torch.no_grad():
            eager = _as_tuple(generator(*inputs))

        ts_path = models_dir / f"{name}.ts"
        with atomic_path(ts_path) as tmp:
            ckpt_export(net_id="network_def", filepath=str(tmp), ckpt_file=str(target),
                        meta_file=str(bundle_dir / "configs" / "metadata.json"),
                        config_file=str(bundle_dir / "configs" / "inference.json"),
                        bundle_root=str(bundle_dir), ckpt_path=str(target))
        ts_diff = _check_torchscript(ts_path, inputs, eager, models_dir / f".{name}_export_check.pt")

        onnx_path, onnx_diff = None, None
        if onnx:
            formats = parser.get("_meta_#network_data_format", {})
            onnx_path = models_dir / f"{name}.onnx"
            onnx_diff = _export_onnx(generator, inputs, eager, onnx_path, list(formats.get("inputs", {})),
                                     list(formats.get("outputs", {})))
        report = ExportReport(str(target), model.sha256, str(ts_path), ts_diff,
                              None if onnx_path is None else str(onnx_path), onnx_diff)
        atomic_write_text(json.dumps(asdict(report), indent=2), models_dir / f"{name}_export.json")
        large_files = write_large_files(bundle_dir, models_dir)
    logger.info("model: %s (sha256 %s)", report.model, report.sha256[:16])
    logger.info("TorchScript: %s (max |ts - eager| = %.2e)", report.torchscript, report.torchscript_max_abs_diff)
    if report.onnx:
        logger.info("ONNX: %s (max |onnx - eager| = %.2e)", report.onnx, report.onnx_max_abs_diff)
    logger.info("%s lists the files of %s with their SHA-256", large_files, models_dir)
    return report


def _check_torchscript(ts_path: Path, inputs, eager, check_file: Path) -> float:
    with atomic_path(check_file) as tmp:
        torch.save({"inputs": inputs, "outputs": eager}, tmp)
    try:
        result = subprocess.run([sys.executable, "-c", _CHECK_TORCHSCRIPT, str(ts_path), str(check_file)],
                                capture_output=True, text=True)
    finally:
        check_file.unlink(missing_ok=True)
    if result.returncode != 0:
        raise RuntimeError(f"TorchScript check of {ts_path} failed:\n{result.stderr[-2000:]}")
    diff = json.loads(result.stdout.strip().splitlines()[-1])["max_abs_diff"]
    if diff > TORCHSCRIPT_TOLERANCE:
        raise RuntimeError(f"{ts_path} differs from the eager generator by {diff:.2e} > {TORCHSCRIPT_TOLERANCE}")
    return diff


def _export_onnx(generator, inputs, eager, path: Path, input_names, output_names) -> float:
    import onnxruntime
    import onnxscript  # noqa: F401 - torch.onnx.export(dynamo=True) translates with it

    with atomic_path(path) as tmp:
        torch.onnx.export(generator, inputs, str(tmp), input_names=input_names or None,
                          output_names=output_names or None, dynamo=True, external_data=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {arg.name: t.numpy() for arg, t in zip(session.get_inputs(), inputs, strict=True)}
    outputs = session.run(None, feeds)
    diff = max(float(abs(torch.from_numpy(a) - b).max()) for a, b in zip(outputs, eager, strict=True))
    if diff > ONNX_TOLERANCE:
        raise RuntimeError(f"{path} differs from the eager generator by {diff:.2e} > {ONNX_TOLERANCE}")
    return diff
