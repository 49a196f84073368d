"""Write the patients of a demo cohort in worker processes (each patient has its own random generator, so the
output does not depend on the number of workers)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from tqdm import tqdm


def default_workers() -> int:
    """Up to 4 worker processes, never more than the CPUs this process may use."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def map_patients(fn: Callable, calls: Sequence[tuple], workers: int | None, desc: str) -> list:
    """``[fn(*args) for args in calls]`` with a tqdm bar, in ``workers`` forked processes (1: in this process)."""
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(calls) < 2:
        return [fn(*args) for args in tqdm(calls, desc=desc, unit="patient")]
    # fork: the workers inherit the imported modules instead of importing them again (seconds each).
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(fn, *args) for args in calls]
        with tqdm(total=len(futures), desc=desc, unit="patient") as bar:
            for future in futures:
                future.result()
                bar.update()
        return [future.result() for future in futures]
