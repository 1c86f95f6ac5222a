"""Each tenant's share of the engine: virtual-time accounting of the compute it used.

Admission counts requests; this counts what they cost. Every batch's measured engine
time is charged to the tenants whose items were in it, each item by its share of the
batch's work (audio seconds, plus decoder steps where the model reports them), divided
by the tenant's weight. The batcher fills each batch from the tenant with the least
charged time first (the virtual token counter of "Fairness in Serving Large Language
Models", VTC): over any busy period, tenants that all want more get engine time in
proportion to their weights, whatever mix of short clips, long-file windows and live
passes each sends, and those parts still share fused batches.

A tenant that was idle comes back at the current virtual time (the least counter of the
tenants waiting, or of the last one served), not at the counter it left with: idleness
banks no credit, and a heavy tenant's past use is not held against it forever. So an
idle tenant's next request goes ahead of a heavy tenant's backlog, and then takes turns.

Batches are not preemptible: a request waits for the batch on the engine, and for the
rows of its own batch. So tenants whose items cost far more per second of audio than
another's (Whisper rows that loop through every fallback temperature) do not share that
other tenant's batches: `compatible` keeps each tenant's recent cost per audio second and
fuses tenants within a factor of `MIX_FACTOR` of each other.

Admin and open-access work (tenant None) is accounted as a tenant of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

logger = logging.getLogger(__name__)

ADMIN = ""  # the account of work with no tenant (admin keys, open access)
MIX_FACTOR = 4.0  # tenants share a batch while their costs per audio second are this close


class FairShare:
    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        default_weight: float = 1.0,
        decode_step_cost_s: float = 0.05,
    ) -> None:
        self.weights = dict(weights or {})
        self.default_weight = default_weight
        self.decode_step_cost_s = decode_step_cost_s  # a decoder step, in audio seconds
        self.counters: dict[str, float] = {}  # virtual engine seconds, weighted
        self.used: dict[str, float] = {}  # engine seconds actually charged (not weighted)
        self._clock = 0.0  # the counter of the tenant served last
        self._per_unit = 0.05  # engine seconds per work unit, learned from batches
        self.intensity: dict[str, float] = {}  # work units per audio second, recent items

    def weight(self, tenant: str | None) -> float:
        return self.weights.get(tenant or ADMIN, self.default_weight)

    def counter(self, tenant: str | None) -> float:
        return self.counters.get(tenant or ADMIN, self._clock)

    def arrive(self, tenant: str | None, backlogged: Iterable[str | None]) -> None:
        """A tenant with nothing waiting submits work: it starts at the virtual time."""
        key = tenant or ADMIN
        others = [self.counter(t) for t in backlogged if (t or ADMIN) != key]
        now = min(others) if others else self._clock
        self.counters[key] = max(self.counters.get(key, now), now)

    def compatible(self, a: str | None, b: str | None) -> bool:
        """Whether items of tenants `a` and `b` may share a batch (module docstring)."""
        ia, ib = self.intensity.get(a or ADMIN, 1.0), self.intensity.get(b or ADMIN, 1.0)
        return max(ia, ib) <= MIX_FACTOR * min(ia, ib)

    def estimate(self, tenant: str | None, seconds: float) -> float:
        """What an item of `seconds` of audio will add to its tenant's counter."""
        return self._per_unit * seconds / self.weight(tenant)

    def charge(self, items: list[tuple[str | None, float, int]], engine_s: float) -> None:
        """One batch ran for `engine_s`: (tenant, audio seconds, decoder steps) per item."""
        units = [seconds + steps * self.decode_step_cost_s for _, seconds, steps in items]
        total = sum(units)
        if total <= 0 or engine_s <= 0:
            return
        self._per_unit = 0.8 * self._per_unit + 0.2 * engine_s / total
        served = set()
        for (tenant, seconds, _), unit in zip(items, units):
            key = tenant or ADMIN
            if seconds > 0:
                recent = self.intensity.get(key, unit / seconds)
                self.intensity[key] = 0.7 * recent + 0.3 * unit / seconds
            cost = engine_s * unit / total
            self.used[key] = self.used.get(key, 0.0) + cost
            self.counters[key] = self.counter(key) + cost / self.weight(key)
            served.add(key)
        self._clock = max(self._clock, min(self.counters[k] for k in served))

    def forget_idle(self, active: Iterable[str | None], keep: int = 10_000) -> None:
        """Bound the accounts: past `keep`, drop tenants with nothing waiting (they come
        back at the virtual time anyway)."""
        if len(self.counters) <= keep:
            return
        live = {t or ADMIN for t in active}
        for key in [k for k in self.counters if k not in live][: len(self.counters) - keep]:
            del self.counters[key]
            self.used.pop(key, None)
            self.intensity.pop(key, None)
