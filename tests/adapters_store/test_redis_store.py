"""RedisStore against a real redis-server: versions, listing, feed, ownership, quotas, races."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
import torch

from adapters_store.base import Quotas
from adapters_store.errors import QuotaExceeded, StoreUnavailable, UnknownTask
from adapters_store.head_format import HeadMetadata, HeadRecord, decode_head, encode_head
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


# --- lifecycle integrity (issue 12): versions, ownership, serialized writes, quotas ---


def _owned(task="t1", value=1.0, owner=None) -> HeadRecord:
    return _record(task, value).with_meta(owner=owner)


async def _keys(store, pattern="*") -> set[str]:
    return {k.decode() async for k in store.client.scan_iter(f"{store.prefix}:{pattern}")}


async def test_versions_are_never_reused_after_delete_and_delete_leaves_only_the_counter(store):
    await store.put(_record(value=1))
    await store.put(_record(value=2))
    await store.delete("t1")
    assert await _keys(store, "task:*") == {f"{store.prefix}:task:t1:next"}
    assert (await store.put(_record(value=3))).meta.version == 3
    assert await store.versions("t1") == [3]


async def test_a_tenant_acting_on_a_foreign_task_gets_unknown_task_and_changes_nothing(store):
    await store.put(_owned(owner="acme"), acting_tenant="acme")
    for call in (
        store.put(_owned(owner="globex"), acting_tenant="globex"),
        store.set_current("t1", 1, acting_tenant="globex"),
        store.delete("t1", acting_tenant="globex"),
    ):
        with pytest.raises(UnknownTask):
            await call
    assert await store.versions("t1") == [1]
    assert await store.list_tasks(0, 10, "acme") == (["t1"], 1)
    assert await store.list_tasks(0, 10, "globex") == ([], 0)


async def test_of_two_tenants_creating_one_id_at_once_exactly_one_wins(store):
    for i in range(10):
        task = f"new-{i}"
        results = await asyncio.gather(
            *(store.put(_owned(task, owner=t), acting_tenant=t) for t in ("acme", "globex")),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, HeadRecord)]
        assert len(won) == 1 and sum(isinstance(r, UnknownTask) for r in results) == 1
        assert await store.versions(task) == [1]
        owner = won[0].meta.owner
        assert (await store.list_tasks(0, 100, owner))[0].count(task) == 1


async def test_an_admin_write_keeps_the_owner_only_when_asked(store):
    await store.put(_owned(owner="acme"), acting_tenant="acme")
    assert (await store.put(_owned(owner=None), keep_owner=True)).meta.owner == "acme"
    assert decode_head(await store.get_bytes("t1")).meta.owner == "acme"
    assert (await store.put(_owned(owner="globex"))).meta.owner == "globex"
    assert await store.list_tasks(0, 10, "acme") == ([], 0)
    await store.set_current("t1", 1)  # rollback: the task follows its version's owner
    assert await store.list_tasks(0, 10, "acme") == (["t1"], 1)
    with pytest.raises(UnknownTask):
        await store.set_current("t1", 3, acting_tenant="acme")  # globex's version


async def test_racing_puts_rollbacks_and_deletes_leave_no_orphaned_keys(store, redis_server):
    other = RedisStore(redis_server.url, prefix=store.prefix)  # a second replica
    rng = random.Random(3)
    given: list[int] = []
    for _ in range(15):
        calls = []
        for s, tenant in ((store, "acme"), (other, "globex")):
            for op in rng.sample(["put", "put", "rollback", "delete"], 3):
                if op == "put":
                    calls.append(s.put(_owned("x", owner=tenant), acting_tenant=tenant))
                elif op == "rollback":
                    calls.append(s.set_current("x", rng.randint(1, 40), acting_tenant=tenant))
                else:
                    calls.append(s.delete("x", acting_tenant=tenant))
        for r in await asyncio.gather(*calls, return_exceptions=True):
            assert r is None or isinstance(r, (HeadRecord, UnknownTask)), repr(r)
            if isinstance(r, HeadRecord):
                given.append(r.meta.version)
        assert len(given) == len(set(given))
        blobs = {int(k.rsplit(":", 1)[1]) for k in await _keys(store, "task:x:v:*")}
        try:
            versions = await store.versions("x")
        except UnknownTask:
            assert blobs == set()
            assert await _keys(store, "task:x:*") == {f"{store.prefix}:task:x:next"}
            continue
        assert versions == sorted(blobs) and await store.current_version("x") in versions
        owner = decode_head(await store.get_bytes("x")).meta.owner
        assert [await store.list_tasks(0, 10, t) for t in ("acme", "globex")].count(
            (["x"], 1)
        ) == 1 and (await store.list_tasks(0, 10, owner))[0] == ["x"]
        usage = int(await store.client.get(f"{store.prefix}:usage:{owner}"))
        sizes = [len(await store.get_bytes("x", v)) for v in versions]
        assert usage == sum(sizes)
    await other.close()


async def test_each_quota_refuses_a_tenant_write_and_delete_gives_the_bytes_back(store):
    size = len(encode_head(_owned(owner="acme").with_meta(version=1)))
    store.quotas = Quotas(
        max_tasks_per_tenant=2, max_versions_per_task=2, max_bytes_per_tenant=4 * size
    )
    await store.put(_owned("a", owner="acme"), acting_tenant="acme")
    await store.put(_owned("a", owner="acme"), acting_tenant="acme")
    with pytest.raises(QuotaExceeded, match="versions"):
        await store.put(_owned("a", owner="acme"), acting_tenant="acme")
    await store.put(_owned("b", owner="acme"), acting_tenant="acme")
    with pytest.raises(QuotaExceeded, match="tasks"):
        await store.put(_owned("c", owner="acme"), acting_tenant="acme")
    padded = _owned("b", owner="acme").with_meta(extra={"pad": "x" * 64})
    with pytest.raises(QuotaExceeded, match="bytes"):
        await store.put(padded, acting_tenant="acme")
    await store.put(_owned("c", owner="acme"))  # admin: not limited
    assert await store.versions("a") == [1, 2]
    usage_key = f"{store.prefix}:usage:acme"
    before = int(await store.client.get(usage_key))
    await store.delete("a", acting_tenant="acme")
    await store.delete("c")
    assert int(await store.client.get(usage_key)) == before - 3 * size
    assert (await store.put(padded, acting_tenant="acme")).meta.version == 2
