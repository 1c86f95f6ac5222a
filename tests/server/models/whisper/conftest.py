"""Shared Whisper fixtures: verified package files, the loaded model, real English audio.

Audio here: espeak-ng English sentences spoken at test time and FSDD recordings from
shared/ (skipped where absent); the JFK clip (tests/data/jfk.flac) is used over HTTP in
tests/server/whisper_serving/test_jfk.py.
"""

from __future__ import annotations

import pytest
import soundfile as sf
import torch

from server.audio.resample import resample
from server.data.synthetic import speak
from server.models.whisper.model import load_whisper
from server.models.whisper.weights import WeightsManifest, locate
from tests.server.models.whisper.helpers import FSDD, FSDD_ALT, SENTENCES


@pytest.fixture(scope="session")
def whisper_files():
    return locate(WeightsManifest.load())


@pytest.fixture(scope="session")
def whisper_model():
    return load_whisper(window="pad")


@pytest.fixture(scope="session")
def english_clips() -> list[tuple[torch.Tensor, str]]:
    """espeak-ng English sentences at 16 kHz, with their text."""
    return [(speak(text, voice, speed, 50), text) for text, voice, speed in SENTENCES]


@pytest.fixture(scope="session")
def fsdd_clips() -> list[tuple[torch.Tensor, str]]:
    """A few real FSDD recordings (spoken digits, 8 kHz resampled to 16 kHz)."""
    folder = FSDD if FSDD.is_dir() else FSDD_ALT
    if not folder.is_dir():
        pytest.skip("FSDD recordings not present")
    out = []
    for name in ["3_jackson_31.wav", "7_theo_35.wav", "5_nicolas_30.wav"]:
        data, rate = sf.read(str(folder / name), dtype="float32")
        out.append((resample(torch.from_numpy(data), rate), name.split("_")[0]))
    return out
