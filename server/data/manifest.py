"""Manifests: JSON-lines files of (audio path, transcript, task id).

One manifest line per utterance keeps datasets inspectable with `head` and
lets the training CLI take any user's own data in the same shape.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile as sf
import torch

from server.audio.reading import read_audio_file
from server.config import AudioSettings, get_settings


@dataclass(frozen=True)
class Utterance:
    audio: str  # path, relative to the manifest's folder or absolute
    text: str
    task: str


def write_manifest(path: Path, utterances: list[Utterance]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for u in utterances:
            f.write(json.dumps(asdict(u)) + "\n")
    tmp.replace(path)


def read_manifest(path: Path, task: str | None = None) -> list[Utterance]:
    """Audio paths come back absolute; `task` overrides a missing task field."""
    utterances = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        audio = Path(row["audio"])
        if not audio.is_absolute():
            audio = Path(path).parent / audio
        utterances.append(Utterance(str(audio), row["text"], row.get("task") or task or "base"))
    return utterances


def load_audio(path: str | Path, limits: AudioSettings | None = None) -> torch.Tensor:
    """An audio file -> mono float32 waveform [N] at 16 kHz, through the server's one audio
    reader: the same format, rate, channel, length and finiteness checks as an upload
    (`limits`: the server's audio settings unless given), and a typed error otherwise."""
    return read_audio_file(path, limits or get_settings().audio).at_model_rate()


def save_audio(path: Path, waveform: torch.Tensor, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    peak = float(waveform.abs().max()) if waveform.numel() else 0.0
    scaled = waveform / peak * 0.9 if peak > 0.9 else waveform
    sf.write(str(path), scaled.numpy(), rate, subtype="PCM_16")
