"""Side-by-side timing you can trust on a noisy machine: interleaved, paired, bounded.

What made the old numbers wander (four `make bench-quick` runs in one hour:
fused/backbone 0.88-0.98x, PEFT once "faster" than backbone-only):
    * each variant's median was taken alone, then medians divided: a slow moment
      that hit backbone's repeats but not PEFT's made PEFT "faster";
    * the variant order was fixed, so whatever ran right after a warm-up or a
      neighbour's burst always paid for it;
    * torch picked its thread count from the machine, so another box (more cores)
      ran another experiment.
Here: threads are pinned (`pin_threads`), every variant is warmed up on the exact
shape, each repeat runs every variant once in an order rotated (and reversed on odd
repeats) per repeat, each repeat yields its own ratio t_baseline / t_variant (paired:
same moment of the machine), and repeats continue until each ratio's median moves
less than `tolerance` between the first and second half of the repeats (bounded by
`max_repeats`). Reported: min / median / max of the per-repeat ratios.

Clocks: "wall" (perf_counter) is what a user waits; "cpu" (process CPU time, all
threads) is the work done, and with one thread it barely moves when neighbours
take the cores: on a shared, oversubscribed machine (load 10+ on 2 cores) wall
ratios of one run spanned 0.57-1.56x, so there use --threads 1 --clock cpu. With
several threads "cpu" also counts OpenMP spin-waiting: use it with one thread.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def pin_threads(threads: int) -> int:
    """Fix intra-op threads (torch + OpenMP/MKL env for children) and one inter-op thread."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
    return torch.get_num_threads()


@dataclass
class Timing:
    variant: str
    seconds_median: float  # one call, median over repeats
    ratio_min: float  # t_baseline / t_variant within one repeat; > 1 is faster
    ratio_median: float
    ratio_max: float
    repeats: int
    stable: bool  # median moved < tolerance between the halves
    times: list[float]  # seconds of one call, per repeat (for other paired ratios)

    def as_dict(self) -> dict:
        out = {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}
        out["times"] = [round(t, 5) for t in self.times]
        return out


def paired_ratio(num: Timing, den: Timing) -> tuple[float, float, float]:
    """min / median / max over repeats of den.times[i] / num.times[i] (> 1: num is faster)."""
    ratios = [d / n for n, d in zip(num.times, den.times)]
    return min(ratios), statistics.median(ratios), max(ratios)


def _median_moved(ratios: list[float]) -> float:
    """Relative change of the median between the first and second half (inf below 2)."""
    if len(ratios) < 2:
        return float("inf")
    half = len(ratios) // 2
    first, second = statistics.median(ratios[:half]), statistics.median(ratios[half:])
    return abs(first - second) / max(statistics.median(ratios), 1e-12)


def interleaved(
    variants: Mapping[str, Callable[[], object]],
    baseline: str,
    min_repeats: int = 4,
    max_repeats: int = 12,
    tolerance: float = 0.02,
    warmup: int = 1,
    clock: str = "wall",
) -> dict[str, Timing]:
    """Time each callable side by side; ratios are t[baseline] / t[variant] per repeat."""
    now = CLOCKS[clock]
    names = list(variants)
    for name in names:  # warm every shape: allocator, oneDNN primitives, lazy inits
        for _ in range(warmup):
            variants[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for repeat in range(max_repeats):
        shift = repeat % len(names)
        order = names[shift:] + names[:shift]
        if repeat % 2:
            order.reverse()
        this: dict[str, float] = {}
        for name in order:
            began = now()
            variants[name]()
            this[name] = now() - began
        for name in names:
            times[name].append(this[name])
            ratios[name].append(this[baseline] / this[name])
        done = repeat + 1
        if done >= min_repeats and all(_median_moved(r) < tolerance for r in ratios.values()):
            break
    return {
        n: Timing(
            n,
            statistics.median(times[n]),
            min(ratios[n]),
            statistics.median(ratios[n]),
            max(ratios[n]),
            len(times[n]),
            _median_moved(ratios[n]) < tolerance,
            times[n],
        )
        for n in names
    }
