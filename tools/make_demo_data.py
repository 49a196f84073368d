"""Write a bundle's demo cohort in its real file formats (deterministic for a seed), outside the demo path.

    python tools/make_demo_data.py --bundle radiogenomic_bundle --out DIR [--seed S] [--set KEY=VALUE ...]

Calls ``scripts.demo_cohort.write_demo_cohort(DIR, seed=S, KEY=VALUE, ...)`` of the bundle folder (the bundle's
``preparation`` calls the same function on the demo path); each bundle's ``docs/demo_cohort.md`` lists its settings,
e.g. ``--set subjects=142 --set gene_model=hard`` for the radiogenomic cohort whose raw genes do not separate
the phenotypes. Values are read as JSON where they parse as JSON (``subjects=20``, ``shape=[12,8,40]``), else as
text. DIR must be absent or empty.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

from gan_core.bundle import activate
from gan_core.errors import BundleInputError, run_tool


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_settings(pairs: list[str]) -> dict:
    """``["subjects=4", "gene_model=hard"]`` -> ``{"subjects": 4, "gene_model": "hard"}``."""
    settings = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.isidentifier():
            raise BundleInputError(f"not KEY=VALUE: {pair!r}", field="--set", hint="pass --set subjects=20, for example")
        settings[key] = _value(value)
    return settings


def write_cohort(bundle: Path, out: Path, seed: int, settings: dict) -> Path:
    """Write ``bundle``'s demo cohort into ``out``."""
    scripts = activate(bundle)
    try:
        from scripts.demo_cohort import write_demo_cohort
    except ImportError as err:
        raise BundleInputError("the bundle has no scripts/demo_cohort.py with write_demo_cohort", path=bundle,
                               field="--bundle", hint="pass a bundle folder that writes a demo cohort") from err
    accepted = set(inspect.signature(write_demo_cohort).parameters) - {"out_dir", "seed"}
    unknown = sorted(set(settings) - accepted)
    if unknown:
        raise BundleInputError(f"{scripts.__name__}.demo_cohort takes no setting {unknown[0]!r}", field="--set",
                               hint=f"settings of this cohort: {', '.join(sorted(accepted))}")
    return write_demo_cohort(out, seed=seed, **settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, type=Path, help="bundle folder, e.g. radiogan_bundle")
    parser.add_argument("--out", required=True, type=Path, help="output folder (absent or empty)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting of the cohort")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = write_cohort(args.bundle, args.out, args.seed, parse_settings(args.set))
    print(f"{args.bundle.name}: {path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
