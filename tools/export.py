"""The export step: place a trained run's generator in the bundle's models/ folder, as TorchScript and ONNX too.

    python tools/export.py --bundle radiogan_bundle [--ckpt PATH] [--name NAME] [--overwrite] [--no-onnx]

Source: ``--ckpt`` (a training checkpoint such as ``<output_dir>/checkpoints/checkpoint_latest.pt``, or exported
weights with their .json record); by default the bundle's ``models/<name>.pt`` when it exists (TorchScript and
ONNX are written again from it), else the default training run's ``outputs/checkpoints/checkpoint_latest.pt``.
Writes ``models/<name>.pt`` + ``.json`` (refusing to replace an existing one without ``--overwrite``), ``.ts``,
``.onnx`` and ``<name>_export.json``; see ``bundles/export.py``. The name defaults to ``model``
(``baseline_model`` for the radiogenomic MC-GAN baseline). MONAI's own command then works from the bundle:

    python -m monai.bundle ckpt_export network_def --filepath model.ts --ckpt_file radiogan_bundle/models/model.pt \\
        --meta_file radiogan_bundle/configs/metadata.json --config_file radiogan_bundle/configs/inference.json
"""

import argparse
from pathlib import Path

from bundles.errors import BundleInputError, run_tool
from bundles.export import export_model

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    """The tool's command line (``argv`` without the program name; default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="bundle folder, e.g. radiogan_bundle")
    parser.add_argument("--ckpt", default=None, help="source checkpoint (see above)")
    parser.add_argument("--name", default=None, help="model name in models/ (default: model / baseline_model)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing models/<name>.pt")
    parser.add_argument("--no-onnx", action="store_true", help="TorchScript only")
    args = parser.parse_args(argv)
    bundle = Path(args.bundle)
    if not bundle.is_dir():
        bundle = REPO / args.bundle
    if not (bundle / "configs" / "inference.json").is_file():
        raise BundleInputError("not a bundle folder (no configs/inference.json)", path=bundle, field="--bundle",
                               hint="pass radiogenomic_bundle, radiogan_bundle or ctstyle_bundle")
    source = args.ckpt
    if source is None:
        exported = bundle / "models" / f"{args.name or 'model'}.pt"
        source = exported if exported.is_file() else bundle / "outputs" / "checkpoints" / "checkpoint_latest.pt"
    report = export_model(bundle, source, name=args.name, overwrite=args.overwrite, onnx=not args.no_onnx)
    print(f"model:       {report.model} (sha256 {report.sha256[:16]})")
    print(f"TorchScript: {report.torchscript} (max |ts - eager| = {report.torchscript_max_abs_diff:.2e})")
    if report.onnx:
        print(f"ONNX:        {report.onnx} (max |onnx - eager| = {report.onnx_max_abs_diff:.2e})")


if __name__ == "__main__":
    run_tool(main)
