"""Item 4 of issue 12 at the HTTP edge, tried as a hostile tenant would: /metrics
leaks no task id, no body is read before the key is checked, a trickled body or a
flood of connections cannot hold the server, and client text reaches logs escaped."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from server.api.app import create_app
from server.cli import uvicorn_options
from server.config import HttpSettings
from tests.helpers import fsdd_bytes, live_server, make_settings, running_client, wait_until
from tests.security.helpers import ACME, ADMIN, GLOBEX, keyed_settings

SCRAPER = "metrics-key-4"


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _keyed_settings(tmp_path, **overrides):
    """Two tenants and an admin on the disk store, and a key for the metrics scraper."""
    return keyed_settings(
        tmp_path, "disk", **{"http": HttpSettings(metrics_key=SCRAPER), **overrides}
    )


@pytest.fixture
async def keyed(tmp_path):
    async with running_client(_keyed_settings(tmp_path)) as client:
        yield client


# --- /metrics ---------------------------------------------------------------


async def test_metrics_reveal_no_task_id_to_anonymous_callers_or_other_tenants(keyed, fsdd_test):
    head = (await keyed.get("/v1/tasks/fsdd-george/head", headers=_auth(ADMIN))).content
    put = await keyed.put(
        "/v1/tasks/acme-secret-project", files={"file": ("h", head)}, headers=_auth(ACME)
    )
    assert put.status_code == 200
    clip = fsdd_bytes(fsdd_test[0])
    for _ in range(5):
        r = await keyed.post(
            "/v1/transcribe?task_id=acme-secret-project", content=clip, headers=_auth(ACME)
        )
        assert r.status_code == 200

    for headers in ({}, _auth("wrong"), _auth(GLOBEX), _auth(ACME), {"X-API-Key": GLOBEX}):
        r = await keyed.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "unauthorized"
        assert "acme-secret-project" not in r.text

    for headers in (_auth(SCRAPER), _auth(ADMIN), {"X-API-Key": SCRAPER}):
        r = await keyed.get("/metrics", headers=headers)
        assert r.status_code == 200 and 'task="acme-secret-project"' in r.text


async def test_the_metrics_key_opens_metrics_and_nothing_else(keyed):
    for method, path in [("get", "/v1/tasks"), ("get", "/v1/tasks/fsdd-george/head")]:
        r = await getattr(keyed, method)(path, headers=_auth(SCRAPER))
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


async def test_metrics_stay_open_in_open_access_mode(client):
    assert (await client.get("/metrics")).status_code == 200


# --- authentication before the body ---------------------------------------


async def _call_without_body_reads(app, method: str, path: str, headers: list) -> tuple[int, int]:
    """Drive the ASGI app by hand: (status, how many times it asked for the body)."""
    reads = 0
    status = 0

    async def receive():
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("hra", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 30)
    return status, reads


@pytest.mark.parametrize(
    "method,path,content_type",
    [
        ("PUT", "/v1/tasks/acme-new", b"multipart/form-data; boundary=XyZ"),
        ("POST", "/v1/audio/transcriptions", b"multipart/form-data; boundary=XyZ"),
        ("POST", "/v1/transcribe", b"multipart/form-data; boundary=XyZ"),
        ("POST", "/v1/transcribe", b"audio/wav"),
        ("POST", "/v1/tasks/fsdd-george/rollback", b"application/json"),
    ],
)
async def test_a_request_without_a_valid_key_is_refused_before_its_body_is_read(
    keyed, method, path, content_type
):
    app = keyed.app
    for key_headers in ([], [(b"authorization", b"Bearer wrong")], [(b"x-api-key", b"wrong")]):
        headers = [
            (b"host", b"hra"),
            (b"content-type", content_type),
            (b"content-length", str(25 * 1024 * 1024).encode()),
            *key_headers,
        ]
        status, reads = await _call_without_body_reads(app, method, path, headers)
        assert status == 401, (path, key_headers)
        assert reads == 0, f"{path}: read the body {reads} times before refusing the key"


def test_a_huge_unauthenticated_upload_gets_401_after_sending_almost_nothing(tmp_path):
    """Over a real socket: the server answers the headers; the body is never consumed."""
    with live_server(_keyed_settings(tmp_path)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"PUT /v1/tasks/anything HTTP/1.1\r\nHost: hra\r\n"
                b"Content-Type: multipart/form-data; boundary=XyZ\r\n"
                b"Content-Length: 25000000\r\n\r\n"
            )
            reply = b""
            while b"}}" not in reply and (chunk := sock.recv(4096)):
                reply += chunk  # answered with 25 MB promised and none of it sent
    assert reply.startswith(b"HTTP/1.1 401"), reply[:80]
    assert b'"unauthorized"' in reply


# --- body-read timeout and connection limit ---------------------------------


def _trickle_until_answered(port: int, head: bytes, budget_s: float) -> tuple[bytes, float]:
    """Send `head`, then one body byte every 0.2 s; the reply and when it came."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
        sock.sendall(head)
        while time.monotonic() - began < budget_s:
            try:
                reply = sock.recv(4096)
            except TimeoutError:
                reply = b""
            if reply:
                sock.settimeout(5)
                while b"}}" not in reply and (chunk := sock.recv(4096)):
                    reply += chunk
                return reply, time.monotonic() - began
            try:
                sock.sendall(b"x")
            except OSError:
                break
    return b"", time.monotonic() - began


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v1/transcribe HTTP/1.1\r\nHost: hra\r\nContent-Type: audio/wav\r\n"
        b"Content-Length: 100000\r\n\r\n",
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: hra\r\n"
        b"Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000\r\n\r\n"
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n',
    ],
    ids=["raw-body", "multipart"],
)
def test_a_slowloris_body_gets_408_request_timeout_once_the_body_time_is_up(tmp_path, head):
    settings = make_settings(tmp_path, http=HttpSettings(body_read_timeout_s=1.0))
    with live_server(settings) as url:
        port = int(url.rsplit(":", 1)[1])
        reply, after_s = _trickle_until_answered(port, head, budget_s=8.0)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:120]
    assert b'"request_timeout"' in reply
    assert 0.9 <= after_s < 4.0


def test_a_body_that_arrives_in_time_is_served_normally(tmp_path, fsdd_test):
    settings = make_settings(tmp_path, http=HttpSettings(body_read_timeout_s=5.0))
    with live_server(settings) as url:
        r = httpx.post(f"{url}/v1/transcribe", content=fsdd_bytes(fsdd_test[0]), timeout=30)
    assert r.status_code == 200 and r.json()["text"]


def test_connections_beyond_the_limit_get_503_and_capacity_returns_when_they_close(tmp_path):
    settings = make_settings(tmp_path, http=HttpSettings(max_connections=3))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # bound here: no other process can take the port
    port = listener.getsockname()[1]
    options = uvicorn_options(settings) | {"port": port, "log_level": "warning"}
    server = uvicorn.Server(uvicorn.Config(create_app(settings), **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), timeout_s=60)
    assert server.started, "uvicorn did not start"
    get = b"GET /healthz HTTP/1.1\r\nHost: hra\r\n\r\n"
    connections = server.server_state.connections
    try:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        # accepted: they hold connections without sending a byte
        wait_until(lambda: len(connections) == 3, timeout_s=10, what="3 connections held")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            extra.sendall(get)
            assert extra.recv(4096).startswith(b"HTTP/1.1 503")
        for sock in idle:
            sock.close()
        wait_until(lambda: len(connections) == 0, timeout_s=10, what="connections closed")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as fresh:
            fresh.sendall(get)
            assert fresh.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        server.should_exit = True
        thread.join(30)


# --- logs -------------------------------------------------------------------


async def test_unexpected_error_logs_escape_control_characters_from_the_path(client, caplog):
    async def boom(rest: str):
        raise RuntimeError("kaput")

    client.app.add_api_route("/boom/{rest:path}", boom)
    caplog.set_level(logging.ERROR, logger="server.api.errors")
    # A route cannot match "\n" ("." in its pattern): ESC and BEL (a terminal rewrite).
    transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hra") as raw:
        r = await raw.get("/boom/x%0D2026-01-01%20INFO%20forged%20line%1B%5B31m%07")
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    messages = [rec.getMessage() for rec in caplog.records if "boom" in rec.getMessage()]
    assert messages, caplog.text
    for message in messages:
        assert not re.search(r"[\x00-\x1f\x7f]", message), repr(message)
        assert "forged line\\x1b[31m\\x07" in message  # escaped, still readable


async def test_task_ids_with_control_characters_are_escaped_in_the_service_logs(
    client, caplog, fsdd_test
):
    caplog.set_level(logging.INFO)
    head = (await client.get("/v1/tasks/fsdd-george/head")).content
    # validate_task_id's "$" lets one trailing newline through; the log must not.
    await client.put("/v1/tasks/evil-id%0A", files={"file": ("h", head)})
    logged = [rec.getMessage() for rec in caplog.records if "evil-id" in rec.getMessage()]
    assert logged and not any("\n" in message for message in logged), logged


# --- deeply nested JSON -----------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [40, 4_000], ids=["past-the-bound", "past-recursion"])
async def test_deeply_nested_metadata_or_vocabulary_gets_400_not_500(client, depth):
    head = (await client.get("/v1/tasks/fsdd-george/head")).content
    for field, value in [
        ("metadata", '{"a": ' + _nested(depth) + "}"),  # the field takes 8 KiB
        ("vocabulary", _nested(depth * 10)),  # 128 KiB
    ]:
        r = await client.put(
            "/v1/tasks/deep-json", files={"file": ("h", head)}, data={field: value}
        )
        assert r.status_code == 400, (field, depth, r.text[:200])
        assert r.json()["error"]["code"] == "invalid_request"


async def test_deeply_nested_rollback_body_gets_400_invalid_request(client):
    r = await client.post(
        "/v1/tasks/fsdd-george/rollback",
        content=_nested(100_000),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


async def test_deeply_nested_safetensors_header_or_metadata_gets_422_head_rejected(client):
    head = (await client.get("/v1/tasks/fsdd-george/head")).content
    length = int.from_bytes(head[:8], "little")
    header = json.loads(head[8 : 8 + length])
    meta = json.loads(header["__metadata__"]["hra_head"])
    meta["extra"] = {"a": json.loads(_nested(200))}  # parses, but past the bound
    deep_meta = json.dumps(meta)
    raw = json.dumps(meta)[:-1] + ', "deep": ' + _nested(50_000) + "}"  # past recursion
    candidates = []
    for text in (deep_meta, raw):
        header["__metadata__"]["hra_head"] = text
        encoded = json.dumps(header).encode()
        encoded += b" " * (-len(encoded) % 8)
        candidates.append(len(encoded).to_bytes(8, "little") + encoded + head[8 + length :])
    bare = _nested(50_000).encode()
    candidates.append(len(bare).to_bytes(8, "little") + bare)
    for body in candidates:
        r = await client.put("/v1/tasks/deep-head", files={"file": ("h", body)})
        assert r.status_code == 422, r.text[:200]
        assert r.json()["error"]["code"] == "head_rejected"


# --- error typing -----------------------------------------------------------


async def test_a_wrong_method_is_a_typed_client_error_and_probes_answer_head(client):
    r = await client.post("/healthz")
    assert r.status_code == 405
    assert r.json()["error"] == {
        "code": "method_not_allowed",
        "message": "Method Not Allowed",
        "type": "invalid_request",
    }
    for path in ("/healthz", "/readyz"):
        r = await client.head(path)
        assert r.status_code == 200 and r.content == b""
