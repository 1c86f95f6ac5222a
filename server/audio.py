"""Uploaded bytes -> validated mono samples, or a typed error.

soundfile reads WAV (8/16/24/32-bit int, float), FLAC and OGG at any sample
rate and channel count; we downmix and refuse what cannot be transcribed (no
samples, NaN/inf samples, too long) with a stable code. Resampling is torch
work, so the server leaves it to the engine's thread (see Audio).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch

from server.config import AudioSettings
from server.errors import AudioDecodeError, AudioTooLong, EmptyAudio
from server.model.features import resample

MIN_RATE, MAX_RATE = 1_000, 384_000


@dataclass(frozen=True)
class Audio:
    """Decoded mono samples at the rate they came in.

    Kept at their own rate so that request threads do no torch work: torch ops
    from many threads at once oversubscribe the cores the engine's forward
    pass is using (measured: resampling and features in request threads were
    21% of a loaded server's CPU samples).
    """

    samples: torch.Tensor  # [N] float32
    rate: int

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / self.rate

    def at_model_rate(self) -> torch.Tensor:
        return resample(self.samples, self.rate)


def read_audio(data: bytes, limits: AudioSettings) -> Audio:
    if not data:
        raise EmptyAudio("the request carried no audio bytes")
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioDecodeError(f"not a readable WAV, FLAC or OGG file: {exc}") from None
    if not MIN_RATE <= info.samplerate <= MAX_RATE:
        raise AudioDecodeError(f"sample rate {info.samplerate} Hz is outside {MIN_RATE}-{MAX_RATE}")
    if info.frames > 0 and info.duration > limits.max_duration_s:
        raise AudioTooLong(
            f"audio is {info.duration:.1f} s; the limit is {limits.max_duration_s:.0f} s"
        )
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioDecodeError(f"audio data is corrupt or truncated: {exc}") from None
    if samples.shape[0] == 0:
        raise EmptyAudio("the audio file holds zero samples")
    if samples.shape[0] / rate > limits.max_duration_s:
        raise AudioTooLong(
            f"audio is {samples.shape[0] / rate:.1f} s; the limit is {limits.max_duration_s:.0f} s"
        )
    if not np.isfinite(samples).all():
        raise AudioDecodeError("audio holds NaN or infinite samples")
    return Audio(torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1))), rate)
