import itertools
import random

from server.models.length_buckets import NEVER_SPLIT, plan_buckets


def _cost(lengths, buckets, overhead):
    return sum(overhead + len(b) * max(lengths[i] for i in b) for b in buckets)


def test_every_utterance_lands_in_exactly_one_bucket_sorted_by_length():
    lengths = [random.Random(seed).randint(50, 300) for seed in range(32)]
    buckets = plan_buckets(lengths, overhead_frames=500)
    flat = [i for b in buckets for i in b]
    assert sorted(flat) == list(range(32))
    assert [lengths[i] for i in flat] == sorted(lengths)


def test_equal_lengths_run_as_one_pass():
    assert plan_buckets([200] * 32, overhead_frames=1) == [list(range(32))]


def test_a_huge_overhead_never_splits_and_zero_overhead_splits_by_length():
    lengths = [100, 300, 100, 300]
    assert len(plan_buckets(lengths, overhead_frames=NEVER_SPLIT)) == 1
    assert plan_buckets(lengths, overhead_frames=0) == [[0, 2], [1, 3]]


def test_one_to_three_second_mix_splits_into_a_few_buckets_at_the_cpu_overhead():
    rng = random.Random(0)
    lengths = [rng.randint(100, 300) for _ in range(32)]  # 1-3 s in 10 ms frames
    buckets = plan_buckets(lengths, overhead_frames=500)
    assert 2 <= len(buckets) <= 4
    assert _cost(lengths, buckets, 500) < _cost(lengths, [list(range(32))], 500)


def test_the_plan_is_optimal_against_every_contiguous_split():
    rng = random.Random(1)
    for _ in range(20):
        lengths = [rng.randint(10, 400) for _ in range(8)]
        overhead = rng.choice([0, 50, 300, 2000])
        order = sorted(range(8), key=lambda i: lengths[i])
        best = min(
            _cost(lengths, [order[a:b] for a, b in zip((0, *cuts), (*cuts, 8))], overhead)
            for k in range(8)
            for cuts in itertools.combinations(range(1, 8), k)
        )
        assert _cost(lengths, plan_buckets(lengths, overhead), overhead) == best


def test_an_empty_batch_has_no_buckets():
    assert plan_buckets([], overhead_frames=500) == []
