"""A global cap on decoded audio samples held by transcriptions in progress.

A 2 h upload decodes to 115 M samples at 16 kHz (460 MB as float32) and holds them
until its last window is done; the per-request limit bounds one request, this bounds
them all together. A request reserves what its header says it will decode (or its
per-request limit, for a stream of unknown length) before decoding starts, shrinks the
reservation to what it really decoded, and gives it back when its transcription ends
however it ends; a reservation that would pass the cap is refused at once with 503
`overloaded` (Retry-After), before a sample is decoded. Runs on the event loop only.
"""

from __future__ import annotations

import logging

from server.errors import Overloaded

logger = logging.getLogger(__name__)


class Reservation:
    def __init__(self, budget: SampleBudget, samples: int) -> None:
        self.budget = budget
        self.samples = samples

    def shrink(self, samples: int) -> None:
        """Hold only `samples` (what was decoded; never more than reserved)."""
        samples = min(samples, self.samples)
        self.budget.held -= self.samples - samples
        self.samples = samples

    def release(self) -> None:
        self.shrink(0)


class SampleBudget:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.held = 0

    def reserve(self, samples: int) -> Reservation:
        if self.held + samples > self.cap:
            raise Overloaded(
                f"the server holds {self.held} decoded samples of transcriptions in progress; "
                f"{samples} more would pass its limit of {self.cap}",
                retry_after_s=5,
            )
        self.held += samples
        return Reservation(self, samples)
