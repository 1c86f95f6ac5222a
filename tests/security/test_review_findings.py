"""Defects found by the adversarial review of issue 12, each shown over real HTTP."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import soundfile as sf

from server.config import BatchSettings
from tests.conftest import fsdd_bytes, running_client
from tests.security.conftest import auth, keyed_settings


def _wav(seconds: float, rate: int = 16_000) -> bytes:
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, int(seconds * rate)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, noise, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


async def _wait_until(predicate, timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_one_tenant_filling_the_queue_does_not_get_another_tenant_refused(
    tmp_path, fsdd_test
):
    settings = keyed_settings(
        tmp_path,
        "disk",
        batch=BatchSettings(max_batch_size=1, max_queue=8, max_wait_ms=0),
    )
    long_clip, clip = _wav(20.0), fsdd_bytes(fsdd_test[0])
    async with running_client(settings) as client:
        batcher = client.app.state.service.batcher

        async def flood() -> int:
            r = await client.post("/v1/transcribe", content=long_clip, headers=auth("acme"))
            return r.status_code

        floods = [asyncio.create_task(flood()) for _ in range(16)]
        # acme's flood is queued and acme is already being refused: the queue is as full
        # as acme can make it
        await _wait_until(lambda: batcher.queue_depth >= 2 and any(f.done() for f in floods))
        r = await client.post("/v1/transcribe", content=clip, headers=auth("globex"))
        statuses = await asyncio.gather(*floods)
    assert r.status_code == 200, r.text  # globex is not refused for acme's flood
    assert 503 in statuses  # acme alone is held to its share of the queue
