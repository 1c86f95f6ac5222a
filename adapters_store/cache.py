"""Host tier of the head cache: decoded, validated heads in an LRU over a store.

    resolve(task) -> HeadRecord of the task's current version
        current version: from a map kept fresh by the store's change feed
        head tensors:    host LRU keyed by (task, version), else the store

Versions are immutable, so a cached (task, version) never goes stale; only
the task -> current-version map needs invalidating, which the store's watch
feed does for every replica. If the store is down, tasks already cached keep
serving at their last known version; others raise StoreUnavailable.
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


class HostHeadCache:
    def __init__(
        self,
        store: HeadStore,
        spec: HeadSpec,
        capacity: int,
        on_event: CacheEvent = lambda tier, event: None,
        on_load: LoadTimer = lambda source, seconds: None,
        source_name: str = "store",
    ) -> None:
        self.store = store
        self.spec = spec
        self.capacity = capacity
        self._heads: OrderedDict[tuple[str, int], HeadRecord] = OrderedDict()
        self._current: dict[str, int] = {}
        self._loading: dict[tuple[str, int], asyncio.Future[HeadRecord]] = {}
        self._on_event = on_event
        self._on_load = on_load
        self._source = source_name
        self._watcher: asyncio.Task | None = None

    def __len__(self) -> int:
        return len(self._heads)

    async def resolve(self, task_id: str) -> HeadRecord:
        version = self._current.get(task_id)
        if version is None:
            version = await self.store.current_version(task_id)
            self._current[task_id] = version
        return await self.get(task_id, version)

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
        self._heads[(task_id, version)] = record
        while len(self._heads) > self.capacity:
            self._heads.popitem(last=False)
            self._on_event("host", "eviction")
        return record

    def invalidate(self, task_id: str) -> None:
        """The task changed somewhere: re-read its current version on next use."""
        if task_id == "*":
            self._current.clear()
        else:
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
