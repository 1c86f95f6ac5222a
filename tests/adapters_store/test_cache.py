"""Host head cache over a real DiskStore: hits, misses, evictions, single flight."""

from __future__ import annotations

import asyncio

import pytest
import torch

from adapters_store.cache import HostHeadCache
from adapters_store.disk_store import AsyncDiskStore
from adapters_store.errors import HeadRejected, UnknownTask
from adapters_store.head_format import HeadMetadata, HeadRecord, HeadSpec

SPEC = HeadSpec("fp", hidden_dim=3, controller_dim=2, num_layers=1)


def _record(task: str, value: float = 1.0, fp: str = "fp") -> HeadRecord:
    return HeadRecord(HeadMetadata(task, "linear", fp), {"V": torch.full((3, 2), value)})


class CountingStore(AsyncDiskStore):
    def __init__(self, root):
        super().__init__(root)
        self.reads = 0

    async def get_bytes(self, task_id, version=None):
        self.reads += 1
        await asyncio.sleep(0.01)
        return await super().get_bytes(task_id, version)


@pytest.fixture
async def setup(tmp_path):
    store = CountingStore(tmp_path)
    events: list[tuple[str, str]] = []
    cache = HostHeadCache(store, SPEC, capacity=2, on_event=lambda *e: events.append(e))
    cache.start_watching()
    yield store, cache, events
    await cache.stop()


async def test_second_resolve_is_a_hit_and_lru_evicts_beyond_capacity(setup):
    store, cache, events = setup
    for t in "abc":
        await store.put(_record(t))
    await cache.resolve("a")
    await cache.resolve("a")
    await cache.resolve("b")
    await cache.resolve("c")  # evicts a
    assert len(cache) == 2 and store.reads == 3
    assert events.count(("host", "hit")) == 1 and events.count(("host", "eviction")) == 1


async def test_concurrent_misses_for_one_head_read_the_store_once(setup):
    store, cache, _ = setup
    await store.put(_record("a"))
    results = await asyncio.gather(*[cache.resolve("a") for _ in range(10)])
    assert store.reads == 1 and all(r is results[0] for r in results)


async def test_a_put_through_the_store_is_seen_on_the_next_resolve(setup):
    store, cache, _ = setup
    await store.put(_record("a", 1.0))
    assert (await cache.resolve("a")).tensors["V"][0, 0] == 1.0
    await store.put(_record("a", 2.0))
    await asyncio.sleep(0.01)  # the change feed runs on the event loop
    record = await cache.resolve("a")
    assert record.meta.version == 2 and record.tensors["V"][0, 0] == 2.0


async def test_unknown_tasks_and_mismatched_heads_raise(setup):
    store, cache, _ = setup
    with pytest.raises(UnknownTask):
        await cache.resolve("nope")
    await store.put(_record("alien", fp="other"))
    with pytest.raises(HeadRejected):
        await cache.resolve("alien")
