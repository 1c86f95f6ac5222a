"""A live stream's engine work is bounded per second of its audio, over a real socket:
speech that never pauses is cut at max_utterance_s, partials re-decode at most
partial_audio_per_s seconds per second of stream, and constant noise is not endless
speech."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import numpy as np
import pytest

from server.config import StreamingSettings
from tests.helpers import live_server, make_settings
from tests.security.test_realtime_streams import append

RATE = 16_000
MAX_UTTERANCE_S = 4.0
PARTIAL_PER_S = 2.0


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    settings = make_settings(
        tmp_path_factory.mktemp("stream-cost"),
        streaming=StreamingSettings(
            max_utterance_s=MAX_UTTERANCE_S,
            partial_hop_ms=200,
            partial_audio_per_s=PARTIAL_PER_S,
            max_ahead_s=60.0,
        ),
    )
    with live_server(settings) as base:
        yield base


def syllables(seconds: float) -> np.ndarray:
    """Speech-like sound that never pauses: noise rising and falling 20 dB at 4 Hz."""
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = 0.03 + 0.27 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    return (envelope * np.random.default_rng(0).normal(0, 1, t.size)).astype(np.float32)


async def _decoded(url: str) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url) as client:
        text = (await client.get("/metrics")).text
    found = re.findall(
        r'^hra_stream_decoded_audio_seconds_total\{kind="(\w+)"\} (\S+)$', text, re.M
    )
    return {kind: float(v) for kind, v in found}


async def _stream(url: str, audio: np.ndarray, speed: float, commit: bool = True) -> list[dict]:
    """Send `audio` in 100 ms chunks at `speed` x real time, commit (a client's commit
    makes even unheard audio an utterance), and collect the events a second more."""
    import websockets

    target = url.replace("http://", "ws://") + "/v1/realtime?model=base"
    events: list[dict] = []
    async with websockets.connect(target) as conn:

        async def receive():
            while True:
                events.append(json.loads(await conn.recv()))

        reader = asyncio.create_task(receive())
        for i in range(0, audio.size, RATE // 10):
            await conn.send(append(audio[i : i + RATE // 10]))
            await asyncio.sleep(0.1 / speed)
        await asyncio.sleep(0.5)
        if commit:
            await conn.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await asyncio.sleep(1.0)
        reader.cancel()
    return events


def _utterances(events: list[dict]) -> list[tuple[int, int]]:
    starts = [e["audio_start_ms"] for e in events if e["type"].endswith("speech_started")]
    stops = [e["audio_end_ms"] for e in events if e["type"].endswith("speech_stopped")]
    return list(zip(starts, stops))


async def test_speech_that_never_pauses_is_cut_at_max_utterance_s_and_partials_are_rate_bounded(
    url,
):
    before = await _decoded(url)
    seconds = 12.0
    events = await _stream(url, syllables(seconds), speed=2.0)
    spans = _utterances(events)
    assert len(spans) >= 3, spans  # 12 s cut at 4 s: forced endpoints
    assert all(b - a <= MAX_UTTERANCE_S * 1000 + 20 for a, b in spans), spans
    finals = [e for e in events if e["type"].endswith("transcription.completed")]
    assert len(finals) >= 3
    after = await _decoded(url)
    partial = after.get("partial", 0.0) - before.get("partial", 0.0)
    final = after.get("final", 0.0) - before.get("final", 0.0)
    # a constant 200 ms hop re-decodes ~length / 0.4 s per second: ~10 s/s at 4 s
    assert partial <= PARTIAL_PER_S * seconds + 2.0, partial
    assert final <= seconds + 0.5, final


async def test_constant_noise_after_silence_is_not_endless_speech(url):
    before = await _decoded(url)
    noise = np.random.default_rng(3).normal(0, 0.01, 14 * RATE).astype(np.float32)  # -40 dBFS
    audio = np.concatenate([np.zeros(RATE // 2, np.float32), noise])
    events = await _stream(url, audio, speed=4.0, commit=False)
    spans = _utterances(events)
    # steady_noise_s (4 s) of noise at most is heard as speech; the old floor, rising 2.5
    # dB/s from digital silence, heard all 14 s as speech (forced endpoints every 4 s)
    assert sum(b - a for a, b in spans) <= 5_500, spans
    after = await _decoded(url)
    assert after.get("final", 0.0) - before.get("final", 0.0) <= 5.5
