"""How many live streams may be open, and what they report (on the runtime's metrics registry).

A tenant holds at most `max_streams_per_tenant` streams, everyone together at most
`max_streams`; admin and open-access callers count only toward the total. A stream's
lease is released exactly once, when its socket closes or drops, whatever the reason.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from server.auth import Principal
from server.config import StreamingSettings
from server.errors import TooManyStreams
from server.observability.metrics import LATENCY_BUCKETS

logger = logging.getLogger(__name__)


class StreamHub:
    def __init__(self, settings: StreamingSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.total = 0
        self.per_tenant: dict[str, int] = {}
        self.open_gauge = Gauge("hra_live_streams", "Live streams open", registry=registry)
        self.events = Counter(
            "hra_stream_events_total",
            "Live-stream events sent, by type (partial, final, error)",
            ["kind"],
            registry=registry,
        )
        self.decoded_audio = Counter(
            "hra_stream_decoded_audio_seconds_total",
            "Live-stream audio sent to the engine, by pass (partial, final): a stream's engine "
            "work per second of its audio is this over the audio streamed",
            ["kind"],
            registry=registry,
        )
        self.partial_latency = Histogram(
            "hra_stream_partial_seconds",
            "Live-stream partial: submit to hypothesis",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def open(self, caller: Principal) -> Lease:
        s = self.settings
        if self.total >= s.max_streams:
            raise TooManyStreams(f"the server holds {self.total} live streams, its limit")
        tenant = caller.acting_tenant
        if tenant is not None and self.per_tenant.get(tenant, 0) >= s.max_streams_per_tenant:
            raise TooManyStreams(
                f"this tenant holds {s.max_streams_per_tenant} live streams, its limit"
            )
        self.total += 1
        if tenant is not None:
            self.per_tenant[tenant] = self.per_tenant.get(tenant, 0) + 1
        self.open_gauge.set(self.total)
        return Lease(self, tenant)

    def _release(self, tenant: str | None) -> None:
        self.total -= 1
        if tenant is not None:
            left = self.per_tenant[tenant] - 1
            if left:
                self.per_tenant[tenant] = left
            else:
                del self.per_tenant[tenant]
        self.open_gauge.set(self.total)


class Lease:
    def __init__(self, hub: StreamHub, tenant: str | None) -> None:
        self._hub, self._tenant, self._held = hub, tenant, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._hub._release(self._tenant)
