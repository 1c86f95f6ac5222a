"""Visibility as store state, on both stores: atomic with writes, indexed, never stale."""

from __future__ import annotations

import asyncio
import shutil

import pytest
import torch

from adapters_store.disk_store import DiskStore
from adapters_store.errors import InvalidVisibility, UnknownTask
from adapters_store.head_format import HeadMetadata, HeadRecord
from adapters_store.redis_store import RedisStore


def _record(task: str, owner: str | None = None, value: float = 1.0) -> HeadRecord:
    meta = HeadMetadata(task, "linear", "fp", owner=owner)
    return HeadRecord(meta, {"V": torch.full((3, 2), value)})


async def test_new_tasks_are_private_and_the_flag_follows_the_task_not_a_version(store):
    await store.put(_record("t", "acme"), acting_tenant="acme")
    assert (await store.access("t")).visibility == "private"
    await store.put(_record("t", value=2.0), keep_owner=True, visibility="public")
    await store.put(_record("t", "acme", value=3.0), acting_tenant="acme")  # keeps it
    await store.set_current("t", 1)
    access = await store.access("t")
    assert access.public and access.owner == "acme"
    await store.set_visibility("t", "private")
    assert not (await store.access("t")).public


async def test_listing_with_public_is_the_union_paged_in_id_order(store):
    for task, owner in (("a", "acme"), ("b", "globex"), ("c", None), ("d", "acme"), ("e", None)):
        await store.put(_record(task, owner))
    await store.set_visibility("c", "public")
    await store.set_visibility("b", "public")
    assert await store.list_tasks(0, 10, "acme", with_public=True) == (["a", "b", "c", "d"], 4)
    assert await store.list_tasks(1, 2, "acme", with_public=True) == (["b", "c"], 4)
    assert await store.list_tasks(0, 10, "acme") == (["a", "d"], 2)
    assert await store.list_tasks(0, 10, "nobody", with_public=True) == (["b", "c"], 2)
    await store.delete("b")
    assert await store.list_tasks(0, 10, "nobody", with_public=True) == (["c"], 1)
    if isinstance(store, RedisStore):  # the union's scratch key is gone with its MULTI
        assert not [k async for k in store.client.scan_iter(f"{store.prefix}:scratch:*")]


async def test_bad_visibility_writes_nothing_and_unknown_tasks_raise(store):
    for bad in ("PUBLIC", "public ", "", 1, None):
        with pytest.raises(InvalidVisibility):
            await store.put(_record("t"), visibility=bad if bad is not None else 0)
    with pytest.raises(UnknownTask):
        await store.access("t")
    await store.put(_record("t"))
    with pytest.raises(InvalidVisibility):
        await store.set_visibility("t", "Public")
    with pytest.raises(UnknownTask):
        await store.set_visibility("missing", "public")
    assert await store.versions("t") == [1] and not (await store.access("t")).public


async def test_racing_visibility_changes_and_deletes_leave_index_and_flag_agreeing(store):
    for round_ in range(8):
        await store.put(_record("x", "acme"), acting_tenant="acme")

        async def flip(value: str) -> None:
            try:
                await store.set_visibility("x", value)
            except UnknownTask:
                pass

        async def drop() -> None:
            try:
                await store.delete("x", acting_tenant="acme")
            except UnknownTask:
                pass

        await asyncio.gather(flip("public"), drop(), flip("private"), flip("public"))
        listed = (await store.list_tasks(0, 10, "nobody", with_public=True))[0]
        try:
            public = (await store.access("x")).public
        except UnknownTask:
            public = False
        assert listed == (["x"] if public else []), round_
        try:
            await store.delete("x")
        except UnknownTask:
            pass


def test_an_old_disk_store_gets_its_public_index_built_and_stale_markers_skipped(tmp_path):
    disk = DiskStore(tmp_path)
    disk.put(_record("p"), visibility="public")
    disk.put(_record("q"))
    shutil.rmtree(tmp_path / ".public")  # a store written before the index existed
    assert disk.public_task_ids() == ["p"]  # scanned
    (tmp_path / "q" / "VISIBILITY").write_text("public")  # as an old tool might have left it
    disk.put(_record("r"))  # any write builds the index
    assert sorted(p.name for p in (tmp_path / ".public").iterdir()) == ["p", "q"]
    disk.set_visibility("q", "private")
    (tmp_path / ".public" / "q").touch()  # a stale marker, as a crash could leave
    assert disk.public_task_ids() == ["p"]
