"""Dynamic mixed-task batcher: admission, batch forming, deadlines.

Contract:
    submit(work) -> result      admit (or raise Overloaded), wait for the result
    the loop forms a batch      up to max_batch_size utterances or max_wait_ms (waited
                                only while requests come at least that often), any mix
                                of tasks; filled from the tenant that has used the
                                least engine time first (server/serving/fair_share.py),
                                each tenant's items nearest in length to the batch's
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
from server.serving.fair_share import ADMIN, FairShare

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
        fair: FairShare | None = None,
        max_accounts: int = 10_000,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.max_per_tenant = max_per_tenant or settings.max_queue
        self.max_distinct_heads = max_distinct_heads
        self.max_windows_per_request = max_windows_per_request
        self.observer = observer
        self.fair = fair or FairShare()
        self.max_accounts = max_accounts
        self._pending: list[_Pending] = []
        self._running: list[_Pending] = []  # the batch on the engine now
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
        busy = [p.work.tenant for p in (*self._pending, *self._running)]
        if work.tenant not in busy:  # back from idle: starts at the virtual time
            self.fair.arrive(work.tenant, busy)
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
        """The next batch: the least-served tenant's oldest item, then items of its own
        kind and of tenants of like cost per audio second (FairShare.compatible), taken
        turn by turn from the tenant whose counter (with what this batch already gives it)
        is least, each tenant's nearest in length to the first.

        Long files' windows and whole requests never share a batch: a short request
        would wait for its batch-mate windows' forward passes (engine.run answers when
        all its buckets are done). At most `max_windows_per_request` windows of one long
        request go in one batch.
        """
        waiting = [p for p in self._pending if not p.done.done()]
        if not waiting:
            return []
        fair = self.fair
        anchor = min(waiting, key=lambda p: (fair.counter(p.work.tenant), p.admitted))
        windows = anchor.work.window_of is not None
        length = anchor.work.audio.seconds
        queues: dict[str, list[_Pending]] = {}
        for p in sorted(waiting, key=lambda p: abs(p.work.audio.seconds - length)):
            if p is anchor or (p.work.window_of is not None) != windows:
                continue
            if fair.compatible(p.work.tenant, anchor.work.tenant):
                queues.setdefault(p.work.tenant or ADMIN, []).append(p)
        tentative = {t: fair.counter(t) for t in queues}
        budget = self.settings.max_batch_audio_s
        if windows:
            budget = min(budget, self.settings.max_window_batch_audio_s)
        form = _Forming(budget, self.max_distinct_heads, self.max_windows_per_request)
        form.add(anchor)
        key = anchor.work.tenant or ADMIN
        tentative[key] = fair.counter(key) + fair.estimate(key, anchor.work.audio.seconds)
        while queues and len(form.batch) < self.settings.max_batch_size:
            tenant = min(queues, key=lambda t: tentative[t])
            fitting = next((p for p in queues[tenant] if form.fits(p)), None)
            if fitting is None:
                del queues[tenant]
                continue
            form.add(fitting)
            queues[tenant].remove(fitting)
            if not queues[tenant]:
                del queues[tenant]
            tentative[tenant] += fair.estimate(tenant, fitting.work.audio.seconds)
        for p in form.batch:
            self._pending.remove(p)
        self._report_depth()
        return form.batch

    async def _execute(self, batch: list[_Pending]) -> None:
        inputs = [
            EngineInput(p.work.audio, p.work.head, p.work.request_id, p.work.tenant, p.work.options)
            for p in batch
        ]
        started = time.monotonic()
        for p in batch:
            p.started = started
        self._running = batch
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
        finally:
            self._running = []
        compute = time.monotonic() - started
        self._charge(batch, output.results, compute)
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

    def _charge(self, batch: list[_Pending], results: list, engine_s: float) -> None:
        """The batch's engine time, to its items' tenants (server/serving/fair_share.py)."""
        items = [
            (p.work.tenant, p.work.audio.seconds, getattr(result, "steps", 0))
            for p, result in zip(batch, results)
        ]
        self.fair.charge(items, engine_s)
        waiting = [p.work.tenant for p in self._pending]
        self.fair.forget_idle(waiting, self.max_accounts)

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


class _Forming:
    """A batch being filled: its padded-seconds budget (the first item always fits),
    distinct heads and windows of one request."""

    def __init__(self, budget_s: float, max_heads: int, max_windows: int) -> None:
        self.budget_s, self.max_heads, self.max_windows = budget_s, max_heads, max_windows
        self.batch: list[_Pending] = []
        self.heads: set[tuple[str, int]] = set()
        self.windows: dict[str, int] = {}
        self.longest = 0.0

    def fits(self, p: _Pending) -> bool:
        longest = max(self.longest, p.work.audio.seconds)
        if self.batch and longest * (len(self.batch) + 1) > self.budget_s:
            return False
        key = p.work.head_key
        if key is not None and key not in self.heads and len(self.heads) >= self.max_heads:
            return False
        window_of = p.work.window_of
        return window_of is None or self.windows.get(window_of, 0) < self.max_windows

    def add(self, p: _Pending) -> None:
        self.batch.append(p)
        self.longest = max(self.longest, p.work.audio.seconds)
        if p.work.head_key is not None:
            self.heads.add(p.work.head_key)
        if p.work.window_of is not None:
            self.windows[p.work.window_of] = self.windows.get(p.work.window_of, 0) + 1
