"""Audio bytes or files -> validated mono samples, or a typed error. The one audio reader:
uploads (`read_audio`) and training/evaluation manifests (`read_audio_file`) share it.

soundfile reads WAV (8/16/24/32-bit int, float), FLAC and OGG (and libsndfile's other
formats) at any sample rate and channel count. What a file may cost is bounded from
its header before a sample is decoded, and again while decoding, since headers lie:
- rate in MIN_RATE..MAX_RATE (`unsupported_sample_rate`); channels at most
  `max_channels` (`too_many_channels`);
- frames at most `max_duration_s` x rate (`audio_too_long`) and frames x channels at
  most `decoded_samples_limit` (`too_many_samples`);
- decoding runs in blocks of BLOCK_FRAMES, downmixed as it goes, and stops one block
  past the limit whatever the header claimed: peak memory is one mono float32 array at
  the source rate plus one block of all channels (8 x 64 Ki x 4 B = 2 MiB).
Files with no samples, NaN or infinite samples are refused too. Resampling is torch
work, so the server leaves it to the engine's thread (see Audio).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from server.audio.resample import resample
from server.config import AudioSettings
from server.errors import (
    AudioDecodeError,
    AudioTooLong,
    EmptyAudio,
    TooManyChannels,
    TooManySamples,
    UnsupportedSampleRate,
)

logger = logging.getLogger(__name__)

MIN_RATE, MAX_RATE = 1_000, 384_000
BLOCK_FRAMES = 65_536
UNKNOWN_LENGTH = 1 << 62  # libsndfile reports SF_COUNT_MAX for streams of unknown length


@dataclass(frozen=True)
class Audio:
    """Decoded mono samples at the rate they came in.

    Kept at their own rate so that request threads do no torch work: torch ops
    from many threads at once oversubscribe the cores the engine's forward
    pass is using (resampling and features in request threads were a large share of
    a loaded server's CPU samples: docs/benchmarks.md, Profile).
    """

    samples: torch.Tensor  # [N] float32
    rate: int

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / self.rate

    def at_model_rate(self) -> torch.Tensor:
        return resample(self.samples, self.rate)


def check_sample_rate(rate: int) -> None:
    """Every rate in MIN_RATE..MAX_RATE resamples at bounded cost (server/audio/resample.py)."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise UnsupportedSampleRate(f"sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")


def max_frames(rate: int, channels: int, limits: AudioSettings) -> int:
    """Most frames a file of this rate and channel count may hold."""
    return min(int(limits.max_duration_s * rate), limits.decoded_samples_limit // channels)


def _too_long(frames: int, rate: int, channels: int, limits: AudioSettings, what: str):
    seconds = frames / rate
    if seconds > limits.max_duration_s:
        return AudioTooLong(
            f"audio {what} {seconds:.1f} s; the limit is {limits.max_duration_s:g} s"
        )
    return TooManySamples(
        f"audio {what} {frames} frames x {channels} channels at {rate} Hz; the limit is "
        f"{limits.decoded_samples_limit} decoded samples"
    )


def read_audio(data: bytes, limits: AudioSettings) -> Audio:
    """An upload's bytes -> Audio."""
    if not data:
        raise EmptyAudio("the request carried no audio bytes")
    return _decode(io.BytesIO(data), limits)


def read_audio_file(path: str | Path, limits: AudioSettings) -> Audio:
    """A file on disk (training and evaluation manifests) -> Audio, the same checks."""
    try:
        return _decode(str(path), limits)
    except (AudioDecodeError, AudioTooLong) as exc:
        raise type(exc)(f"{path}: {exc}") from None


def _decode(source: io.BytesIO | str, limits: AudioSettings) -> Audio:
    try:
        f = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        # libsndfile's text names the Python object it read (a heap address): not shown
        raise AudioDecodeError("not a readable WAV, FLAC or OGG file") from None
    with f:
        rate, channels, claimed = f.samplerate, f.channels, f.frames
        check_sample_rate(rate)
        if not 1 <= channels <= limits.max_channels:
            raise TooManyChannels(
                f"audio has {channels} channels; the limit is {limits.max_channels}"
            )
        limit = max_frames(rate, channels, limits)
        known = 0 <= claimed < UNKNOWN_LENGTH
        if known and claimed > limit:
            raise _too_long(claimed, rate, channels, limits, "is (says its header)")
        mono = _read_mono(f, channels, limit, claimed if known else None)
    if mono.shape[0] > limit:
        raise _too_long(mono.shape[0], rate, channels, limits, "is longer than")
    if mono.shape[0] == 0:
        raise EmptyAudio("the audio file holds zero samples")
    return Audio(torch.from_numpy(mono), rate)


def _read_mono(f: sf.SoundFile, channels: int, limit: int, claimed: int | None) -> np.ndarray:
    """Blocks of all channels -> one mono float32 array of at most limit + 1 frames (one
    past the limit means: longer than allowed, stop reading)."""
    out = np.empty(min(BLOCK_FRAMES if claimed is None else claimed, limit + 1), np.float32)
    block = np.empty((BLOCK_FRAMES, channels), np.float32)
    n = 0
    while n <= limit:
        want = min(BLOCK_FRAMES, limit + 1 - n)
        try:
            got = block[: _read_frames(f, block[:want])]
        except (sf.LibsndfileError, RuntimeError):
            if claimed is None and n > 0:  # a stream of unknown length may end in an error
                break
            raise AudioDecodeError("audio data is corrupt or truncated") from None
        if got.shape[0] == 0:
            break
        if not np.isfinite(got).all():
            raise AudioDecodeError("audio holds NaN or infinite samples")
        if n + got.shape[0] > out.shape[0]:  # the header claimed fewer frames (or none)
            out = np.resize(out, min(max(2 * out.shape[0], n + got.shape[0]), limit + 1))
        out[n : n + got.shape[0]] = got[:, 0] if channels == 1 else got.mean(axis=1)
        n += got.shape[0]
    # Shorter than claimed (a truncated file): keep only what is there, not the claim.
    return out if n == out.shape[0] else out[:n].copy()


def _read_frames(f: sf.SoundFile, out: np.ndarray) -> int:
    """Fill `out` [frames, channels] float32 from `f`; returns the frames read.

    libsndfile's sf_readf_float called directly: soundfile's read() seeks afterwards to
    where it expects to be, and that seek fails at the end of a FLAC stream of unknown
    length, losing the frames just read."""
    frames = sf._snd.sf_readf_float(f._file, sf._ffi.from_buffer("float[]", out), out.shape[0])
    err = sf._snd.sf_error(f._file)
    if err:
        raise sf.LibsndfileError(err)
    return int(frames)


def frames_to_hold(data: bytes, limits: AudioSettings) -> tuple[int, int]:
    """(most mono frames decoding `data` can hold, its rate), from its header alone (nothing
    decoded): what it claims, or its per-request limit for a stream of unknown length.
    (0, 0) for what read_audio will refuse anyway (it raises the typed error)."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, channels, claimed = f.samplerate, f.channels, f.frames
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return 0, 0
    if not (MIN_RATE <= rate <= MAX_RATE and 1 <= channels <= limits.max_channels):
        return 0, 0
    limit = max_frames(rate, channels, limits)
    known = 0 <= claimed < UNKNOWN_LENGTH
    return (min(claimed, limit) if known else limit), rate
