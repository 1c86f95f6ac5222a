"""The local stand-in for the compose stack: real redis-server, two uvicorn replicas.

The cross-replica hot-swap test runs against it, over real sockets.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from server.config import REPO_ROOT
from tests.helpers import free_port, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stack")
    ports = [free_port(), free_port()]
    ready = tmp / "ready"
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO_ROOT / "docker" / "local_stack.py"),
            "--redis-port",
            str(free_port()),
            "--ports",
            *map(str, ports),
            "--data-dir",
            str(tmp),
            "--ready-file",
            str(ready),
            "--prefix",
            "stacktest",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "HRA_OPEN_ACCESS": "true"},
    )
    with contextlib.suppress(AssertionError):
        wait_until(lambda: ready.exists() or process.poll() is not None, timeout_s=180)
    if not ready.exists():
        process.kill()
        pytest.fail("local stack did not come up")
    yield [f"http://127.0.0.1:{p}" for p in ports]
    process.terminate()
    process.wait(30)


def test_both_replicas_serve_the_seeded_default_heads(stack, fsdd_test):
    clip = Path(fsdd_test[0].audio).read_bytes()
    for url in stack:
        assert httpx.get(f"{url}/readyz").json()["store"] == "redis"
        r = httpx.post(f"{url}/v1/transcribe?task_id={fsdd_test[0].task}", content=clip)
        assert r.status_code == 200 and r.json()["head_version"] >= 1


def test_head_registered_on_replica_a_is_served_by_replica_b_within_a_second(stack, fsdd_test):
    a, b = stack
    clip = Path(fsdd_test[5].audio).read_bytes()
    head = httpx.get(f"{a}/v1/tasks/synth-reverb/head").content
    task = f"stack-{time.time_ns()}"
    assert httpx.post(f"{b}/v1/transcribe?task_id={task}", content=clip).status_code == 404
    r = httpx.put(f"{a}/v1/tasks/{task}", files={"file": ("h.safetensors", head)})
    assert r.status_code == 200
    registered = time.monotonic()
    while True:
        served = httpx.post(f"{b}/v1/transcribe?task_id={task}", content=clip)
        if served.status_code == 200:
            break
        assert time.monotonic() - registered < 1.0, "replica b did not serve the head within 1 s"
        time.sleep(0.02)
    original = httpx.post(f"{b}/v1/transcribe?task_id=synth-reverb", content=clip).json()
    assert served.json()["text"] == original["text"]
