"""A window the model stopped early in is followed by a window over the rest (Whisper).

Whisper decodes a window until it emits end-of-text, and in a window full of speech it
sometimes ends early: after the JFK clip, tiny.en ended a 26 s window at 10.9 s and lost
the three sentences after it (docs/long-audio.md). openai-whisper's transcribe answers this
by seeking: its next window starts where the text stopped. Windows here are planned
before any is decoded and run a few at a time, so the same answer comes as a tail: when
a window's words end more than `min_gap_s` before the end of what it answers for, a
window over the rest follows it at once (its core from the last word's end, its audio
from `margin_s` before it, so it hears that word whole: the stitcher continues after its
own copy of it). A tail may have a tail, at most `per_window` in all, so one window
costs at most 1 + per_window passes, each no longer than the window itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.longform.stitch import heard_nothing
from server.longform.windows import Window
from server.models.transcript import Decoded


@dataclass(frozen=True)
class Tails:
    min_gap_s: float  # words ending this long before the window's end: a tail follows
    margin_s: float  # the tail's audio starts this much before the last word's end
    per_window: int = 2  # most tails after one planned window

    def after(self, window: Window, decoded: Decoded, rate: int) -> Window | None:
        """The tail that follows `window` (its words in `decoded`), or None."""
        if window.follow >= self.per_window or not decoded.words or heard_nothing(decoded):
            return None
        last_end = window.start + round(max(w.end_s for w in decoded.words) * rate)
        until = min(window.end, window.core_end)
        if last_end <= window.start or until - last_end < self.min_gap_s * rate:
            return None
        start = last_end - round(self.margin_s * rate)
        start = start if start > window.start else last_end  # always past the window's start
        core_start = max(last_end, window.core_start)
        return Window(
            window.index, start, window.end, core_start, window.core_end, window.follow + 1
        )
