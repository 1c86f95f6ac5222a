"""Issue 12 item 2: what one request can make the server do is bounded, whatever its bytes.

Resampling any accepted rate costs about what a common rate costs; decoded samples are
bounded from the header and while decoding; training manifests read audio through the
same checks; vocabularies are bounded at upload. Real audio, real app over HTTP.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters_store.errors import InvalidVocabulary
from adapters_store.head_format import MAX_VOCABULARY_CHARACTERS, validate_vocabulary
from server.audio import resample as resampling
from server.audio.reading import MAX_RATE, MIN_RATE
from server.audio.resample import MAX_PHASES, SAMPLE_RATE, resample, resample_plan
from server.config import AudioSettings
from server.data.manifest import load_audio, read_manifest
from server.errors import AudioDecodeError, AudioTooLong, TooManyChannels
from server.models.ctc.inference import transcribe_features
from tests.helpers import fsdd_bytes


def _encode(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None):
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _tone(freq: float, seconds: float, rate: int) -> torch.Tensor:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return (0.5 * torch.sin(2 * torch.pi * freq * t)).float()


# --- resampling -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rate", [1_000, 8_000, 11_025, 12_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000]
)
def test_the_resampler_equals_torchaudios_filter_where_the_ratio_is_exact(rate):
    x = torch.randn(rate // 2, generator=torch.Generator().manual_seed(rate)) * 0.1
    expected = torchaudio.functional.resample(x, rate, SAMPLE_RATE)
    got = resample(x, rate)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=0)


def test_fsdd_clips_resample_and_transcribe_as_with_the_old_resampler(
    default_model, default_store, fsdd_test
):
    model, _ = default_model
    sample = fsdd_test[::20]
    old_feats, new_feats, heads = [], [], []
    for u in sample:
        data, rate = sf.read(u.audio, dtype="float32")
        assert rate == 8_000
        x = torch.from_numpy(data)
        old, new = torchaudio.functional.resample(x, rate, SAMPLE_RATE), resample(x, rate)
        torch.testing.assert_close(new, old, atol=1e-5, rtol=0)
        old_feats.append(model.backbone.featurize(old))
        new_feats.append(model.backbone.featurize(new))
        heads.append(default_store.get(u.task))
    old_text = [d.text for d in transcribe_features(model, old_feats, heads)]
    new_text = [d.text for d in transcribe_features(model, new_feats, heads)]
    assert new_text == old_text
    assert sum(t == u.text for t, u in zip(new_text, sample)) >= 0.8 * len(sample)


def _seconds_to_resample(x: torch.Tensor, rate: int) -> float:
    began = time.perf_counter()
    resample(x, rate)
    return time.perf_counter() - began


@pytest.mark.parametrize("awkward,common", [(44_101, 44_100), (383_987, 384_000), (16_001, 8_000)])
def test_an_awkward_rate_resamples_at_about_the_cost_of_a_common_one(awkward, common):
    # Side by side, interleaved, best of five (the machine is shared). The old resampler
    # built a [16000, rate + 2w] kernel for a prime rate: 44,101 Hz took 31 s and 11 GB
    # before failing; 383,987 Hz asked for 24.6 GB at once.
    clips = {rate: torch.randn(10 * rate) * 0.1 for rate in (awkward, common)}
    for rate, x in clips.items():
        resample(x[:rate], rate)  # build (and cache) the plan, warm the kernels
    times: dict[int, list[float]] = {awkward: [], common: []}
    for _ in range(5):
        for rate, x in clips.items():
            times[rate].append(_seconds_to_resample(x, rate))
    awkward_s, common_s = min(times[awkward]), min(times[common])
    # + 0.5 s: after another rate's plans, the first 384 kHz runs measured 0.27 s here vs
    # 0.02 s for the common rate (allocator state, not the algorithm: alone it is 0.02 s);
    # the regression this guards against took 31 s and 11 GB
    assert awkward_s < 6 * common_s + 0.5, (awkward_s, common_s)


@settings(max_examples=200, deadline=None)
@given(rate=st.integers(MIN_RATE, MAX_RATE))
def test_every_accepted_rate_has_a_small_filter_and_keeps_its_time_scale(rate):
    plan = resample_plan(rate)
    assert 1 <= plan.up <= MAX_PHASES
    assert plan.nbytes <= 1_300_000  # 384 kHz: 1,024 phases x 294 taps x 4 B
    assert plan.taps <= 2 * int(6 * max(1, rate / SAMPLE_RATE) / 0.99 + 2) + 2
    if plan.down < plan.taps:  # overlapping windows: one conv per phase, few phases
        assert plan.up <= 256
    achieved = rate * plan.up / plan.down
    assert abs(achieved / SAMPLE_RATE - 1) < 5e-4  # at most 0.05% fast or slow


@settings(max_examples=15, deadline=None)
@given(rate=st.integers(MIN_RATE, MAX_RATE), freq_frac=st.floats(0.05, 0.7))
def test_a_tone_at_any_rate_keeps_its_pitch_and_level(rate, freq_frac):
    freq = freq_frac * min(rate, SAMPLE_RATE) / 2  # inside both Nyquist bands
    tone = _tone(freq, 0.5, rate)
    out = resample(tone, rate)
    exact = tone.shape[0] * SAMPLE_RATE / rate
    assert abs(out.shape[0] - exact) <= exact * 5e-4 + 1
    middle = out[1000:-1000].double()
    spectrum = torch.fft.rfft(middle * torch.hann_window(middle.shape[0], dtype=torch.float64))
    peak_hz = int(spectrum.abs().argmax()) * SAMPLE_RATE / middle.shape[0]
    assert abs(peak_hz - freq) <= 2 * SAMPLE_RATE / middle.shape[0] + freq * 5e-4
    rms = float(middle.pow(2).mean().sqrt())
    assert abs(rms - 0.5 / 2**0.5) < 0.03  # the filter's passband, as torchaudio's


def test_the_resampling_plan_cache_is_bounded_in_bytes():
    for rate in range(383_000, 384_000, 7):  # ~140 distinct prime-ish rates, ~1 MB plans
        resample_plan(rate)
    assert 0 < resampling._plans.bytes <= resampling.PLAN_CACHE_BYTES
    assert len(resampling._plans) < 140


# --- one audio reader: training manifests get the upload checks ---------------------------


def _manifest(tmp_path, name: str, data: bytes):
    audio = tmp_path / name
    audio.write_bytes(data)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio": name, "text": "one", "task": "t"}) + "\n")
    (row,) = read_manifest(manifest)
    return row


@pytest.mark.parametrize(
    "data,error",
    [
        (_encode(np.zeros((1000, 255), np.float32), 16_000, "OGG"), TooManyChannels),
        (
            _encode(np.array([0.1, np.nan] * 500, np.float32), 16_000, subtype="FLOAT"),
            AudioDecodeError,
        ),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", AudioDecodeError),
        (_encode(np.zeros(16_000 * 3, np.float32), 16_000), AudioTooLong),
    ],
    ids=["255-channels", "nan", "truncated-header", "too-long"],
)
def test_a_manifest_row_gets_the_same_typed_errors_as_an_upload(tmp_path, data, error):
    row = _manifest(tmp_path, "x.wav", data)
    with pytest.raises(error) as err:
        load_audio(row.audio, AudioSettings(max_duration_s=2.0))
    assert "x.wav" in str(err.value)


def test_a_manifest_row_decodes_exactly_like_an_upload(tmp_path, fsdd_test):
    from server.audio.reading import read_audio

    u = fsdd_test[0]
    row = _manifest(tmp_path, "clip.wav", fsdd_bytes(u))
    expected = read_audio(fsdd_bytes(u), AudioSettings()).at_model_rate()
    torch.testing.assert_close(load_audio(row.audio), expected, atol=0, rtol=0)


# --- vocabularies bounded at upload ------------------------------------------------------


def test_a_vocabulary_of_many_long_words_is_refused_at_upload():
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = [  # 1,000 distinct words of 64 characters: 64,000 in all, accepted before
        "ab" * 30 + "x" + letters[i // 676] + letters[i // 26 % 26] + letters[i % 26]
        for i in range(1000)
    ]
    with pytest.raises(InvalidVocabulary) as err:
        validate_vocabulary(words)
    assert err.value.code == "invalid_vocabulary" and "characters" in str(err.value)
    eight = [w[-8:] for w in words]  # 1,000 words of 8 characters: at the limit
    assert sum(map(len, eight)) == MAX_VOCABULARY_CHARACTERS
    assert validate_vocabulary(eight) == tuple(eight)


# --- over HTTP: typed 4xx, never a 500 ---------------------------------------------------


def _flac_of_unknown_length(samples: np.ndarray, rate: int) -> bytes:
    data = bytearray(_encode(samples, rate, "FLAC"))
    packed = int.from_bytes(data[18:26], "big")
    data[18:26] = ((packed >> 36) << 36).to_bytes(8, "big")  # total samples: 0 = unknown
    return bytes(data)


def _eight_channels_claiming(seconds: int) -> bytes:
    """A small 8-channel 384 kHz FLAC whose header claims `seconds` (80 s: 246 M samples,
    past the default 230.4 M decoded-sample budget, within the 2 h duration limit)."""
    data = bytearray(_encode(np.zeros((1000, 8), np.int16), 384_000, "FLAC"))
    packed = int.from_bytes(data[18:26], "big")
    data[18:26] = (((packed >> 36) << 36) | seconds * 384_000).to_bytes(8, "big")
    return bytes(data)


async def test_hostile_audio_over_http_gets_typed_4xx_codes(client):
    cases = [
        (_encode(np.zeros((1000, 255), np.float32), 16_000, "OGG"), 400, "too_many_channels"),
        (_eight_channels_claiming(80), 413, "too_many_samples"),
        (_encode(np.zeros(100, np.float32), 500), 400, "unsupported_sample_rate"),
    ]
    for data, status, code in cases:
        r = await client.post("/v1/transcribe?task_id=base", content=data)
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code


async def test_a_streamed_flac_of_unknown_length_transcribes_like_its_wav(client, fsdd_test):
    u = fsdd_test[3]
    samples, rate = sf.read(u.audio, dtype="int16")
    as_wav = await client.post(f"/v1/transcribe?task_id={u.task}", content=fsdd_bytes(u))
    streamed = await client.post(
        f"/v1/transcribe?task_id={u.task}", content=_flac_of_unknown_length(samples, rate)
    )
    assert as_wav.status_code == streamed.status_code == 200, streamed.text
    assert streamed.json()["text"] == as_wav.json()["text"]
