"""Bad audio and requests over HTTP: each a JSON error with a stable code, and the
server healthy afterwards; odd but valid audio is transcribed."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from server.config import AudioSettings
from tests.helpers import make_settings, running_client


def _wav(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def _speech(fsdd_test, rate: int = 8000) -> np.ndarray:
    data, native = sf.read(fsdd_test[0].audio, dtype="float32")
    assert native == 8000
    if rate == native:
        return data
    positions = np.arange(int(len(data) * rate / native)) * native / rate
    return np.interp(positions, np.arange(len(data)), data).astype(np.float32)


@pytest.fixture
async def small_limits(tmp_path):
    settings = make_settings(tmp_path, audio=AudioSettings(max_bytes=200_000, max_duration_s=3))
    async with running_client(settings) as client:
        yield client


async def _assert_error(client, response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


@pytest.mark.parametrize(
    "body,code",
    [
        (b"", "empty_audio"),
        (b"GIF89a not audio" * 20, "invalid_audio"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "invalid_audio"),
    ],
    ids=["empty", "not-audio", "truncated-header"],
)
async def test_undecodable_bodies_get_400_with_a_code(client, body, code):
    r = await client.post("/v1/transcribe", content=body, headers={"content-type": "audio/wav"})
    await _assert_error(client, r, 400, code)


async def test_zero_samples_nan_and_inf_audio_are_refused(client):
    cases = [
        (_wav(np.zeros(0, dtype=np.float32), 16000), "empty_audio"),
        (_wav(np.array([0.1, np.nan] * 800, dtype=np.float32), 16000, "FLOAT"), "invalid_audio"),
        (_wav(np.array([0.1, np.inf] * 800, dtype=np.float32), 16000, "FLOAT"), "invalid_audio"),
    ]
    for body, code in cases:
        r = await client.post("/v1/transcribe", content=body)
        await _assert_error(client, r, 400, code)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_24", "FLOAT"])
async def test_8_bit_24_bit_and_float_wavs_transcribe_like_16_bit(client, fsdd_test, subtype):
    speech = _speech(fsdd_test)
    reference = await client.post("/v1/transcribe?task_id=fsdd-george", content=_wav(speech, 8000))
    r = await client.post("/v1/transcribe?task_id=fsdd-george", content=_wav(speech, 8000, subtype))
    assert r.status_code == 200
    assert r.json()["text"] == reference.json()["text"]


@pytest.mark.parametrize("rate", [1000, 96000])
async def test_extreme_sample_rates_and_six_channels_are_transcribed(client, fsdd_test, rate):
    mono = _speech(fsdd_test, rate)
    r = await client.post("/v1/transcribe", content=_wav(np.stack([mono] * 6, axis=1), rate))
    assert r.status_code == 200
    assert abs(r.json()["duration_s"] - len(mono) / rate) < 0.01


async def test_over_the_duration_limit_is_413(small_limits):
    long = np.zeros(16000 * 4, dtype=np.float32) + 0.01
    r = await small_limits.post("/v1/transcribe", content=_wav(long, 8000))  # 8 s
    await _assert_error(small_limits, r, 413, "audio_too_long")


async def test_over_the_byte_limit_is_413_without_reading_the_body(small_limits):
    sent = {"bytes": 0}

    async def endless():
        for _ in range(10_000):  # would be 640 MB; the server stops reading long before
            sent["bytes"] += 65536
            yield b"\x00" * 65536

    r = await small_limits.post(
        "/v1/transcribe", content=endless(), headers={"content-type": "audio/wav"}
    )
    await _assert_error(small_limits, r, 413, "payload_too_large")
    assert sent["bytes"] < 2_000_000
    declared = await small_limits.post("/v1/transcribe", content=b"\x00" * 300_000)
    await _assert_error(small_limits, declared, 413, "payload_too_large")


async def test_only_dataset_uploads_get_the_dataset_limit_every_other_body_the_audio_one(
    small_limits,
):
    body = b"\x00" * 300_000  # over the audio limit (200 kB), far under the dataset one
    audio = await small_limits.post("/v1/transcribe", content=body)
    await _assert_error(small_limits, audio, 413, "payload_too_large")
    head = await small_limits.put("/v1/tasks/x", content=body)
    assert head.status_code == 413
    lookalike = await small_limits.post("/v1/filesystem", content=body)  # not /v1/files
    assert lookalike.status_code == 413
    files = await small_limits.post(
        "/v1/files", files={"file": ("d.zip", body)}, data={"purpose": "fine-tune"}
    )
    assert files.status_code == 400 and files.json()["error"]["code"] == "invalid_dataset"


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/tasks/big-head"])
async def test_an_oversized_streamed_multipart_body_is_413_on_form_routes_too(small_limits, path):
    """FastAPI turns any error while it parses a form into 400; the limit's answer wins."""
    boundary = b"XyZ"

    async def streamed():
        yield b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        for _ in range(100):  # 6.5 MB against a 264 KB limit
            yield b"\x00" * 65536

    method = small_limits.put if path.startswith("/v1/tasks") else small_limits.post
    r = await method(
        path,
        content=streamed(),
        headers={"content-type": f"multipart/form-data; boundary={boundary.decode()}"},
    )
    await _assert_error(small_limits, r, 413, "payload_too_large")


async def test_unknown_malformed_and_missing_task_ids(client, fsdd_test):
    clip = open(fsdd_test[0].audio, "rb").read()
    r = await client.post("/v1/transcribe?task_id=no-such-task", content=clip)
    await _assert_error(client, r, 404, "unknown_task")
    r = await client.post("/v1/transcribe?task_id=../etc/passwd", content=clip)
    await _assert_error(client, r, 422, "invalid_task_id")
    r = await client.post("/v1/transcribe?task_id=" + "x" * 200, content=clip)
    await _assert_error(client, r, 422, "validation_error")
    r = await client.post(
        "/v1/audio/transcriptions", files={"file": ("a.wav", clip)}, data={"model": "bad id!"}
    )
    await _assert_error(client, r, 422, "invalid_task_id")
    r = await client.post("/v1/audio/transcriptions", data={"model": "fsdd-george"})
    await _assert_error(client, r, 422, "validation_error")  # no file part


async def test_a_task_id_ending_in_a_newline_is_refused_not_stored(client):
    head = (await client.get("/v1/tasks/fsdd-george/head")).content
    r = await client.put("/v1/tasks/evil-id%0A", files={"file": ("h.safetensors", head)})
    await _assert_error(client, r, 422, "invalid_task_id")
    listed = (await client.get("/v1/tasks", params={"limit": 1000})).json()["tasks"]
    assert not [t for t in listed if t.startswith("evil-id")]


async def test_wrong_content_type_is_refused(client):
    r = await client.post(
        "/v1/transcribe", content=b'{"audio": 1}', headers={"content-type": "application/json"}
    )
    await _assert_error(client, r, 400, "invalid_request")


async def test_an_undecodable_upload_is_refused_without_library_text_or_heap_addresses(client):
    for body in (b"RIFF\x00\x00\x00\x00WAVEjunk" * 4, b"fLaC" + bytes(64), b"\x00" * 300):
        r = await client.post("/v1/transcribe", content=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_audio", r.text
        message = r.json()["error"]["message"]
        assert "0x" not in message and "object at" not in message and "BytesIO" not in message
