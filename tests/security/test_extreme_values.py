"""Extreme values in a request (huge JSON integers, offsets past any count, audio the
resampler shortens below the model minimum) are refused with a 4xx, never a 500."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

from tests.security.helpers import auth

HUGE_INT = "1" + "0" * 5000  # past Python's 4,300-digit int parsing limit: ValueError


def _with_metadata_text(head: bytes, old: bytes, new: bytes) -> bytes:
    """The head file with `old` replaced by `new` in its JSON header (length re-stated)."""
    (length,) = struct.unpack("<Q", head[:8])
    header = head[8 : 8 + length].replace(old, new, 1)
    assert header != head[8 : 8 + length]
    return struct.pack("<Q", len(header)) + header + head[8 + length :]


async def test_json_with_a_5000_digit_integer_is_a_4xx_not_a_500(tenants, head_files):
    client, _ = tenants
    files = {"file": ("h", head_files["acme"])}
    r = await client.put(
        "/v1/tasks/acme-n1",
        files=files,
        data={"metadata": f'{{"n": {HUGE_INT}}}'},
        headers=auth("acme"),
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text
    r = await client.put(
        "/v1/tasks/acme-n2",
        files=files,
        data={"vocabulary": f"[{HUGE_INT}]"},
        headers=auth("acme"),
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text
    # the same number inside the head file's own metadata (JSON in a JSON string)
    inner = _with_metadata_text(
        head_files["acme"], b'\\"extra\\": {}', b'\\"extra\\": {\\"n\\": %s}' % HUGE_INT.encode()
    )
    r = await client.put("/v1/tasks/acme-n3", files={"file": ("h", inner)}, headers=auth("acme"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "head_rejected", r.text
    # and in the safetensors header itself
    outer = _with_metadata_text(
        head_files["acme"], b'"__metadata__":{', b'"n":%s,"__metadata__":{' % HUGE_INT.encode()
    )
    r = await client.put("/v1/tasks/acme-n4", files={"file": ("h", outer)}, headers=auth("acme"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "head_rejected", r.text
    r = await client.get("/v1/tasks", headers=auth("acme"))
    assert r.json()["tasks"] == []  # nothing was stored


async def test_a_task_list_offset_past_what_the_store_can_count_is_a_4xx_not_a_500(tenants):
    client, _ = tenants
    for offset in (2**63 - 1, 10**20):
        r = await client.get(f"/v1/tasks?offset={offset}", headers=auth("acme"))
        assert r.status_code < 500, r.text
        if r.status_code == 200:
            assert r.json()["tasks"] == []


async def test_audio_the_resampler_shortens_below_the_model_minimum_is_refused_not_a_500(tenants):
    """At 7,999 Hz, 100 samples are 200.03 samples at 16 kHz (admission said: enough, 201)
    but the resampler's approximated ratio makes 200, one short of the front end's 201."""
    client, _ = tenants
    buffer = io.BytesIO()
    sf.write(buffer, np.full(100, 0.1, np.float32), 7_999, format="WAV", subtype="PCM_16")
    r = await client.post("/v1/transcribe", content=buffer.getvalue(), headers=auth("acme"))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "audio_too_short"
