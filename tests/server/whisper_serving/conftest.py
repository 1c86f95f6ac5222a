"""Whisper tiny.en served through the real app: spoken English as WAV files."""

from __future__ import annotations

import pytest

from server.data.synthetic import speak
from tests.server.models.whisper.helpers import SENTENCES
from tests.server.whisper_serving.helpers import wav_bytes


@pytest.fixture(scope="session")
def english_wavs() -> list[tuple[bytes, str]]:
    """espeak-ng English sentences as 16-bit WAV files, with their text."""
    return [(wav_bytes(speak(t, voice, speed, 50)), t) for t, voice, speed in SENTENCES]
