"""Whisper tiny.en served over real HTTP (ASGI app, its lifespan run): base, heads, refusals."""

from __future__ import annotations

import asyncio
import re

import jiwer
import torch

from adapters_store.head_format import HeadType
from server.config import AudioSettings
from tests.helpers import live_server, running_client
from tests.server.whisper_serving.helpers import (
    head_file,
    normalise,
    wav_bytes,
    whisper_settings,
)


async def _transcribe(client, data: bytes, task: str = "base") -> dict:
    r = await client.post(
        f"/v1/transcribe?task_id={task}", content=data, headers={"content-type": "audio/wav"}
    )
    assert r.status_code == 200, r.text
    return r.json()


async def test_english_speech_transcribes_with_task_base_in_every_response_format(
    tmp_path, english_wavs
):
    async with running_client(whisper_settings(tmp_path)) as client:
        bodies = await asyncio.gather(*(_transcribe(client, d) for d, _ in english_wavs))
        refs = [normalise(t) for _, t in english_wavs]
        hyps = [normalise(b["text"]) for b in bodies]
        assert jiwer.wer(refs, hyps) <= 0.15, hyps  # tiny.en on espeak-ng's voice
        assert hyps[2] == refs[2] and hyps[3] == refs[3]
        assert all(b["task_id"] == "base" and b["head_version"] is None for b in bodies)

        data, text = english_wavs[2]
        form = lambda fmt: {"model": "base", "response_format": fmt}  # noqa: E731
        post = lambda fmt: client.post(  # noqa: E731
            "/v1/audio/transcriptions", files={"file": ("a.wav", data)}, data=form(fmt)
        )
        as_json = (await post("json")).json()
        assert normalise(as_json["text"]) == normalise(text)
        as_text = await post("text")
        assert normalise(as_text.text) == normalise(text)
        verbose = (await post("verbose_json")).json()
        assert normalise(verbose["text"]) == normalise(text)
        (segment,) = verbose["segments"]
        assert 0 <= segment["start"] < segment["end"] <= verbose["duration"]
        assert normalise(segment["text"]) == normalise(text)
        assert -1.5 < segment["avg_logprob"] < 0 and 0 <= segment["no_speech_prob"] < 0.5
        srt = (await post("srt")).text
        assert re.fullmatch(r"1\n00:00:0\d,\d{3} --> 00:00:0\d,\d{3}\n[^\n]+\n", srt), srt
        vtt = (await post("vtt")).text
        assert vtt.startswith("WEBVTT\n\n00:00:0") and normalise(text) in normalise(vtt)


def test_the_openai_client_transcribes_english_with_whisper(tmp_path, english_wavs):
    from openai import OpenAI

    data, text = english_wavs[3]
    path = tmp_path / "a.wav"
    path.write_bytes(data)
    with live_server(whisper_settings(tmp_path)) as base_url:
        client = OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
        with open(path, "rb") as f:
            as_json = client.audio.transcriptions.create(model="base", file=f)
        assert normalise(as_json.text) == normalise(text)
        with open(path, "rb") as f:
            verbose = client.audio.transcriptions.create(
                model="base", file=f, response_format="verbose_json"
            )
        assert normalise(verbose.segments[0].text) == normalise(text)


async def test_uploaded_zero_heads_serve_and_give_base_transcripts(tmp_path, english_wavs):
    data, _ = english_wavs[0]
    async with running_client(whisper_settings(tmp_path)) as client:
        base = await _transcribe(client, data)
        tasks = []
        for head_type in HeadType:
            task = f"zero-{head_type.value}"
            head = head_file(task, head_type, None)
            r = await client.put(f"/v1/tasks/{task}", files={"file": ("h.safetensors", head)})
            assert r.status_code == 200, r.text
            tasks.append(task)
        bodies = await asyncio.gather(*(_transcribe(client, data, t) for t in tasks))
    for task, body in zip(tasks, bodies):
        assert body["task_id"] == task and body["head_version"] == 1
        assert body["text"] == base["text"]


async def test_a_trained_looking_head_served_over_http_equals_it_run_alone_in_a_mixed_batch(
    tmp_path, english_wavs
):
    """Three tenants' different non-zero heads and base, sent at once (fused by the batcher),
    each give what that request gives alone."""
    data, _ = english_wavs[1]
    async with running_client(whisper_settings(tmp_path)) as client:
        tasks = ["base"]
        for seed, head_type in enumerate(HeadType, start=1):
            task = f"tenant-{seed}"
            head = head_file(task, head_type, seed)
            r = await client.put(f"/v1/tasks/{task}", files={"file": ("h.safetensors", head)})
            assert r.status_code == 200, r.text
            tasks.append(task)
        together = await asyncio.gather(*(_transcribe(client, data, t) for t in tasks))
        alone = [await _transcribe(client, data, t) for t in tasks]
        metrics = (await client.get("/metrics")).text
    assert [b["text"] for b in together] == [b["text"] for b in alone]
    assert [b["task_id"] for b in together] == tasks
    batches = float(re.search(r"^hra_batch_size_count (\S+)", metrics, re.M).group(1))
    assert batches < 2 * len(tasks)  # the concurrent requests shared fused batches


async def test_a_vocabulary_is_refused_for_whisper_and_nothing_is_stored(tmp_path):
    async with running_client(whisper_settings(tmp_path)) as client:
        form = {"file": ("h.safetensors", head_file("words", HeadType.LINEAR, None))}
        r = await client.put("/v1/tasks/words", files=form, data={"vocabulary": "yes no"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_vocabulary"
        assert "Whisper" in r.json()["error"]["message"]
        own = head_file("words", HeadType.LINEAR, None, vocabulary=("yes", "no"))
        r = await client.put("/v1/tasks/words", files={"file": ("h.safetensors", own)})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_vocabulary"
        assert (await client.get("/v1/tasks/words")).status_code == 404


async def test_a_head_for_another_backbone_is_refused(tmp_path, default_store):
    ctc_head = default_store.get_bytes("fsdd-theo", default_store.current_version("fsdd-theo"))
    async with running_client(whisper_settings(tmp_path)) as client:
        r = await client.put("/v1/tasks/theo", files={"file": ("h.safetensors", ctc_head)})
        assert 400 <= r.status_code < 500 and r.status_code != 404, r.text
        assert (await client.get("/v1/tasks/theo")).status_code == 404


async def test_audio_past_the_servers_limit_is_refused_and_past_30_s_is_cut_into_windows(
    tmp_path,
):
    settings = whisper_settings(tmp_path, audio=AudioSettings(max_duration_s=40))
    quiet = torch.randn(16_000 * 35) * 1e-5  # -100 dBFS: no speech, so no window runs
    async with running_client(settings) as client:
        ask = lambda data: client.post(  # noqa: E731
            "/v1/transcribe", content=data, headers={"content-type": "audio/wav"}
        )
        r = await ask(wav_bytes(torch.cat([quiet, quiet])))
        assert r.status_code == 413 and r.json()["error"]["code"] == "audio_too_long", r.text
        r = await ask(wav_bytes(quiet))  # past Whisper's 30 s window: long-form, not 413
        assert r.status_code == 200 and r.json()["text"] == "", r.text
        ready = (await client.get("/readyz")).json()
        assert ready["status"] == "ready"


async def test_temperature_is_honoured_bounded_and_reported_per_segment(tmp_path):
    """A greedy loop falls back hotter (verbose_json says at what temperature); the same
    clip with the fallback switched off loops to max_tokens; a temperature outside [0, 1]
    is refused with a stable code and the server goes on."""
    from tests.server.models.whisper.helpers import FSDD, FSDD_ALT
    from tests.server.models.whisper.test_fallback import LOOPING

    folder = FSDD if FSDD.is_dir() else FSDD_ALT
    looping = (folder / LOOPING).read_bytes()  # 8 kHz WAV, as recorded

    def form(**extra):
        return {"model": "base", "response_format": "verbose_json", **extra}

    async def post(client, **extra):
        files = {"file": ("six.wav", looping)}
        return await client.post("/v1/audio/transcriptions", files=files, data=form(**extra))

    settings = whisper_settings(tmp_path, whisper={"max_tokens": 64})
    async with running_client(settings) as client:
        fixed = (await post(client)).json()
        assert fixed["segments"] and all(s["temperature"] > 0 for s in fixed["segments"])
        assert len(fixed["text"]) < 20, fixed["text"]
        for bad in ("1.5", "-0.1", "nan", "hot"):
            r = await post(client, temperature=bad)
            assert r.status_code in (400, 422) and r.json()["error"]["code"], (bad, r.text)
        assert (await post(client, temperature="0.4")).status_code == 200
    off = whisper_settings(tmp_path, whisper={"max_tokens": 64, "temperature_fallback": False})
    async with running_client(off) as client:
        looped = (await post(client)).json()
        assert all(s["temperature"] == 0.0 for s in looped["segments"])
        # "6, 6, 6, ..." to its bound: 32 tokens for this 0.4 s clip (HRA_WHISPER__MIN_TOKENS)
        assert len(looped["text"]) > 40, looped["text"]
