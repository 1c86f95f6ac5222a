"""A cap on decoded audio samples held by long transcriptions in progress, all together
and per tenant.

A 2 h upload decodes to 115 M samples at 16 kHz (460 MB as float32) and holds them
until its last window is done; the per-request limit bounds one request, this bounds
them all together. A request reserves what its header says it will decode (or its
per-request limit, for a stream of unknown length) before decoding starts, shrinks the
reservation to what it really decoded, and gives it back when its transcription ends
however it ends; a reservation that would pass the cap, or its tenant's share of it, is
refused at once with 503 `overloaded` (Retry-After), before a sample is decoded: one
tenant's long files cannot take all of it. Only audio longer than one window reserves:
a short request's samples are bounded by the batcher's queue limits, and it never waits
on a long file's memory. Runs on the event loop only.
"""

from __future__ import annotations

import logging

from server.errors import Overloaded

logger = logging.getLogger(__name__)


class Reservation:
    def __init__(self, budget: SampleBudget, samples: int, tenant: str | None) -> None:
        self.budget = budget
        self.samples = samples
        self.tenant = tenant

    def shrink(self, samples: int) -> None:
        """Hold only `samples` (what was decoded; never more than reserved)."""
        samples = min(samples, self.samples)
        freed = self.samples - samples
        self.budget.held -= freed
        if self.tenant is not None and freed:
            left = self.budget.by_tenant[self.tenant] - freed
            if left:
                self.budget.by_tenant[self.tenant] = left
            else:
                del self.budget.by_tenant[self.tenant]
        self.samples = samples

    def release(self) -> None:
        self.shrink(0)


class SampleBudget:
    def __init__(self, cap: int, per_tenant: int) -> None:
        self.cap = cap
        self.per_tenant = per_tenant
        self.held = 0
        self.by_tenant: dict[str, int] = {}

    def reserve(self, samples: int, tenant: str | None = None) -> Reservation:
        """`tenant` None (an admin): counted in the cap, not in a tenant's share."""
        if self.held + samples > self.cap:
            raise Overloaded(
                f"the server holds {self.held} decoded samples of long transcriptions in "
                f"progress; {samples} more would pass its limit of {self.cap}",
                retry_after_s=5,
            )
        mine = self.by_tenant.get(tenant, 0) if tenant is not None else 0
        if tenant is not None and mine + samples > self.per_tenant:
            raise Overloaded(
                f"this tenant holds {mine} decoded samples of long transcriptions in "
                f"progress; {samples} more would pass its share of {self.per_tenant}",
                retry_after_s=5,
            )
        self.held += samples
        if tenant is not None and samples:
            self.by_tenant[tenant] = mine + samples
        return Reservation(self, samples, tenant)
