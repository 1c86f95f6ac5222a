"""A least-recently-used cache bounded in bytes, not entries.

`functools.lru_cache(maxsize=N)` bounds a cache by count, so what it holds is N
times the largest value a request can make it build. This one is given a byte
budget and a function that says what a value costs; a value larger than the
whole budget is built and returned but never kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteBoundedLRU(Generic[K, V]):
    """get_or_build(key) -> value; at most `capacity_bytes` of values kept.

    Thread-safe. Building happens outside the lock, so two threads may build the
    same value once each; the second insert replaces the first.
    """

    def __init__(
        self, capacity_bytes: int, build: Callable[[K], V], size_of: Callable[[V], int]
    ) -> None:
        if capacity_bytes < 0:
            raise ValueError("capacity_bytes must be >= 0")
        self.capacity_bytes = capacity_bytes
        self._build = build
        self._size_of = size_of
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_build(self, key: K) -> V:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit[0]
        value = self._build(key)
        size = self._size_of(value)
        if size > self.capacity_bytes:
            return value
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            while self._entries and self._bytes + size > self.capacity_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
            self._entries[key] = (value, size)
            self._bytes += size
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
