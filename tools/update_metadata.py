"""Write a bundle's configs/metadata.json from what is installed and what was measured.

    python tools/update_metadata.py --bundle radiogan_bundle [--metrics PATH] [--note TEXT]

Always: ``monai_version``, ``pytorch_version``, ``numpy_version`` and ``required_packages_version``: the installed
version of the core (``gan_core``, the wheel the bundle runs on) and of every third-party package the bundle's
configs and ``scripts/`` import, directly or through the core (``tools/bundle_imports.py``), so the model zoo's
dependency install gets everything the bundle was tested with. With ``--metrics`` (an evaluation's
``metrics.json``, e.g. ``<bundle>/outputs/evaluation/metrics.json`` after ``make demo``): ``eval_metrics`` = the
value of every shared metric ``evaluate.json`` lists, plus the headline numbers its ``eval_metrics`` entry names by
their dotted paths in ``metrics.json``, and ``--note`` saying what was evaluated.
"""

from __future__ import annotations

import argparse
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from bundle_imports import CORE, bundle_imports

from gan_core.errors import BundleInputError, run_tool
from gan_core.fileio import atomic_write_text

OWN_FIELDS = {"monai": "monai_version", "torch": "pytorch_version", "numpy": "numpy_version"}


def required_packages(bundle_dir: str | Path) -> dict[str, str]:
    """``{distribution: installed version}`` for ``required_packages_version``."""
    distributions = metadata.packages_distributions()
    required = {CORE: metadata.version(CORE)}
    for module in bundle_imports(bundle_dir).third_party:
        if module in OWN_FIELDS:
            continue
        dists = distributions.get(module, [])
        for dist in [module] if module in dists else dists:  # mlflow, not also mlflow-skinny / -tracing
            required[dist] = metadata.version(dist)
    return dict(sorted(required.items()))


def _release(version: str) -> str:
    return version.split("+")[0]


def _lookup(results: dict, dotted: str, source: Path):
    value: Any = results
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise BundleInputError(f"no entry {dotted!r} (missing {part!r})", path=source,
                                   hint="run the bundle's evaluation with the current code, or fix eval_metrics in "
                                        "configs/evaluate.json")
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BundleInputError(f"entry {dotted!r} is {value!r}, not a number", path=source,
                               hint="point eval_metrics in configs/evaluate.json at a numeric entry")
    return value


def measured_eval_metrics(bundle_dir: str | Path, metrics_file: str | Path) -> dict[str, float]:
    """``eval_metrics`` from an evaluation's ``metrics.json``: every listed shared metric's value (those the
    evaluation could not compute, null in the file, are left out) and the headline numbers named in
    ``evaluate.json``'s ``eval_metrics`` (``{name: dotted path}``), rounded to 4 significant digits."""
    evaluate = json.loads((Path(bundle_dir) / "configs" / "evaluate.json").read_text())
    source = Path(metrics_file)
    try:
        results = json.loads(source.read_text())
    except (OSError, ValueError) as err:
        raise BundleInputError(f"cannot read the evaluation's metrics ({err})", path=source,
                               hint="run the bundle's evaluation first (make demo runs it)") from None
    measured = {name: _lookup(results, path, source) for name, path in evaluate.get("eval_metrics", {}).items()}
    for name in evaluate.get("metrics", []):
        value = results.get("metrics", {}).get(name, {}).get("value")
        if value is not None:
            measured[name] = value
    return {name: float(f"{value:.4g}") for name, value in measured.items()}


def update_metadata(bundle_dir: str | Path, metrics_file: str | Path | None = None, note: str = "") -> dict:
    """Write the installed versions, and when ``metrics_file`` is given the measured ``eval_metrics`` (with
    ``note`` saying where they come from), into the bundle's metadata.json; returns the new metadata."""
    path = Path(bundle_dir) / "configs" / "metadata.json"
    meta = json.loads(path.read_text())
    for module, key in OWN_FIELDS.items():
        meta[key] = _release(metadata.version(module))
    meta["required_packages_version"] = required_packages(bundle_dir)
    if metrics_file is not None:
        meta["eval_metrics"] = {**measured_eval_metrics(bundle_dir, metrics_file), "note": note}
    atomic_write_text(json.dumps(meta, indent=4) + "\n", path)
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="bundle folder, e.g. radiogan_bundle")
    parser.add_argument("--metrics", default=None, help="an evaluation's metrics.json (omit: versions only)")
    parser.add_argument("--note", default="", help="what the numbers were measured on (cohort, config, seeds)")
    args = parser.parse_args()
    bundle = Path(args.bundle)
    if not (bundle / "configs" / "metadata.json").is_file():
        raise BundleInputError("not a bundle folder (no configs/metadata.json)", path=bundle, field="--bundle",
                               hint="pass the path of a bundle folder, e.g. radiogan_bundle")
    if args.metrics is not None and not args.note:
        raise BundleInputError("eval_metrics need a note saying what was measured", field="--note",
                               hint='pass e.g. --note "demo cohort, demo config, seed 0"')
    meta = update_metadata(bundle, args.metrics, args.note)
    print(json.dumps({k: meta[k] for k in ("version", "required_packages_version")}, indent=2))


if __name__ == "__main__":
    run_tool(main)
