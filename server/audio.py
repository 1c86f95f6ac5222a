"""Uploaded bytes -> validated 16 kHz mono waveform, or a typed error.

soundfile reads WAV (8/16/24/32-bit int, float), FLAC and OGG at any sample
rate and channel count; we downmix, resample, and refuse what cannot be
transcribed (no samples, NaN/inf samples, too long) with a stable code.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import torch

from server.config import AudioSettings
from server.errors import AudioDecodeError, AudioTooLong, EmptyAudio
from server.model.features import SAMPLE_RATE, resample

MIN_RATE, MAX_RATE = 1_000, 384_000


def decode_audio(data: bytes, limits: AudioSettings) -> torch.Tensor:
    """Mono float32 waveform [N] at 16 kHz."""
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
    mono = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1)))
    return resample(mono, rate)


def duration_s(waveform: torch.Tensor) -> float:
    return waveform.shape[0] / SAMPLE_RATE
