"""Shared fixtures: the committed default model, its store, real audio files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from adapters_store.disk_store import DiskStore
from server.config import REPO_ROOT, get_settings
from server.data.fsdd import TEST_TAKES, load_fsdd
from server.models.checkpoint import load_model
from server.models.ctc.conformer import ConformerConfig, ConformerCTC
from server.models.hra import HRAModel

DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default"


@pytest.fixture(scope="session")
def default_model():
    """(model, fingerprint) of the shipped backbone + controller."""
    return load_model(DEFAULT_MODEL_DIR / "model.safetensors")


@pytest.fixture(scope="session")
def default_store() -> DiskStore:
    return DiskStore(DEFAULT_MODEL_DIR / "heads")


@pytest.fixture(scope="session")
def fsdd_root() -> Path:
    root = get_settings().fsdd_root
    if not root.exists():
        pytest.fail(f"FSDD recordings not found at {root} (set HRA_FSDD_ROOT)")
    return root


@pytest.fixture(scope="session")
def fsdd_test(fsdd_root):
    return load_fsdd(fsdd_root, TEST_TAKES)


@pytest.fixture
def tiny_model() -> HRAModel:
    """Random small Conformer-HRA, for properties that do not need training."""
    torch.manual_seed(0)
    config = ConformerConfig(hidden_dim=48, num_layers=3, num_heads=2, ffn_dim=96, dropout=0.0)
    return HRAModel(ConformerCTC(config), controller_dim=8).eval()


# --- real services: redis-server on a free port, the app over ASGI or uvicorn ---

import contextlib  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from server.api.app import create_app  # noqa: E402
from server.config import Settings  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A real redis-server process the test owns: it can stop and restart it."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
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
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (Debian package redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


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


@pytest.fixture
async def client(tmp_path):
    async with running_client(make_settings(tmp_path)) as c:
        yield c


@contextlib.contextmanager
def live_server(settings: Settings):
    """uvicorn on a free port in a thread: for clients that need a real socket."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def fsdd_bytes(utterance) -> bytes:
    return Path(utterance.audio).read_bytes()
