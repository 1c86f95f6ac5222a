"""Admission: what a request brings is checked before it may join a fused batch.

A request that reaches the engine shares a forward pass with other tenants'
requests, so everything that is known to fail there, or to cost more than its
share, is refused here with its own 4xx (the engine's bisection is the second
line, for what nobody foresaw):
    audio       at least the backbone's minimum samples at the model rate, so the
                front end can make one frame (server.models.backbone.min_samples), and
                at most the model's own bound if it has one (Whisper: one 30 s window;
                longer audio is cut into windows that fit it: server/longform/)
    vocabulary  a task's word-loop decoding costs states x frames on the engine
                thread: at most `max_vocabulary_cost` for this audio's length
    head        resolved and authorized by server/serving/heads.py; a head the device pool
                cannot hold is refused at upload and when the cache decodes it
What the audio itself may cost (rate, channels, decoded samples) is bounded while it
is read, before it is decoded in full (server/audio/reading.py).
"""

from __future__ import annotations

from adapters_store.head_format import HeadRecord
from server.audio.reading import Audio
from server.audio.resample import SAMPLE_RATE, resampled_length
from server.errors import AudioTooLong, AudioTooShort
from server.models.ctc.vocabulary import check_vocabulary_cost


class Admission:
    def __init__(
        self,
        min_samples: int,
        frame_seconds: float,
        max_vocabulary_cost: int,
        max_seconds: float | None = None,
    ) -> None:
        self.min_samples = min_samples  # at SAMPLE_RATE
        self.max_seconds = max_seconds  # the model's longest clip per pass (Whisper: 30 s)
        self.frame_seconds = frame_seconds  # model output frames, for the vocabulary cost
        self.max_vocabulary_cost = max_vocabulary_cost  # states x frames

    def check(self, audio: Audio, head: HeadRecord | None) -> None:
        """Raise the typed error of the first rule the request breaks."""
        # what the resampler will make, not the exact ratio: at 7,999 Hz, 100 samples are
        # 200.03 at 16 kHz but resample to 200 (its ratio has at most MAX_PHASES phases)
        at_model_rate = resampled_length(audio.samples.shape[0], audio.rate)
        if at_model_rate < self.min_samples:
            raise AudioTooShort(
                f"audio is {1000 * audio.seconds:.1f} ms; this model needs at least "
                f"{1000 * self.min_samples / SAMPLE_RATE:.1f} ms"
            )
        if self.max_seconds is not None and audio.seconds > self.max_seconds:
            raise AudioTooLong(
                f"audio is {audio.seconds:.1f} s; this model takes at most "
                f"{self.max_seconds:.0f} s per pass"
            )
        if head is not None:
            check_vocabulary_cost(
                head.meta.vocabulary,
                audio.seconds,
                max_cost=self.max_vocabulary_cost,
                frame_seconds=self.frame_seconds,
            )
