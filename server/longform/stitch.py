"""Window transcripts -> one transcript, in order, as windows finish.

Each window was decoded with its margins; its word times are relative to its own
start. A word is kept by the one window whose core region [core_start, core_end)
holds the word's centre (in file time), so a word the overlap shows twice is kept
once and a word straddling a cut is kept by the window that holds most of it. Frame
posteriors are kept the same way (frames starting inside the core). Where a window heard
the last word kept (a forced cut's overlap), it continues after its own copy of that
word instead, so two windows that time one word on either side of the cut neither
double nor drop it (Whisper's times come from attention, not frames: _continuation).

Word times are first clamped to the audio the window holds (an aligner may place a word
past the clip's end: Whisper's timestamps run to its 30 s window), then kept monotone
across windows (a word never starts before the one kept before it).

A window the model itself calls empty adds nothing: Whisper's own rule (openai-whisper's
transcribe: no_speech_prob > 0.6 with avg_logprob < -1) or a text with no letter or
digit in it (tiny.en reads hiss as "."). Models that give neither number (CTC) are
never judged by the first.

Segments: where the model gives its own (Whisper), each run of kept words from one
window's one segment is a segment (file times, its window's confidence); the text of
the segments is the stitched text. Where it gives none (CTC) there are none here; the
response formats group the words by their pauses.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from server.longform.windows import Window
from server.models.transcript import Decoded, FramePosteriors, SegmentTiming, WordTiming
from server.models.whisper.decoding import MIN_AVG_LOGPROB, NO_SPEECH_THRESHOLD

EARLY_STOP_S = 0.75  # a gap before a forced cut longer than a word and a DTW error
MATCH_S = 0.5  # two windows' copies of one word: centres at most this far apart


def _key(word: str) -> str:
    return "".join(c for c in word.lower() if c.isalnum())


def heard_nothing(decoded: Decoded) -> bool:
    """The model's own verdict that a window holds no speech (module docstring)."""
    if not any(c.isalnum() for c in decoded.text):
        return True
    nsp, logprob = decoded.no_speech_prob, decoded.avg_logprob
    return (
        nsp is not None
        and logprob is not None
        and (nsp > NO_SPEECH_THRESHOLD and logprob < MIN_AVG_LOGPROB)
    )


@dataclass
class Stitcher:
    rate: int  # the audio's own rate: windows are in its samples
    words: list[WordTiming] = field(default_factory=list)
    segments: list[SegmentTiming] = field(default_factory=list)
    _has_segments: bool = True  # every window gave its words' segments so far
    _languages: Counter = field(default_factory=Counter)  # words per decoded language
    _frames: list[FramePosteriors] = field(default_factory=list)
    _frame_seconds: float = 0.0
    _next: int = 0

    def add(self, window: Window, decoded: Decoded) -> list[WordTiming]:
        """The words this window adds, in file time; windows must come in order."""
        expected = self._next - 1 if window.follow else self._next  # a tail: after its own
        if window.index != expected:
            raise ValueError(f"window {window.index} came before window {expected}")
        self._next = window.index + 1
        offset = window.start / self.rate
        core_lo, hi = window.core_start / self.rate, window.core_end / self.rate
        heard = [] if heard_nothing(decoded) else self._placed(window, decoded)
        first, lo = self._continuation(heard, core_lo, offset)
        last = self.words[-1].start_s if self.words else 0.0
        new, groups = [], []
        for w, centre in heard[first:]:
            if lo <= centre < hi:
                start = max(w.start_s, last)  # monotone across windows
                new.append(WordTiming(w.word, start, max(w.end_s, start), w.segment))
                groups.append(w.segment)
                last = start
        self.words.extend(new)
        self._segments(new, groups, decoded)
        if new and decoded.language is not None:
            self._languages[decoded.language] += len(new)
        if decoded.frames is not None:
            times = decoded.frames.times + np.float32(offset)
            keep = (times >= core_lo) & (times < hi)
            self._frames.append(decoded.frames.shifted(offset, keep))
            self._frame_seconds = decoded.frames.frame_seconds
        return new

    def _placed(self, window: Window, decoded: Decoded) -> list[tuple[WordTiming, float]]:
        """The window's words in file time, clamped to the audio it holds, with centres."""
        heard_lo, heard_hi = window.start / self.rate, window.end / self.rate
        out = []
        for w in decoded.words:
            start = min(max(w.start_s + heard_lo, heard_lo), heard_hi)
            end = min(max(w.end_s + heard_lo, start), heard_hi)
            centre = min((start + end) / 2, heard_hi - 0.5 / self.rate)
            out.append((WordTiming(w.word, start, end, w.segment), centre))
        return out

    def _continuation(
        self, heard: list[tuple[WordTiming, float]], core_lo: float, heard_lo: float
    ) -> tuple[int, float]:
        """(first of `heard` to consider, earliest centre kept) for a window whose audio
        starts at `heard_lo`. Where it heard the last word kept (a forced cut's overlap),
        it continues after its own copy of that word: the same word, centred within
        MATCH_S of it. Else from its core; or, when the last word kept ends more than
        EARLY_STOP_S before the core (the window before stopped early in speech: a full
        30 s Whisper window may end its text before its audio), from that word's end."""
        if not self.words:
            return 0, core_lo
        last = self.words[-1]
        if last.end_s > heard_lo:
            centre, key = (last.start_s + last.end_s) / 2, _key(last.word)
            near = [
                (abs(c - centre), k)
                for k, (w, c) in enumerate(heard)
                if abs(c - centre) <= MATCH_S and _key(w.word) == key
            ]
            if near:
                return min(near)[1] + 1, heard_lo
        if last.end_s < core_lo - EARLY_STOP_S:
            return 0, max(heard_lo, last.end_s)
        return 0, core_lo

    def _segments(self, new: list[WordTiming], groups: list, decoded: Decoded) -> None:
        """Runs of this window's kept words from one model segment -> segments."""
        if None in groups or not self._has_segments:
            self._has_segments, self.segments = False, []
            return
        runs: list[list[WordTiming]] = []
        for k, w in enumerate(new):
            if runs and groups[k] == groups[k - 1]:
                runs[-1].append(w)
            else:
                runs.append([w])
        self.segments += [
            SegmentTiming(
                run[0].start_s,
                run[-1].end_s,
                " ".join(w.word for w in run),
                decoded.avg_logprob,
                decoded.no_speech_prob,
                decoded.temperature,
            )
            for run in runs
        ]

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words)

    @property
    def language(self) -> str | None:
        """The language most of the kept words were decoded in (None: none said)."""
        return self._languages.most_common(1)[0][0] if self._languages else None

    def frames(self) -> FramePosteriors | None:
        if not self._frames:
            return None
        return FramePosteriors.concat(self._frames, self._frame_seconds)
