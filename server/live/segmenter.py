"""Energy VAD and endpointing: PCM samples in, utterance events out. No I/O, no torch.

The audio is cut into 20 ms frames; a frame is speech when its level is above
`threshold_db` dBFS and `margin_db` above the background (the quietest recent frames;
and any level that has held steady, within `steady_db` from its 10th to its 90th
percentile over the last `steady_s`, is background too: speech rises and falls, constant
noise does not, so noise that starts after silence is not speech for long, however
far below it the floor had fallen).
Speech starts an utterance (with `prefix_ms` of the audio before it); a partial is due
every `hop_ms` of new utterance audio, or every 1 / `partial_ratio` of the utterance
so far when that is longer: each partial re-decodes the whole utterance, so partials
re-decode at most `partial_ratio` seconds of audio per second of stream, however long the
utterance (a constant hop: length / (2 hop), 19 s per second at 12 s and 320 ms).
`silence_ms` of non-speech ends it ("silence"), as does reaching `max_s` ("max_length",
a forced endpoint that bounds what every partial and final costs) or a client's commit
("commit"). Positions are samples since the stream began, so events carry
stream-relative times.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

FRAME_S = 0.02


@dataclass(frozen=True)
class SpeechStarted:
    start: int  # sample position of the utterance's first sample (prefix included)
    at: int  # sample position where speech was detected


@dataclass(frozen=True)
class PartialDue:
    pass


@dataclass(frozen=True)
class Ended:
    samples: np.ndarray  # the whole utterance, float32
    start: int
    end: int  # sample position just past its last sample
    reason: str  # silence | max_length | commit


Event = SpeechStarted | PartialDue | Ended


@dataclass(frozen=True)
class VadConfig:
    rate: int
    threshold_db: float = -50.0
    silence_ms: int = 480
    prefix_ms: int = 100
    hop_ms: int = 320
    max_s: float = 12.0
    suffix_ms: int = 100
    margin_db: float = 10.0
    floor_rise_db: float = 0.05  # per frame: 2.5 dB/s
    partial_ratio: float = 4.0  # most audio seconds partials re-decode per stream second
    steady_s: float = 4.0  # a level this steady this long is background
    steady_db: float = 6.0


class Segmenter:
    def __init__(self, config: VadConfig) -> None:
        self.config = c = config
        self.frame = max(1, round(c.rate * FRAME_S))
        self.silence = max(1, round(c.silence_ms / 1000 / FRAME_S))  # in frames
        self.hop = max(1, round(c.hop_ms / 1000 / FRAME_S))
        self.max_frames = max(1, round(c.max_s / FRAME_S))
        self._floor: float | None = None  # the background's level, dBFS (adaptive)
        steady = max(1, round(c.steady_s / FRAME_S))
        self._levels: deque[float] = deque(maxlen=steady)  # the last steady_s of levels
        self._rest = np.zeros(0, np.float32)  # samples short of a frame
        self._prefix: deque[np.ndarray] = deque(maxlen=round(c.prefix_ms / 1000 / FRAME_S))
        self._utterance: list[np.ndarray] = []
        self._unspoken: deque[np.ndarray] = deque(maxlen=self.max_frames)  # since the last end
        self._unspoken_loudest = -np.inf  # dBFS of its loudest frame
        self._start = 0
        self._silent = 0  # trailing non-speech frames of the utterance
        self._suffix = round(c.suffix_ms / 1000 / FRAME_S)  # frames kept past the last speech
        self._since_partial = 0
        self.position = 0  # samples consumed into frames

    @property
    def in_speech(self) -> bool:
        return bool(self._utterance)

    def feed(self, samples: np.ndarray) -> list[Event]:
        data = np.concatenate([self._rest, samples]) if self._rest.size else samples
        whole = data.size // self.frame * self.frame
        self._rest = data[whole:].copy()
        frames = data[:whole].reshape(-1, self.frame)
        power = np.mean(np.square(frames, dtype=np.float64), axis=1)  # one numpy op per chunk
        events: list[Event] = []
        for frame, level in zip(frames, (10 * np.log10(power + 1e-12)).tolist()):
            events.extend(self._frame(frame, level))
        return events

    def _frame(self, frame: np.ndarray, level: float) -> list[Event]:
        self.position += frame.size
        loud = self._is_speech(level)
        if not self._utterance:
            if not loud:
                self._prefix.append(frame)
                self._unspoken.append(frame)
                self._unspoken_loudest = max(self._unspoken_loudest, level)
                return []
            self._utterance = [*self._prefix, frame]
            self._prefix.clear()
            self._unspoken.clear()
            self._unspoken_loudest = -np.inf
            self._start = self.position - len(self._utterance) * self.frame
            self._silent = self._since_partial = 0
            return [SpeechStarted(self._start, self.position - self.frame)]
        self._utterance.append(frame)
        self._silent = 0 if loud else self._silent + 1
        self._since_partial += 1
        if self._silent >= self.silence:
            return [self._end("silence")]
        if len(self._utterance) >= self.max_frames:
            return [self._end("max_length")]
        if self._since_partial >= max(self.hop, len(self._utterance) / self.config.partial_ratio):
            self._since_partial = 0
            return [PartialDue()]
        return []

    def _is_speech(self, level: float) -> bool:
        """Louder than the absolute threshold and `margin_db` above the background, whose
        level follows the quietest frames down at once and rises slowly (noise changes). The
        stream's first frame seeds it: a stream is expected to open on its background."""
        c = self.config
        floor = level if self._floor is None else min(level, self._floor + c.floor_rise_db)
        self._levels.append(level)
        if len(self._levels) == self._levels.maxlen and self._levels.maxlen > 1:
            low, high = np.percentile(self._levels, [10, 90])
            if high - low < c.steady_db:  # steady: background, whatever the floor was
                floor = max(floor, float(low))
        self._floor = floor
        return level > max(c.threshold_db, floor + c.margin_db)

    def snapshot(self) -> np.ndarray:
        """The utterance so far, up to `suffix_ms` past its last speech (empty outside)."""
        return np.concatenate(self._kept()) if self._utterance else np.zeros(0, np.float32)

    def _kept(self) -> list[np.ndarray]:
        """What a pass decodes: the trailing silence past `suffix_ms` is left out (the CTC
        backbone, trained on clips cut close to the speech, misreads long silences)."""
        keep = len(self._utterance) - max(0, self._silent - self._suffix)
        return self._utterance[:keep]

    def commit(self) -> list[Event]:
        """End the utterance now, with the samples short of a frame. Outside speech, the
        audio since the last utterance (at most `max_s`) is one if any of it is louder than
        `threshold_db`: a client's commit is heard where the VAD heard no speech, say in a
        clip that opens on speech (its first frame seeds the background level)."""
        if not self._utterance:
            if not self._unspoken or self._unspoken_loudest <= self.config.threshold_db:
                self._unspoken.clear()
                return []
            self._utterance = list(self._unspoken)
            self._start = self.position - len(self._utterance) * self.frame
            self._silent = 0
            self._prefix.clear()
            self._unspoken.clear()
            self._unspoken_loudest = -np.inf
            if self._rest.size:
                self._utterance.append(self._rest)
                self.position += self._rest.size
                self._rest = np.zeros(0, np.float32)
            return [SpeechStarted(self._start, self._start), self._end("commit")]
        if self._rest.size:
            self._utterance.append(self._rest)
            self.position += self._rest.size
            self._rest = np.zeros(0, np.float32)
        return [self._end("commit")]

    def clear(self) -> None:
        """Drop the utterance in progress and the unframed rest."""
        self.position += self._rest.size
        self._rest = np.zeros(0, np.float32)
        self._utterance = []
        self._prefix.clear()
        self._unspoken.clear()
        self._unspoken_loudest = -np.inf

    def _end(self, reason: str) -> Ended:
        samples = np.concatenate(self._kept())
        self._utterance = []
        return Ended(samples, self._start, self._start + samples.size, reason)
