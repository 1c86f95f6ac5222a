"""Shared fixtures: the committed default model, its store, real audio files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from adapters_store.disk_store import DiskStore
from server.config import REPO_ROOT, get_settings
from server.data.fsdd import TEST_TAKES, load_fsdd
from server.model.checkpoint import load_model
from server.model.conformer import ConformerConfig, ConformerCTC
from server.model.hra import HRAModel

DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default"


@pytest.fixture(scope="session")
def default_model():
    """(model, fingerprint) of the shipped backbone + controller."""
    return load_model(DEFAULT_MODEL_DIR / "model.safetensors")


@pytest.fixture(scope="session")
def default_store() -> DiskStore:
    return DiskStore(DEFAULT_MODEL_DIR / "heads")


@pytest.fixture
def store_copy(tmp_path) -> DiskStore:
    """A writable copy of the default store, for tests that register heads."""
    shutil.copytree(DEFAULT_MODEL_DIR / "heads", tmp_path / "heads")
    return DiskStore(tmp_path / "heads")


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
