"""Which windows a model gets: its own bound per pass decides.

    CTC models (no bound per pass)   window_s, margin_s, join_s: short windows cut at
                                     every pause (the digit model was trained on short
                                     utterances: docs/long-audio.md)
    Whisper (one 30 s pass each)     whisper_window_s (<= the bound), whisper_margin_s,
                                     whisper_join_s: stretches joined up to a 28 s core,
                                     so each pass is as full as the pauses allow (every
                                     pass costs the encoder's 30 s window, and Whisper
                                     reads the context)
The pause and speech knobs (search_s, min_pause_s, speech_db) are shared, and so is the
speech gate (min_speech_s, min_speech_fraction, min_contrast_db: windows.py) and the cap on
windows per request (max_windows_per_s of audio, max_windows; 413 `too_many_windows`,
checked after planning, before any window runs).
"""

from __future__ import annotations

import math

from server.config import LongformSettings
from server.errors import TooManyWindows
from server.longform.tails import Tails
from server.longform.windows import SpeechGate, Window, WindowPlan

# the resampler's approximated ratios (odd rates) stretch a clip by at most 0.05% (measured
# over every rate 1-384 kHz): a window this much under the bound stays under it at 16 kHz
RESAMPLE_SLACK = 1e-3


def window_plan(settings: LongformSettings, max_seconds: float | None) -> WindowPlan:
    """The plan for a model whose one pass takes at most `max_seconds` (None: any length)."""
    s = settings
    if max_seconds is None:
        return WindowPlan(s.window_s, s.margin_s, s.search_s, s.min_pause_s, s.speech_db, s.join_s)
    window_s = min(s.whisper_window_s, max_seconds * (1 - RESAMPLE_SLACK))
    return WindowPlan(
        window_s,
        s.whisper_margin_s,
        min(s.search_s, (window_s - 2 * s.whisper_margin_s) / 4),  # room for a forced cut
        s.min_pause_s,
        s.speech_db,
        s.whisper_join_s,
    )


def tails(settings: LongformSettings, max_seconds: float | None) -> Tails | None:
    """Whisper's windows are followed by a tail where their text stopped early (tails.py);
    a CTC model reads every frame: never."""
    if max_seconds is None or settings.whisper_tail_s == 0 or not settings.whisper_tails:
        return None
    return Tails(settings.whisper_tail_s, settings.whisper_margin_s, settings.whisper_tails)


def speech_gate(settings: LongformSettings) -> SpeechGate:
    """Which stretches between pauses are worth a window (windows.py)."""
    s = settings
    return SpeechGate(s.min_speech_s, s.min_speech_fraction, s.min_contrast_db)


def check_windows(settings: LongformSettings, windows: list[Window], seconds: float) -> None:
    """413 `too_many_windows` when a file of `seconds` is cut into more windows than it
    may be (max_windows_per_s of it, at most max_windows): before any window runs."""
    allowed = min(settings.max_windows, max(1, math.ceil(settings.max_windows_per_s * seconds)))
    if len(windows) > allowed:
        raise TooManyWindows(
            f"this {seconds:.0f} s file would be cut into {len(windows)} windows; at most "
            f"{allowed} are allowed (HRA_LONGFORM__MAX_WINDOWS_PER_S, HRA_LONGFORM__MAX_WINDOWS)"
        )
