"""Long files on a Whisper model directory (tiny.en) through the real app: windows of at
most 30 s, stitched by word times, streamed; the request's prompt on every window;
near-silence costs nothing and says nothing.

Audio: the JFK clip and espeak-ng sentences (load_tests/long_audio.py). Words are
compared lower-cased with punctuation dropped (`words_of`), against each piece
transcribed alone in one pass. tiny.en reads a sentence a little differently with the
sentences around it than alone ("sails" / "sailed"), so the checks are: every piece's
words are where the piece is (file times), no run of more than one word is lost or
added anywhere (a dropped or doubled sentence, or a word doubled at a cut, would be),
and the whole stays close to the pieces alone (word error rate bounds measured below).
"""

from __future__ import annotations

import asyncio
import json

import jiwer
import numpy as np
import pytest
import torch

from load_tests.long_audio import (
    SPEECH_RATE,
    edit_runs,
    long_speech,
    sentence,
    unbroken_speech,
    wav,
    words_of,
)
from server.config import ApiKey, LongformSettings
from tests.helpers import running_client
from tests.server.whisper_serving.helpers import whisper_settings

WORDS = {"timestamp_granularities[]": "word"}


async def _ask(client, samples: np.ndarray, rate: int = SPEECH_RATE, **form) -> dict:
    r = await client.post(
        "/v1/audio/transcriptions",
        files={"file": ("a.flac", wav(samples, rate, fmt="FLAC"))},
        data={"model": "base", "response_format": "verbose_json", **form},
    )
    assert r.status_code == 200, r.text
    return r.json()


def _edit_runs(ref: list[str], hyp: list[str]) -> tuple[int, int]:
    """(most words lost in one stretch of edits, most words added in one)."""
    return edit_runs(ref, hyp)[:2]


def _windows(client, samples: np.ndarray):
    return client.app.state.runtime.transcription.window_plan.plan(
        torch.from_numpy(samples), SPEECH_RATE
    )


@pytest.mark.slow
async def test_a_long_file_gives_every_pieces_words_once_in_order_at_file_times(tmp_path):
    samples, pieces = long_speech(8, seed=1)  # 51 s: JFK twice, six sentences, pauses
    seconds = samples.shape[0] / SPEECH_RATE
    async with running_client(whisper_settings(tmp_path)) as client:
        assert len(_windows(client, samples)) >= 2
        body, *alone = await asyncio.gather(
            _ask(client, samples, **WORDS), *(_ask(client, p.samples) for p in pieces)
        )
    assert body["duration"] == pytest.approx(seconds, abs=1e-3)
    long_words = words_of(body["text"])
    alone_words = [words_of(a["text"]) for a in alone]
    flat = [w for ws in alone_words for w in ws]
    assert _edit_runs(flat, long_words) <= (1, 1), (flat, long_words)
    assert jiwer.wer(" ".join(flat), " ".join(long_words)) <= 0.2
    # each piece's words are where the piece is: the words centred in its span
    words = body["words"]
    for piece, solo in zip(pieces, alone_words):
        lo, hi = piece.start / SPEECH_RATE - 0.3, piece.end / SPEECH_RATE + 0.3
        here = [
            x for w in words if lo <= (w["start"] + w["end"]) / 2 < hi for x in words_of(w["word"])
        ]
        assert jiwer.wer(" ".join(solo), " ".join(here)) <= 0.4, (solo, here)
    assert " ".join(w["word"] for w in words) == body["text"]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and 0 <= starts[0] and words[-1]["end"] <= seconds
    # segments: Whisper's own, stitched, in file time, with their window's numbers
    segments = body["segments"]
    assert " ".join(s["text"] for s in segments) == body["text"]
    assert all(a["end"] <= b["start"] for a, b in zip(segments, segments[1:]))
    assert all(0 <= s["start"] < s["end"] <= seconds for s in segments)
    assert all(-1.5 < s["avg_logprob"] < 0 and 0 <= s["no_speech_prob"] < 0.6 for s in segments)
    assert segments[-1]["end"] > seconds - 5  # file time, not window time


@pytest.mark.slow
async def test_speech_with_no_pause_past_30_s_is_cut_by_force_without_doubled_or_lost_words(
    tmp_path,
):
    samples, pieces = unbroken_speech(40, first=3)  # 41 s of sentences abutted
    async with running_client(whisper_settings(tmp_path)) as client:
        windows = _windows(client, samples)
        forced = [w for w in windows[1:] if w.start < w.core_start]
        assert forced, "the stretch was not cut by force"
        body, *alone = await asyncio.gather(
            _ask(client, samples, **WORDS), *(_ask(client, p.samples, **WORDS) for p in pieces)
        )
    long_words = words_of(body["text"])
    flat = [w for a in alone for w in words_of(a["text"])]
    assert _edit_runs(flat, long_words) <= (1, 1), (flat, long_words)
    assert jiwer.wer(" ".join(flat), " ".join(long_words)) <= 0.25
    # around each forced cut: as many words as the pieces alone put there, none twice
    solo = [  # the pieces' own word times, placed in the file
        (w["word"], w["start"] + p.start / SPEECH_RATE, w["end"] + p.start / SPEECH_RATE)
        for p, a in zip(pieces, alone)
        for w in a["words"]
    ]
    for window in forced:
        cut = window.core_start / SPEECH_RATE
        near = [w["word"] for w in body["words"] if abs((w["start"] + w["end"]) / 2 - cut) < 1.5]
        ref = [w for w, s, e in solo if abs((s + e) / 2 - cut) < 1.5]
        assert abs(len(near) - len(ref)) <= 1, (cut, ref, near)
        assert all(a.lower() != b.lower() for a, b in zip(near, near[1:])), near


@pytest.mark.slow
async def test_a_window_whisper_ends_early_is_followed_by_a_tail_and_nothing_is_lost(tmp_path):
    # JFK then four sentences (32 s): tiny.en ends the first window (JFK and three
    # sentences, 27 s) after JFK's "country." and would lose the three sentences
    samples, pieces = long_speech(5, seed=22)
    truth = [w for p in pieces for w in words_of(p.text)]
    found = {}
    for per_window in (2, 0):  # the default, and no tails
        settings = whisper_settings(tmp_path, longform=LongformSettings(whisper_tails=per_window))
        async with running_client(settings) as client:
            found[per_window] = words_of((await _ask(client, samples))["text"])
    lost, added = _edit_runs(truth, found[2])
    assert lost <= 1 and added <= 1, found[2]
    assert _edit_runs(truth, found[0])[0] > 20  # without the tail: three sentences gone


async def test_stream_true_gives_a_delta_per_window_then_the_whole_text(tmp_path):
    samples, _ = long_speech(8, seed=4, every_jfk=0)  # 38 s of sentences with pauses
    async with running_client(whisper_settings(tmp_path)) as client:
        assert len(_windows(client, samples)) == 2
        audio = wav(samples, SPEECH_RATE, fmt="FLAC")
        r = await client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.flac", audio)},
            data={"model": "base", "stream": "true"},
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
        whole = await client.post(
            "/v1/audio/transcriptions", files={"file": ("a.flac", audio)}, data={"model": "base"}
        )
    deltas = [e["delta"] for e in events if e["type"] == "transcript.text.delta"]
    assert [e["type"] for e in events] == ["transcript.text.delta"] * 2 + ["transcript.text.done"]
    assert all(words_of(d) for d in deltas)
    assert "".join(deltas) == events[-1]["text"] == whole.json()["text"]


@pytest.mark.slow
async def test_the_prompt_and_language_apply_to_every_window(tmp_path):
    samples, pieces = long_speech(5, seed=5, every_jfk=4)  # JFK, three sentences, JFK
    prompt = "My Fellow Americans, Ask Not."
    async with running_client(whisper_settings(tmp_path)) as client:
        windows = _windows(client, samples)
        holding = [  # the windows holding the middle of each JFK clip: two different ones
            [w.index for w in windows if w.start <= (p.start + p.end) // 2 < w.end]
            for p in (pieces[0], pieces[-1])
        ]
        assert len(holding[0]) == len(holding[1]) == 1 and holding[0] != holding[1]
        plain, prompted = await asyncio.gather(
            _ask(client, samples, language="en"),
            _ask(client, samples, language="en", prompt=prompt),
        )
    # alone, tiny.en writes "ask not"; after this prompt, "Ask Not": in both windows
    assert plain["text"].count("Ask Not") == 0
    assert prompted["text"].count("Ask Not") == 2, prompted["text"]
    assert prompted["language"] == "english" and "words" not in prompted


@pytest.mark.slow
async def test_two_hours_of_near_silence_cost_little_say_nothing_and_others_are_served(
    tmp_path,
):
    """2 h of -90 dBFS noise at 8 kHz (16-bit dither: below any window, no pass at all),
    while another tenant's short requests are answered. (Louder noise is a window, and
    Whisper may read words into it: README.)"""
    rng = np.random.default_rng(0)
    quiet = rng.standard_normal(8_000 * 7200, dtype=np.float32) * np.float32(10 ** (-90 / 20))
    audio = wav(quiet, 8_000, fmt="FLAC")
    del quiet
    clip, text = sentence(2)
    keys = [ApiKey(key="key-a", tenant="a"), ApiKey(key="key-b", tenant="b")]
    settings = whisper_settings(tmp_path, open_access=False, api_keys=keys)
    async with running_client(settings) as client:
        service = client.app.state.runtime

        async def long() -> tuple[dict, float]:
            began = asyncio.get_running_loop().time()
            r = await client.post(
                "/v1/audio/transcriptions",
                files={"file": ("quiet.flac", audio)},
                data={"model": "base", "response_format": "verbose_json"},
                headers={"Authorization": "Bearer key-a"},
            )
            assert r.status_code == 200, r.text
            return r.json(), asyncio.get_running_loop().time() - began

        async def short() -> str:
            r = await client.post(
                "/v1/audio/transcriptions",
                files={"file": ("a.wav", wav(clip, SPEECH_RATE))},
                data={"model": "base"},
                headers={"Authorization": "Bearer key-b"},
            )
            assert r.status_code == 200, r.text
            return r.json()["text"]

        (body, seconds), *shorts = await asyncio.gather(long(), short(), short())
        assert service.transcription.budget.held == 0
    assert body["text"] == "" and body["segments"] == []
    assert body["duration"] == pytest.approx(7200, abs=0.01)
    assert seconds < 30  # measured ~5 s here; a pass per 28 s of it would be ~10 min
    assert all(words_of(s) == words_of(text) for s in shorts), (shorts, text)
