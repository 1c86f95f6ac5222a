"""Long files whose energy is not speech (periodic clicks, steady noise) cost no window,
and a file cut into more windows than its length allows is refused before any runs."""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from load_tests.long_audio import RATE, long_fsdd, wav
from server.config import LongformSettings
from server.longform.policy import speech_gate, window_plan
from server.longform.windows import WindowPlan
from tests.helpers import make_settings, running_client


def _clicks(minutes: float, period_s: float, width_s: float = 0.002) -> np.ndarray:
    x = np.zeros(int(minutes * 60 * RATE), np.float32)
    step, width = int(period_s * RATE), max(1, int(width_s * RATE))
    for start in range(0, x.shape[0], step):
        x[start : start + width] = 0.8
    return x


def _noise(minutes: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(int(minutes * 60 * RATE)) * 0.1).astype(np.float32)


def _flac(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


async def _post(client, data: bytes, name: str):
    return await client.post(
        "/v1/audio/transcriptions",
        files={"file": (name, data)},
        data={"model": "base", "response_format": "verbose_json"},
    )


async def _batches(client) -> float:
    metrics = (await client.get("/metrics")).text
    found = re.search(r"^hra_batch_size_count (\S+)", metrics, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize(
    "name, samples",
    [
        ("clicks-0.5s.flac", lambda: _clicks(20, 0.5)),  # a pause between clicks: 2,400 cores
        ("clicks-0.1s.flac", lambda: _clicks(20, 0.1)),  # no pause: one 20 min stretch
        ("buzz.flac", lambda: _clicks(10, 0.05, 0.02)),  # 20 ms pulses at 20 Hz
        ("noise.wav", lambda: _noise(10)),
    ],
)
async def test_clicks_and_steady_noise_run_no_window_and_answer_an_empty_transcript(
    tmp_path, name, samples
):
    audio = samples()
    data = wav(audio) if name.endswith(".wav") else _flac(audio)
    async with running_client(make_settings(tmp_path)) as client:
        began = time.monotonic()
        r = await _post(client, data, name)
        took = time.monotonic() - began
        assert r.status_code == 200, r.text
        assert r.json()["text"] == "" and r.json()["segments"] == []
        assert r.json()["duration"] == pytest.approx(audio.shape[0] / RATE, abs=0.01)
        assert await _batches(client) == 0  # not one engine pass
    assert took < 20, took  # reading and planning only


async def test_a_file_cut_into_more_windows_than_allowed_is_refused_before_any_runs(
    tmp_path, fsdd_root
):
    samples, pieces = long_fsdd(fsdd_root, 60, seed=3, speaker="george")
    settings = make_settings(tmp_path, longform=LongformSettings(max_windows=len(pieces) // 2))
    async with running_client(settings) as client:
        r = await _post(client, wav(samples), "long.wav")
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "too_many_windows"
        assert await _batches(client) == 0
    per_s = LongformSettings(max_windows_per_s=0.05)  # 3 windows for 60 s
    async with running_client(make_settings(tmp_path, longform=per_s)) as client:
        r = await _post(client, wav(samples), "long.wav")
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_windows"


@pytest.mark.parametrize("max_seconds", [None, 30.0])
def test_the_gate_leaves_the_windows_of_real_speech_as_they_were(fsdd_root, max_seconds):
    samples, pieces = long_fsdd(fsdd_root, 150, seed=3, speaker="george")
    settings = LongformSettings()
    plan = window_plan(settings, max_seconds)
    x = torch.from_numpy(samples)
    gated = plan.plan(x, RATE, speech_gate(settings))
    assert gated == plan.plan(x, RATE)
    if max_seconds is None:
        assert len(gated) == len(pieces)  # one window per take


def test_a_click_lights_too_few_hops_to_be_speech_but_a_syllable_does_not():
    plan, gate = WindowPlan(10, 1, 2), speech_gate(LongformSettings())
    x = _clicks(1, 0.5)
    assert len(plan.plan(torch.from_numpy(x), RATE)) > 100  # ungated: a window per click
    assert plan.plan(torch.from_numpy(x), RATE, gate) == []
    rng = np.random.default_rng(1)
    t = np.arange(int(0.3 * RATE)) / RATE
    syllable = (np.sin(2 * np.pi * 150 * t) * np.hanning(t.shape[0]) * 0.3).astype(np.float32)
    y = np.concatenate([np.zeros(RATE, np.float32), syllable, np.zeros(RATE, np.float32)])
    y += rng.normal(0, 1e-4, y.shape[0]).astype(np.float32)
    assert len(plan.plan(torch.from_numpy(y), RATE, gate)) == 1
