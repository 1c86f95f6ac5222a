"""Hostile clients on /v1/realtime, over a real socket: keys, other tenants' tasks, stream
limits, idle and too-fast streams, malformed events; resources come back when streams drop."""

from __future__ import annotations

import asyncio
import base64
import json
import re

import httpx
import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from adapters_store.disk_store import DiskStore
from server.config import StreamingSettings
from server.data.manifest import load_audio
from tests.helpers import DEFAULT_MODEL_DIR, live_server
from tests.security.helpers import ACME, ADMIN, GLOBEX, keyed_settings

RATE = 16_000


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    settings = keyed_settings(
        tmp_path_factory.mktemp("rt-security"),
        "disk",
        streaming=StreamingSettings(
            max_streams_per_tenant=2,
            max_streams=5,
            idle_timeout_s=2.0,
            max_ahead_s=5.0,
            send_timeout_s=1.0,
        ),
    )
    with live_server(settings) as base:
        yield base


def ws(url: str, key: str | None, task: str = "base", **kwargs):
    headers = {"Authorization": f"Bearer {key}"} if key else None
    target = url.replace("http://", "ws://") + f"/v1/realtime?model={task}"
    return websockets.connect(target, additional_headers=headers, **kwargs)


def append(samples: np.ndarray) -> str:
    data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    return json.dumps(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()}
    )


async def next_of(conn, kind: str, timeout: float = 15.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await conn.recv())
            if event["type"] == kind:
                return event


async def closed_with(conn, timeout: float = 15.0) -> tuple[list[dict], int]:
    events = []
    async with asyncio.timeout(timeout):
        try:
            while True:
                events.append(json.loads(await conn.recv()))
        except ConnectionClosed as exc:
            return events, exc.rcvd.code if exc.rcvd else -1


async def live_streams(url: str) -> float:
    async with httpx.AsyncClient(base_url=url) as client:
        r = await client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    return float(re.search(r"^hra_live_streams (\S+)$", r.text, re.M)[1])


async def test_a_stream_without_a_valid_key_is_refused_at_the_handshake(url):
    for key in (None, "wrong-key"):
        with pytest.raises(InvalidStatus) as info:
            async with ws(url, key):
                pass
        assert info.value.response.status_code == 401
        assert json.loads(info.value.response.body)["error"]["code"] == "unauthorized"


async def test_the_openai_browser_subprotocol_carries_the_key(url):
    target = url.replace("http://", "ws://") + "/v1/realtime"
    async with websockets.connect(
        target, subprotocols=["realtime", f"openai-insecure-api-key.{ACME}"]
    ) as conn:
        assert conn.subprotocol == "realtime"
        created = json.loads(await conn.recv())
        assert created["type"] == "transcription_session.created"


@pytest.mark.parametrize("task", ["..%2Fetc", "-leading-dash", "bad%20id", "%E2%80%AEx", "a" * 200])
async def test_an_invalid_task_id_in_the_url_closes_as_the_clients_error_not_the_servers(url, task):
    async with ws(url, ACME, task) as conn:
        events, code = await closed_with(conn)
    assert events[-1]["error"]["code"] == "invalid_task_id"
    assert code == 1008  # policy: the client's own error (1011 would say the server failed)


async def test_another_tenants_private_task_is_unknown_at_open_and_at_update(url):
    async with httpx.AsyncClient(base_url=url) as client:  # acme's private task
        head = DiskStore(DEFAULT_MODEL_DIR / "heads").get_bytes("fsdd-george")
        r = await client.put(
            "/v1/tasks/acme-private",
            files={"file": ("h.safetensors", head)},
            headers={"Authorization": f"Bearer {ACME}"},
        )
        assert r.status_code == 200, r.text
    async with ws(url, GLOBEX, "acme-private") as conn:
        events, code = await closed_with(conn)
    assert events[-1]["error"]["code"] == "unknown_task" and code == 1008
    async with ws(url, GLOBEX) as conn:
        await next_of(conn, "transcription_session.created")
        update = {"type": "transcription_session.update"}
        update["session"] = {"input_audio_transcription": {"model": "acme-private"}}
        await conn.send(json.dumps(update))
        error = await next_of(conn, "error")
        assert error["error"]["code"] == "unknown_task"
        update["session"] = {"input_audio_transcription": {"model": "fsdd-theo"}}
        await conn.send(json.dumps(update))  # a task globex may use: the stream lives on
        updated = await next_of(conn, "transcription_session.updated")
        assert updated["session"]["input_audio_transcription"]["model"] == "fsdd-theo"
    async with ws(url, ACME, "acme-private") as conn:  # its owner streams to it
        assert json.loads(await conn.recv())["type"] == "transcription_session.created"


async def test_stream_limits_per_tenant_and_in_total_and_released_when_streams_drop(url):
    async with ws(url, ACME) as a1, ws(url, ACME) as a2:
        for conn in (a1, a2):
            await next_of(conn, "transcription_session.created")
        async with ws(url, ACME) as a3:  # acme's third: refused, others unaffected
            events, code = await closed_with(a3)
        assert events[-1]["error"]["code"] == "too_many_streams" and code == 1013
        async with ws(url, GLOBEX) as g1:
            assert json.loads(await g1.recv())["type"] == "transcription_session.created"
            assert await live_streams(url) == 3
    assert await streams_drain_to_zero(url)
    # many streams opened and dropped without a close handshake: every lease comes back
    for _ in range(3):
        conns = []
        for key in (ACME, GLOBEX, ADMIN, ADMIN, ADMIN):
            conn = await ws(url, key)
            await next_of(conn, "transcription_session.created")
            conns.append(conn)
        async with ws(url, ADMIN) as extra:  # the server's total (5) is reached
            events, code = await closed_with(extra)
        assert events[-1]["error"]["code"] == "too_many_streams"
        for conn in conns:
            conn.transport.abort()  # dropped, not closed
        assert await streams_drain_to_zero(url)


async def streams_drain_to_zero(url: str) -> bool:
    for _ in range(100):
        if await live_streams(url) == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_silent_client_is_closed_after_the_idle_timeout(url):
    async with ws(url, ACME) as conn:
        events, code = await closed_with(conn, timeout=10)
    assert events[-1]["error"]["code"] == "stream_idle_timeout" and code == 1008


async def test_audio_faster_than_real_time_is_closed_and_costs_nothing_more(url):
    async with ws(url, ACME) as conn:
        await next_of(conn, "transcription_session.created")
        second = np.zeros(RATE, np.float32)
        try:
            for _ in range(30):  # 30 s of audio at once; the bound is 5 s ahead
                await conn.send(append(second))
        except ConnectionClosed:
            pass
        events, code = await closed_with(conn)
    assert any(e.get("error", {}).get("code") == "stream_too_fast" for e in events)
    assert code == 1008


async def test_malformed_events_get_error_events_and_the_stream_goes_on(url, fsdd_test):
    bad = [
        ("{not json", "invalid_event"),
        ("[1, 2]", "invalid_event"),
        (json.dumps({"type": "no.such.event"}), "invalid_event"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}), "invalid_audio_chunk"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA"}), "invalid_audio_chunk"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": 7}), "invalid_audio_chunk"),
        (
            json.dumps({"type": "session.update", "session": {"input_audio_format": "g711"}}),
            "invalid_event",
        ),
        (
            json.dumps(
                {"type": "transcription_session.update", "session": {"input_audio_sample_rate": 7}}
            ),
            "invalid_event",
        ),
        *(
            (
                json.dumps(
                    {"type": "session.update", "session": {"input_audio_sample_rate": rate}}
                ),
                "invalid_event",
            )
            for rate in (16000.0, True, "16000")  # only the integer rates
        ),
        ("[" * 100_000 + "]" * 100_000, "invalid_event"),
        (json.dumps({"type": "x", "pad": "a" * (1 << 20)}), "message_too_large"),
    ]
    clip = load_audio(next(u for u in fsdd_test if u.task == "fsdd-theo").audio).numpy()
    frames = clip[: clip.size // 320 * 320].reshape(-1, 320)
    tone = np.tile(frames[np.argsort((frames**2).mean(axis=1))[:3]].reshape(-1), 12)
    async with ws(url, ACME, "fsdd-theo") as conn:
        await next_of(conn, "transcription_session.created")
        for message, code in bad:
            await conn.send(message)
            assert (await next_of(conn, "error"))["error"]["code"] == code
        for part in (tone, clip, tone):
            await conn.send(append(part))
        final = await next_of(conn, "conversation.item.input_audio_transcription.completed")
    assert final["transcript"] == "zero"


async def test_a_head_replaced_mid_utterance_applies_from_the_next_utterance(url, fsdd_test):
    heads = DiskStore(DEFAULT_MODEL_DIR / "heads")
    auth = {"Authorization": f"Bearer {ACME}"}

    async def put(task: str, source: str) -> int:
        async with httpx.AsyncClient(base_url=url) as client:
            files = {"file": ("h.safetensors", heads.get_bytes(source))}
            r = await client.put(f"/v1/tasks/{task}", files=files, headers=auth)
        assert r.status_code == 200, r.text
        return r.json()["version"]

    assert await put("acme-swap", "fsdd-george") == 1
    clip = load_audio(next(u for u in fsdd_test if u.task == "fsdd-theo").audio).numpy()
    frames = clip[: clip.size // 320 * 320].reshape(-1, 320)
    tone = np.tile(frames[np.argsort((frames**2).mean(axis=1))[:3]].reshape(-1), 12)
    async with ws(url, ACME, "acme-swap") as conn:
        await next_of(conn, "transcription_session.created")
        await conn.send(append(np.concatenate([tone, clip[: clip.size // 2]])))
        await next_of(conn, "input_audio_buffer.speech_started")
        await asyncio.sleep(0.3)  # its head was resolved when its speech started
        assert await put("acme-swap", "fsdd-theo") == 2
        await conn.send(append(np.concatenate([clip[clip.size // 2 :], tone])))
        first = await next_of(conn, "conversation.item.input_audio_transcription.completed")
        await conn.send(append(np.concatenate([clip, tone])))
        second = await next_of(conn, "conversation.item.input_audio_transcription.completed")
    assert (first["head_version"], second["head_version"]) == (1, 2)
