"""Batcher with a real (tiny) engine: batching, admission, deadlines, isolation."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from adapters_store.head_format import HeadMetadata, HeadRecord, HeadSpec
from server.audio import Audio
from server.batcher import Batcher, Work
from server.config import BatchSettings
from server.engine import Engine
from server.errors import BatchFailed, DeadlineExceeded, Overloaded, ServingError
from server.slot_pool import DeviceSlotPool


class Observer:
    def __init__(self):
        self.batches: list[tuple[int, int]] = []

    def batch_done(self, size, distinct_tasks, compute_s, forward_passes):
        self.batches.append((size, distinct_tasks))

    def queue_depth(self, depth):
        pass


def _head(model, task: str) -> HeadRecord:
    d, c = model.backbone.hidden_dim, model.controller.dim
    return HeadRecord(HeadMetadata(task, "linear", "fp", version=1), {"V": torch.randn(d, c) * 0.1})


@pytest.fixture
def make_batcher(tiny_model):
    def build(resolver=None, **settings) -> tuple[Batcher, Observer]:
        spec = HeadSpec(
            "fp",
            tiny_model.backbone.hidden_dim,
            tiny_model.controller.dim,
            tiny_model.backbone.num_layers,
        )
        engine = Engine(tiny_model, DeviceSlotPool(spec, 8, torch.device("cpu")))
        heads = {t: _head(tiny_model, t) for t in ("a", "b", "c")}

        async def resolve(task):
            return None if task == "base" else heads[task]

        observer = Observer()
        batcher = Batcher(engine, resolver or resolve, BatchSettings(**settings), 8, observer)
        batcher.start()
        return batcher, observer

    return build


def _work(task="a", frames=80, timeout=10.0) -> Work:
    audio = Audio(torch.randn(frames * 160) * 0.1, 16_000)  # 10 ms feature frames
    return Work(audio, task, time.monotonic() + timeout)


async def test_concurrent_requests_are_fused_into_batches_up_to_the_size_limit(make_batcher):
    batcher, observer = make_batcher(max_batch_size=4, max_wait_ms=50)
    results = await asyncio.gather(*[batcher.submit(_work(t)) for t in "abcabcabca"])
    assert len(results) == 10
    assert all(size <= 4 for size, _ in observer.batches)
    assert len(observer.batches) < 10
    assert max(tasks for _, tasks in observer.batches) > 1  # tasks mixed in a batch
    await batcher.stop()


async def test_full_queue_answers_overloaded_and_admitted_requests_complete(make_batcher):
    batcher, _ = make_batcher(max_batch_size=2, max_wait_ms=20, max_queue=3)
    admitted = [asyncio.create_task(batcher.submit(_work())) for _ in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await batcher.submit(_work())
    assert len(await asyncio.gather(*admitted)) == 3
    await batcher.stop()


async def test_request_past_its_deadline_gets_deadline_exceeded(make_batcher):
    async def never(task):
        await asyncio.sleep(10)

    batcher, _ = make_batcher(resolver=never)
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(_work(timeout=0.2))
    assert batcher.queue_depth == 0
    await batcher.stop()


async def test_a_cold_head_does_not_stall_a_batch_of_warm_heads(make_batcher, tiny_model):
    warm = _head(tiny_model, "warm")

    async def resolve(task):
        if task == "cold":
            await asyncio.sleep(1.0)
        return warm if task == "warm" else _head(tiny_model, "cold")

    batcher, _ = make_batcher(resolver=resolve, max_wait_ms=20)
    began = time.monotonic()
    cold = asyncio.create_task(batcher.submit(_work("cold")))
    await asyncio.sleep(0.01)
    await asyncio.gather(*[batcher.submit(_work("warm")) for _ in range(4)])
    assert time.monotonic() - began < 0.8
    await cold
    assert time.monotonic() - began >= 1.0
    await batcher.stop()


async def test_an_exception_in_one_batch_fails_only_that_batch(make_batcher):
    batcher, _ = make_batcher(max_batch_size=1, max_wait_ms=0)
    original = batcher.engine.run

    def poisoned(batch):
        if batch[0].audio.samples.shape[0] == 13 * 160:
            raise RuntimeError("boom")
        return original(batch)

    batcher.engine.run = poisoned
    with pytest.raises(BatchFailed):
        await batcher.submit(_work(frames=13))
    assert (await batcher.submit(_work(frames=80))).decoded is not None
    await batcher.stop()


async def test_a_cancelled_request_leaves_the_queue(make_batcher):
    async def slow(task):
        await asyncio.sleep(0.5)

    batcher, _ = make_batcher(resolver=slow)
    task = asyncio.create_task(batcher.submit(_work()))
    await asyncio.sleep(0.05)
    assert batcher.queue_depth == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert batcher.queue_depth == 0
    await batcher.stop()


async def test_a_cancelled_head_lookup_fails_its_request_and_the_loop_keeps_serving(
    make_batcher,
):
    gate = asyncio.Event()

    async def resolve(task):
        if task == "c":
            await gate.wait()  # held until cancelled below
        return None

    batcher, _ = make_batcher(resolver=resolve, max_wait_ms=0)
    doomed = asyncio.create_task(batcher.submit(_work("c")))
    await asyncio.sleep(0.05)
    batcher._pending[0].head_task.cancel()  # e.g. a lookup torn down under it
    with pytest.raises(ServingError, match="cancelled"):
        await doomed
    assert (await batcher.submit(_work("base"))).decoded is not None
    await batcher.stop()


async def test_requests_arriving_slower_than_max_wait_never_wait_for_company(make_batcher):
    batcher, observer = make_batcher(max_wait_ms=300)
    for _ in range(3):
        began = time.monotonic()
        await batcher.submit(_work())
        assert time.monotonic() - began < 0.25  # would be >= 0.3 s had it waited
        await asyncio.sleep(0.35)
    assert [size for size, _ in observer.batches] == [1, 1, 1]
    await batcher.stop()
