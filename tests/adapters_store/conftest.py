"""The two stores behind one fixture, for tests of rules both must keep alike."""

from __future__ import annotations

import uuid

import pytest

from adapters_store.disk_store import AsyncDiskStore
from adapters_store.redis_store import RedisStore


@pytest.fixture(params=["disk", "redis"])
async def store(request, tmp_path):
    if request.param == "disk":
        yield AsyncDiskStore(tmp_path)
        return
    redis_server = request.getfixturevalue("redis_server")
    s = RedisStore(redis_server.url, prefix=f"test-{uuid.uuid4().hex[:8]}")
    yield s
    await s.close()
