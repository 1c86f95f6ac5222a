"""Prometheus metrics, on a registry per app so test apps never collide.

Per-task series exist only for the busiest tasks (top N by requests seen);
every other task is counted under task="other", so label cardinality stays
bounded however many tenants register heads.
"""

from __future__ import annotations

import threading
from collections import Counter as TallyCounter

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LABEL_AFTER = 3
LOAD_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class Metrics:
    def __init__(self, busiest_tasks: int = 20) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "hra_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.queue_latency = Histogram(
            "hra_queue_seconds", "Admission to batch start", buckets=LATENCY_BUCKETS, registry=r
        )
        self.compute_latency = Histogram(
            "hra_compute_seconds",
            "Fused forward + decode per batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e_latency = Histogram(
            "hra_request_seconds",
            "End-to-end transcription latency",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "hra_batch_size",
            "Utterances per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.batch_tasks = Histogram(
            "hra_batch_distinct_tasks",
            "Distinct tasks per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.forward_passes = Counter(
            "hra_forward_passes_total", "Fused forward passes run", registry=r
        )
        self.isolated_failures = Counter(
            "hra_isolated_failures_total",
            "Requests that failed alone inside a fused pass that had to be split",
            registry=r,
        )
        self.queue_depth_gauge = Gauge(
            "hra_queue_depth", "Requests admitted, not yet batched", registry=r
        )
        self.cache_events = Counter(
            "hra_head_cache_events_total",
            "Head cache hits, misses and evictions by tier",
            ["tier", "event"],
            registry=r,
        )
        self.head_load = Histogram(
            "hra_head_load_seconds",
            "Head load latency by source",
            ["source"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(
            "hra_audio_seconds_total", "Audio seconds transcribed", registry=r
        )
        self.task_requests = Counter(
            "hra_task_requests_total",
            "Transcriptions per task (busiest tasks; rest as other)",
            ["task"],
            registry=r,
        )
        self.task_latency = Histogram(
            "hra_task_request_seconds",
            "End-to-end latency per task (busiest; rest as other)",
            ["task"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._busiest = busiest_tasks
        self._tally: TallyCounter[str] = TallyCounter()
        self._labelled: set[str] = set()
        self._lock = threading.Lock()

    def task_label(self, task_id: str) -> str:
        """The task's own label once it proves busy, else "other".

        A task earns a label after LABEL_AFTER requests while labels remain, and
        keeps it (a Prometheus series cannot move), so one-off tasks never use
        up labels and at most `busiest_tasks` task labels exist, plus "other".
        """
        with self._lock:
            self._tally[task_id] += 1
            if task_id in self._labelled:
                return task_id
            if self._tally[task_id] >= LABEL_AFTER and len(self._labelled) < self._busiest:
                self._labelled.add(task_id)
                return task_id
            return "other"

    def transcription_done(self, task_id: str, seconds: float, audio_s: float, queue_s: float):
        label = self.task_label(task_id)
        self.task_requests.labels(label).inc()
        self.task_latency.labels(label).observe(seconds)
        self.e2e_latency.observe(seconds)
        self.queue_latency.observe(queue_s)
        self.audio_seconds.inc(audio_s)

    # BatchObserver
    def batch_done(
        self,
        size: int,
        distinct_tasks: int,
        compute_s: float,
        forward_passes: int,
        isolated_failures: int,
    ) -> None:
        self.forward_passes.inc(forward_passes)
        self.isolated_failures.inc(isolated_failures)
        self.batch_size.observe(size)
        self.batch_tasks.observe(distinct_tasks)
        self.compute_latency.observe(compute_s)

    def queue_depth(self, depth: int) -> None:
        self.queue_depth_gauge.set(depth)

    # cache hooks
    def cache_event(self, tier: str, event: str) -> None:
        self.cache_events.labels(tier, event).inc()

    def head_loaded(self, source: str, seconds: float) -> None:
        self.head_load.labels(source).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
