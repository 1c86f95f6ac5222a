"""Dynamic mixed-task batcher: admission, head prefetch, batch forming, deadlines.

Contract:
    submit(work) -> result      admit (or raise Overloaded), wait for the result
    the loop forms a batch      from requests whose head is ready, up to
                                max_batch_size utterances or max_wait_ms (waited
                                only while requests come at least that often),
                                neighbours in length, any mix of tasks
    the engine runs it          in its own thread; futures resolve per request
The head of a request is fetched as soon as it is admitted, so a cold head
delays only its own request, never a batch of warm ones.
The batcher knows nothing of HTTP; the engine nothing of queues.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from adapters_store.head_format import HeadRecord
from server.audio import Audio
from server.config import BatchSettings
from server.engine import Engine, EngineInput
from server.errors import BatchFailed, DeadlineExceeded, Overloaded, ServingError
from server.model.decoding import Decoded

logger = logging.getLogger(__name__)

HeadResolver = Callable[[str], Awaitable[HeadRecord | None]]


class BatchObserver(Protocol):
    def batch_done(
        self, size: int, distinct_tasks: int, compute_s: float, forward_passes: int
    ) -> None: ...

    def queue_depth(self, depth: int) -> None: ...


@dataclass(eq=False)
class Work:
    """One utterance to transcribe."""

    audio: Audio
    task_id: str
    deadline: float  # time.monotonic() by which the result must be ready
    authorize: Callable[[HeadRecord | None], None] | None = None  # raises if not allowed


@dataclass
class Result:
    decoded: Decoded
    head: HeadRecord | None
    queue_s: float
    compute_s: float
    batch_size: int


@dataclass(eq=False)  # identity: two requests are never "equal"
class _Pending:
    work: Work
    admitted: float
    head_task: asyncio.Task
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def ready(self) -> bool:
        return self.head_task.done()


def _head_error(task: asyncio.Task) -> BaseException | None:
    """The lookup's failure; a cancelled lookup counts as one (exception() would raise)."""
    if task.cancelled():
        return ServingError("head lookup was cancelled")
    return task.exception()


class Batcher:
    def __init__(
        self,
        engine: Engine,
        resolve_head: HeadResolver,
        settings: BatchSettings,
        max_distinct_heads: int,
        observer: BatchObserver | None = None,
    ) -> None:
        self.engine = engine
        self.resolve_head = resolve_head
        self.settings = settings
        self.max_distinct_heads = max_distinct_heads
        self.observer = observer
        self._pending: list[_Pending] = []
        self._arrival_gap = float("inf")  # seconds between the last two admissions
        self._last_arrival = float("-inf")
        self._wakeup = asyncio.Event()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="engine")
        self._loop_task: asyncio.Task | None = None

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
        for p in self._pending:
            p.head_task.cancel()
            if not p.done.done():
                p.done.set_exception(ServingError("server shutting down"))
        self._pending.clear()
        self._thread.shutdown(wait=True)

    async def submit(self, work: Work) -> Result:
        if len(self._pending) >= self.settings.max_queue:
            raise Overloaded(f"queue full ({self.settings.max_queue} requests waiting)")
        now = time.monotonic()
        self._arrival_gap, self._last_arrival = now - self._last_arrival, now
        head_task = asyncio.create_task(self._head_for(work))
        pending = _Pending(work, now, head_task)
        head_task.add_done_callback(lambda _: self._wakeup.set())
        self._pending.append(pending)
        self._report_depth()
        try:
            return await asyncio.wait_for(
                asyncio.shield(pending.done), timeout=max(0.0, work.deadline - time.monotonic())
            )
        except TimeoutError:
            raise DeadlineExceeded("request deadline passed before its result was ready") from None
        finally:
            # Disconnected or timed out: a request not yet in a batch is dropped.
            if pending in self._pending and not pending.done.done():
                self._pending.remove(pending)
                head_task.cancel()
                self._report_depth()

    async def _head_for(self, work: Work) -> HeadRecord | None:
        head = await self.resolve_head(work.task_id)
        if work.authorize is not None:
            work.authorize(head)
        return head

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            self._fail_finished_heads()
            ready = [p for p in self._pending if p.ready]
            if not ready:
                continue
            oldest = min(p.admitted for p in ready)
            max_wait = self.settings.max_wait_ms / 1000
            wait = max_wait - (time.monotonic() - oldest)
            # Wait for company only while requests come faster than one per max_wait:
            # a lone client would pay the whole wait on every request for nothing.
            if (
                len(ready) < self.settings.max_batch_size
                and wait > 0
                and self._arrival_gap < max_wait
            ):
                try:
                    await asyncio.wait_for(self._wait_for_full(), timeout=wait)
                except TimeoutError:
                    pass
                self._fail_finished_heads()
            batch = self._form_batch()
            if batch:
                await self._execute(batch)
            if any(p.ready for p in self._pending):
                self._wakeup.set()

    async def _wait_for_full(self) -> None:
        while sum(p.ready for p in self._pending) < self.settings.max_batch_size:
            self._wakeup.clear()
            await self._wakeup.wait()

    def _fail_finished_heads(self) -> None:
        """Requests whose head lookup failed (unknown task, store down) end here."""
        for p in [p for p in self._pending if p.ready and _head_error(p.head_task)]:
            self._pending.remove(p)
            if not p.done.done():
                p.done.set_exception(_head_error(p.head_task))
        now = time.monotonic()
        for p in [p for p in self._pending if p.work.deadline < now]:
            self._pending.remove(p)
            if not p.done.done():
                p.done.set_exception(DeadlineExceeded("request deadline passed in the queue"))
        self._report_depth()

    def _form_batch(self) -> list[_Pending]:
        """The oldest ready request and its nearest neighbours in length."""
        ready = [p for p in self._pending if p.ready and not p.done.done()]
        if not ready:
            return []
        anchor = min(ready, key=lambda p: p.admitted)
        length = anchor.work.audio.seconds
        ready.sort(key=lambda p: abs(p.work.audio.seconds - length))
        budget = self.settings.max_batch_audio_s  # padded seconds: batch size x longest
        batch, heads, longest = [], set(), 0.0
        for p in ready:
            head = p.head_task.result()
            key = (head.meta.task_id, head.meta.version) if head else None
            new_longest = max(longest, p.work.audio.seconds)
            if batch and new_longest * (len(batch) + 1) > budget:
                continue
            if key is not None and key not in heads and len(heads) >= self.max_distinct_heads:
                continue
            batch.append(p)
            if key is not None:
                heads.add(key)
            longest = new_longest
            if len(batch) >= self.settings.max_batch_size:
                break
        for p in batch:
            self._pending.remove(p)
        self._report_depth()
        return batch

    async def _execute(self, batch: list[_Pending]) -> None:
        inputs = [EngineInput(p.work.audio, p.head_task.result()) for p in batch]
        started = time.monotonic()
        try:
            output = await asyncio.get_running_loop().run_in_executor(
                self._thread, self.engine.run, inputs
            )
        except Exception as exc:
            logger.exception("batch of %d failed", len(batch))
            for p in batch:
                if not p.done.done():
                    p.done.set_exception(BatchFailed(f"the batch failed: {type(exc).__name__}"))
            return
        compute = time.monotonic() - started
        tasks = {i.head.meta.task_id if i.head else "base" for i in inputs}
        if self.observer:
            self.observer.batch_done(len(batch), len(tasks), compute, output.forward_passes)
        for p, d, item in zip(batch, output.decoded, inputs):
            if not p.done.done():
                p.done.set_result(Result(d, item.head, started - p.admitted, compute, len(batch)))

    def _report_depth(self) -> None:
        if self.observer:
            self.observer.queue_depth(len(self._pending))
