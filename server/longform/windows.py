"""Where to cut long audio: at pauses first, at the quietest frame where there is none.

1. Energy per 10 ms hop over the whole file, computed in blocks (one float per hop: 2 h
   is 720,000 floats, whatever the rate). A hop is speech when it is `speech_db` above the
   file's noise floor (its 10th-percentile hop, at least -80 dBFS), or within 2 x
   `speech_db` of its loudest hop, for speech with no pause at all; never a hop less than
   `speech_db` above -80 dBFS (digital silence, dither, faint hiss: a file of it has no
   window at all, where "within 2 x of its loudest" would make all of it speech).
2. Every run of non-speech hops at least `min_pause_s` long is a cut, at its centre (a
   long run: two cuts, `min_pause_s / 2` inside each end): the file's cores [c_i, c_i+1)
   tile it exactly. Cores holding no speech hop are skipped
   (silence costs nothing). Consecutive cores are joined while the join fits in
   `join_s` (0: every stretch between pauses is its own window, what a model trained on
   short utterances needs; a model that uses context may take more).
3. A core longer than `window_s - 2 margin_s` is cut again at the quietest 25 ms frame in
   the last `search_s` of the room it has (a forced cut, in speech if it must).
4. The window the model sees is, at a pause, its speech from the first to the last sample
   above the noise floor (the models normalise features per clip: silence they were not
   trained with shifts them: docs/long-audio.md); at a forced cut, `margin_s` of overlap:
   a word cut by a forced cut is whole in at least one window when it reaches less than
   `margin_s` past the cut; stitching keeps each word once (stitch.py). Windows shorter
   than MIN_WINDOW_S are widened to it.
Every window is at most `window_s` long.

A `SpeechGate`, when given, decides which stretches between pauses are worth a pass
(before they are joined): energy above a floor is not speech by itself, a click is. A
stretch is kept when it holds at least `min_speech_s` of speech hops in runs of at least
MIN_RUN_S (a click lights one or two 10 ms hops; a syllable many), those are at least
`min_fraction` of it, and its hops' levels spread at least `min_contrast_db` (10th to 90th
percentile): speech rises and falls, steady noise or a hum does not. Measured: 10 min of
2 ms clicks every 0.5 s planned 1,200 windows without it, none with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

FRAME_S = 0.025  # energy frame for a forced cut
HOP_S = 0.010
BLOCK = 1 << 20  # samples per block of the energy pass
SILENCE_DB = -80.0  # dBFS: the lowest noise floor; speech is speech_db above it at least
MIN_WINDOW_S = 0.1  # above every backbone's shortest clip (admission: audio_too_short)
MIN_RUN_S = 0.03  # speech hops in shorter runs than this are not sustained (a click)


@dataclass(frozen=True)
class SpeechGate:
    """Which stretches between pauses hold speech worth a pass (module docstring)."""

    min_speech_s: float = 0.1
    min_fraction: float = 0.2
    min_contrast_db: float = 6.0

    def holds_speech(self, speech: np.ndarray, db: np.ndarray) -> bool:
        """speech [H] bool, db [H]: one stretch's hops."""
        runs = _runs(speech)
        sustained = int(sum(b - a for a, b in runs if b - a >= round(MIN_RUN_S / HOP_S)))
        if sustained < round(self.min_speech_s / HOP_S) or sustained == 0:
            return False
        if sustained < self.min_fraction * speech.shape[0]:
            return False
        low, high = np.percentile(db, [10, 90])
        return bool(high - low >= self.min_contrast_db)


def _runs(speech: np.ndarray) -> list[tuple[int, int]]:
    """[a, b) ranges of consecutive True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], speech.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in edges.reshape(-1, 2)]


@dataclass(frozen=True)
class Window:
    """Sample indices at the audio's own rate."""

    index: int
    start: int  # what the model sees: [start, end)
    end: int
    core_start: int  # what this window answers for: [core_start, core_end)
    core_end: int
    follow: int = 0  # 0: planned; k: the k-th tail of window `index` (tails.py)


@dataclass(frozen=True)
class WindowPlan:
    window_s: float  # longest window, margins included
    margin_s: float  # overlap at a forced cut; silence kept at a pause, at most this
    search_s: float  # how far back a forced cut may move to find the quietest frame
    min_pause_s: float = 0.25
    speech_db: float = 15.0
    join_s: float = 0.0

    def __post_init__(self) -> None:
        core = self.window_s - 2 * self.margin_s
        if self.margin_s < 0 or self.search_s < 0 or core <= 2 * self.search_s:
            raise ValueError(
                f"window_s {self.window_s} must exceed 2 x margin_s + 2 x search_s "
                f"({2 * self.margin_s + 2 * self.search_s})"
            )

    def needs_cutting(self, samples: int, rate: int) -> bool:
        return samples > self.window_s * rate

    def plan(
        self, samples: torch.Tensor, rate: int, gate: SpeechGate | None = None
    ) -> list[Window]:
        """samples [N] mono -> windows in order (none for a file that is all silence);
        `gate`: which stretches hold speech (None: any speech hop)."""
        n = int(samples.shape[0])
        hop = max(1, int(HOP_S * rate))
        db = hop_levels(samples, hop)
        speech, floor = speech_of(db, self.speech_db)
        pauses = pause_runs(speech, max(1, round(self.min_pause_s / HOP_S)))
        half = max(1, round(self.min_pause_s / HOP_S)) // 2
        cuts = [0]
        for a, b in pauses:  # a long pause: cut at both ends, the silence between is skipped
            cuts += [a + half, b - half] if b - a >= 4 * half else [(a + b) // 2]
        cuts = [c * hop for c in cuts[1:]]
        cuts = [0, *cuts, n]
        cuts = [c for i, c in enumerate(cuts) if i == 0 or c > cuts[i - 1]]
        core_max = int((self.window_s - 2 * self.margin_s) * rate)
        join = min(int(self.join_s * rate), core_max)
        cores: list[tuple[int, int]] = []
        for left, right in zip(cuts, cuts[1:]):
            span = slice(left // hop, max(left // hop + 1, -(-right // hop)))
            if not speech[span].any():
                continue  # silence only
            if gate is not None and not gate.holds_speech(speech[span], db[span]):
                continue  # clicks, steady noise
            if cores and cores[-1][0] + join >= right:
                cores[-1] = (cores[-1][0], right)  # join with the previous stretch
            else:
                cores.append((left, right))
        margin = int(self.margin_s * rate)
        windows: list[Window] = []
        for left, right in cores:
            for a, b, forced_a, forced_b in self._split(samples, left, right, core_max, rate):
                # at a pause: only the speech (the model normalises features per clip, and
                # silence it was not trained with shifts them); at a forced cut: overlap
                heard = a // hop + np.flatnonzero(speech[a // hop : -(-b // hop)])
                first, last = (heard[0], heard[-1] + 1) if len(heard) else (a // hop, -(-b // hop))
                lo = a - margin if forced_a else _onset(samples, int(first) * hop, hop, floor)
                hi = b + margin if forced_b else _offset(samples, int(last) * hop, hop, floor)
                start, end = _widen(max(0, lo, a - margin), min(n, hi, b + margin), n, rate)
                windows.append(Window(len(windows), start, end, a, b))
        return windows

    def _split(self, samples, left, right, core_max, rate):
        """A core -> (core start, core end, forced cut before, forced cut after)."""
        search = int(self.search_s * rate)
        a, forced = left, False
        while right - a > core_max:
            latest = a + core_max
            cut = quietest(samples, latest - search, latest, rate)
            yield a, cut, forced, True
            a, forced = cut, True
        yield a, right, forced, False


def _onset(samples: torch.Tensor, at: int, hop: int, floor: float) -> int:
    """The first sample above the floor within a hop of `at` (a speech hop's start): the
    window starts where the sound does, to the sample (the models hear a clip's edges)."""
    lo = max(0, at - hop)
    above = np.flatnonzero(np.abs(samples[lo : at + hop].numpy()) > floor)
    return lo + int(above[0]) if len(above) else at


def _offset(samples: torch.Tensor, at: int, hop: int, floor: float) -> int:
    """One past the last sample above the floor within a hop of `at` (a speech run's end)."""
    lo = max(0, at - hop)
    above = np.flatnonzero(np.abs(samples[lo : at + hop].numpy()) > floor)
    return lo + int(above[-1]) + 1 if len(above) else at


def _widen(start: int, end: int, n: int, rate: int) -> tuple[int, int]:
    short = int(MIN_WINDOW_S * rate) - (end - start)
    if short <= 0:
        return start, end
    start = max(0, start - short // 2 - 1)
    return start, min(n, max(end, start + int(MIN_WINDOW_S * rate)))


def speech_hops(samples: torch.Tensor, hop: int, speech_db: float) -> tuple[np.ndarray, float]:
    """[ceil(N / hop)] bool: hops `speech_db` above the noise floor (blockwise, O(N)), and
    the amplitude a sample of the floor stays under (2 x its RMS)."""
    return speech_of(hop_levels(samples, hop), speech_db)


def hop_levels(samples: torch.Tensor, hop: int) -> np.ndarray:
    """[ceil(N / hop)] float64: each hop's energy in dB (blockwise, O(N))."""
    n = int(samples.shape[0])
    hops = -(-n // hop)
    energy = np.empty(hops, np.float32)
    step = max(hop, BLOCK // hop * hop)
    for start in range(0, n, step):
        block = samples[start : start + step].numpy()
        whole = block.shape[0] // hop
        k = start // hop
        if whole:
            frames = block[: whole * hop].reshape(whole, hop)
            energy[k : k + whole] = np.einsum("ij,ij->i", frames, frames) / hop
        if block.shape[0] % hop:
            tail = block[whole * hop :]
            energy[k + whole] = float(np.dot(tail, tail)) / tail.shape[0]
    return 10 * np.log10(energy.astype(np.float64) + 1e-12)


def speech_of(db: np.ndarray, speech_db: float) -> tuple[np.ndarray, float]:
    """Hop levels -> speech_hops' answer (the speech hops and the floor's amplitude)."""
    quiet = float(np.percentile(db, 10))
    floor = max(quiet, SILENCE_DB)
    loud = float(db.max())
    speech = db > min(floor + speech_db, loud - 2 * speech_db)  # all speech: no floor to see
    speech &= db > SILENCE_DB + speech_db  # nothing above silence: no speech
    return speech, 2 * 10 ** (quiet / 20)  # and a sample above the floor's amplitude


def pause_runs(speech: np.ndarray, min_hops: int) -> list[tuple[int, int]]:
    """[a, b) hop ranges of non-speech at least `min_hops` long (inner ones only)."""
    edges = np.flatnonzero(np.diff(np.concatenate(([1], speech.astype(np.int8), [1]))))
    runs = edges.reshape(-1, 2)  # starts and ends of silent runs
    return [(int(a), int(b)) for a, b in runs if b - a >= min_hops]


def quietest(samples: torch.Tensor, lo: int, hi: int, rate: int) -> int:
    """The centre of the least energetic FRAME_S frame whose centre lies in [lo, hi]
    (the latest of equals, for the longest core); `hi` when the range is too short."""
    frame, hop = max(1, int(FRAME_S * rate)), max(1, int(HOP_S * rate))
    a, b = max(0, lo - frame // 2), min(int(samples.shape[0]), hi + frame // 2)
    seg = samples[a:b].numpy().astype(np.float64)
    if seg.shape[0] < frame:
        return hi
    power = np.concatenate(([0.0], np.cumsum(seg * seg)))
    starts = np.arange(0, seg.shape[0] - frame + 1, hop)
    energy = power[starts + frame] - power[starts]
    best = len(energy) - 1 - int(np.argmin(energy[::-1]))  # the latest minimum
    return int(min(hi, max(lo, a + starts[best] + frame // 2)))
