"""Two server instances sharing one real Redis: hot-swap without restart."""

from __future__ import annotations

import asyncio
import time

import pytest

from adapters_store.disk_store import DiskStore
from adapters_store.redis_store import RedisStore
from server.config import StoreKind
from tests.helpers import DEFAULT_MODEL_DIR, fsdd_bytes, make_settings, running_client

pytestmark = pytest.mark.slow


async def _seed(redis_url: str, prefix: str, tasks: list[str]) -> None:
    store = RedisStore(redis_url, prefix)
    disk = DiskStore(DEFAULT_MODEL_DIR / "heads")
    for task in tasks:
        await store.put(disk.get(task))
    await store.close()


async def test_head_registered_through_one_replica_is_served_by_the_other_within_1s(
    redis_server, tmp_path, fsdd_test
):
    settings = make_settings(tmp_path, store=StoreKind.REDIS, redis_url=redis_server.url)
    await _seed(redis_server.url, settings.redis_prefix, ["fsdd-lucas"])
    clip = fsdd_bytes(next(u for u in fsdd_test if u.task == "fsdd-lucas"))
    async with running_client(settings) as a, running_client(settings) as b:
        head = (await a.get("/v1/tasks/fsdd-lucas/head")).content
        first = await b.post("/v1/transcribe?task_id=fsdd-lucas", content=clip)
        assert first.json()["head_version"] == 1  # b has the task cached at v1
        missing = await b.post("/v1/transcribe?task_id=brand-new", content=clip)
        assert missing.status_code == 404

        registered = time.monotonic()
        assert (await a.put("/v1/tasks/brand-new", files={"file": ("h", head)})).status_code == 200
        assert (await a.put("/v1/tasks/fsdd-lucas", files={"file": ("h", head)})).status_code == 200
        while True:
            r_new = await b.post("/v1/transcribe?task_id=brand-new", content=clip)
            r_old = await b.post("/v1/transcribe?task_id=fsdd-lucas", content=clip)
            if r_new.status_code == 200 and r_old.json()["head_version"] == 2:
                break
            assert time.monotonic() - registered < 1.0, "replica b did not see the update in 1 s"
            await asyncio.sleep(0.02)
        assert r_new.json()["text"] == first.json()["text"]


async def test_replacing_a_head_under_20_in_flight_requests_fails_none(
    redis_server, tmp_path, fsdd_test
):
    settings = make_settings(tmp_path, store=StoreKind.REDIS, redis_url=redis_server.url)
    await _seed(redis_server.url, settings.redis_prefix, ["fsdd-theo", "synth-fast"])
    clips = [fsdd_bytes(u) for u in fsdd_test if u.task == "fsdd-theo"][:20]
    async with running_client(settings) as a, running_client(settings) as b:
        replacement = (await a.get("/v1/tasks/synth-fast/head")).content
        sent: list[tuple[float, asyncio.Task]] = []
        for clip in clips[:10]:
            sent.append(
                (
                    time.monotonic(),
                    asyncio.create_task(b.post("/v1/transcribe?task_id=fsdd-theo", content=clip)),
                )
            )
        r = await a.put("/v1/tasks/fsdd-theo", files={"file": ("h", replacement)})
        assert r.status_code == 200
        swapped = time.monotonic()
        await asyncio.sleep(0.2)  # let the change notification arrive
        for clip in clips[10:]:
            sent.append(
                (
                    time.monotonic(),
                    asyncio.create_task(b.post("/v1/transcribe?task_id=fsdd-theo", content=clip)),
                )
            )
        responses = [(t, await task) for t, task in sent]
    assert all(r.status_code == 200 for _, r in responses)
    for admitted, r in responses:
        version = r.json()["head_version"]
        assert version in (1, 2)
        if admitted > swapped + 0.2:
            assert version == 2  # admitted after the swap was visible: the new head
