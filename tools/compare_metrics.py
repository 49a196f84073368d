"""Compare every numeric field of two evaluations' ``metrics.json`` (a refactor must change no number).

    python tools/compare_metrics.py BEFORE/metrics.json AFTER/metrics.json [--tolerance 0]

Walks both files (dicts by key, lists by index), prints each numeric field that differs by more than
``--tolerance`` or exists in one file only, and a count; exits 1 when any does. Text fields (paths, notes) are not
compared.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from gan_core.errors import BundleInputError, run_tool


def numeric_fields(value, path: str = "") -> dict[str, float]:
    """``{"a.b[0].c": number}`` for every int / float (not bool) below ``value``; NaN stays NaN."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in numeric_fields(item, f"{path}.{key}" if path else key).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in numeric_fields(item, f"{path}[{i}]").items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {path: value}
    return {}


def differences(before: dict, after: dict, tolerance: float = 0.0) -> list[str]:
    """One line per numeric field that differs (both NaN counts as equal) or is in one file only."""
    a, b = numeric_fields(before), numeric_fields(after)
    lines = [f"{key}: only in {'before' if key in a else 'after'}" for key in sorted(set(a) ^ set(b))]
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        same = (math.isnan(x) and math.isnan(y)) if isinstance(x, float) and math.isnan(x) else abs(x - y) <= tolerance
        if not same:
            lines.append(f"{key}: {x!r} -> {y!r}")
    return lines


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BundleInputError(f"cannot read it as JSON ({err})", path=path,
                               hint="pass the metrics.json of an evaluation") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.0, help="largest absolute difference taken as equal")
    args = parser.parse_args(argv)
    before, after = _read(args.before), _read(args.after)
    lines = differences(before, after, args.tolerance)
    print("\n".join(lines))
    print(f"{len(numeric_fields(before))} numeric fields compared, {len(lines)} differ")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
