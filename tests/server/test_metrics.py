"""Per-task metric labels stay bounded however many tasks there are."""

from __future__ import annotations

import re

from server.metrics import LABEL_AFTER, Metrics


def test_only_busy_tasks_get_labels_and_the_rest_count_as_other():
    metrics = Metrics(busiest_tasks=3)
    for i in range(10_000):  # one-off tasks never earn a label
        metrics.transcription_done(f"rare-{i}", 0.1, 1.0, 0.01)
    for task in ("hot-a", "hot-b", "hot-c", "hot-d"):
        for _ in range(LABEL_AFTER + 2):
            metrics.transcription_done(task, 0.1, 1.0, 0.01)
    text = metrics.render().decode()
    labels = set(re.findall(r'hra_task_requests_total\{task="([^"]+)"\}', text))
    assert labels == {"other", "hot-a", "hot-b", "hot-c"}
    other = float(re.search(r'hra_task_requests_total\{task="other"\} (\S+)', text).group(1))
    assert other == 10_000 + LABEL_AFTER + 2 + 3 * (LABEL_AFTER - 1)


def test_batch_observations_feed_the_batch_histograms():
    metrics = Metrics()
    metrics.batch_done(
        size=12, distinct_tasks=7, compute_s=0.05, forward_passes=1, isolated_failures=0
    )
    text = metrics.render().decode()
    assert "hra_forward_passes_total 1.0" in text
    assert "hra_batch_size_sum 12.0" in text and "hra_batch_distinct_tasks_sum 7.0" in text
