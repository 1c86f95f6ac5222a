"""Shared fixtures: the committed default model, its store, real audio files, redis-server.

Helpers (settings, running the app, free ports, waiting on a condition) are in
tests/helpers.py. Under pytest-xdist each worker builds its own session fixtures: its own
redis-server on its own port, its own temp dirs (tmp_path_factory is per worker).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from adapters_store.disk_store import DiskStore
from server.config import get_settings
from server.data.fsdd import TEST_TAKES, load_fsdd
from server.models.checkpoint import load_model
from server.models.ctc.conformer import ConformerConfig, ConformerCTC
from server.models.hra import HRAModel
from tests.helpers import DEFAULT_MODEL_DIR, RedisServer, make_settings, running_client


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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (Debian package redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(tmp_path):
    async with running_client(make_settings(tmp_path)) as c:
        yield c
