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


# --- English speech for Whisper: the JFK clip and espeak-ng sentences, with their places ---

SPEECH_RATE = 16_000
JFK = Path(__file__).resolve().parents[1] / "tests" / "data" / "jfk.flac"
# plain sentences (no commas: espeak pauses at them), voices and speeds varied
SENTENCES = [
    ("The quick brown fox jumps over the lazy dog", "en-us", 150),
    ("Please call Stella and ask her to bring these things with her from the store", "en-gb", 140),
    ("Open the door and turn on the light in the kitchen", "en-us", 170),
    ("We will meet at the station tomorrow morning before the train leaves", "en-gb", 160),
    ("The weather was cold and the river was frozen for most of the winter", "en-us", 155),
    ("She reads a chapter of her favourite book every night before sleeping", "en-gb", 150),
    ("Our team finished the project two weeks earlier than we had planned", "en-us", 165),
    ("The children played football in the park until the sun went down", "en-gb", 145),
    ("A small boat sailed slowly across the calm blue water of the lake", "en-us", 150),
    ("My grandmother grows tomatoes and beans in the garden behind her house", "en-gb", 160),
    ("The museum opens at nine and closes at five on every weekday", "en-us", 150),
    ("He forgot his umbrella on the bus and walked home in the rain", "en-gb", 155),
]


@dataclass(frozen=True)
class SpeechPiece:
    samples: np.ndarray  # the piece alone, 16 kHz
    text: str  # what was spoken (JFK: what Whisper base reads)
    start: int  # where it sits in the long file (16 kHz samples)
    end: int


def jfk() -> np.ndarray:
    import torch

    from server.audio.resample import resample

    data, rate = sf.read(JFK, dtype="float32", always_2d=True)
    return resample(torch.from_numpy(data.mean(axis=1)), rate).numpy()  # stereo: downmixed


def sentence(index: int) -> tuple[np.ndarray, str]:
    """SENTENCES[index % len] spoken by espeak-ng at 16 kHz, silence trimmed to the sound."""
    from server.data.synthetic import speak

    text, voice, speed = SENTENCES[index % len(SENTENCES)]
    x = speak(text, voice, speed, 50).numpy()
    loud = np.flatnonzero(np.abs(x) > 1e-3)
    return x[loud[0] : loud[-1] + 1], text


JFK_TEXT = (
    "And so my fellow Americans ask not what your country can do for you "
    "ask what you can do for your country"
)


def long_speech(
    count: int, seed: int = 0, gaps: tuple[float, float] = (0.4, 1.5), every_jfk: int = 5
) -> tuple[np.ndarray, list[SpeechPiece]]:
    """`count` pieces (JFK every `every_jfk`th, from the first; espeak sentences in a
    seeded order between), each followed by a random pause of digital silence."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(SENTENCES))
    out: list[np.ndarray] = []
    pieces: list[SpeechPiece] = []
    n, k = 0, 0
    for i in range(count):
        if every_jfk and i % every_jfk == 0:
            x, text = jfk(), JFK_TEXT
        else:
            x, text = sentence(int(order[k % len(order)]))
            k += 1
        gap = np.zeros(int(rng.uniform(*gaps) * SPEECH_RATE), np.float32)
        pieces.append(SpeechPiece(x, text, n, n + x.shape[0]))
        out += [x, gap]
        n += x.shape[0] + gap.shape[0]
    return np.concatenate(out), pieces


def unbroken_speech(seconds: float, first: int = 0) -> tuple[np.ndarray, list[SpeechPiece]]:
    """Sentences trimmed to their sound and abutted, with no pause between them, until
    `seconds` are filled: speech a window plan can only cut by force."""
    out: list[np.ndarray] = []
    pieces: list[SpeechPiece] = []
    n, i = 0, first
    while n < seconds * SPEECH_RATE:
        x, text = sentence(i)
        pieces.append(SpeechPiece(x, text, n, n + x.shape[0]))
        out.append(x)
        n += x.shape[0]
        i += 1
    return np.concatenate(out), pieces


def words_of(text: str) -> list[str]:
    """Lower-cased, punctuation dropped (an apostrophe kept inside a word)."""
    kept = "".join(c if c.isalnum() or c in " '" else " " for c in text.lower())
    return [w.strip("'") for w in kept.split() if w.strip("'")]


def edit_runs(ref: list[str], hyp: list[str]) -> tuple[int, int, list[str]]:
    """Over the minimal word alignment of `hyp` to `ref` (jiwer's, never reordered): (most
    words lost in one stretch of edits, most words added in one, the edits as text). A
    window that dropped a sentence, or one that doubled it, shows as a long run."""
    import jiwer

    if not ref or not hyp:
        return len(ref), len(hyp), [f"{' '.join(ref)} -> {' '.join(hyp)}"] if ref or hyp else []
    lost = added = 0
    edits: list[str] = []
    stretch: list = []
    chunks = jiwer.process_words(" ".join(ref), " ".join(hyp)).alignments[0]
    for chunk in [*chunks, None]:
        if chunk is not None and chunk.type != "equal":
            stretch.append(chunk)
            continue
        if stretch:
            a, b = stretch[0].ref_start_idx, stretch[-1].ref_end_idx
            c, d = stretch[0].hyp_start_idx, stretch[-1].hyp_end_idx
            lost, added = max(lost, (b - a) - (d - c)), max(added, (d - c) - (b - a))
            edits.append(f"{' '.join(ref[a:b])} -> {' '.join(hyp[c:d])}")
            stretch = []
    return lost, added, edits
