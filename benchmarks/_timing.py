"""Wall-clock timing shared by the benchmarks: the best of repeated calls (the minimum is the run least disturbed
by other processes), alone or interleaved so that load from elsewhere hits every contender alike.

A benchmark runs as ``python benchmarks/<name>.py``, which puts this folder first on ``sys.path``, so it imports
this module as ``from _timing import best_time`` (``gpu_check.py`` and ``rl.py``'s memory child add the folder
themselves). Running this file does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], repeats: int = 3, warmup: bool = False) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` (after one untimed call when ``warmup``)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved_best(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best seconds of each of ``fns`` over ``repeats`` rounds; a round calls every function once, in order."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for label, fn in fns.items():
            best[label] = min(best[label], best_time(fn, 1))
    return best
