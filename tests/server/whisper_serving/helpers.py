"""Whisper tiny.en served through the real app: settings, WAV bytes, uploadable heads."""

from __future__ import annotations

import io
from pathlib import Path

import soundfile as sf
import torch

from adapters_store.families import ModelDims, head_shapes, init_head
from adapters_store.head_format import HeadMetadata, HeadRecord, HeadType, encode_head
from server.config import REPO_ROOT, Settings

WHISPER_DIR = REPO_ROOT / "models" / "whisper-tiny-en"
FINGERPRINT = "2ddcfc61ee77a6d1"  # manifest.json: tiny.en encoder + the trained controller
DIMS = ModelDims(hidden_dim=384, controller_dim=64, num_layers=4)
RANK = 8


def whisper_settings(tmp_path: Path, **overrides) -> Settings:
    values = dict(
        model_dir=WHISPER_DIR,
        disk_store_path=tmp_path / "heads",
        open_access=True,
        work_dir=REPO_ROOT / "build",
    )
    values.update(overrides)
    return Settings(**values)


def wav_bytes(waveform: torch.Tensor, rate: int = 16_000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, waveform.numpy(), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def normalise(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum() or c == " ").strip()


def head_tensors(head_type: HeadType, seed: int | None, scale: float = 0.05) -> dict:
    """seed None: a new (zero-effect) head; else random weights, a trained-looking head."""
    if seed is None:
        return init_head(head_type, DIMS, RANK)
    g = torch.Generator().manual_seed(seed)
    shapes = head_shapes(head_type, DIMS.hidden_dim, DIMS.controller_dim, RANK, DIMS.num_layers)
    return {k: torch.randn(s, generator=g) * scale for k, s in shapes.items()}


def head_record(
    task_id: str, head_type: HeadType, seed: int | None, scale: float = 0.05, **meta
) -> HeadRecord:
    rank = 0 if head_type == HeadType.LINEAR else RANK
    return HeadRecord(
        HeadMetadata(task_id, head_type.value, FINGERPRINT, rank=rank, **meta),
        head_tensors(head_type, seed, scale),
    )


def head_file(task_id: str, head_type: HeadType, seed: int | None, **meta) -> bytes:
    return encode_head(head_record(task_id, head_type, seed, **meta))
