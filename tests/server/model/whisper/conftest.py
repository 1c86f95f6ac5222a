"""Shared Whisper fixtures: the verified package files and the loaded model (once)."""

from __future__ import annotations

import pytest

from server.model.whisper.weights import WeightsManifest, locate


@pytest.fixture(scope="session")
def whisper_files():
    return locate(WeightsManifest.load())
