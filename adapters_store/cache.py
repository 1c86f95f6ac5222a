"""Host tier of the head cache: decoded, validated heads in an LRU over a store.

    resolve(task) -> HeadRecord of the task's current version
        current version: from a map kept fresh by the store's change feed
        head tensors:    host LRU keyed by (task, version), else the store

Versions are immutable, so a cached (task, version) never goes stale; only
the task -> current-version map needs invalidating, which the store's watch
feed does for every replica; a per-task generation counter keeps a read that
raced an invalidation from storing the superseded version. Decoded heads are
bounded by count and by bytes (a rank-64 residual head is 0.44 MB on the
default model, D=144 L=6, and 4.7 MB on wav2vec2-base, D=768 L=12).
If the store is down, tasks already cached keep serving at their last known
version; others raise StoreUnavailable.
Concurrent misses for one head share a single load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from adapters_store.base import HeadStore
from adapters_store.errors import StoreUnavailable, UnknownTask
from adapters_store.head_format import HeadRecord, HeadSpec, decode_head

logger = logging.getLogger(__name__)

CacheEvent = Callable[[str, str], None]  # (tier, event): event in hit | miss | eviction
LoadTimer = Callable[[str, float], None]  # (source, seconds)
DEFAULT_MAX_BYTES = 256 * 1024 * 1024  # HeadSettings.host_cache_bytes


MAX_REREADS = 3  # reads of a task's current version while invalidations keep arriving


def record_bytes(record: HeadRecord) -> int:
    """Host memory a decoded head holds: its tensors' bytes."""
    return sum(t.numel() * t.element_size() for t in record.tensors.values())


class HostHeadCache:
    """Decoded heads, LRU-bounded by count and by bytes, plus each task's current version.

    Invalidation is ordered against reads by a per-task generation counter:
    invalidate(task) bumps it (invalidate("*") bumps a global epoch), and a
    read of a task's current version is remembered only if neither changed
    while it was in flight; otherwise it reads again. So a read that began
    before an invalidation can never store the version the invalidation
    superseded, and no resolve that starts after an invalidation returns a
    version older than the one current when the invalidation arrived.
    """

    def __init__(
        self,
        store: HeadStore,
        spec: HeadSpec,
        capacity: int,
        on_event: CacheEvent = lambda tier, event: None,
        on_load: LoadTimer = lambda source, seconds: None,
        source_name: str = "store",
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if capacity < 1 or max_bytes < 1:
            raise ValueError(f"cache bounds must be positive: {capacity} heads, {max_bytes} B")
        self.store = store
        self.spec = spec
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._heads: OrderedDict[tuple[str, int], HeadRecord] = OrderedDict()
        self._sizes: dict[tuple[str, int], int] = {}
        self._bytes = 0
        self._current: dict[str, int] = {}
        # Generations exist only while a read of the task's current version is in
        # flight (they are compared within one read), so they cost no memory at rest.
        self._generation: dict[str, int] = {}
        self._reading: dict[str, int] = {}
        self._epoch = 0
        self._loading: dict[tuple[str, int], asyncio.Future[HeadRecord]] = {}
        self._on_event = on_event
        self._on_load = on_load
        self._source = source_name
        self._watcher: asyncio.Task | None = None

    def __len__(self) -> int:
        return len(self._heads)

    @property
    def bytes(self) -> int:
        """Bytes of head tensors held now (never above max_bytes after a load returns)."""
        return self._bytes

    def peek(self, task_id: str) -> HeadRecord | None:
        """The task's current head if it is known and decoded here already (no I/O)."""
        version = self._current.get(task_id)
        return None if version is None else self._heads.get((task_id, version))

    async def owner(self, task_id: str) -> str | None:
        """Who owns the task, from the store, without loading its head (UnknownTask if none)."""
        return await self.store.owner(task_id)

    async def resolve(self, task_id: str) -> HeadRecord:
        version = self._current.get(task_id)
        if version is None:
            version = await self._read_current(task_id)
        return await self.get(task_id, version)

    async def _read_current(self, task_id: str) -> int:
        self._reading[task_id] = self._reading.get(task_id, 0) + 1
        try:
            for _ in range(MAX_REREADS):
                began = self._stamp(task_id)
                version = await self.store.current_version(task_id)
                if self._stamp(task_id) == began:
                    self._current[task_id] = version
                    return version
                # Told of a change while reading: `version` may be the superseded one.
            logger.info("task %s keeps changing; serving its latest read uncached", task_id)
            return version
        finally:
            left = self._reading[task_id] - 1
            if left:
                self._reading[task_id] = left
            else:
                del self._reading[task_id]
                self._generation.pop(task_id, None)

    def _stamp(self, task_id: str) -> tuple[int, int]:
        return self._epoch, self._generation.get(task_id, 0)

    async def get(self, task_id: str, version: int) -> HeadRecord:
        key = (task_id, version)
        record = self._heads.get(key)
        if record is not None:
            self._heads.move_to_end(key)
            self._on_event("host", "hit")
            return record
        self._on_event("host", "miss")
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(task_id, version))
            self._loading[key] = pending
            pending.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(pending)

    async def _load(self, task_id: str, version: int) -> HeadRecord:
        began = time.perf_counter()
        data = await self.store.get_bytes(task_id, version)
        record = decode_head(data, self.spec)
        self._on_load(self._source, time.perf_counter() - began)
        key = (task_id, version)
        size = record_bytes(record)
        self._bytes += size - self._sizes.get(key, 0)
        self._heads[key] = record
        self._heads.move_to_end(key)
        self._sizes[key] = size
        # A head bigger than max_bytes is served but not kept (the newest entry goes last).
        while self._heads and (len(self._heads) > self.capacity or self._bytes > self.max_bytes):
            old, _ = self._heads.popitem(last=False)
            self._bytes -= self._sizes.pop(old)
            self._on_event("host", "eviction")
        return record

    def invalidate(self, task_id: str) -> None:
        """The task changed somewhere: re-read its current version on next use.

        Also voids any read of its current version now in flight ("*": of all tasks).
        """
        if task_id == "*":
            self._epoch += 1
            self._current.clear()
        else:
            if task_id in self._reading:
                self._generation[task_id] = self._generation.get(task_id, 0) + 1
            self._current.pop(task_id, None)

    def start_watching(self) -> None:
        self._watcher = asyncio.create_task(self._watch(), name="head-cache-watch")

    async def _watch(self) -> None:
        while True:
            try:
                async for task_id in self.store.watch():
                    self.invalidate(task_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken feed must not end invalidation for good
                logger.exception("head change feed failed; restarting it")
                self.invalidate("*")
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._watcher:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass


__all__ = ["HostHeadCache", "StoreUnavailable", "UnknownTask"]
