"""Long audio made of real FSDD takes and pauses, each take's place kept (tests, benchmarks)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 8_000  # FSDD's own rate


@dataclass(frozen=True)
class Piece:
    path: Path
    start: int  # sample where the take starts in the long file
    end: int


def long_fsdd(
    root: Path,
    seconds: float,
    seed: int = 0,
    gaps: tuple[float, float] = (0.3, 1.2),
    speaker: str = "*",
) -> tuple[np.ndarray, list[Piece]]:
    """One speaker's takes (or everyone's) in a seeded random order, each followed by a
    random pause of silence, until `seconds` are filled."""
    rng = np.random.default_rng(seed)
    files = sorted(root.glob(f"*_{speaker}_*.wav"))
    out: list[np.ndarray] = []
    pieces: list[Piece] = []
    n = 0
    while n < seconds * RATE:
        path = files[int(rng.integers(len(files)))]
        take, rate = sf.read(path, dtype="float32")
        assert rate == RATE
        gap = np.zeros(int(rng.uniform(*gaps) * RATE), np.float32)
        pieces.append(Piece(path, n, n + take.shape[0]))
        out += [take, gap]
        n += take.shape[0] + gap.shape[0]
    return np.concatenate(out), pieces


def wav(samples: np.ndarray, rate: int = RATE, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype="PCM_16")
    return buf.getvalue()
