"""Where jobs run: a local worker child process, or RQ workers on the store's Redis.

Both call server/jobs/runner.run_job in a process of its own (never the event loop,
never the engine's thread). Cancellation is the record's flag, checked by the job
between steps; a job cancelled while queued is never started (run_job sees it).

LocalQueue (HRA_JOBS__QUEUE=local, the embedded default: no Redis): up to
`local_workers` jobs at once, each a fresh child process (forkserver), the next one
picked fairly across tenants (server/jobs/scheduling.py: least recently served tenant
first, not first come first served); a child that
dies without reaching a terminal state gets its job failed (`worker_lost`); a child whose
server is gone (killed) stops at its next step; when the
server stops, running children are ended and their jobs failed, queued ones stay queued
and are queued again at the next start.

RqQueue (HRA_JOBS__QUEUE=rq, HRA_STORE=redis): jobs go to RQ queue `<prefix>-training`
on the store's Redis; `rq worker <prefix>-training` on any machine with the same HRA_*
environment (model dir, jobs root on a shared volume, Redis URL) runs them, forking a
work horse per job (RQ's own job timeouts bound a horse that hangs). RQ runs a queue
first in, first out, whoever the tenant: fairness there rests on the per-tenant cap on
jobs queued or running (`max_concurrent_jobs_per_tenant`, default 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Callable

from server.config import Settings
from server.errors import UnknownJob
from server.jobs.records import TERMINAL, JobStore
from server.jobs.scheduling import FairPending

logger = logging.getLogger(__name__)
RQ_TIMEOUT_MARGIN_S = 600


class LocalQueue:
    def __init__(self, settings: Settings, on_done: Callable[[str], None]) -> None:
        self.settings = settings
        self.on_done = on_done
        self.jobs = JobStore(settings.jobs_root)
        self.pending = FairPending()  # round-robin by tenant, not first come first served
        self.running: dict[str, multiprocessing.Process] = {}
        self.tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._dispatch(), name=f"jobs-local-{i}")
            for i in range(self.settings.jobs.local_workers)
        ]

    def submit(self, job_id: str, tenant: str | None) -> None:
        self.pending.add(job_id, tenant)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for job_id, process in list(self.running.items()):
            if process.pid is None:  # stopped before it started
                self._fail_if_active(job_id, "server_stopped", "the server stopped")
                continue
            process.terminate()
            await asyncio.to_thread(process.join, 10)
            self._fail_if_active(job_id, "server_stopped", "the server stopped while it ran")
        self.running.clear()

    async def _dispatch(self) -> None:
        context = _context()
        while True:
            job_id = await self.pending.next()
            try:
                if self.jobs.get(job_id).status in TERMINAL:
                    continue  # cancelled while queued
            except UnknownJob:
                continue  # cancelled while queued, then removed with its tenant's history
            process = context.Process(
                target=_child, args=(job_id, self.settings, os.getpid()), daemon=True
            )
            self.running[job_id] = process
            # off the event loop: the first start also starts the forkserver (imports torch)
            await asyncio.to_thread(process.start)
            logger.info("job %s: local worker pid %d", job_id, process.pid)
            try:
                while process.is_alive():
                    await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                raise  # stop() ends the child and fails its job
            self.running.pop(job_id, None)
            self._fail_if_active(
                job_id, "worker_lost", f"the worker exited with code {process.exitcode}"
            )
            self.on_done(job_id)

    def _fail_if_active(self, job_id: str, code: str, message: str) -> None:
        with contextlib.suppress(UnknownJob):
            self._fail(job_id, code, message)

    def _fail(self, job_id: str, code: str, message: str) -> None:
        if self.jobs.transition(job_id, "failed", error={"code": code, "message": message}):
            self.jobs.event(job_id, f"job failed: {message}", level="error")


def _context():
    """forkserver: a clean process (no engine thread, no event loop) started once, with
    torch and the job code imported, forks each job's child: a job starts in well under
    a second instead of re-importing torch (a fork of the serving process itself would
    copy its threads' locks)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["server.jobs.runner"])
    return context


def _child(job_id: str, settings: Settings, parent_pid: int) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from server.jobs.runner import run_job

    run_job(job_id, settings, parent_pid)


class RqQueue:
    def __init__(self, settings: Settings, on_done: Callable[[str], None]) -> None:
        import redis
        from rq import Queue

        self.settings = settings
        self.connection = redis.Redis.from_url(settings.redis_url.get_secret_value())
        self.queue = Queue(queue_name(settings), connection=self.connection)

    def start(self) -> None:
        return None

    def submit(self, job_id: str, tenant: str | None) -> None:
        """RQ's queue is first in, first out: `tenant` does not reorder it (each tenant
        has at most `max_concurrent_jobs_per_tenant` jobs queued or running)."""
        self.queue.enqueue(
            "server.jobs.runner.run_rq_job",
            job_id,
            job_id=job_id,
            job_timeout=int(self.settings.jobs.max_train_seconds) + RQ_TIMEOUT_MARGIN_S,
            result_ttl=86_400,
            failure_ttl=7 * 86_400,
        )

    async def stop(self) -> None:
        self.connection.close()


def queue_name(settings: Settings) -> str:
    return f"{settings.redis_prefix}-training"


def make_queue(settings: Settings, on_done: Callable[[str], None]):
    if settings.jobs.queue == "rq":
        return RqQueue(settings, on_done)
    return LocalQueue(settings, on_done)
