"""Admission: what a request brings is checked before it may join a fused batch.

A request that reaches the engine shares a forward pass with other tenants'
requests, so everything that is known to fail there, or to cost more than its
share, is refused here with its own 4xx (the engine's bisection is the second
line, for what nobody foresaw):
    audio       at least the backbone's minimum samples at the model rate, so the
                front end can make one frame (server.model.backbone.min_samples)
    head        resolved and authorized by the service; a head the device pool
                cannot hold is refused at upload and when the cache decodes it
"""

from __future__ import annotations

import math

from adapters_store.head_format import HeadRecord
from server.audio import Audio
from server.errors import AudioTooShort
from server.model.features import SAMPLE_RATE


class Admission:
    def __init__(self, min_samples: int) -> None:
        self.min_samples = min_samples  # at SAMPLE_RATE

    def check(self, audio: Audio, head: HeadRecord | None) -> None:
        """Raise the typed error of the first rule the request breaks."""
        at_model_rate = math.ceil(audio.samples.shape[0] * SAMPLE_RATE / audio.rate)
        if at_model_rate < self.min_samples:
            raise AudioTooShort(
                f"audio is {1000 * audio.seconds:.1f} ms; this model needs at least "
                f"{1000 * self.min_samples / SAMPLE_RATE:.1f} ms"
            )
