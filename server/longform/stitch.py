"""Window transcripts -> one transcript, in order, as windows finish.

Each window was decoded with its margins; its word times are relative to its own
start. A word is kept by the one window whose core region [core_start, core_end)
holds the word's centre (in file time), so a word the overlap shows twice is kept
once and a word straddling a cut is kept by the window that holds most of it. Frame
posteriors are kept the same way (frames starting inside the core).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from server.longform.windows import Window
from server.model.decoding import Decoded, FramePosteriors, WordTiming


@dataclass
class Stitcher:
    rate: int  # the audio's own rate: windows are in its samples
    words: list[WordTiming] = field(default_factory=list)
    _frames: list[FramePosteriors] = field(default_factory=list)
    _frame_seconds: float = 0.0
    _next: int = 0

    def add(self, window: Window, decoded: Decoded) -> list[WordTiming]:
        """The words this window adds, in file time; windows must come in order."""
        if window.index != self._next:
            raise ValueError(f"window {window.index} came before window {self._next}")
        self._next += 1
        offset = window.start / self.rate
        lo, hi = window.core_start / self.rate, window.core_end / self.rate
        new = []
        for w in decoded.words:
            start, end = w.start_s + offset, w.end_s + offset
            if lo <= (start + end) / 2 < hi:
                new.append(WordTiming(w.word, start, end))
        self.words.extend(new)
        if decoded.frames is not None:
            times = decoded.frames.times + np.float32(offset)
            keep = (times >= lo) & (times < hi)
            self._frames.append(decoded.frames.shifted(offset, keep))
            self._frame_seconds = decoded.frames.frame_seconds
        return new

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words)

    def frames(self) -> FramePosteriors | None:
        if not self._frames:
            return None
        return FramePosteriors.concat(self._frames, self._frame_seconds)
