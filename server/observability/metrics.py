"""Prometheus metrics, on a registry per app so test apps never collide.

Per-task series exist only for the tasks busiest *now* (top N by a decaying
request count, server/observability/busiest_tasks.py); every other task is counted under
task="other", and a task that drops out of the top N has its series removed,
so label cardinality stays bounded however many tenants register heads.

Who may read them: task ids are tenant data, so /metrics is not public when
API keys are configured. It answers only an admin key or the dedicated
metrics key (HRA_HTTP__METRICS_KEY, which Prometheus sends as a bearer token
and which opens nothing else); in open-access mode (local use, everyone is
admin anyway) it stays open. We chose this over hashed or per-tenant labels:
a hash of a guessable id still reveals it (hash "acme-support" and compare),
per-tenant label sets multiply cardinality by tenants, and operators need the
real ids to act on a busy or failing task. Enforced by server/api/auth_gate.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

from server.observability.busiest_tasks import BusiestTasks

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OTHER = "other"
LOAD_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class Metrics:
    def __init__(self, busiest_tasks: int = 20, tracker: BusiestTasks | None = None) -> None:
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
        self.busiest = tracker if tracker is not None else BusiestTasks(busiest_tasks)
        self.busiest.on_unlabel = self._forget_task
        self._label_lock = threading.RLock()  # label choice + series update: one step

    def task_label(self, task_id: str) -> str:
        """The task's own label while it is among the busiest now, else "other"."""
        if task_id == OTHER:  # a task named "other" is counted with the others
            return OTHER
        return self.busiest.observe(task_id) or OTHER

    def _forget_task(self, task_id: str) -> None:
        """A task left the busiest: drop its series (its future requests count as other)."""
        for metric in (self.task_requests, self.task_latency):
            try:
                metric.remove(task_id)
            except KeyError:
                pass  # labelled but never observed under its own label

    def transcription_done(self, task_id: str, seconds: float, audio_s: float, queue_s: float):
        with self._label_lock:  # a series removed between choosing and using it would linger
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

    def watch_engine_shares(self, used: Callable[[], dict[str, float]], top: int = 20) -> None:
        """hra_tenant_engine_seconds_total{tenant}: engine time charged to each of the `top`
        heaviest tenants (the rest as "other", admin and open-access work as "admin"),
        read from the fair-share accounts at scrape time (server/serving/fair_share.py)."""
        self.registry.register(_EngineShares(used, top))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _EngineShares:
    def __init__(self, used: Callable[[], dict[str, float]], top: int) -> None:
        self.used, self.top = used, top

    def collect(self):
        family = CounterMetricFamily(
            "hra_tenant_engine_seconds",
            "Engine time charged to each tenant (heaviest; rest as other)",
            labels=["tenant"],
        )
        ranked = sorted(dict(self.used()).items(), key=lambda kv: -kv[1])
        for tenant, seconds in ranked[: self.top]:
            family.add_metric([tenant or "admin"], seconds)
        rest = sum(seconds for _, seconds in ranked[self.top :])
        family.add_metric([OTHER], rest)
        yield family
