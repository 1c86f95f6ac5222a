"""The side-by-side timing method: interleaving, paired ratios, bounded repeats."""

from __future__ import annotations

import time

import torch

from load_tests.bench_stats import interleaved, paired_ratio, pin_threads


def test_every_repeat_runs_each_variant_once_in_a_rotated_order():
    calls: list[str] = []
    variants = {n: (lambda n=n: calls.append(n)) for n in ("a", "b", "c")}
    timings = interleaved(variants, "a", min_repeats=4, max_repeats=4, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # warm-up, one each
    repeats = [calls[3 + 3 * i : 6 + 3 * i] for i in range(4)]
    assert all(sorted(r) == ["a", "b", "c"] for r in repeats)
    assert repeats[0] == ["a", "b", "c"] and repeats[1] == ["a", "c", "b"]  # shifted, reversed
    assert repeats[2] == ["c", "a", "b"]
    assert len({r[0] for r in repeats}) > 1  # no variant always pays for going first
    assert all(t.repeats == 4 for t in timings.values())


def test_ratios_are_paired_per_repeat_and_slower_variants_score_below_one():
    variants = {"fast": lambda: time.sleep(0.005), "slow": lambda: time.sleep(0.03)}
    timings = interleaved(variants, "fast", min_repeats=3, max_repeats=5)
    slow = timings["slow"]
    assert timings["fast"].ratio_median == 1.0
    assert slow.ratio_min <= slow.ratio_median <= slow.ratio_max < 1.0
    assert 0.05 < slow.ratio_median < 0.5
    low, mid, high = paired_ratio(timings["fast"], slow)  # fast vs slow: > 1
    assert 1.0 < low <= mid <= high


def test_repeats_stop_early_once_the_median_is_stable_but_never_past_the_bound():
    stable = interleaved({"a": lambda: None, "b": lambda: None}, "a", 2, 50, tolerance=10.0)
    assert stable["b"].repeats == 2 and stable["b"].stable
    bounded = interleaved({"a": lambda: None, "b": lambda: None}, "a", 3, 3, tolerance=0.0)
    assert bounded["b"].repeats == 3 and not bounded["b"].stable


def test_pin_threads_fixes_torch_intra_op_threads():
    before = torch.get_num_threads()
    try:
        assert pin_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
