"""Split one batch into length buckets when padding costs more than another forward pass.

A batch of 1-3 s clips padded to its longest wastes a third of the backbone's work
on silence. Running the length-sorted batch as a few forwards, each padded only to
its own longest, wins as long as the padding saved outweighs the fixed cost of a
forward pass (Python per layer, smaller matrix products). Each bucket is still one
fused mixed-task forward, and results do not change: padding never leaks.

The cost model is the one measured on the engine (docs/benchmarks.md): a forward
of n utterances padded to T frames costs overhead + n * T frame-slots.
"""

from __future__ import annotations

from collections.abc import Sequence

CPU_FORWARD_OVERHEAD_FRAMES = 500
"""One extra forward costs about as much as 500 padded feature frames (5 s of audio) on
CPU: fitted from equal-length batches of 32 run as 1, 2 and 4 forwards
(load_tests/bench_buckets.py, docs/benchmarks.md)."""

NEVER_SPLIT = 10**9  # an overhead no padding can outweigh: one pass per batch


def plan_buckets(lengths: Sequence[int], overhead_frames: int) -> list[list[int]]:
    """Indices into `lengths`, grouped into the buckets that minimise total cost.

    Optimal for the cost model: sorted by length, the best split is contiguous, so a
    dynamic programme over split points finds it in O(n^2) (n <= max batch size).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sorted_lengths = [lengths[i] for i in order]
    # best[j]: least cost of the j shortest utterances; cut[j]: where their last bucket starts
    best = [0] + [0] * len(order)
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        longest = sorted_lengths[j - 1]
        best[j], cut[j] = min((best[i] + overhead_frames + (j - i) * longest, i) for i in range(j))
    buckets = []
    j = len(order)
    while j > 0:
        buckets.append(order[cut[j] : j])
        j = cut[j]
    return buckets[::-1]
