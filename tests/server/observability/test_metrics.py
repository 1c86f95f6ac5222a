"""Per-task metric labels: the busiest tasks now, at most N, bounded memory."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from server.observability.busiest_tasks import HALF_LIFE_S, BusiestTasks
from server.observability.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _labels(metrics: Metrics) -> set[str]:
    text = metrics.render().decode()
    return set(re.findall(r'hra_task_requests_total\{task="([^"]+)"\}', text))


def _count(metrics: Metrics, task: str) -> float:
    text = metrics.render().decode()
    match = re.search(rf'hra_task_requests_total\{{task="{task}"\}} (\S+)', text)
    return float(match.group(1)) if match else 0.0


def _metrics(slots: int, clock: Clock, capacity: int | None = None) -> Metrics:
    return Metrics(slots, tracker=BusiestTasks(slots, capacity=capacity, clock=clock))


def test_labels_move_to_the_tasks_busy_now_and_series_of_tasks_that_dropped_out_are_removed():
    clock = Clock()
    metrics = _metrics(2, clock)
    for task in ("early-a", "early-b"):  # busy first, then silent
        for _ in range(50):
            metrics.transcription_done(task, 0.1, 1.0, 0.01)
            clock.now += 0.1
    assert _labels(metrics) == {"early-a", "early-b"}
    clock.now += 4 * HALF_LIFE_S  # an hour later other tasks are the busy ones
    for _ in range(30):
        for task in ("late-c", "late-d"):
            metrics.transcription_done(task, 0.1, 1.0, 0.01)
            clock.now += 0.5
    labels = _labels(metrics)
    assert labels == {"late-c", "late-d", "other"}, labels
    text = metrics.render().decode()
    assert "early-a" not in text and "early-b" not in text  # removed, latency series too
    assert _count(metrics, "late-c") > 20  # counted under its own label since it won one


def test_at_most_n_task_labels_exist_and_every_other_task_counts_as_other():
    clock = Clock()
    metrics = _metrics(3, clock)
    total = 0
    for i in range(2_000):
        metrics.transcription_done(f"rare-{i}", 0.1, 1.0, 0.01)
        total += 1
        clock.now += 0.01
    for _ in range(20):
        for task in ("hot-a", "hot-b", "hot-c", "hot-d"):
            metrics.transcription_done(task, 0.1, 1.0, 0.01)
            total += 1
            clock.now += 0.01
    labels = _labels(metrics)
    assert len(labels - {"other"}) <= 3 and labels - {"other"} <= {
        "hot-a",
        "hot-b",
        "hot-c",
        "hot-d",
    }
    # Only the few rare tasks that held a label while labels were free left with their series.
    assert total - 3 <= sum(_count(metrics, label) for label in labels) <= total
    assert _count(metrics, "other") >= 2_000 - 3


def test_a_tenant_cycling_through_many_ids_cannot_grow_the_tally():
    clock = Clock()
    tracker = BusiestTasks(5, clock=clock)
    for i in range(100_000):
        tracker.observe(f"cycle-{i}")
        if i % 10 == 0:
            tracker.observe("steady")  # a genuinely busy task keeps its label meanwhile
        clock.now += 0.001
    assert len(tracker) <= tracker.capacity == 64
    assert "steady" in tracker.labelled


def test_a_task_named_other_is_counted_with_the_others():
    metrics = _metrics(3, Clock())
    metrics.transcription_done("other", 0.1, 1.0, 0.01)
    assert _labels(metrics) == {"other"}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.floats(0, 2 * HALF_LIFE_S, allow_nan=False)),
        max_size=300,
    ),
    st.integers(0, 6),
)
def test_labels_stay_bounded_and_consistent_over_any_request_sequence(events, slots):
    clock = Clock()
    metrics = _metrics(slots, clock, capacity=slots + 3)
    for task, gap in events:
        clock.now += gap
        metrics.transcription_done(f"t{task}", 0.1, 1.0, 0.01)
        tracker = metrics.busiest
        assert len(tracker) <= tracker.capacity
        assert len(tracker.labelled) <= slots
    exported = _labels(metrics) - {"other"}
    assert exported <= metrics.busiest.labelled  # no series lingers for an unlabelled task
    assert sum(_count(metrics, label) for label in _labels(metrics)) <= len(events)


def test_batch_observations_feed_the_batch_histograms():
    metrics = Metrics()
    metrics.batch_done(
        size=12, distinct_tasks=7, compute_s=0.05, forward_passes=1, isolated_failures=0
    )
    text = metrics.render().decode()
    assert "hra_forward_passes_total 1.0" in text
    assert "hra_batch_size_sum 12.0" in text and "hra_batch_distinct_tasks_sum 7.0" in text


def test_engine_time_per_tenant_is_exported_for_the_heaviest_only_and_the_rest_summed():
    used = {f"t{i}": float(i) for i in range(30)} | {"": 100.0}
    metrics = Metrics()
    metrics.watch_engine_shares(lambda: used, top=3)
    text = metrics.render().decode()
    rows = dict(re.findall(r'hra_tenant_engine_seconds_total\{tenant="([^"]+)"\} (\S+)', text))
    assert rows == {
        "admin": "100.0",
        "t29": "29.0",
        "t28": "28.0",
        "other": str(sum(range(28))) + ".0",
    }
