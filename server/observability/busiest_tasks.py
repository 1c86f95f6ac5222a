"""Which tasks are busiest right now: a decaying, bounded request tally.

Semantics:
    score(task, now) = sum over its requests r of 2 ** (-(now - t_r) / half_life_s)
    labelled         = the (at most) `slots` tasks with the highest score
    a task outside the tally's `capacity` entries has score 0

Scores use forward decay: an increment adds 2 ** ((now - t0) / half_life_s), so
stored values compare as decayed scores without touching other entries (O(1)
per request); when the exponent grows large every entry is rescaled once.
Memory is bounded: at most `capacity` tasks are tallied; a new task past that
evicts the lowest score (Space-Saving style: a tenant cycling through a million
ids keeps evicting its own one-off ids, never growing the tally). The labelled
set is recomputed at most every `relabel_every_s`; a labelled task keeps its
label unless a newcomer beats it by `HYSTERESIS`, so ranks N and N+1 do not
flap. The caller removes the series of tasks that lose their label.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable

HALF_LIFE_S = 300.0  # "currently": a burst five minutes ago counts half
RELABEL_EVERY_S = 1.0
HYSTERESIS = 1.25  # a labelled task stays until a newcomer scores 25% more
_RESCALE_EXPONENT = 512.0  # 2**512 is far inside float range; rescale before it grows further


class BusiestTasks:
    def __init__(
        self,
        slots: int,
        capacity: int | None = None,
        half_life_s: float = HALF_LIFE_S,
        relabel_every_s: float = RELABEL_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        on_unlabel: Callable[[str], None] | None = None,
    ) -> None:
        self.slots = slots
        self.capacity = capacity if capacity is not None else max(64, 8 * slots)
        if self.capacity <= slots:
            raise ValueError(f"tally capacity {self.capacity} must exceed label slots {slots}")
        self.half_life_s = half_life_s
        self.relabel_every_s = relabel_every_s
        self._clock = clock
        self.on_unlabel = on_unlabel
        self._t0 = clock()
        self._scores: dict[str, float] = {}
        self._labelled: set[str] = set()
        self._next_relabel = self._t0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._scores)

    @property
    def labelled(self) -> frozenset[str]:
        return frozenset(self._labelled)

    def score(self, task_id: str) -> float:
        """The task's decayed request count now (0 when not tallied)."""
        with self._lock:
            stored = self._scores.get(task_id, 0.0)
            return stored * 2.0 ** (-(self._clock() - self._t0) / self.half_life_s)

    def observe(self, task_id: str) -> str | None:
        """Count one request; the task's label if it has one now, else None."""
        dropped: list[str] = []
        with self._lock:
            now = self._clock()
            exponent = (now - self._t0) / self.half_life_s
            if exponent > _RESCALE_EXPONENT:
                self._rescale(now)
                exponent = 0.0
            weight = 2.0**exponent
            if task_id in self._scores:
                self._scores[task_id] += weight
            else:
                if len(self._scores) >= self.capacity:
                    self._evict_lowest()
                self._scores[task_id] = weight
            if now >= self._next_relabel or (
                task_id not in self._labelled and len(self._labelled) < self.slots
            ):
                dropped = self._relabel()
                self._next_relabel = now + self.relabel_every_s
            label = task_id if task_id in self._labelled else None
        if self.on_unlabel is not None:
            for task in dropped:
                self.on_unlabel(task)
        return label

    def _relabel(self) -> list[str]:
        def rank(task: str) -> float:
            boost = HYSTERESIS if task in self._labelled else 1.0
            return self._scores[task] * boost

        top = set(heapq.nlargest(self.slots, self._scores, key=rank)) if self.slots else set()
        dropped = sorted(self._labelled - top)
        self._labelled = top
        return dropped

    def _evict_lowest(self) -> None:
        # Never evict a labelled task here: its series would linger unlabelled.
        candidates = (t for t in self._scores if t not in self._labelled)
        lowest = min(candidates, key=self._scores.__getitem__, default=None)
        if lowest is not None:
            del self._scores[lowest]

    def _rescale(self, now: float) -> None:
        factor = 2.0 ** (-(now - self._t0) / self.half_life_s)
        self._scores = {t: s * factor for t, s in self._scores.items() if s * factor > 1e-300}
        self._t0 = now
