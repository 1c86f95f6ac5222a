"""Audio decoding: every valid format transcribable, every bad one a typed error."""

from __future__ import annotations

import io
import struct
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from server.audio.reading import BLOCK_FRAMES, MAX_RATE, MIN_RATE, read_audio
from server.audio.resample import resample_ratio
from server.config import AudioSettings
from server.errors import (
    AudioDecodeError,
    AudioTooLong,
    EmptyAudio,
    TooManyChannels,
    TooManySamples,
    UnsupportedSampleRate,
)

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


# --- bounded cost: what a file may decode to is checked from its header, then enforced ---


def _flac_with_claimed_length(samples: np.ndarray, rate: int, claimed: int) -> bytes:
    """A FLAC whose STREAMINFO states `claimed` total frames (0 = unknown, as streams do)."""
    data = bytearray(_encode(samples, rate, "FLAC"))
    assert data[:4] == b"fLaC"
    packed = int.from_bytes(data[18:26], "big")  # rate, channels, bits, then 36-bit length
    data[18:26] = (((packed >> 36) << 36) | claimed).to_bytes(8, "big")
    return bytes(data)


def test_a_file_with_more_channels_than_the_limit_is_refused_from_its_header():
    data = _encode(np.zeros((1000, 255), np.float32), 16_000, "OGG")  # ~4 KB, 255 channels
    with pytest.raises(TooManyChannels) as err:
        read_audio(data, LIMITS)
    assert err.value.code == "too_many_channels"


def test_eight_channels_are_accepted_and_downmixed_to_their_mean():
    rng = np.random.default_rng(0)
    samples = (0.1 * rng.standard_normal((8000, 8))).astype(np.float32)
    audio = read_audio(_encode(samples, 16_000, subtype="FLOAT"), LIMITS)
    np.testing.assert_allclose(audio.samples.numpy(), samples.mean(axis=1), atol=1e-7)


def test_a_header_past_the_decoded_sample_budget_is_refused_before_decoding():
    # 4 s x 384 kHz x 8 channels = 12.3 M samples: under the 5 s limit, over the sample budget
    limits = AudioSettings(max_duration_s=5.0, max_decoded_samples=5_000_000)
    data = _encode(np.zeros((4 * 384_000, 8), np.int16), 384_000, "FLAC")
    with pytest.raises(TooManySamples) as err:
        read_audio(data, limits)
    assert err.value.code == "too_many_samples" and "8 channels" in str(err.value)


def test_the_default_sample_budget_is_2_h_of_16_khz_stereo_and_at_least_60_s_of_48_khz():
    assert AudioSettings().decoded_samples_limit == 7200 * 16_000 * 2
    assert AudioSettings(max_duration_s=60).decoded_samples_limit == 60 * 48_000 * 2
    assert AudioSettings(max_duration_s=10).decoded_samples_limit == 10 * 48_000 * 2


@pytest.mark.parametrize("rate", [999, 384_001, 500_000])
def test_rates_outside_the_supported_range_get_their_own_code(rate):
    with pytest.raises(UnsupportedSampleRate) as err:
        read_audio(_encode(_tone(0.1, 16_000), rate), LIMITS)
    assert err.value.code == "unsupported_sample_rate"


def test_a_stream_of_unknown_length_decodes_what_is_there():
    tone = _tone(1.5, 16_000)
    data = _flac_with_claimed_length(tone, 16_000, 0)
    audio = read_audio(data, LIMITS)
    assert audio.samples.shape == (24_000,)
    np.testing.assert_allclose(audio.samples.numpy(), tone, atol=1e-4)  # 16-bit FLAC


def test_a_stream_of_unknown_length_stops_decoding_past_the_limit():
    data = _flac_with_claimed_length(_tone(6.0, 16_000), 16_000, 0)
    with pytest.raises(AudioTooLong) as err:
        read_audio(data, LIMITS)
    assert err.value.code == "audio_too_long"


def test_a_header_claiming_days_of_audio_is_refused_without_decoding():
    data = _flac_with_claimed_length(_tone(0.5, 16_000), 16_000, (1 << 36) - 1)
    with pytest.raises(AudioTooLong):
        read_audio(data, LIMITS)


def test_a_multi_block_stereo_file_decodes_exactly_block_by_block():
    rng = np.random.default_rng(1)
    samples = (0.2 * rng.standard_normal((3 * BLOCK_FRAMES + 123, 2))).astype(np.float32)
    audio = read_audio(_encode(samples, 48_000, subtype="FLOAT"), AudioSettings())
    assert audio.rate == 48_000
    np.testing.assert_array_equal(audio.samples.numpy(), samples.mean(axis=1))


def test_decoding_a_many_channel_file_peaks_near_one_mono_array_not_all_channels():
    # 8 channels x 15 s x 48 kHz = the default budget; decoded all at once that is 22 MiB
    frames = 15 * 48_000
    t = np.arange(frames, dtype=np.float32) / 48_000
    mono = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    data = _encode(np.repeat(mono[:, None], 8, axis=1), 48_000, "FLAC")
    mono_bytes = frames * 4  # 2.7 MiB
    tracemalloc.start()
    try:
        audio = read_audio(data, AudioSettings())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert audio.samples.shape == (frames,)
    all_channels = frames * 8 * 4
    assert peak < mono_bytes + 4 * 1024 * 1024 < all_channels / 2, (peak, all_channels)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.integers(MIN_RATE, MAX_RATE),
    channels=st.integers(1, 8),
    frames=st.integers(1, 6_000),
    fmt=st.sampled_from([("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16")]),
    level=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_any_accepted_rate_and_channel_count_decodes_to_the_right_length(
    rate, channels, frames, fmt, level
):
    samples = np.full((frames, channels), level, np.float32)
    try:
        data = _encode(samples, rate, *fmt)
    except (sf.LibsndfileError, RuntimeError):
        assume(False)  # the encoder refuses this rate for this container
    audio = read_audio(data, AudioSettings())
    assert audio.rate == rate and audio.samples.shape == (frames,)
    np.testing.assert_allclose(audio.samples.numpy(), level, atol=1e-3 + level * 1e-4)
    up, down = resample_ratio(rate)
    assert audio.at_model_rate().shape == (-(-frames * up // down),)
