"""Batcher with a real (tiny) engine: batching, admission, deadlines, isolation."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from adapters_store.head_format import HeadMetadata, HeadRecord, HeadSpec
from adapters_store.slot_pool import DeviceSlotPool
from server.audio.reading import Audio
from server.config import BatchSettings
from server.errors import BatchFailed, DeadlineExceeded, HeadRejected, Overloaded
from server.models.ctc.recognizer import CtcRecognizer
from server.serving.batcher import Batcher, Work
from server.serving.engine import Engine
from tests.helpers import async_wait_until


class Observer:
    def __init__(self):
        self.batches: list[tuple[int, int]] = []
        self.isolated = 0

    def batch_done(self, size, distinct_tasks, compute_s, forward_passes, isolated_failures):
        self.batches.append((size, distinct_tasks))
        self.isolated += isolated_failures

    def queue_depth(self, depth):
        pass


def _head(model, task: str) -> HeadRecord:
    d, c = model.backbone.hidden_dim, model.controller.dim
    return HeadRecord(HeadMetadata(task, "linear", "fp", version=1), {"V": torch.randn(d, c) * 0.1})


@pytest.fixture
def heads(tiny_model) -> dict[str, HeadRecord | None]:
    return {"base": None, **{t: _head(tiny_model, t) for t in ("a", "b", "c")}}


@pytest.fixture
def make_batcher(tiny_model):
    def build(**settings) -> tuple[Batcher, Observer]:
        spec = HeadSpec(
            "fp",
            tiny_model.backbone.hidden_dim,
            tiny_model.controller.dim,
            tiny_model.backbone.num_layers,
        )
        engine = Engine(CtcRecognizer(tiny_model), DeviceSlotPool(spec, 8, torch.device("cpu")))
        observer = Observer()
        batcher = Batcher(engine, BatchSettings(**settings), 8, observer)
        batcher.start()
        return batcher, observer

    return build


def _work(head: HeadRecord | None, frames=80, timeout=10.0) -> Work:
    audio = Audio(torch.randn(frames * 160) * 0.1, 16_000)  # 10 ms feature frames
    return Work(audio, head, time.monotonic() + timeout)


async def test_concurrent_requests_are_fused_into_batches_up_to_the_size_limit(make_batcher, heads):
    batcher, observer = make_batcher(max_batch_size=4, max_wait_ms=50)
    results = await asyncio.gather(*[batcher.submit(_work(heads[t])) for t in "abcabcabca"])
    assert len(results) == 10
    assert all(size <= 4 for size, _ in observer.batches)
    assert len(observer.batches) < 10
    assert max(tasks for _, tasks in observer.batches) > 1  # tasks mixed in a batch
    await batcher.stop()


async def test_full_queue_answers_overloaded_and_admitted_requests_complete(make_batcher, heads):
    batcher, _ = make_batcher(max_batch_size=2, max_wait_ms=20, max_queue=3)
    admitted = [asyncio.create_task(batcher.submit(_work(heads["a"]))) for _ in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await batcher.submit(_work(heads["a"]))
    assert len(await asyncio.gather(*admitted)) == 3
    await batcher.stop()


async def test_request_past_its_deadline_gets_deadline_exceeded_and_leaves_the_queue(
    make_batcher, heads
):
    batcher, _ = make_batcher()
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(_work(heads["a"], timeout=0.0))
    assert batcher.queue_depth == 0
    assert (await batcher.submit(_work(heads["a"]))).decoded.num_frames > 0
    await batcher.stop()


async def test_an_engine_that_raises_fails_only_that_batch(make_batcher, heads):
    batcher, _ = make_batcher(max_batch_size=1, max_wait_ms=0)
    original = batcher.engine.run

    def poisoned(batch):  # the engine's own contract broken: the batcher's last line
        if batch[0].audio.samples.shape[0] == 13 * 160:
            raise RuntimeError("boom")
        return original(batch)

    batcher.engine.run = poisoned
    with pytest.raises(BatchFailed):
        await batcher.submit(_work(heads["a"], frames=13))
    assert (await batcher.submit(_work(heads["a"], frames=80))).decoded.num_frames == 21
    await batcher.stop()


async def test_one_failing_item_fails_alone_and_its_batch_mates_succeed(
    make_batcher, heads, tiny_model
):
    batcher, observer = make_batcher(max_batch_size=8, max_wait_ms=200)
    d, c = tiny_model.backbone.hidden_dim, tiny_model.controller.dim
    broken = HeadRecord(  # never validated: a head whose tensor the pool cannot hold
        HeadMetadata("broken", "linear", "fp", version=1), {"V": torch.randn(d + 1, c)}
    )
    good = [_work(heads[t]) for t in "abcab"]
    results = await asyncio.gather(
        *[batcher.submit(w) for w in good[:3]],
        batcher.submit(_work(broken)),
        *[batcher.submit(w) for w in good[3:]],
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(failed) == 1 and isinstance(results[3], HeadRejected)
    assert all(r.decoded.num_frames == 21 for r in results if not isinstance(r, Exception))
    assert observer.isolated == 1
    await batcher.stop()


async def test_a_cancelled_request_leaves_the_queue(make_batcher, heads):
    batcher, _ = make_batcher(max_batch_size=8, max_wait_ms=2000)
    first = asyncio.create_task(batcher.submit(_work(heads["a"])))
    second = asyncio.create_task(batcher.submit(_work(heads["b"])))  # now waiting for company
    await async_wait_until(lambda: batcher.queue_depth == 2, timeout_s=5)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert batcher.queue_depth == 1
    first.cancel()
    await batcher.stop()


async def test_requests_arriving_slower_than_max_wait_never_wait_for_company(make_batcher, heads):
    batcher, observer = make_batcher(max_wait_ms=300)
    for _ in range(3):
        began = time.monotonic()
        await batcher.submit(_work(heads["a"]))
        assert time.monotonic() - began < 0.25  # would be >= 0.3 s had it waited
        await asyncio.sleep(0.35)
    assert [size for size, _ in observer.batches] == [1, 1, 1]
    await batcher.stop()


async def test_waiting_audio_is_bounded_in_samples_not_only_in_requests(make_batcher, heads):
    batcher, _ = make_batcher(max_batch_size=8, max_wait_ms=2000, max_queued_samples=33_000)
    first = asyncio.create_task(batcher.submit(_work(heads["a"], frames=100)))  # 16,000
    second = asyncio.create_task(batcher.submit(_work(heads["b"], frames=100)))  # waits
    await async_wait_until(lambda: batcher.queue_depth == 2, timeout_s=5)
    with pytest.raises(Overloaded, match="audio samples"):
        await batcher.submit(_work(heads["c"], frames=10))
    for task in (first, second):
        task.cancel()
    await batcher.stop()


async def test_windows_of_long_files_never_share_a_batch_with_whole_requests(make_batcher):
    batcher, _ = make_batcher(max_wait_ms=200, max_batch_size=16)
    batcher.max_windows_per_request = 2
    batches: list[list[str]] = []
    real_run = batcher.engine.run

    def recording_run(inputs):  # a spy: the real engine runs every batch
        batches.append([i.request_id for i in inputs])
        return real_run(inputs)

    batcher.engine.run = recording_run
    deadline = time.monotonic() + 30
    clip = Audio(torch.randn(16_000) * 0.1, 16_000)
    work = [Work(clip, None, deadline, f"long/{i}", "x", window_of="long") for i in range(5)]
    work += [Work(clip, None, deadline, f"short{i}", "y") for i in range(3)]
    try:
        await asyncio.gather(*(batcher.submit(w) for w in work))
    finally:
        await batcher.stop()
    assert sorted(r for b in batches for r in b) == sorted(w.request_id for w in work)
    for batch in batches:
        windows = [r for r in batch if r.startswith("long/")]
        assert len(windows) in (0, len(batch))  # all windows or none
        assert len(windows) <= 2  # a few windows per request per batch
