"""What a recognizer hands back, whatever the model: a transcript with its timings.

Decoded          one clip's transcript: text, word and segment times, confidences
DecodeOptions    what one request asks of decoding beyond its head (language, words, ...)
WordTiming       a word and where it sits in the audio, in seconds
SegmentTiming    a segment (the model's own, or stitched from windows), in seconds
FramePosteriors  per output frame, what CTC posteriors say (segment confidence)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class WordTiming:
    word: str
    start_s: float  # seconds from the start of the audio
    end_s: float  # exclusive
    segment: int | None = None  # index in Decoded.segments of the segment holding it (Whisper)


@dataclass(frozen=True)
class SegmentTiming:
    start_s: float  # seconds from the start of the audio
    end_s: float
    text: str
    # the decode it came from, where a transcript is stitched from several (long-form
    # Whisper: its window's); None: the transcript's own (Decoded's) apply
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    temperature: float | None = None


@dataclass(frozen=True, eq=False)
class FramePosteriors:
    """What the CTC posteriors say about each output frame, for segment confidence.

    times      [T] float32 seconds from the start of the audio at which each frame starts
    best       [T] float32 log-probability of the frame's most likely symbol (the greedy
               best path's own log-probability, blank included)
    log_blank  [T] float32 log-probability of the blank symbol (no new character)
    """

    times: np.ndarray
    best: np.ndarray
    log_blank: np.ndarray
    frame_seconds: float

    @classmethod
    def of(cls, logits: torch.Tensor, frame_seconds: float, blank: int) -> FramePosteriors:
        """logits [T, V] (valid frames of one utterance; `blank`: the blank symbol's
        index) -> its posteriors."""
        log_probs = logits.float().log_softmax(-1)
        n = log_probs.shape[0]
        return cls(
            times=np.arange(n, dtype=np.float32) * np.float32(frame_seconds),
            best=log_probs.max(-1).values.cpu().numpy(),
            log_blank=log_probs[:, blank].cpu().numpy(),
            frame_seconds=frame_seconds,
        )

    def shifted(self, offset_s: float, keep: np.ndarray) -> FramePosteriors:
        """The frames `keep` selects, `offset_s` later (a window placed in its file)."""
        return FramePosteriors(
            self.times[keep] + np.float32(offset_s),
            self.best[keep],
            self.log_blank[keep],
            self.frame_seconds,
        )

    @classmethod
    def concat(cls, parts: list[FramePosteriors], frame_seconds: float) -> FramePosteriors:
        def join(name):
            arrays = [getattr(p, name) for p in parts]
            return np.concatenate(arrays) if arrays else np.zeros(0, np.float32)

        return cls(join("times"), join("best"), join("log_blank"), frame_seconds)

    def between(self, start_s: float, end_s: float) -> tuple[float, float] | None:
        """Of the frames starting in [start_s, end_s): (mean log-probability of the greedy
        best path per frame, probability that the model emits nothing there = the product
        of the frames' blank posteriors, CTC's own probability of the empty transcript).
        None when no frame starts there."""
        keep = (self.times >= start_s) & (self.times < end_s)
        if not keep.any():
            return None
        no_speech = float(np.exp(self.log_blank[keep].astype(np.float64).sum()))
        return float(self.best[keep].mean()), no_speech


@dataclass(frozen=True)
class DecodeOptions:
    """What one request asks of decoding, beyond its head (validated by
    server/serving/request.py)."""

    language: str | None = None  # a language code the model knows; None: the model decides
    words: bool = False  # word times wanted (models that compute them only on request)
    prompt: str | None = None  # text the audio continues (Whisper's initial prompt)
    temperature: float = 0.0  # Whisper: the first decoding temperature (0: greedy), in [0, 1]


@dataclass(frozen=True)
class Decoded:
    text: str
    words: list[WordTiming]  # empty where the model gives no honest word times (Whisper)
    num_frames: int
    segments: list[SegmentTiming] = field(default_factory=list)  # the model's own, if any
    avg_logprob: float | None = None  # mean log-probability of the emitted tokens (Whisper)
    no_speech_prob: float | None = None  # probability the clip holds no speech (Whisper)
    temperature: float | None = None  # the decoding temperature kept (Whisper's fallback)
    language: str | None = None  # the language decoded (multilingual Whisper)
    frames: FramePosteriors | None = field(default=None, compare=False, repr=False)  # CTC
    steps: int = field(default=0, compare=False)  # decoder steps run (Whisper, all attempts)


def compression_ratio(text: str) -> float:
    """Whisper's: UTF-8 bytes over zlib-compressed bytes (high: a repetitive loop)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0
