"""A global cap on decoded audio samples held by transcriptions in progress.

A 2 h upload decodes to 115 M samples at 16 kHz (460 MB as float32) and holds them
until its last window is done; the per-request limit bounds one request, this bounds
them all together. A request reserves what its header says it will decode (or its
per-request limit, for a stream of unknown length) before decoding starts, and
gives it back when its transcription ends however it ends; a reservation that would
pass the cap is refused at once with 503 `overloaded` (Retry-After), before a sample
is decoded. Runs on the event loop only: no lock needed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from server.errors import Overloaded

logger = logging.getLogger(__name__)


class SampleBudget:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.held = 0

    @contextlib.contextmanager
    def reserve(self, samples: int) -> Iterator[None]:
        if self.held + samples > self.cap:
            raise Overloaded(
                f"the server holds {self.held} decoded samples of transcriptions in progress; "
                f"{samples} more would pass its limit of {self.cap}",
                retry_after_s=5,
            )
        self.held += samples
        try:
            yield
        finally:
            self.held -= samples
