"""DiskStore: versions, rollback, delete, ownership, quotas, atomicity under crashes and races."""

from __future__ import annotations

import os
import random
import shutil
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import torch

from adapters_store import disk_store
from adapters_store.base import Quotas
from adapters_store.disk_store import DiskStore
from adapters_store.errors import QuotaExceeded, UnknownTask
from adapters_store.head_format import HeadMetadata, HeadRecord


def _record(task="t1", value=1.0) -> HeadRecord:
    return HeadRecord(HeadMetadata(task, "linear", "fp"), {"V": torch.full((3, 2), value)})


def test_put_assigns_increasing_versions_and_serves_the_latest(tmp_path):
    store = DiskStore(tmp_path)
    assert store.put(_record(value=1)).meta.version == 1
    assert store.put(_record(value=2)).meta.version == 2
    assert store.current_version("t1") == 2
    assert store.get("t1").tensors["V"][0, 0] == 2
    assert store.get("t1", version=1).tensors["V"][0, 0] == 1
    assert store.versions("t1") == [1, 2]
    assert store.task_ids() == ["t1"]


def test_rollback_makes_an_earlier_version_current(tmp_path):
    store = DiskStore(tmp_path)
    store.put(_record(value=1))
    store.put(_record(value=2))
    store.set_current("t1", 1)
    assert store.get("t1").tensors["V"][0, 0] == 1
    with pytest.raises(UnknownTask):
        store.set_current("t1", 9)


def test_delete_removes_the_task_and_unknown_tasks_raise(tmp_path):
    store = DiskStore(tmp_path)
    store.put(_record())
    store.delete("t1")
    assert store.task_ids() == []
    with pytest.raises(UnknownTask):
        store.get("t1")
    with pytest.raises(UnknownTask):
        store.delete("t1")


def test_crash_between_write_and_rename_leaves_the_old_version_intact(tmp_path, monkeypatch):
    store = DiskStore(tmp_path)
    store.put(_record(value=1))

    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(disk_store.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        store.put(_record(value=2))
    monkeypatch.undo()
    assert store.versions("t1") == [1]
    assert store.get("t1").tensors["V"][0, 0] == 1
    assert not [p for p in (tmp_path / "t1").iterdir() if p.name.startswith(".tmp-")]


def _register(args):
    root, value = args
    return DiskStore(root).put(_record(value=value)).meta.version


def test_concurrent_registrations_from_processes_get_distinct_versions(tmp_path):
    with ProcessPoolExecutor(4) as pool:
        versions = list(pool.map(_register, [(str(tmp_path), v) for v in range(12)]))
    store = DiskStore(tmp_path)
    assert sorted(versions) == list(range(1, 13))
    assert store.current_version("t1") == 12  # the last writer under the lock wins
    assert store.versions("t1") == list(range(1, 13))
    for v in versions:
        store.get("t1", v)  # every version is complete and parses
    assert os.path.exists(tmp_path / "t1" / "CURRENT")


# --- lifecycle integrity (issue 12): versions, ownership, serialized writes, quotas ---


def _owned(task="t1", value=1.0, owner=None) -> HeadRecord:
    return _record(task, value).with_meta(owner=owner)


def test_versions_are_never_reused_after_delete(tmp_path):
    store = DiskStore(tmp_path)
    store.put(_record(value=1))
    store.put(_record(value=2))
    store.delete("t1")
    assert store.put(_record(value=3)).meta.version == 3
    assert store.versions("t1") == [3]
    assert DiskStore(tmp_path).put(_record(value=4)).meta.version == 4  # another process


def test_a_folder_without_a_counter_still_never_reuses_its_versions(tmp_path):
    store = DiskStore(tmp_path)
    for v in range(3):
        store.put(_record(value=v))
    shutil.rmtree(tmp_path / ".versions")  # as written before the counter existed
    store.delete("t1")
    assert store.put(_record()).meta.version == 4


def test_a_tenant_acting_on_a_foreign_task_gets_unknown_task_and_changes_nothing(tmp_path):
    store = DiskStore(tmp_path)
    store.put(_owned(owner="acme"), acting_tenant="acme")
    for call in (
        lambda: store.put(_owned(owner="globex"), acting_tenant="globex"),
        lambda: store.set_current("t1", 1, acting_tenant="globex"),
        lambda: store.delete("t1", acting_tenant="globex"),
    ):
        with pytest.raises(UnknownTask):
            call()
    assert store.versions("t1") == [1] and store.owner("t1") == "acme"
    assert store.put(_owned(), acting_tenant="acme").meta.owner == "acme"


def test_an_admin_write_keeps_the_owner_only_when_asked(tmp_path):
    store = DiskStore(tmp_path)
    store.put(_owned(owner="acme"), acting_tenant="acme")
    kept = store.put(_owned(owner=None), keep_owner=True)
    assert kept.meta.owner == "acme" and store.get("t1").meta.owner == "acme"
    given = store.put(_owned(owner="globex"))
    assert given.meta.owner == "globex" and store.task_ids("acme") == []


def test_rollback_hands_the_task_to_the_versions_owner_and_tenants_only_reach_their_own(
    tmp_path,
):
    store = DiskStore(tmp_path)
    store.put(_owned(owner="acme"), acting_tenant="acme")  # v1: acme's
    store.put(_owned(owner="globex"))  # v2: an admin gives the task to globex
    with pytest.raises(UnknownTask):  # v1 is acme's: globex cannot bring it back
        store.set_current("t1", 1, acting_tenant="globex")
    store.set_current("t1", 1)  # the admin can: the task is acme's again
    assert store.owner("t1") == "acme" and store.task_ids("acme") == ["t1"]
    with pytest.raises(UnknownTask):
        store.set_current("t1", 2, acting_tenant="acme")


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    store = DiskStore(tmp_path)
    real = disk_store._atomic_write

    def fail_on_current(path, data):
        if path.name == "CURRENT":
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(disk_store, "_atomic_write", fail_on_current)
    with pytest.raises(OSError):
        store.put(_owned(task="fresh", owner="acme"), acting_tenant="acme")
    assert not (tmp_path / "fresh").exists()
    monkeypatch.undo()
    store.put(_owned(owner="acme"), acting_tenant="acme")
    monkeypatch.setattr(disk_store, "_atomic_write", fail_on_current)
    with pytest.raises(OSError):
        store.put(_owned(owner="globex"))
    monkeypatch.undo()
    assert store.versions("t1") == [1] and store.owner("t1") == "acme"
    assert store.put(_owned(), acting_tenant="acme").meta.version == 3  # 2 stays spent


def test_each_quota_refuses_a_tenant_write_but_never_an_admin_write(tmp_path):
    size = len(disk_store.encode_head(_owned(owner="acme").with_meta(version=1)))
    quotas = Quotas(max_tasks_per_tenant=2, max_versions_per_task=2, max_bytes_per_tenant=4 * size)
    store = DiskStore(tmp_path, quotas)
    store.put(_owned("a", owner="acme"), acting_tenant="acme")
    store.put(_owned("a", owner="acme"), acting_tenant="acme")
    with pytest.raises(QuotaExceeded, match="versions"):
        store.put(_owned("a", owner="acme"), acting_tenant="acme")
    store.put(_owned("b", owner="acme"), acting_tenant="acme")
    with pytest.raises(QuotaExceeded, match="tasks"):
        store.put(_owned("c", owner="acme"), acting_tenant="acme")
    with pytest.raises(QuotaExceeded, match="bytes"):  # 3 heads stored, 4 allowed
        store.put(
            _owned("b", value=2, owner="acme").with_meta(extra={"pad": "x" * 64}),
            acting_tenant="acme",
        )
    store.put(_owned("c", owner="acme"))  # admin: not limited
    assert store.versions("a") == [1, 2] and store.task_ids("acme") == ["a", "b", "c"]
    store.delete("a", acting_tenant="acme")  # frees a task and its bytes
    store.delete("c")
    assert store.put(_owned("d", owner="acme"), acting_tenant="acme").meta.version == 1


def _churn(root: str, tenant: str, rounds: int, seed: int) -> list[tuple[str, int]]:
    """One 'process': its own DiskStore, racing put/rollback/delete on one id."""
    store, rng, given = DiskStore(root), random.Random(seed), []
    for _ in range(rounds):
        op = rng.choice(["put", "put", "rollback", "delete"])
        try:
            if op == "put":
                given.append((tenant, store.put(_owned("x", owner=tenant), tenant).meta.version))
            elif op == "rollback":
                store.set_current("x", rng.randint(1, 60), tenant)
            else:
                store.delete("x", tenant)
        except UnknownTask:
            pass  # gone, or the other tenant's at that moment
    return given


def test_two_stores_in_threads_racing_on_one_id_keep_every_invariant(tmp_path):
    for round_ in range(6):
        with ThreadPoolExecutor(2) as pool:
            runs = [
                pool.submit(_churn, str(tmp_path), t, 10, round_ * 2 + i)
                for i, t in enumerate(("acme", "globex"))
            ]
            given = [g for run in runs for g in run.result()]
        versions = [v for _, v in given]
        assert len(versions) == len(set(versions))  # never reused
        store = DiskStore(tmp_path)
        folder = tmp_path / "x"
        if "x" not in store.task_ids():
            assert not folder.exists()  # deleted: nothing left behind
            continue
        owner, current = store.owner("x"), store.current_version("x")
        assert owner in ("acme", "globex") and store.task_ids(owner) == ["x"]
        assert all(store.get("x", v).meta.owner == owner for v in store.versions("x"))
        assert store.get("x").meta.version == current  # the current file exists
        leftovers = {p.name for p in folder.iterdir()} - {"CURRENT", "OWNER"}
        assert leftovers == {f"v{v:06d}.safetensors" for v in store.versions("x")}
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_the_owner_index_is_built_for_old_stores_and_skips_stale_markers(tmp_path):
    store = DiskStore(tmp_path)
    store.put(_owned("a", owner="acme"))
    store.put(_owned("b", owner="globex"))
    shutil.rmtree(tmp_path / ".owners")  # as written before the index existed
    assert store.task_ids("acme") == ["a"]  # readers fall back to a scan
    store.put(_owned("c", owner="acme"), acting_tenant="acme")  # a write rebuilds the index
    assert store.task_ids("acme") == ["a", "c"] and store.task_ids("globex") == ["b"]
    (store._index("acme") / "b").touch()  # a marker a crash left behind
    assert store.task_ids("acme") == ["a", "c"]
    store.put(_owned("a", owner="globex"))  # the admin gives "a" to globex
    assert store.task_ids("acme") == ["c"] and store.task_ids("globex") == ["a", "b"]
