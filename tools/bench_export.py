"""TorchScript vs eager inference throughput of each bundle's generator, measured side by side.

    python tools/bench_export.py [--bundles radiogenomic radiogan ctstyle] [--batch 8] [--repeats 20]

Uses the generator of the bundle's exported model (``models/model.pt`` and its record, as inference.json's
``network_def`` builds it; run ``make demo`` or ``tools/export.py`` first) with its initial weights (throughput
does not depend on the trained values) and inputs shaped like ``export_inputs``, repeated to ``--batch``.
Prints images/s for both and their ratio (target: TorchScript / eager >= 1.0).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from gan_core.bundle import find_bundles, read_configs
from gan_core.errors import run_tool

REPO = Path(__file__).resolve().parents[1]


def images_per_second(net, inputs, repeats: int) -> float:
    with torch.inference_mode():
        for _ in range(3):
            net(*inputs)
        start = time.perf_counter()
        for _ in range(repeats):
            net(*inputs)
    return repeats * inputs[0].shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="+", default=[b.name.removesuffix("_bundle") for b in find_bundles(REPO)])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"{'bundle':13s} {'eager img/s':>11s} {'ts img/s':>9s} {'ts/eager':>8s}")
    for bundle in args.bundles:
        config = read_configs(REPO / f"{bundle}_bundle", "inference.json")
        torch.manual_seed(0)
        eager = config.get_parsed_content("network_def").eval()
        example = config.get_parsed_content("export_inputs")
        inputs = tuple(t.repeat(args.batch, *([1] * (t.dim() - 1))) for t in example)
        scripted = torch.jit.freeze(torch.jit.script(eager))
        # interleave the two measurements so machine load affects both alike
        eager_rate = ts_rate = 0.0
        for _ in range(2):
            eager_rate += images_per_second(eager, inputs, args.repeats)
            ts_rate += images_per_second(scripted, inputs, args.repeats)
        print(f"{bundle:13s} {eager_rate / 2:11.1f} {ts_rate / 2:9.1f} {ts_rate / eager_rate:8.2f}")


if __name__ == "__main__":
    run_tool(main)
