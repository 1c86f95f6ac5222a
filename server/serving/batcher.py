"""Dynamic mixed-task batcher: admission, batch forming, deadlines.

Contract:
    submit(work) -> result      admit (or raise Overloaded), wait for the result
    the loop forms a batch      up to max_batch_size utterances or max_wait_ms (waited
                                only while requests come at least that often),
                                neighbours in length, any mix of tasks
    the engine runs it          in its own thread; each request gets its own result
                                or its own error (the engine isolates failures)
Work arrives with its head already resolved and authorized (server/serving/heads.py), so a
cold head delays only its own request (it is not queued until its head is ready).
The batcher knows nothing of HTTP or stores; the engine nothing of queues.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from adapters_store.head_format import HeadRecord
from server.audio.reading import Audio
from server.config import BatchSettings
from server.errors import BatchFailed, DeadlineExceeded, HraError, Overloaded
from server.models.transcript import Decoded, DecodeOptions
from server.serving.engine import Engine, EngineInput, Outcome

logger = logging.getLogger(__name__)


class BatchObserver(Protocol):
    def batch_done(
        self,
        size: int,
        distinct_tasks: int,
        compute_s: float,
        forward_passes: int,
        isolated_failures: int,
    ) -> None: ...

    def queue_depth(self, depth: int) -> None: ...


@dataclass(eq=False)
class Work:
    """One utterance to transcribe, with the head it was admitted with."""

    audio: Audio
    head: HeadRecord | None  # None: backbone only
    deadline: float  # time.monotonic() by which the result must be ready
    request_id: str = "-"
    tenant: str | None = None  # whose queue share it counts against; None: not counted
    options: DecodeOptions = DecodeOptions()  # language, word times
    window_of: str | None = None  # a long file's window: its request's id (server/longform/)

    @property
    def head_key(self) -> tuple[str, int] | None:
        return (self.head.meta.task_id, self.head.meta.version) if self.head else None


@dataclass
class Result:
    decoded: Decoded
    queue_s: float
    compute_s: float


@dataclass(eq=False)  # identity: two requests are never "equal"
class _Pending:
    work: Work
    admitted: float
    started: float = 0.0  # when its batch went to the engine
    decoding: Future | None = None  # its vocabulary decode, queued on the decoder thread
    abandoned: bool = False  # its caller stopped waiting (timed out or disconnected)
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Batcher:
    def __init__(
        self,
        engine: Engine,
        settings: BatchSettings,
        max_distinct_heads: int,
        observer: BatchObserver | None = None,
        max_per_tenant: int | None = None,
        max_windows_per_request: int = 2,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.max_per_tenant = max_per_tenant or settings.max_queue
        self.max_distinct_heads = max_distinct_heads
        self.max_windows_per_request = max_windows_per_request
        self.observer = observer
        self._pending: list[_Pending] = []
        self._decoding: set[_Pending] = set()  # vocabulary decodes queued or running
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
            if not p.done.done():
                p.done.set_exception(HraError("server shutting down"))
        self._pending.clear()
        self._thread.shutdown(wait=True)
        self.engine.close()

    async def submit(self, work: Work) -> Result:
        if len(self._pending) >= self.settings.max_queue:
            raise Overloaded(f"queue full ({self.settings.max_queue} requests waiting)")
        queued = sum(p.work.audio.samples.shape[0] for p in self._pending)
        if queued + work.audio.samples.shape[0] > self.settings.max_queued_samples:
            raise Overloaded(f"queue holds {queued} audio samples, the limit for waiting audio")
        if work.tenant is not None:
            waiting = (*self._pending, *self._decoding)  # both wait on the one engine
            mine = sum(1 for p in waiting if p.work.tenant == work.tenant)
            if mine >= self.max_per_tenant:
                raise Overloaded(f"this tenant has {mine} requests waiting, its share of the queue")
        now = time.monotonic()
        self._arrival_gap, self._last_arrival = now - self._last_arrival, now
        pending = _Pending(work, now)
        self._pending.append(pending)
        self._report_depth()
        self._wakeup.set()
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
                self._report_depth()
            # ... and a vocabulary decode not yet started is not run for nobody.
            pending.abandoned = True
            if pending.decoding is not None:
                pending.decoding.cancel()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            self._drop_expired()
            if not self._pending:
                continue
            oldest = min(p.admitted for p in self._pending)
            max_wait = self.settings.max_wait_ms / 1000
            wait = max_wait - (time.monotonic() - oldest)
            # Wait for company only while requests come faster than one per max_wait:
            # a lone client would pay the whole wait on every request for nothing.
            if (
                len(self._pending) < self.settings.max_batch_size
                and wait > 0
                and self._arrival_gap < max_wait
            ):
                try:
                    await asyncio.wait_for(self._wait_for_full(), timeout=wait)
                except TimeoutError:
                    pass
                self._drop_expired()
            batch = self._form_batch()
            if batch:
                await self._execute(batch)
            if self._pending:
                self._wakeup.set()

    async def _wait_for_full(self) -> None:
        while len(self._pending) < self.settings.max_batch_size:
            self._wakeup.clear()
            await self._wakeup.wait()

    def _drop_expired(self) -> None:
        now = time.monotonic()
        for p in [p for p in self._pending if p.work.deadline < now]:
            self._pending.remove(p)
            if not p.done.done():
                p.done.set_exception(DeadlineExceeded("request deadline passed in the queue"))
        self._report_depth()

    def _form_batch(self) -> list[_Pending]:
        """The oldest request and its nearest neighbours in length, of its own kind.

        Long files' windows and whole requests never share a batch: a short request
        would wait for its batch-mate windows' forward passes (engine.run answers when
        all its buckets are done). A short request that arrives while windows run is
        older than the windows submitted after them, so it anchors the next batch. At
        most `max_windows_per_request` windows of one long request go in one batch.
        """
        waiting = [p for p in self._pending if not p.done.done()]
        if not waiting:
            return []
        anchor = min(waiting, key=lambda p: p.admitted)
        windows = anchor.work.window_of is not None
        waiting = [p for p in waiting if (p.work.window_of is not None) == windows]
        per_request: dict[str, int] = {}
        length = anchor.work.audio.seconds
        waiting.sort(key=lambda p: abs(p.work.audio.seconds - length))
        budget = self.settings.max_batch_audio_s  # padded seconds: batch size x longest
        batch, heads, longest = [], set(), 0.0
        for p in waiting:
            key = p.work.head_key
            new_longest = max(longest, p.work.audio.seconds)
            if batch and new_longest * (len(batch) + 1) > budget:
                continue
            if key is not None and key not in heads and len(heads) >= self.max_distinct_heads:
                continue
            if windows:
                taken = per_request.get(p.work.window_of, 0)  # type: ignore[arg-type]
                if taken >= self.max_windows_per_request:
                    continue
                per_request[p.work.window_of] = taken + 1  # type: ignore[index]
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
        inputs = [
            EngineInput(p.work.audio, p.work.head, p.work.request_id, p.work.tenant, p.work.options)
            for p in batch
        ]
        started = time.monotonic()
        for p in batch:
            p.started = started
        try:
            output = await asyncio.get_running_loop().run_in_executor(
                self._thread, self.engine.run, inputs
            )
        except Exception as exc:  # the engine isolates item failures; this is a last line
            logger.exception("batch of %d failed as a whole", len(batch))
            for p in batch:
                if not p.done.done():
                    p.done.set_exception(BatchFailed(f"the batch failed: {type(exc).__name__}"))
            return
        compute = time.monotonic() - started
        if self.observer:
            tasks = {i.head.meta.task_id if i.head else "base" for i in inputs}
            self.observer.batch_done(
                len(batch), len(tasks), compute, output.forward_passes, output.isolated_failures
            )
        for p, result in zip(batch, output.results):
            if isinstance(result, Future):  # a vocabulary decode, on the engine's decoder thread
                p.decoding = result
                if p.abandoned:  # gave up while its batch ran
                    result.cancel()
                self._decoding.add(p)
                asyncio.wrap_future(result).add_done_callback(
                    lambda f, p=p: self._decoded(p, f, compute)
                )
            else:
                _settle(p, result, compute)

    def _decoded(self, p: _Pending, f: asyncio.Future, compute_s: float) -> None:
        self._decoding.discard(p)
        if not f.cancelled():
            _settle(p, f.result(), compute_s)

    def _report_depth(self) -> None:
        if self.observer:
            self.observer.queue_depth(len(self._pending))


def _settle(p: _Pending, outcome: Outcome, compute_s: float) -> None:
    if p.done.done():  # timed out or disconnected meanwhile
        return
    if isinstance(outcome, Exception):
        p.done.set_exception(outcome)
    else:
        p.done.set_result(Result(outcome, p.started - p.admitted, compute_s))
