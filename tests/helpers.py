"""Helpers the tests import: the shipped model's paths, real services (redis-server on a
free port, the app over ASGI or uvicorn), settings for a test app, waiting on a condition.

Fixtures live in the conftest.py files; everything else shared lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn

from server.api.app import create_app
from server.config import REPO_ROOT, Settings

DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default"


def wait_until(predicate: Callable[[], object], timeout_s: float = 30.0, what: str = "") -> None:
    """Block until predicate() is true, polling briefly; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held within {timeout_s} s: {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


async def async_wait_until(
    predicate: Callable[[], object], timeout_s: float = 60.0, what: str = ""
) -> None:
    """wait_until for the event loop: other tasks run while it polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, f"condition never held within {timeout_s} s: {what}"
        await asyncio.sleep(0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


class RedisServer:
    """A real redis-server process the test owns: it can stop and restart it."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None
        self.started_once = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        """Start on self.port; on a first start whose port another process took in the
        meantime (parallel test workers), move to a new free port."""
        for _ in range(5):
            self.process = self._spawn()
            wait_until(
                lambda: _accepts(self.port) or self.process.poll() is not None,
                timeout_s=10,
                what="redis-server accepts connections",
            )
            if self.process.poll() is None:
                self.started_once = True
                return
            if self.started_once:  # a restart keeps its port: clients and AOF expect it
                break
            self.port = free_port()  # exited at once: the port was taken
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def make_settings(tmp_path: Path, **overrides) -> Settings:
    """Settings for a test app: the shipped model, a private copy of its heads."""
    heads = tmp_path / "heads"
    if not heads.exists():
        shutil.copytree(DEFAULT_MODEL_DIR / "heads", heads)
    values = dict(
        model_dir=DEFAULT_MODEL_DIR,
        disk_store_path=heads,
        state_dir=tmp_path / "state",  # datasets and fine-tuning jobs: never the repo's var/
        open_access=True,
        redis_prefix=f"test-{uuid.uuid4().hex[:8]}",
    )
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_client(settings: Settings):
    """The real app, its lifespan run, spoken to over HTTP through ASGI."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hra") as client:
            client.app = app
            yield client


@contextlib.contextmanager
def live_server(settings: Settings):
    """uvicorn in a thread on a socket bound here first (port 0): for clients that need a
    real socket. Binding before serving leaves no window for another process to take the
    port, as picking a free port and binding it later would."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(
        lambda: server.started or not thread.is_alive(), timeout_s=60, what="uvicorn started"
    )
    if not server.started:
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def fsdd_bytes(utterance) -> bytes:
    return Path(utterance.audio).read_bytes()
