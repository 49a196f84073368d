"""Export a bundle's trained generator to TorchScript and ONNX, checked against the eager network.

    python tools/export.py --bundle radiogan_bundle [--ckpt PATH] [--out DIR] [--no-onnx]

Writes ``<output_dir>/export/generator.ts`` (MONAI ``ckpt_export``, config and metadata embedded),
``generator.onnx`` and ``export_report.json`` with the largest absolute difference from eager outputs
(TorchScript checked in a process that does not import ``bundles``, to 1e-5; ONNX with onnxruntime,
to 1e-4). Equivalent TorchScript-only command with MONAI's CLI:

    python -m monai.bundle ckpt_export network_def --filepath generator.ts \\
        --ckpt_file radiogan_bundle/outputs/checkpoints/checkpoint_latest.pt --key_in_ckpt generator \\
        --config_file radiogan_bundle/configs/inference.json --meta_file radiogan_bundle/configs/metadata.json
"""

import argparse
from pathlib import Path

from bundles.export import export_generator

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="bundle folder, e.g. radiogan_bundle")
    parser.add_argument("--ckpt", default=None, help="checkpoint (default: the config's ckpt_path)")
    parser.add_argument("--out", default=None, help="output folder (default: <output_dir>/export)")
    parser.add_argument("--no-onnx", action="store_true", help="TorchScript only")
    args = parser.parse_args()
    bundle = Path(args.bundle)
    if not bundle.is_dir():
        bundle = REPO / args.bundle
    report = export_generator(bundle, args.ckpt, args.out, onnx=not args.no_onnx)
    print(f"TorchScript: {report.torchscript} (max |ts - eager| = {report.torchscript_max_abs_diff:.2e})")
    if report.onnx:
        print(f"ONNX:        {report.onnx} (max |onnx - eager| = {report.onnx_max_abs_diff:.2e})")


if __name__ == "__main__":
    main()
