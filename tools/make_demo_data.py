"""Write the demo cohorts in real file formats (deterministic for a seed).

    python tools/make_demo_data.py --cohort {nsclc,pet,ctseg,all} --out DIR [--subjects N] [--seed S] [--genes G]
        [--gene-model {default,hard}]

One cohort is written into DIR itself; ``all`` writes DIR/nsclc, DIR/pet and DIR/ctseg. ``--gene-model hard``
(nsclc only) writes the radiogenomic cohort whose raw genes do not separate the phenotypes (142 patients by
default, 131 of them with genes; bundles/phantoms/README.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bundles.errors import run_tool


def write_cohort(cohort: str, out: Path, subjects: int | None, seed: int, genes: int,
                 gene_model: str = "default") -> Path:
    """Write one cohort; ``subjects=None`` keeps that cohort's default (for nsclc: its gene model's)."""
    extra = {} if subjects is None else {"subjects": subjects}
    if cohort == "nsclc":
        from bundles.phantoms.nsclc import write_nsclc_cohort

        return write_nsclc_cohort(out, seed=seed, n_genes=genes, gene_model=gene_model, **extra)
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
    parser.add_argument("--gene-model", choices=["default", "hard"], default="default",
                        help="nsclc gene model: 'hard' = raw genes do not separate the phenotypes (default subjects 142)")
    args = parser.parse_args(argv)
    if args.gene_model != "default" and args.cohort not in ("nsclc", "all"):
        parser.error("--gene-model applies to the nsclc cohort only")

    cohorts = ["nsclc", "pet", "ctseg"] if args.cohort == "all" else [args.cohort]
    start = time.perf_counter()
    for cohort in cohorts:
        out = args.out / cohort if args.cohort == "all" else args.out
        t0 = time.perf_counter()
        path = write_cohort(cohort, out, args.subjects, args.seed, args.genes, args.gene_model)
        print(f"{cohort}: {path} ({time.perf_counter() - t0:.1f} s)")
    print(f"total: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
