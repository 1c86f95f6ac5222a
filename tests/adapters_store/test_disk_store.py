"""DiskStore: versions, rollback, delete, atomicity under crashes and races."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch

from adapters_store import disk_store
from adapters_store.disk_store import DiskStore
from adapters_store.errors import UnknownTask
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
