"""/v1/realtime over a real socket: uvicorn in a thread, the `websockets` client, FSDD audio."""

from __future__ import annotations

import asyncio
import base64
import json
import re

import httpx
import numpy as np
import pytest
import websockets

from server.config import BatchSettings, StreamingSettings
from server.data.manifest import load_audio
from tests.helpers import live_server, make_settings

RATE = 16_000


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    settings = make_settings(
        tmp_path_factory.mktemp("realtime"),
        batch=BatchSettings(max_wait_ms=150),  # lets concurrent streams' passes meet
        streaming=StreamingSettings(partial_hop_ms=200),
    )
    with live_server(settings) as base:
        yield base


def pcm(wav: np.ndarray) -> bytes:
    return (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()


def digits(fsdd_test, speaker: str, n: int) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    """n test takes of `speaker` (different digits), 0.7 s of room tone around each: one
    microphone's background, the first clip's quietest 20 ms frames."""
    utts = [u for u in fsdd_test if u.task == f"fsdd-{speaker}"][::10][:n]
    clips = [load_audio(u.audio).numpy() for u in utts]
    frames = clips[0][: clips[0].size // 320 * 320].reshape(-1, 320)
    quiet = frames[np.argsort((frames**2).mean(axis=1))[:3]].reshape(-1)
    tone = np.tile(quiet, 12)[: int(0.7 * RATE)]
    parts = [tone]
    for clip in clips:
        parts += [clip, tone]
    return np.concatenate(parts), [u.text for u in utts], clips


async def events_until(ws, kind: str, timeout: float = 20.0) -> list[dict]:
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            seen.append(event)
            if event["type"] == kind:
                return seen


async def send_audio(ws, audio: bytes, chunk: int = 3200, pause_s: float = 0.0) -> None:
    """100 ms chunks (at 16 kHz), `pause_s` apart (0: as fast as the socket takes them)."""
    for i in range(0, len(audio), chunk):
        b64 = base64.b64encode(audio[i : i + chunk]).decode()
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64}))
        await asyncio.sleep(pause_s)


def ws_url(base: str, task: str = "base") -> str:
    return base.replace("http://", "ws://") + f"/v1/realtime?model={task}"


async def test_a_stream_gets_partials_and_one_final_per_utterance_as_offline_decodes_them(
    url, fsdd_test
):
    audio, texts, clips = digits(fsdd_test, "jackson", 3)
    async with websockets.connect(ws_url(url, "fsdd-jackson")) as ws:
        created = json.loads(await ws.recv())
        assert created["type"] == "transcription_session.created"
        assert created["session"]["input_audio_transcription"]["model"] == "fsdd-jackson"
        await send_audio(ws, pcm(audio), pause_s=0.05)  # twice real time: partials come
        seen = []
        while sum(e["type"].endswith(".completed") for e in seen) < 3:
            seen += await events_until(ws, "conversation.item.input_audio_transcription.completed")
    finals = [e for e in seen if e["type"].endswith(".completed")]
    assert [f["transcript"] for f in finals] == texts  # jackson's test takes: 0 % WER offline
    kinds = [e["type"] for e in seen]
    assert kinds.count("input_audio_buffer.speech_started") == 3
    assert kinds.count("conversation.item.input_audio_transcription.delta") >= 1
    # word times are stream times: each inside its own utterance, in order
    starts = [f["words"][0]["start"] for f in finals]
    assert starts == sorted(starts) and starts[-1] > 1.0
    for f in finals:
        assert f["audio_start_ms"] / 1000 <= f["words"][0]["start"] + 0.05
        assert f["words"][-1]["end"] <= f["audio_end_ms"] / 1000 + 0.05
        assert f["task_id"] == "fsdd-jackson" and f["head_version"] == 1
    async with httpx.AsyncClient(base_url=url) as client:  # the same clip, offline
        r = await client.post("/v1/transcribe?task_id=fsdd-jackson", content=_wav(clips[0]))
    assert r.json()["text"] == finals[0]["transcript"]


async def test_openai_session_update_shape_sets_task_rate_and_turn_detection(url, fsdd_test):
    audio, texts, _ = digits(fsdd_test, "theo", 1)
    at_8k = audio[::2]  # 16 kHz -> 8 kHz (FSDD's own band is under 4 kHz)
    async with websockets.connect(ws_url(url)) as ws:
        await ws.recv()
        update = {
            "type": "transcription_session.update",
            "session": {
                "input_audio_format": "pcm16",
                "input_audio_sample_rate": 8000,
                "input_audio_transcription": {"model": "fsdd-theo"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
            },
        }
        await ws.send(json.dumps(update))
        (updated,) = await events_until(ws, "transcription_session.updated")
        assert updated["session"]["input_audio_sample_rate"] == 8000
        assert updated["session"]["turn_detection"]["silence_duration_ms"] == 300
        await ws.send(pcm(at_8k))  # a binary message is raw PCM16
        seen = await events_until(ws, "conversation.item.input_audio_transcription.completed")
    assert seen[-1]["transcript"] == texts[0] and seen[-1]["end_reason"] == "silence"


async def test_concurrent_streams_on_different_tasks_share_fused_passes(url, fsdd_test):
    speakers = ["jackson", "theo", "george", "yweweler"]

    async def one(speaker):
        audio, _, _ = digits(fsdd_test, speaker, 2)
        async with websockets.connect(ws_url(url, f"fsdd-{speaker}")) as ws:
            await ws.recv()
            await send_audio(ws, pcm(audio))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            for _ in range(2):
                await events_until(ws, "conversation.item.input_audio_transcription.completed")

    async with httpx.AsyncClient(base_url=url) as client:
        before = _tasks_per_batch(await client.get("/metrics"))
        await asyncio.gather(*(one(s) for s in speakers))
        after = _tasks_per_batch(await client.get("/metrics"))
    batches, tasks = after[0] - before[0], after[1] - before[1]
    assert batches > 0 and tasks / batches > 1.0  # on average, a pass served several tasks


def _tasks_per_batch(response) -> tuple[float, float]:
    text = response.text
    count = float(re.search(r"^hra_batch_distinct_tasks_count (\S+)$", text, re.M)[1])
    total = float(re.search(r"^hra_batch_distinct_tasks_sum (\S+)$", text, re.M)[1])
    return count, total


def _wav(clip: np.ndarray) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, clip, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_readme_live_client_example_prints_what_it_promises(url, fsdd_root):
    """The docs' realtime client (marked `readme-test: realtime`) run as written."""
    import os
    import subprocess
    import sys

    from server.config import REPO_ROOT
    from tests.test_readme import FENCE, PAGES, _trailing_comments

    (block,) = [
        m["body"]
        for text in PAGES.values()
        for m in FENCE.finditer(text)
        if "readme-test: realtime" in m["before"]
    ]
    code, expected = _trailing_comments(block)
    code = code.replace("localhost:8000", url.removeprefix("http://"))
    env = dict(os.environ, HRA_FSDD_ROOT=str(fsdd_root))
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected
