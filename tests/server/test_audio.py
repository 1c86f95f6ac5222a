"""Audio decoding: every valid format transcribable, every bad one a typed error."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from server.audio import read_audio
from server.config import AudioSettings
from server.errors import AudioDecodeError, AudioTooLong, EmptyAudio

LIMITS = AudioSettings(max_duration_s=5.0)


def _encode(samples: np.ndarray, rate: int, fmt="WAV", subtype=None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _tone(seconds=0.5, rate=16_000, channels=1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


@pytest.mark.parametrize(
    "fmt,subtype",
    [
        ("WAV", "PCM_U8"),
        ("WAV", "PCM_16"),
        ("WAV", "PCM_24"),
        ("WAV", "FLOAT"),
        ("FLAC", "PCM_16"),
        ("OGG", "VORBIS"),
    ],
)
def test_valid_formats_decode_to_16khz_mono(fmt, subtype):
    audio = read_audio(_encode(_tone(0.5, 22_050), 22_050, fmt, subtype), LIMITS)
    assert audio.rate == 22_050 and abs(audio.seconds - 0.5) < 0.01
    wave = audio.at_model_rate()
    assert wave.ndim == 1 and abs(wave.shape[0] - 8000) < 50
    assert 0.1 < float(wave.abs().max()) < 0.5


@pytest.mark.parametrize("rate", [1_000, 8_000, 96_000])
def test_any_sample_rate_is_resampled(rate):
    audio = read_audio(_encode(_tone(1.0, rate), rate), LIMITS)
    assert abs(audio.at_model_rate().shape[0] - 16_000) < 20


def test_six_channels_are_downmixed():
    audio = read_audio(_encode(_tone(0.5, 16_000, channels=6), 16_000), LIMITS)
    assert audio.samples.shape == (8000,)


@pytest.mark.parametrize(
    "data,error",
    [
        (b"", EmptyAudio),
        (b"this is not audio at all" * 10, AudioDecodeError),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", AudioDecodeError),  # header cut short
        (_encode(np.zeros(0, dtype=np.float32), 16_000), EmptyAudio),
        (
            _encode(np.array([0.1, np.nan, 0.2] * 100, dtype=np.float32), 16_000, subtype="FLOAT"),
            AudioDecodeError,
        ),
        (
            _encode(np.array([0.1, np.inf] * 100, dtype=np.float32), 16_000, subtype="FLOAT"),
            AudioDecodeError,
        ),
        (_encode(_tone(6.0), 16_000), AudioTooLong),
    ],
    ids=["empty", "not-audio", "truncated-header", "zero-samples", "nan", "inf", "too-long"],
)
def test_bad_audio_raises_a_typed_error(data, error):
    with pytest.raises(error):
        read_audio(data, LIMITS)


def test_truncated_data_chunk_still_decodes_what_is_there():
    data = _encode(_tone(1.0), 16_000)
    audio = read_audio(data[: len(data) // 2], LIMITS)
    assert 0 < audio.samples.shape[0] < 16_000
    assert struct.unpack("<I", data[4:8])[0] > len(data) // 2  # header claims more than sent
