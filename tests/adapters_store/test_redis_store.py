"""RedisStore against a real redis-server: versions, listing, change feed."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import torch

from adapters_store.errors import StoreUnavailable, UnknownTask
from adapters_store.head_format import HeadMetadata, HeadRecord, decode_head
from adapters_store.redis_store import RedisStore


def _record(task="t1", value=1.0) -> HeadRecord:
    return HeadRecord(HeadMetadata(task, "linear", "fp"), {"V": torch.full((3, 2), value)})


@pytest.fixture
async def store(redis_server):
    s = RedisStore(redis_server.url, prefix=f"test-{uuid.uuid4().hex[:8]}")
    yield s
    await s.close()


async def test_versions_current_rollback_and_delete(store):
    assert (await store.put(_record(value=1))).meta.version == 1
    assert (await store.put(_record(value=2))).meta.version == 2
    assert await store.versions("t1") == [1, 2]
    assert decode_head(await store.get_bytes("t1")).tensors["V"][0, 0] == 2
    await store.set_current("t1", 1)
    assert decode_head(await store.get_bytes("t1")).tensors["V"][0, 0] == 1
    await store.delete("t1")
    with pytest.raises(UnknownTask):
        await store.current_version("t1")
    assert await store.list_tasks(0, 10) == ([], 0)


async def test_listing_is_sorted_and_paginated(store):
    for name in ("c", "a", "b", "d"):
        await store.put(_record(task=name))
    assert await store.list_tasks(1, 2) == (["b", "c"], 4)


async def test_change_feed_reports_puts_from_another_client(store, redis_server):
    other = RedisStore(redis_server.url, prefix=store.prefix)
    feed = store.watch()
    assert await anext(feed) == "*"  # subscribed
    await other.put(_record(task="shared"))
    assert await asyncio.wait_for(anext(feed), 2) == "shared"
    await feed.aclose()
    await other.close()


async def test_unreachable_redis_raises_store_unavailable():
    dead = RedisStore("redis://127.0.0.1:1/0", timeout_s=0.2)
    with pytest.raises(StoreUnavailable):
        await dead.current_version("t1")
    assert await dead.ping() is False
    await dead.close()
