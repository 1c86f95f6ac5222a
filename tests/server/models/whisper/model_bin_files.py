"""CTranslate2 `model.bin` files built in tests: the inverse of read_model_bin."""

from __future__ import annotations

import io
import struct

import torch

from server.models.whisper.model_bin import DTYPES


def write_model_bin(
    tensors: dict[str, torch.Tensor],
    spec: str = "WhisperSpec",
    revision: int = 3,
    aliases: dict[str, str] | None = None,
) -> bytes:
    """The inverse of read_model_bin at version 6: a small file to read back."""
    codes = {dtype: code for code, (_, dtype, _) in DTYPES.items()}
    out = io.BytesIO()

    def string(s: str) -> None:
        raw = s.encode() + b"\x00"
        out.write(struct.pack("<H", len(raw)) + raw)

    out.write(struct.pack("<I", 6))
    string(spec)
    out.write(struct.pack("<II", revision, len(tensors)))
    for name, t in tensors.items():
        string(name)
        out.write(struct.pack("<B", t.dim()) + struct.pack("<" + "I" * t.dim(), *t.shape))
        data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        out.write(struct.pack("<BI", codes[t.dtype], len(data)) + data)
    out.write(struct.pack("<I", len(aliases or {})))
    for alias, name in (aliases or {}).items():
        string(alias)
        string(name)
    return out.getvalue()
