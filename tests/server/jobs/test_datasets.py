"""Dataset archives keep each transcript as written: every model kind forms its own
targets from it (CTC spells letters only; Whisper writes digits, case, punctuation)."""

from __future__ import annotations

import io
import json
import zipfile

from server.config import AudioSettings, JobSettings
from server.jobs.datasets import parse_archive


def test_transcripts_are_kept_as_written_with_whitespace_squeezed(fsdd_root):
    wav = (fsdd_root / "9_lucas_0.wav").read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("a.wav", wav)
        rows = [
            {"audio": "a.wav", "text": "  Call\n 911, O'Brien. "},
            {"audio": "a.wav", "text": "nine"},
        ]
        z.writestr("manifest.jsonl", "\n".join(json.dumps(r) for r in rows))
    items = parse_archive(buffer.getvalue(), JobSettings(), AudioSettings())
    assert [text for _, text in items] == ["Call 911, O'Brien.", "nine"]
