"""Training benchmarks per bundle, each a ratio of two measurements taken side by side in one run.

    python tools/bench_training.py [--bundles radiogenomic radiogan ctstyle] [--iterations 20]

For each bundle's demo train.json on its prepared demo dataset (``make demo``, or the ``preparation`` command,
first; overrides with --override key=value):
1. trainer overhead: the project's Ignite trainer (handlers included) vs a bare PyTorch loop calling the
   same networks, losses and batches (target <= 1.05);
2. loader overhead: the trainer fed by its DataLoader vs fed by the same batches already in memory
   (target <= 1.10);
3. efficiency: achieved GFLOP/s of a training step (FLOPs counted by torch's FlopCounterMode) vs a large
   float32 matrix multiply on the same machine;
4. with --amp bfloat16 (or float16): mixed-precision vs float32 throughput of the trainer on the same
   in-memory batches (run it on a GPU with --override device='"cuda:0"').
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch
from ignite.engine import Engine
from torch.utils.flop_counter import FlopCounterMode

from gan_core.bundle import find_bundles, read_configs
from gan_core.engines.gan_trainer import AMP_DTYPES
from gan_core.errors import run_tool

REPO = Path(__file__).resolve().parents[1]


def build_trainer(bundle: str, overrides: dict):
    parser = read_configs(REPO / f"{bundle}_bundle", "train.json")
    for key, value in overrides.items():
        parser[key] = value
    # benchmarks measure the loop, not the side effects of the demo's handlers
    parser["train#handlers"] = []
    return parser.get_parsed_content("train#trainer")


def bare_step(trainer, batchdata) -> None:
    """One D step and one G step through the trainer's hooks, without Ignite."""
    torch.manual_seed(trainer.iteration_seed(0))
    batch = trainer.prepare(batchdata)
    fake = trainer.generate(batch)
    detached = {k: v.detach() for k, v in fake.items()}
    trainer.d_optimizer.zero_grad(set_to_none=True)
    trainer.discriminator_terms(batch, detached)["d_total"].backward()
    trainer.d_optimizer.step()
    trainer.g_optimizer.zero_grad(set_to_none=True)
    trainer.generator_terms(batch, fake)["g_total"].backward()
    trainer.g_optimizer.step()


def run_trainer(trainer, data, iterations: int) -> float:
    """Seconds for ``iterations`` iterations of the Ignite engine over ``data`` (handlers included)."""
    trainer.state.max_epochs = None  # makes Ignite start a fresh run on the new data source
    start = time.perf_counter()
    Engine.run(trainer, data, max_epochs=1, epoch_length=iterations)
    return time.perf_counter() - start


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def bench_bundle(bundle: str, iterations: int, overrides: dict, amp_dtype: str | None = None) -> dict:
    trainer = build_trainer(bundle, overrides)
    loader = trainer.data_loader
    batches = list(itertools.islice(itertools.cycle(list(itertools.islice(iter(loader), iterations))), iterations))

    bare_step(trainer, batches[0])  # warm-up (lazy init, allocator)
    start = time.perf_counter()
    for batch in batches:
        bare_step(trainer, batch)
    bare = time.perf_counter() - start

    memory_fed = run_trainer(trainer, batches, iterations)
    loader_fed = run_trainer(trainer, loader, min(iterations, len(loader)))
    loader_fed *= iterations / min(iterations, len(loader))

    with FlopCounterMode(display=False) as counter:
        bare_step(trainer, batches[0])
    step_gflops = counter.get_total_flops() / 1e9 / (bare / iterations)
    result = {
        "bare_s_per_it": bare / iterations,
        "trainer_overhead": memory_fed / bare,
        "loader_over_memory": loader_fed / memory_fed,
        "step_gflops": step_gflops,
    }
    if amp_dtype is not None:  # a trainer built by the config's own amp switch (GradScaler for float16 on CUDA)
        amp_trainer = build_trainer(bundle, {**overrides, "amp": True, "amp_dtype": amp_dtype})
        run_trainer(amp_trainer, batches[:2], 2)  # warm-up of the autocast kernels
        amp_fed = run_trainer(amp_trainer, batches, iterations)
        result["amp_speedup"] = memory_fed / amp_fed
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="+", default=[b.name.removesuffix("_bundle") for b in find_bundles(REPO)])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--override", nargs="*", default=[], help="config overrides key=value (JSON values)")
    parser.add_argument("--amp", choices=sorted(AMP_DTYPES), default=None,
                        help="also time the trainer under autocast with this dtype (speed-up = float32 time / amp time)")
    args = parser.parse_args()

    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.override)}
    peak = matmul_gflops()
    print(f"float32 matmul 2048^2: {peak:.1f} GFLOP/s on {torch.get_num_threads()} threads")
    amp_header = f" {'amp speed-up':>13s}" if args.amp else ""
    print(f"{'bundle':13s} {'s/it (bare)':>11s} {'trainer/bare':>12s} {'loader/memory':>13s} {'step GFLOP/s':>12s} "
          f"{'step/matmul':>11s}{amp_header}")
    for bundle in args.bundles:
        r = bench_bundle(bundle, args.iterations, overrides, args.amp)
        amp_column = f" {r['amp_speedup']:13.2f}" if args.amp else ""
        print(
            f"{bundle:13s} {r['bare_s_per_it']:11.3f} {r['trainer_overhead']:12.3f} {r['loader_over_memory']:13.3f} "
            f"{r['step_gflops']:12.1f} {r['step_gflops'] / peak:11.2f}{amp_column}"
        )


if __name__ == "__main__":
    run_tool(main)
