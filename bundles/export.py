"""Export a bundle's trained generator to TorchScript (MONAI's ``ckpt_export``) and ONNX, and check both.

Each bundle's ``inference.json`` defines ``network_def`` (the generator), ``ckpt_path`` (a checkpoint
with a "generator" entry) and ``export_inputs`` (a tuple of example input tensors); ``metadata.json``
names the inputs and outputs in ``network_data_format``. The checks run the exported files on the same
inputs (same noise) as the eager network: TorchScript in a fresh Python process that never imports
``bundles`` (so the file is self-contained), ONNX with onnxruntime.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from monai.bundle import ConfigParser, ckpt_export

from bundles.engines.handlers import load_checkpoint, load_state_into
from bundles.errors import BundleInputError
from bundles.fileio import atomic_path, atomic_write_text

TORCHSCRIPT_TOLERANCE = 1e-5
ONNX_TOLERANCE = 1e-4

_CHECK_TORCHSCRIPT = """
import json, sys, torch
data = torch.load(sys.argv[2], weights_only=True)
net = torch.jit.load(sys.argv[1])
outputs = net(*data["inputs"])
outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
diff = max(float((a - b).abs().max()) for a, b in zip(outputs, data["outputs"], strict=True))
assert "bundles" not in sys.modules, "the TorchScript check must not import bundles"
print(json.dumps({"max_abs_diff": diff}))
"""


@dataclass
class ExportReport:
    torchscript: str
    torchscript_max_abs_diff: float
    onnx: str | None
    onnx_max_abs_diff: float | None


def _as_tuple(outputs) -> tuple[torch.Tensor, ...]:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


def load_bundle_generator(bundle_dir: str | Path, ckpt_path: str | Path | None = None, **overrides):
    """Parse a bundle's inference config and return ``(parser, generator in eval mode, checkpoint path)``."""
    bundle_dir = Path(bundle_dir)
    config = bundle_dir / "configs" / "inference.json"
    parser = ConfigParser()
    parser.read_meta(bundle_dir / "configs" / "metadata.json")
    parser.read_config(config)
    parser["bundle_root"] = str(bundle_dir)
    for key, value in overrides.items():
        parser[key] = value
    ckpt_path = Path(ckpt_path or parser.get_parsed_content("ckpt_path"))
    checkpoint = load_checkpoint(ckpt_path)
    if "generator" not in checkpoint:
        raise BundleInputError("checkpoint has no 'generator' entry", path=ckpt_path, field="generator")
    generator = parser.get_parsed_content("network_def", instantiate=True)
    load_state_into(generator, checkpoint["generator"], ckpt_path, "generator")
    return parser, generator.eval(), ckpt_path


def export_generator(
    bundle_dir: str | Path,
    ckpt_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    onnx: bool = True,
    **overrides,
) -> ExportReport:
    """Write ``generator.ts`` (and ``generator.onnx``) to ``out_dir`` and check them against eager outputs.

    Raises:
        RuntimeError: an exported file differs from the eager network by more than the tolerance
            (1e-5 TorchScript, 1e-4 ONNX).
    """
    bundle_dir = Path(bundle_dir)
    parser, generator, ckpt_path = load_bundle_generator(bundle_dir, ckpt_path, **overrides)
    out_dir = Path(out_dir or Path(parser.get_parsed_content("output_dir")) / "export")
    out_dir.mkdir(parents=True, exist_ok=True)
    formats = parser.get("_meta_#network_data_format", {})
    input_names = list(formats.get("inputs", {}))
    output_names = list(formats.get("outputs", {}))

    torch.manual_seed(0)
    inputs = tuple(parser.get_parsed_content("export_inputs"))
    with torch.no_grad():
        eager = _as_tuple(generator(*inputs))

    ts_path = out_dir / "generator.ts"
    with atomic_path(ts_path) as tmp:
        ckpt_export(
            net_id="network_def",
            filepath=str(tmp),
            ckpt_file=str(ckpt_path),
            meta_file=str(bundle_dir / "configs" / "metadata.json"),
            config_file=str(bundle_dir / "configs" / "inference.json"),
            key_in_ckpt="generator",
            bundle_root=str(bundle_dir),
            **overrides,
        )
    check_file = out_dir / "export_check.pt"
    with atomic_path(check_file) as tmp:
        torch.save({"inputs": inputs, "outputs": eager}, tmp)
    result = subprocess.run(
        [sys.executable, "-c", _CHECK_TORCHSCRIPT, str(ts_path), str(check_file)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"TorchScript check of {ts_path} failed:\n{result.stderr[-2000:]}")
    ts_diff = json.loads(result.stdout.strip().splitlines()[-1])["max_abs_diff"]
    if ts_diff > TORCHSCRIPT_TOLERANCE:
        raise RuntimeError(f"{ts_path} differs from the eager generator by {ts_diff:.2e} > {TORCHSCRIPT_TOLERANCE}")

    onnx_path, onnx_diff = None, None
    if onnx:
        onnx_path = out_dir / "generator.onnx"
        onnx_diff = _export_onnx(generator, inputs, eager, onnx_path, input_names, output_names)

    report = ExportReport(str(ts_path), ts_diff, None if onnx_path is None else str(onnx_path), onnx_diff)
    atomic_write_text(json.dumps(asdict(report), indent=2), out_dir / "export_report.json")
    return report


def _export_onnx(generator, inputs, eager, path: Path, input_names, output_names) -> float:
    import onnxruntime

    with atomic_path(path) as tmp:
        torch.onnx.export(
            generator,
            inputs,
            str(tmp),
            input_names=input_names or None,
            output_names=output_names or None,
            dynamo=True,
            external_data=False,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {arg.name: t.numpy() for arg, t in zip(session.get_inputs(), inputs, strict=True)}
    outputs = session.run(None, feeds)
    diff = max(float(abs(torch.from_numpy(a) - b).max()) for a, b in zip(outputs, eager, strict=True))
    if diff > ONNX_TOLERANCE:
        raise RuntimeError(f"{path} differs from the eager generator by {diff:.2e} > {ONNX_TOLERANCE}")
    return diff
