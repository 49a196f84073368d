"""`make demo`: train, evaluate and export every bundle briefly on its built-in demo cohort.

Runs the same commands the README documents, one bundle after another, and ends with a summary of
where each result is. A bundle's demo cohort and prepared dataset are created on first use.

    python tools/demo.py [--bundles radiogenomic radiogan ctstyle] [--epochs N]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ("radiogenomic", "radiogan", "ctstyle")


def run(command: list[str]) -> None:
    print(f"\n$ {shlex.join(command)}", flush=True)
    subprocess.run(command, cwd=REPO, check=True)


def bundle_commands(name: str, epochs: int | None) -> list[list[str]]:
    configs = REPO / f"{name}_bundle" / "configs"
    train = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(configs / "train.json")]
    if epochs is not None:
        train += ["--train#trainer#max_epochs", str(epochs)]
    commands = [train]
    if name == "radiogenomic":  # the paper's MC-GAN baseline, for Table 1 and Fig. 4 of the evaluation
        baseline_dir = str(REPO / f"{name}_bundle" / "outputs" / "baseline")
        commands.append(train + ["--model_type", "baseline", "--output_dir", baseline_dir])
    for run_id, config in (("inference", "inference.json"), ("evaluation", "evaluate.json")):
        if (configs / config).exists():
            commands.append(
                [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", str(configs / config)]
            )
    commands.append([sys.executable, str(REPO / "tools" / "export.py"), "--bundle", f"{name}_bundle"])
    return commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="+", choices=BUNDLES, default=list(BUNDLES))
    parser.add_argument("--epochs", type=int, default=None, help="override each demo config's epoch count")
    args = parser.parse_args()
    summary = []
    for name in args.bundles:
        start = time.time()
        for command in bundle_commands(name, args.epochs):
            run(command)
        summary.append((name, time.time() - start))
    print("\nDemo finished. Results:")
    for name, seconds in summary:
        out = REPO / f"{name}_bundle" / "outputs"
        print(f"  {name:13s} {seconds / 60:5.1f} min   {out}/")
        for sub in ("checkpoints", "samples", "inference", "evaluation", "export"):
            if (out / sub).exists():
                print(f"      {sub + '/':13s} {len(list((out / sub).iterdir()))} files")


if __name__ == "__main__":
    main()
