"""Faults: Redis stopped and restarted under traffic, overload bursts, failing
batches and disconnecting clients; the server stays healthy through all of them."""

from __future__ import annotations

import asyncio

import pytest

from adapters_store.disk_store import DiskStore
from adapters_store.redis_store import RedisStore
from server.config import BatchSettings, StoreKind
from tests.helpers import (
    DEFAULT_MODEL_DIR,
    RedisServer,
    async_wait_until,
    fsdd_bytes,
    make_settings,
    running_client,
)


@pytest.mark.slow
async def test_redis_outage_serves_cached_heads_then_recovers_without_restart(tmp_path, fsdd_test):
    redis = RedisServer(tmp_path / "redis-data")
    (tmp_path / "redis-data").mkdir()
    redis.start()
    try:
        settings = make_settings(tmp_path, store=StoreKind.REDIS, redis_url=redis.url)
        seed = RedisStore(redis.url, settings.redis_prefix)
        for task in ("fsdd-george", "fsdd-theo"):
            await seed.put(DiskStore(DEFAULT_MODEL_DIR / "heads").get(task))
        await seed.close()
        clip = fsdd_bytes(fsdd_test[0])
        async with running_client(settings) as client:
            warm = await client.post("/v1/transcribe?task_id=fsdd-george", content=clip)
            assert warm.status_code == 200
            redis.stop()
            during = await asyncio.gather(
                *[client.post("/v1/transcribe?task_id=fsdd-george", content=clip) for _ in range(8)]
            )
            assert all(r.status_code == 200 for r in during)
            assert all(r.json()["text"] == warm.json()["text"] for r in during)
            cold = await client.post("/v1/transcribe?task_id=fsdd-theo", content=clip)
            assert cold.status_code == 503 and cold.json()["error"]["code"] == "store_unavailable"
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["status"] == "degraded"

            redis.start()  # same port, same AOF: the heads are back
            for _ in range(100):
                cold = await client.post("/v1/transcribe?task_id=fsdd-theo", content=clip)
                if cold.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert cold.status_code == 200
            assert (await client.get("/readyz")).json()["status"] == "ready"
    finally:
        redis.stop()


async def test_a_burst_of_10x_capacity_gets_503_with_retry_after_and_no_deadlock(
    tmp_path, fsdd_test
):
    settings = make_settings(tmp_path, batch=BatchSettings(max_batch_size=4, max_queue=8))
    clip = fsdd_bytes(fsdd_test[0])
    async with running_client(settings) as client:
        burst = await asyncio.gather(
            *[client.post("/v1/transcribe?task_id=fsdd-george", content=clip) for _ in range(80)]
        )
        codes = [r.status_code for r in burst]
        assert set(codes) <= {200, 503} and codes.count(200) >= 8 and codes.count(503) > 0
        refused = next(r for r in burst if r.status_code == 503)
        assert refused.json()["error"]["code"] == "overloaded"
        assert int(refused.headers["retry-after"]) >= 1
        assert client.app.state.runtime.batcher.queue_depth == 0
        after = await client.post("/v1/transcribe?task_id=fsdd-george", content=clip)
        assert after.status_code == 200


async def test_an_exception_inside_a_batch_fails_that_batch_only(client, fsdd_test):
    engine = client.app.state.runtime.engine
    original = engine.run
    calls = {"n": 0}

    def fail_once(batch):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated kernel failure")
        return original(batch)

    engine.run = fail_once
    clip = fsdd_bytes(fsdd_test[0])
    failed = await client.post("/v1/transcribe?task_id=fsdd-george", content=clip)
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "batch_failed"
    assert (
        await client.post("/v1/transcribe?task_id=fsdd-george", content=clip)
    ).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


async def test_clients_that_disconnect_mid_request_leave_nothing_behind(client, fsdd_test):
    clip = fsdd_bytes(fsdd_test[0])
    batcher = client.app.state.runtime.batcher
    tasks = [
        asyncio.create_task(client.post("/v1/transcribe?task_id=fsdd-lucas", content=clip))
        for _ in range(12)
    ]
    await asyncio.sleep(0.01)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await async_wait_until(lambda: batcher.queue_depth == 0, timeout_s=5)
    assert (await client.post("/v1/transcribe?task_id=fsdd-lucas", content=clip)).status_code == 200
