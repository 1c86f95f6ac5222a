"""Runtime state lives outside the tracked tree; shipped heads seed stores (issue 16 item 6)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from adapters_store.disk_store import DiskStore
from adapters_store.redis_store import RedisStore
from adapters_store.seeding import seed_store
from server.cli import main
from server.config import REPO_ROOT, Settings, StoreKind, get_settings
from tests.helpers import DEFAULT_MODEL_DIR, running_client

SHIPPED = DiskStore(DEFAULT_MODEL_DIR / "heads").task_ids()


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (hidden ones too) -> (size, mtime_ns)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def _git_status(path: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--", str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_default_settings_keep_the_disk_store_in_the_state_dir_not_models():
    settings = Settings()
    assert settings.disk_store_path is None
    assert settings.heads_path == REPO_ROOT / "var" / "default" / "heads"
    assert DEFAULT_MODEL_DIR not in settings.heads_path.parents
    assert "var/" in (REPO_ROOT / ".gitignore").read_text().splitlines()


async def test_put_with_default_store_settings_leaves_models_dir_untouched(tmp_path):
    before_tree, before_git = _tree(DEFAULT_MODEL_DIR), _git_status(DEFAULT_MODEL_DIR)
    state = tmp_path / "state"
    settings = Settings(model_dir=DEFAULT_MODEL_DIR, state_dir=state, open_access=True)
    async with running_client(settings) as client:
        listed = (await client.get("/v1/tasks", params={"limit": 100})).json()
        head = (await client.get("/v1/tasks/fsdd-jackson/head")).content
        put = await client.put("/v1/tasks/new-user-task", files={"file": ("h", head)})
        assert put.status_code == 200, put.text
        rolled = await client.put("/v1/tasks/fsdd-jackson", files={"file": ("h", head)})
        assert rolled.json()["version"] == 2
    heads = state / "default" / "heads"
    assert DiskStore(heads).current_version("new-user-task") == 1
    assert DiskStore(heads).current_version("fsdd-jackson") == 2
    assert set(SHIPPED) <= set(listed["tasks"])  # seeded on first start
    assert _tree(DEFAULT_MODEL_DIR) == before_tree  # no file added, changed or touched
    assert _git_status(DEFAULT_MODEL_DIR) == before_git == ""


async def test_state_dir_is_seeded_once_so_a_deleted_shipped_task_stays_deleted(tmp_path):
    settings = Settings(model_dir=DEFAULT_MODEL_DIR, state_dir=tmp_path, open_access=True)
    async with running_client(settings) as client:
        assert (await client.delete("/v1/tasks/synth-fast")).status_code == 204
    async with running_client(settings) as client:
        assert (await client.get("/v1/tasks/synth-fast")).status_code == 404
        assert (await client.get("/v1/tasks/synth-noisy")).status_code == 200


async def test_disk_store_path_override_is_used_as_is_and_not_seeded(tmp_path):
    settings = Settings(
        model_dir=DEFAULT_MODEL_DIR,
        state_dir=tmp_path / "state",
        disk_store_path=tmp_path / "mine",
        open_access=True,
    )
    async with running_client(settings) as client:
        assert (await client.get("/v1/tasks/fsdd-jackson")).status_code == 404
    assert (tmp_path / "mine").is_dir() and not (tmp_path / "state").exists()


async def test_seed_store_into_real_redis_adds_then_skips_then_updates_a_changed_head(
    redis_server,
):
    store = RedisStore(redis_server.url, f"seed-{uuid.uuid4().hex[:8]}")
    try:
        first = await seed_store(store, DEFAULT_MODEL_DIR / "heads")
        assert sorted(first.added) == SHIPPED and not first.skipped
        again = await seed_store(store, DEFAULT_MODEL_DIR / "heads")
        assert sorted(again.skipped) == SHIPPED and not again.added and not again.updated
        assert await store.versions("fsdd-george") == [1]  # nothing written the second time
        shipped = DiskStore(DEFAULT_MODEL_DIR / "heads")
        other = shipped.get("fsdd-lucas")
        await store.put(other.with_meta(task_id="fsdd-george"))  # someone replaced it
        third = await seed_store(store, DEFAULT_MODEL_DIR / "heads")
        assert third.updated == ["fsdd-george"] and len(third.skipped) == len(SHIPPED) - 1
        assert await store.versions("fsdd-george") == [1, 2, 3]
    finally:
        await store.close()


@pytest.fixture
def env(monkeypatch):
    """Set HRA_ variables for a `main()` call; the cached settings are rebuilt around it."""
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


async def test_empty_redis_store_logs_how_to_seed_it_and_seed_store_cli_fills_it(
    redis_server, env, caplog, capsys
):
    prefix = f"hint-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        model_dir=DEFAULT_MODEL_DIR,
        store=StoreKind.REDIS,
        redis_url=redis_server.url,
        redis_prefix=prefix,
        open_access=True,
    )
    with caplog.at_level(logging.WARNING, logger="adapters_store.seeding"):
        async with running_client(settings) as client:
            assert (await client.get("/v1/tasks/fsdd-jackson")).status_code == 404
    assert "hra seed-store" in caplog.text
    env.setenv("HRA_STORE", "redis")
    env.setenv("HRA_REDIS_URL", redis_server.url)
    env.setenv("HRA_REDIS_PREFIX", prefix)
    assert await asyncio.to_thread(main, ["seed-store"]) == 0  # a process of its own
    assert f"{len(SHIPPED)} added" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["seed-store"]) == 0  # a process of its own
    assert f"0 added, 0 updated, {len(SHIPPED)} already there" in capsys.readouterr().out
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="adapters_store.seeding"):
        async with running_client(settings) as client:
            assert (await client.get("/v1/tasks/fsdd-jackson")).status_code == 200
    assert "hra seed-store" not in caplog.text


def test_transcribe_and_train_head_take_the_same_task_flag_and_old_one_still_works(
    tmp_path, fsdd_test, capsys, caplog
):
    clips = [u for u in fsdd_test if u.task == "fsdd-jackson"][:2]
    store = ["--store", str(DEFAULT_MODEL_DIR / "heads")]  # read only
    assert main(["transcribe", *store, "--task", "fsdd-jackson", *[c.audio for c in clips]]) == 0
    new = capsys.readouterr().out
    with caplog.at_level(logging.WARNING, logger="server.cli"):
        assert (
            main(["transcribe", *store, "--task-id", "fsdd-jackson", *[c.audio for c in clips]])
            == 0
        )
    assert capsys.readouterr().out == new
    assert "--task-id is deprecated" in caplog.text


def test_train_head_prints_where_it_wrote_and_a_retrain_keeps_the_owner(
    tmp_path, fsdd_root, capsys
):
    from server.data.fsdd import load_fsdd
    from server.data.manifest import Utterance, write_manifest

    rows = load_fsdd(fsdd_root, range(0, 3), speakers=["theo"])
    manifest = tmp_path / "theo.jsonl"
    write_manifest(manifest, [Utterance(u.audio, u.text, "x") for u in rows])
    heads = tmp_path / "heads"
    common = ["train-head", "--store", str(heads), "--manifest", str(manifest), "--steps", "2"]
    assert main([*common, "--task", "theo-2", "--owner", "acme"]) == 0
    out = capsys.readouterr().out
    assert f"to {heads / 'theo-2'}" in out and "version 1" in out and "owner acme" in out
    assert main([*common, "--task", "theo-2"]) == 0  # no --owner: the task's own is kept
    assert "version 2" in capsys.readouterr().out
    assert DiskStore(heads).get("theo-2").meta.owner == "acme"
    assert main([*common, "--task", "theo-3"]) == 0
    assert "owner none" in capsys.readouterr().out
    assert os.listdir(heads / "theo-3")
