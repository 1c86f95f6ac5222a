"""Admission refuses, with its own 4xx, what would fail or overspend inside a fused batch."""

from __future__ import annotations

import io
import json

import numpy as np
import soundfile as sf

from server.models.ctc.vocabulary import MAX_VOCABULARY_COST, vocabulary_states
from tests.helpers import fsdd_bytes

WORDS = [  # 1,000 distinct 7-letter words
    "".join(chr(97 + (i // 26**k) % 26) for k in range(3)) + "word" for i in range(1000)
]


def _speech(fsdd_test, seconds: float) -> bytes:
    """Real speech with no pause, `seconds` long: FSDD recordings back to back."""
    clips, total = [], 0
    for u in fsdd_test:
        data, rate = sf.read(u.audio, dtype="float32")
        clips.append(data)
        total += data.size
        if total >= seconds * rate:
            break
    out = io.BytesIO()
    sf.write(out, np.concatenate(clips)[: int(seconds * rate)], rate, format="WAV")
    return out.getvalue()


async def _register(client, task: str, vocabulary) -> None:
    head = (await client.get("/v1/tasks/fsdd-george/head")).content
    r = await client.put(
        f"/v1/tasks/{task}",
        files={"file": ("h.safetensors", head)},
        data={"vocabulary": json.dumps(vocabulary)},
    )
    assert r.status_code == 200, r.text


async def test_a_vocabulary_too_costly_for_the_audio_is_refused_and_short_audio_is_served(
    client, fsdd_test
):
    await _register(client, "big-vocabulary", WORDS)
    longest_s = MAX_VOCABULARY_COST / vocabulary_states(WORDS) * 0.04
    too_long = _speech(fsdd_test, longest_s * 2)
    r = await client.post("/v1/transcribe?task_id=big-vocabulary", content=too_long)
    assert r.status_code == 413 and r.json()["error"]["code"] == "vocabulary_too_costly"
    short = _speech(fsdd_test, longest_s / 2)
    r = await client.post("/v1/transcribe?task_id=big-vocabulary", content=short)
    assert r.status_code == 200, r.text
    assert set(r.json()["text"].split()) <= set(WORDS)


async def test_audio_shorter_than_the_model_can_process_is_refused_and_long_enough_is_served(
    client,
):
    engine = client.app.state.runtime.engine
    for samples, status in [(engine.min_samples - 1, 400), (engine.min_samples, 200)]:
        out = io.BytesIO()
        sf.write(out, np.zeros(samples, dtype=np.float32), 16_000, format="WAV")
        r = await client.post("/v1/transcribe", content=out.getvalue())
        assert r.status_code == status, r.text
        if status == 400:
            assert r.json()["error"]["code"] == "audio_too_short"


async def test_a_vocabulary_word_with_a_trailing_newline_is_refused(client, fsdd_test):
    head = (await client.get("/v1/tasks/fsdd-george/head")).content
    r = await client.put(
        "/v1/tasks/newline-words",
        files={"file": ("h.safetensors", head)},
        data={"vocabulary": json.dumps(["one", "two\n"])},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_vocabulary"
    r = await client.post("/v1/transcribe?task_id=newline-words", content=fsdd_bytes(fsdd_test[0]))
    assert r.status_code == 404
