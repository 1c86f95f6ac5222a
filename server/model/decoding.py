"""Greedy CTC decoding with the frame alignment kept, for timestamps."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from server.model.tokenizer import BLANK, CharTokenizer


@dataclass(frozen=True)
class WordTiming:
    word: str
    start_s: float  # seconds from the start of the audio
    end_s: float  # exclusive


@dataclass(frozen=True)
class SegmentTiming:
    start_s: float  # seconds from the start of the audio
    end_s: float
    text: str


@dataclass(frozen=True)
class DecodeOptions:
    """What one request asks of decoding, beyond its head (validated by the service)."""

    language: str | None = None  # a language code the model knows; None: the model decides
    words: bool = False  # word times wanted (models that compute them only on request)
    prompt: str | None = None  # text the audio continues (Whisper's initial prompt)


@dataclass(frozen=True)
class Decoded:
    text: str
    words: list[WordTiming]  # empty where the model gives no honest word times (Whisper)
    num_frames: int
    segments: list[SegmentTiming] = field(default_factory=list)  # the model's own, if any
    avg_logprob: float | None = None  # mean log-probability of the emitted tokens (Whisper)
    no_speech_prob: float | None = None  # probability the clip holds no speech (Whisper)
    language: str | None = None  # the language decoded (multilingual Whisper)


def greedy_decode(
    logits: torch.Tensor, lengths: torch.Tensor, tokenizer: CharTokenizer, frame_seconds: float
) -> list[Decoded]:
    """Best path per utterance: argmax, collapse repeats, drop blanks.

    logits  # [B, T, V]
    lengths # [B] valid frames per utterance
    Word boundaries come from the frames on which each word's first and last
    characters were emitted, which is what CTC alignment gives for free; a word
    spans [first frame, last frame + 1) x frame_seconds.
    """
    best = logits.argmax(dim=-1).cpu()  # [B, T]
    results = []
    for b, n in enumerate(lengths.tolist()):
        path = best[b, :n].tolist()
        chars: list[tuple[str, int]] = []
        prev = BLANK
        for t, token in enumerate(path):
            if token != prev and token != BLANK:
                chars.append((tokenizer.symbols[token], t))
            prev = token
        results.append(_words_from_chars(chars, n, frame_seconds))
    return results


def _words_from_chars(
    chars: list[tuple[str, int]], num_frames: int, frame_seconds: float
) -> Decoded:
    words: list[WordTiming] = []
    current: list[tuple[str, int]] = []
    for ch, t in chars + [(" ", num_frames)]:
        if ch == " ":
            if current:
                word = "".join(c for c, _ in current)
                start, end = current[0][1], current[-1][1] + 1
                words.append(WordTiming(word, start * frame_seconds, end * frame_seconds))
            current = []
        else:
            current.append((ch, t))
    return Decoded(text=" ".join(w.word for w in words), words=words, num_frames=num_frames)
