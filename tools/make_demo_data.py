"""Write the demo cohorts in real file formats (deterministic for a seed).

    python tools/make_demo_data.py --cohort {nsclc,pet,ctseg,all} --out DIR [--subjects N] [--seed S] [--genes G]

One cohort is written into DIR itself; ``all`` writes DIR/nsclc, DIR/pet and DIR/ctseg.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bundles.errors import BundleInputError


def write_cohort(cohort: str, out: Path, subjects: int | None, seed: int, genes: int) -> Path:
    """Write one cohort; ``subjects=None`` keeps that cohort's default."""
    extra = {} if subjects is None else {"subjects": subjects}
    if cohort == "nsclc":
        from bundles.phantoms.nsclc import write_nsclc_cohort

        return write_nsclc_cohort(out, seed=seed, n_genes=genes, **extra)
    if cohort == "ctseg":
        from bundles.phantoms.ctseg import write_ctseg_cohort

        return write_ctseg_cohort(out, seed=seed, **extra)
    from bundles.phantoms.pet import write_pet_cohort  # imported here: the PET phantom is a separate module

    return write_pet_cohort(out, seed=seed, **extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", required=True, choices=["nsclc", "pet", "ctseg", "all"])
    parser.add_argument("--out", required=True, type=Path, help="output folder (absent or empty)")
    parser.add_argument("--subjects", type=int, default=None, help="patients per cohort (default: each cohort's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--genes", type=int, default=5172, help="usable genes in the nsclc gene table")
    args = parser.parse_args(argv)

    cohorts = ["nsclc", "pet", "ctseg"] if args.cohort == "all" else [args.cohort]
    start = time.perf_counter()
    try:
        for cohort in cohorts:
            out = args.out / cohort if args.cohort == "all" else args.out
            t0 = time.perf_counter()
            path = write_cohort(cohort, out, args.subjects, args.seed, args.genes)
            print(f"{cohort}: {path} ({time.perf_counter() - t0:.1f} s)")
    except BundleInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"total: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
