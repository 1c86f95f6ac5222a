"""Long files through the real app: windows batched, stitched, in every format, streamed."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from load_tests.long_audio import RATE, long_fsdd, wav
from server.config import LongformSettings
from tests.helpers import live_server, make_settings, running_client

SPEAKER = "george"
TASK = f"fsdd-{SPEAKER}"


@pytest.fixture(scope="module")
def long_file(fsdd_root):
    """~150 s of one FSDD speaker's takes with 0.3-1.2 s pauses (its task's head knows them)."""
    samples, pieces = long_fsdd(fsdd_root, 150, seed=3, speaker=SPEAKER)
    return samples, pieces


async def _text(client, audio: bytes) -> str:
    r = await client.post(
        f"/v1/transcribe?task_id={TASK}", content=audio, headers={"content-type": "audio/wav"}
    )
    assert r.status_code == 200, r.text
    return r.json()["text"]


@pytest.mark.slow
async def test_a_long_file_gives_the_same_words_as_its_pieces_transcribed_alone(
    tmp_path, long_file
):
    samples, pieces = long_file
    async with running_client(make_settings(tmp_path)) as client:
        r = await client.post(
            "/v1/audio/transcriptions",
            files={"file": ("long.wav", wav(samples))},
            data={"model": TASK, "response_format": "verbose_json"},
            params={},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        long_words = body["text"].split()
        assert body["duration"] == pytest.approx(samples.shape[0] / RATE, abs=1e-3)
        # the pieces (FSDD takes) transcribed alone, one after another: the same words
        solo = await asyncio.gather(*(_text(client, p.path.read_bytes()) for p in pieces))
        assert long_words == " ".join(solo).split()
        # segments come from the windows' words and pauses, and say how sure they are
        segments = body["segments"]
        assert " ".join(s["text"] for s in segments) == body["text"]
        assert all(b["start"] >= a["end"] for a, b in zip(segments, segments[1:]))
        for s in segments:
            assert -5 < s["avg_logprob"] <= 0 and 0 <= s["no_speech_prob"] < 0.1
            assert s["compression_ratio"] > 0


async def test_long_files_come_in_every_format_with_file_times(tmp_path, fsdd_root):
    samples, _ = long_fsdd(fsdd_root, 25, seed=4, speaker=SPEAKER)
    seconds = samples.shape[0] / RATE
    async with running_client(make_settings(tmp_path)) as client:

        async def ask(fmt, **extra):
            r = await client.post(
                "/v1/audio/transcriptions",
                files={"file": ("long.flac", wav(samples, fmt="FLAC"))},
                data={"model": TASK, "response_format": fmt, **extra},
            )
            assert r.status_code == 200, r.text
            return r

        verbose = (await ask("verbose_json", **{"timestamp_granularities[]": "word"})).json()
        words = verbose["words"]
        assert len(words) > 12 and words[-1]["end"] > seconds - 3  # file time, not window time
        assert all(b["start"] >= a["start"] for a, b in zip(words, words[1:]))
        text = (await ask("text")).text.strip()
        assert text == verbose["text"] == (await ask("json")).json()["text"]
        srt = (await ask("srt")).text
        vtt = (await ask("vtt")).text
        assert srt.count(" --> ") == vtt.count(" --> ") == len(verbose["segments"]) > 1
        raw = await client.post(
            f"/v1/transcribe?task_id={TASK}",
            content=wav(samples),
            headers={"content-type": "audio/wav"},
        )
        assert raw.json()["text"] == text


def test_the_openai_client_streams_window_by_window_and_gets_refusals_before_any_event(
    tmp_path, fsdd_root
):
    samples, _ = long_fsdd(fsdd_root, 30, seed=5, speaker=SPEAKER)
    audio = wav(samples)
    clip = (fsdd_root / f"7_{SPEAKER}_3.wav").read_bytes()
    with live_server(make_settings(tmp_path)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        events = list(
            client.audio.transcriptions.create(file=("long.wav", audio), model=TASK, stream=True)
        )
        whole = client.audio.transcriptions.create(file=("long.wav", audio), model=TASK)
        short = list(
            client.audio.transcriptions.create(file=("a.wav", clip), model=TASK, stream=True)
        )
        with pytest.raises(openai.BadRequestError) as err:
            client.audio.transcriptions.create(
                file=("a.wav", b"not audio"), model=TASK, stream=True
            )
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert [e.type for e in events[-1:]] == ["transcript.text.done"]
    assert len(deltas) == len(events) - 1 > 5  # one per window with words, as they finish
    assert "".join(d.delta for d in deltas) == events[-1].text == whole.text
    # a clip that fits one pass: one delta, then done
    assert [e.type for e in short] == ["transcript.text.delta", "transcript.text.done"]
    assert short[0].delta == short[1].text == "seven"
    # a refusal is an ordinary JSON error with its status, not an event
    assert err.value.body["code"] == "invalid_audio"


async def test_an_error_after_the_stream_started_ends_it_with_an_error_event(tmp_path, fsdd_root):
    samples, _ = long_fsdd(fsdd_root, 20, seed=6, speaker=SPEAKER)
    # every window's deadline passes before it can run: the stream has started (200) by then
    settings = make_settings(tmp_path, longform=LongformSettings(window_timeout_s=1e-6))
    async with running_client(settings) as client:
        r = await client.post(
            "/v1/audio/transcriptions",
            files={"file": ("long.wav", wav(samples))},
            data={"model": TASK, "stream": "true"},
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
        assert events[-1]["type"] == "error"
        assert events[-1]["error"]["code"] == "deadline_exceeded"
        assert not any(e["type"] == "transcript.text.done" for e in events)
        assert client.app.state.runtime.transcription.budget.held == 0
