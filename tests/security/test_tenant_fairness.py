"""One tenant cannot starve another: a full queue and a flood of costly vocabulary decodes
from one tenant leave another served, and decodes nobody waits for are not run. Real HTTP."""

from __future__ import annotations

import asyncio
import io
import json
import time

import numpy as np
import soundfile as sf

from server.config import BatchSettings
from tests.helpers import async_wait_until, fsdd_bytes, running_client
from tests.security.helpers import auth, keyed_settings


def _wav(seconds: float, rate: int = 16_000) -> bytes:
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, int(seconds * rate)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, noise, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _speech(fsdd_test, seconds: float) -> bytes:
    """Real speech with no pause (FSDD recordings back to back): noise would run no window."""
    clips = [sf.read(u.audio, dtype="float32")[0] for u in fsdd_test[:200]]
    speech = np.concatenate(clips)[: int(seconds * 8000)]
    buffer = io.BytesIO()
    sf.write(buffer, speech, 8000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


async def test_one_tenant_filling_the_queue_does_not_get_another_tenant_refused(
    tmp_path, fsdd_test
):
    settings = keyed_settings(
        tmp_path,
        "disk",
        batch=BatchSettings(max_batch_size=1, max_queue=8, max_wait_ms=0),
    )
    long_clip, clip = _speech(fsdd_test, 20.0), fsdd_bytes(fsdd_test[0])
    async with running_client(settings) as client:
        batcher = client.app.state.runtime.batcher

        async def flood() -> int:
            r = await client.post("/v1/transcribe", content=long_clip, headers=auth("acme"))
            return r.status_code

        floods = [asyncio.create_task(flood()) for _ in range(16)]
        # acme's flood is queued and acme is already being refused: the queue is as full
        # as acme can make it
        await async_wait_until(lambda: batcher.queue_depth >= 2 and any(f.done() for f in floods))
        r = await client.post("/v1/transcribe", content=clip, headers=auth("globex"))
        statuses = await asyncio.gather(*floods)
    assert r.status_code == 200, r.text  # globex is not refused for acme's flood
    assert 503 in statuses  # acme alone is held to its share of the queue


LONG_WORDS = ["".join(chr(97 + (i // 26**k) % 26) for k in range(3)) + "word" for i in range(1000)]


async def _vocabulary_world(client, head_files) -> None:
    r = await client.put(
        "/v1/tasks/mallory-words",
        files={"file": ("h", head_files["acme"])},
        data={"vocabulary": json.dumps(LONG_WORDS)},
        headers=auth("acme"),
    )
    assert r.status_code == 200, r.text
    r = await client.put(  # carries the ten digit words in its own metadata
        "/v1/tasks/globex-digits",
        files={"file": ("h", head_files["globex"])},
        headers=auth("globex"),
    )
    assert r.status_code == 200 and r.json()["vocabulary"], r.text


def _costly_clip(settings) -> bytes:
    """Audio as long as LONG_WORDS may decode: ~0.15 s of Viterbi each."""
    states = 2 + sum(2 * len(w) + 1 for w in LONG_WORDS)
    return _wav(0.04 * (settings.audio.max_vocabulary_cost // states - 2))


async def _victim_seconds(client, clip: bytes) -> float:
    began = time.monotonic()
    r = await client.post(
        "/v1/transcribe?task_id=globex-digits", content=clip, headers=auth("globex")
    )
    assert r.status_code == 200, r.text
    return time.monotonic() - began


async def test_one_tenants_queued_vocabulary_decodes_do_not_stall_another_tenants(
    tmp_path, fsdd_test, head_files
):
    settings = keyed_settings(tmp_path, "disk")
    costly, clip = _costly_clip(settings), fsdd_bytes(fsdd_test[0])
    async with running_client(settings) as client:
        await _vocabulary_world(client, head_files)
        alone = await _victim_seconds(client, clip)
        decoder = client.app.state.runtime.engine._decoder
        flood = [
            asyncio.create_task(
                client.post(
                    "/v1/transcribe?task_id=mallory-words", content=costly, headers=auth("acme")
                )
            )
            for _ in range(24)
        ]
        await async_wait_until(lambda: decoder._work_queue.qsize() >= 12)
        after = await _victim_seconds(client, clip)  # acme's decodes still queued
        statuses = [r.status_code for r in await asyncio.gather(*flood)]
    assert statuses == [200] * 24  # acme is served too, only not ahead of everyone
    # globex's decode takes its turn: it does not wait behind 12+ decodes of ~0.15 s
    assert after < alone + 1.0, (alone, after)


async def test_vocabulary_decodes_of_abandoned_requests_are_not_run(
    tmp_path, fsdd_test, head_files
):
    settings = keyed_settings(tmp_path, "disk")
    costly = _costly_clip(settings)
    async with running_client(settings) as client:
        await _vocabulary_world(client, head_files)
        decoder = client.app.state.runtime.engine._decoder
        abandoned = [
            asyncio.create_task(
                client.post(
                    "/v1/transcribe?task_id=mallory-words", content=costly, headers=auth("acme")
                )
            )
            for _ in range(24)
        ]
        await async_wait_until(lambda: decoder._work_queue.qsize() >= 12)
        for task in abandoned:  # the clients hang up: nobody will read these transcripts
            task.cancel()
        await asyncio.gather(*abandoned, return_exceptions=True)
        # 12+ decodes of ~0.15 s each would take 1.8 s or more; skipped, they take none
        await async_wait_until(lambda: decoder._work_queue.qsize() == 0, timeout_s=1.0)
        assert client.app.state.runtime.batcher._decoding == set()
        clip = fsdd_bytes(fsdd_test[0])
        assert await _victim_seconds(client, clip) < 1.0
