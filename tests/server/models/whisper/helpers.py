"""Spoken English sentences and where the FSDD recordings are, for the Whisper tests."""

from __future__ import annotations

from pathlib import Path

from server.config import REPO_ROOT

SENTENCES = [
    ("The quick brown fox jumps over the lazy dog.", "en-us", 150),
    ("Please call Stella and ask her to bring these things.", "en-gb", 140),
    ("Open the door and turn on the light.", "en-us", 170),
    ("We will meet at the station tomorrow morning.", "en-gb", 160),
]
FSDD = Path("/work/shared/data/fsdd/recordings")
FSDD_ALT = REPO_ROOT.parent / "shared" / "data" / "fsdd" / "recordings"
