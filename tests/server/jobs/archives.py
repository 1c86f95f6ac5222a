"""Dataset archives for the fine-tuning tests: real FSDD recordings in a zip."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from server.data.fsdd import load_fsdd


def fsdd_zip(root: Path, speaker: str, takes: range, extra: dict | None = None) -> bytes:
    """A zip of one speaker's takes (10 digits each) + manifest.jsonl; `extra`: more
    members by name (bytes), listed in the manifest with text "zero"."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        rows = []
        for u in load_fsdd(root, takes, [speaker]):
            name = f"audio/{Path(u.audio).name}"
            z.writestr(name, Path(u.audio).read_bytes())
            rows.append({"audio": name, "text": u.text})
        for name, data in (extra or {}).items():
            z.writestr(name, data)
            rows.append({"audio": name, "text": "zero"})
        z.writestr("manifest.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    return buffer.getvalue()


def upload(data: bytes, name: str = "data.zip") -> dict:
    return {"files": {"file": (name, data, "application/zip")}, "data": {"purpose": "fine-tune"}}
