"""Write a bundle's configs/metadata.json from what is installed and what was measured.

    python tools/update_metadata.py --bundle radiogan_bundle [--metrics PATH] [--note TEXT]

Always: ``monai_version``, ``pytorch_version``, ``numpy_version`` and ``required_packages_version`` from the
installed packages (derived from the modules the bundle's configs use; see ``bundles/metadata.py``). With
``--metrics`` (an evaluation's ``metrics.json``, e.g. ``<bundle>/outputs/evaluation/metrics.json`` after
``make demo``): ``eval_metrics`` = the value of every shared metric ``evaluate.json`` lists, plus the headline
numbers its ``eval_metrics`` entry names, and ``--note`` saying what was evaluated.
"""

import argparse
import json
from pathlib import Path

from bundles.errors import BundleInputError, run_tool
from bundles.metadata import update_metadata

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="bundle folder, e.g. radiogan_bundle")
    parser.add_argument("--metrics", default=None, help="an evaluation's metrics.json (omit: versions only)")
    parser.add_argument("--note", default="", help="what the numbers were measured on (cohort, config, seeds)")
    args = parser.parse_args()
    bundle = Path(args.bundle)
    if not bundle.is_dir():
        bundle = REPO / args.bundle
    if not (bundle / "configs" / "metadata.json").is_file():
        raise BundleInputError("not a bundle folder (no configs/metadata.json)", path=bundle, field="--bundle",
                               hint="pass radiogenomic_bundle, radiogan_bundle or ctstyle_bundle")
    if args.metrics is not None and not args.note:
        raise BundleInputError("eval_metrics need a note saying what was measured", field="--note",
                               hint='pass e.g. --note "demo cohort, demo config, seed 0"')
    meta = update_metadata(bundle, args.metrics, args.note)
    print(json.dumps({k: meta[k] for k in ("version", "eval_metrics")}, indent=2))


if __name__ == "__main__":
    run_tool(main)
