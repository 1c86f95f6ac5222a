"""Host head cache over a real DiskStore: hits, misses, evictions, single flight."""

from __future__ import annotations

import asyncio

import pytest
import torch

from adapters_store.cache import HostHeadCache, record_bytes
from adapters_store.disk_store import AsyncDiskStore
from adapters_store.errors import HeadRejected, UnknownTask
from adapters_store.families import make_head_spec
from adapters_store.head_format import HeadMetadata, HeadRecord

SPEC = make_head_spec("fp", hidden_dim=3, controller_dim=2, num_layers=1)


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


class GatedStore(AsyncDiskStore):
    """A real DiskStore whose current-version reads can be held after they read.

    This is the window of a slow store (a Redis round trip): the answer is
    fixed, the caller has not got it yet, and meanwhile the task may change.
    """

    def __init__(self, root):
        super().__init__(root)
        self.gate: asyncio.Event | None = None
        self.read_done = asyncio.Event()

    async def current_version(self, task_id):
        version = await super().current_version(task_id)
        gate = self.gate
        if gate is not None:
            self.read_done.set()
            await gate.wait()
        return version


@pytest.mark.parametrize("scope", ["task", "all"])
async def test_an_invalidation_during_a_current_version_read_is_not_lost(tmp_path, scope):
    """Regression (issue 12): the read of v1 finished after the invalidation and pinned v1."""
    store = GatedStore(tmp_path)
    cache = HostHeadCache(store, SPEC, capacity=4)
    await store.put(_record("a", 1.0))
    store.gate = asyncio.Event()
    first = asyncio.create_task(cache.resolve("a"))
    await store.read_done.wait()  # it has read version 1 and not yet returned
    await store.put(_record("a", 2.0))
    cache.invalidate("a" if scope == "task" else "*")  # what the change feed does
    gate, store.gate = store.gate, None
    gate.set()
    assert (await first).meta.version == 2  # the superseded read was read again
    record = await cache.resolve("a")
    assert record.meta.version == 2 and record.tensors["V"][0, 0] == 2.0


async def test_a_read_that_began_after_the_invalidation_is_remembered(tmp_path):
    store = CountingStore(tmp_path)
    cache = HostHeadCache(store, SPEC, capacity=4)
    await store.put(_record("a", 1.0))
    cache.invalidate("a")  # before any read: nothing to void
    await cache.resolve("a")
    await cache.resolve("a")
    assert store.reads == 1  # the current version and the head were both kept
    assert cache._generation == {} and cache._reading == {}  # no per-task state at rest


def _wide(task: str, value: float) -> HeadRecord:
    """A 12 KB linear head for a 100 x 30 model."""
    return HeadRecord(HeadMetadata(task, "linear", "fp"), {"V": torch.full((100, 30), value)})


async def test_the_host_cache_is_bounded_in_bytes_not_only_in_count(tmp_path):
    """Regression (issue 12): the host cache was bounded by count only."""
    spec = make_head_spec("fp", hidden_dim=100, controller_dim=30, num_layers=1)
    store = AsyncDiskStore(tmp_path)
    size = record_bytes(_wide("x", 0.0))
    assert size == 12_000
    events = []
    cache = HostHeadCache(
        store, spec, capacity=100, max_bytes=3 * size + 1, on_event=lambda *e: events.append(e)
    )
    for i in range(6):
        await store.put(_wide(f"t{i}", float(i)))
        await cache.resolve(f"t{i}")
        assert cache.bytes <= 3 * size + 1
    assert len(cache) == 3 and cache.bytes == 3 * size
    assert events.count(("host", "eviction")) == 3
    assert (await cache.resolve("t5")).tensors["V"][0, 0] == 5.0  # the newest stay


async def test_a_head_larger_than_the_byte_bound_is_served_but_not_kept(tmp_path):
    spec = make_head_spec("fp", hidden_dim=100, controller_dim=30, num_layers=1)
    store = AsyncDiskStore(tmp_path)
    cache = HostHeadCache(store, spec, capacity=100, max_bytes=1000)
    await store.put(_wide("big", 7.0))
    assert (await cache.resolve("big")).tensors["V"][0, 0] == 7.0
    assert len(cache) == 0 and cache.bytes == 0
