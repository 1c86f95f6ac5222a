"""The job function: train, evaluate, register, promote. Runs in a worker process only.

What differs by the served model's kind (loading it, training a head, scoring heads on
the held-out items) is server/jobs/model_kinds.py; the split, the checks between steps
and the promotion below are the same for every kind.

Both queues call `run_job(job_id, settings)`: the local queue in a child process of the
server, RQ in its forked work horse (`rq worker` on a training machine). It never runs
on the serving engine's thread, and limits torch to `jobs.torch_threads` threads.

Order of effects: nothing is written to the head store until training and evaluation
have finished and the job was not cancelled; the store's put is atomic, so a crash,
cancel or time limit leaves no half-written version. Promotion: `always` keeps the new
version current; `if_better` keeps it only if its held-out WER is below the current
version's (or, for a new task, below `base`); `never` (existing tasks only) registers it
without making it current, in the same atomic put, so what the task serves never changes
(`POST /v1/tasks/{id}/rollback` promotes it by hand). A head that loses under
`if_better` on a task that does not exist yet is not registered at all (nothing to
protect, nothing gained).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from dataclasses import replace

import torch

from adapters_store.errors import QuotaExceeded, UnknownTask
from adapters_store.factory import make_store
from adapters_store.head_format import HeadRecord, decode_head
from server.config import JobSettings, Settings
from server.data.manifest import Utterance
from server.errors import UnknownJob
from server.jobs.datasets import DatasetStore
from server.jobs.model_kinds import load_job_model
from server.jobs.records import JobRecord, JobStopped, JobStore

logger = logging.getLogger(__name__)
PROGRESS_EVERY_S = 1.0
POLL_EVERY_S = 0.1  # the record is a file: read at most this often between items
HOLDOUT_SEED = 16


def run_job(job_id: str, settings: Settings, parent_pid: int | None = None) -> str:
    """Run one queued job to a terminal state; returns that state. `parent_pid`: the
    server that owns this local worker: when it is gone the job stops (failed)."""
    torch.set_num_threads(settings.jobs.torch_threads)
    lower_priority(settings.jobs)
    jobs = JobStore(settings.jobs_root)
    try:
        record = jobs.transition(job_id, "running", heartbeat_at=time.time())
        if record is None:  # cancelled (or failed by recovery) while queued
            return jobs.get(job_id).status
    except UnknownJob:  # cancelled while queued, then removed with its tenant's history
        return "cancelled"
    jobs.event(job_id, f"worker {os.getpid()} started training")
    try:
        result = _train_and_register(record, settings, jobs, parent_pid)
    except JobStopped as stop:
        jobs.transition(job_id, stop.status, error={"code": stop.code, "message": str(stop)})
        jobs.event(job_id, f"job {stop.status}: {stop}", level="warn")
        return stop.status
    except QuotaExceeded as exc:  # the tenant's head quotas: nothing was written
        jobs.transition(job_id, "failed", error={"code": exc.code, "message": str(exc)})
        jobs.event(job_id, f"job failed: {exc}", level="error")
        return "failed"
    except Exception as exc:  # the job fails, never the worker or the server
        logger.exception("job %s failed", job_id)
        # the tenant sees the kind only: the text may name server paths (the log has it)
        message = f"training failed ({type(exc).__name__}); the server log has job {job_id}"
        jobs.transition(job_id, "failed", error={"code": "training_failed", "message": message})
        jobs.event(job_id, f"job failed: {message}", level="error")
        return "failed"
    done = jobs.transition(job_id, "succeeded", result=result)
    if done is None:  # failed meanwhile (a restart's recovery): the version stands, said so
        jobs.event(job_id, "the head was registered before the job was ended", level="warn")
        return jobs.get(job_id).status
    wer = result["wer"]
    jobs.event(
        job_id,
        f"succeeded: WER base {wer['base']:.3f}, current {_fmt(wer['current'])}, "
        f"new {wer['new']:.3f}; {result['decision']}",
        data=result,
    )
    return "succeeded"


def lower_priority(limits: JobSettings) -> None:
    """This process at niceness `limits.nice`, absolute (os.nice would add to a server
    already at 5 or 10); never below what it inherited (raising niceness needs no
    privilege, lowering it does). Then, best effort, into the operator's cgroup v2 folder
    at `cpu.weight` = `limits.cpu_weight`."""
    pid = os.getpid()
    if limits.nice:
        inherited = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, max(inherited, limits.nice))
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    if limits.cgroup is None:
        logger.info("job worker %d: niceness %d; no cgroup (HRA_JOBS__CGROUP unset)", pid, niceness)
        return
    try:
        (limits.cgroup / "cpu.weight").write_text(f"{limits.cpu_weight}\n")
        (limits.cgroup / "cgroup.procs").write_text(f"{pid}\n")
    except OSError as exc:
        logger.warning(
            "job worker %d: niceness %d; cgroup %s not usable (%s): niceness only",
            pid,
            niceness,
            limits.cgroup,
            exc,
        )
        return
    logger.info(
        "job worker %d: niceness %d, cgroup %s at cpu.weight %d",
        pid,
        niceness,
        limits.cgroup,
        limits.cpu_weight,
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _train_and_register(
    record: JobRecord, settings: Settings, jobs: JobStore, parent_pid: int | None
) -> dict:
    datasets = DatasetStore(settings.jobs_root, settings.jobs, settings.audio)
    train_items, eval_items = _split(record, datasets, settings.jobs.holdout_fraction)
    jobs.event(record.id, f"{len(train_items)} training items, {len(eval_items)} evaluation items")
    check = _StepCheck(record, settings, jobs, parent_pid)
    model = load_job_model(settings)  # what differs by model kind: server/jobs/model_kinds.py
    hp = record.hyperparameters
    check.ensure_live()
    score = model.scorer(eval_items, between=check.poll)  # checks the items up front
    new = model.train(record, train_items, on_step=check, between=check.poll)
    check.ensure_live()
    jobs.event(record.id, f"trained {hp.steps} steps in {check.elapsed():.1f} s; evaluating")

    store = make_store(settings)
    current = asyncio.run(_current_head(store, record.task_id, model.spec))
    wer_base = score(None)
    wer_current = score(current) if current else None
    wer_new = score(new)
    check.ensure_live()  # the last moment a cancel or time limit stops the job
    reference = wer_current if current is not None else wer_base
    beats = wer_new < reference
    result = {
        "wer": {"base": wer_base, "current": wer_current, "new": wer_new},
        "evaluated_on": len(eval_items),
        "previous_version": current.meta.version if current else None,
        "train_seconds": round(check.elapsed(), 1),
    }
    if record.promote == "if_better" and not beats and current is None:
        return result | {
            "version": None,
            "promoted": False,
            "fine_tuned_model": None,
            "decision": f"not registered: new task's head does not beat base ({wer_base:.3f})",
        }
    if record.promote == "never" and current is None:
        return result | {
            "version": None,
            "promoted": False,
            "fine_tuned_model": None,
            "decision": "not registered: promote=never and the task no longer exists",
        }
    stored, promoted = asyncio.run(_register(store, new, record, current, beats))
    if promoted:
        decision = "promoted" + (" (beats the current version)" if beats else " (policy always)")
    else:
        decision = f"registered as version {stored.meta.version}, not current ({record.promote})"
    return result | {
        "version": stored.meta.version,
        "promoted": promoted,
        "fine_tuned_model": record.task_id,
        "decision": decision,
    }


def _split(record: JobRecord, datasets: DatasetStore, fraction: float) -> tuple[list, list]:
    def utterances(file_id: str) -> list[Utterance]:
        try:
            return [
                Utterance(str(i.audio), i.text, record.task_id) for i in datasets.items(file_id)
            ]
        except FileNotFoundError:
            raise JobStopped("failed", "dataset_missing", f"{file_id} was deleted") from None

    items = utterances(record.training_file)
    if record.validation_file:
        return items, utterances(record.validation_file)
    shuffled = items[:]
    random.Random(HOLDOUT_SEED).shuffle(shuffled)
    held = max(1, round(fraction * len(items)))
    if len(items) - held < 1:
        raise JobStopped("failed", "dataset_too_small", "too few items to hold some out")
    return shuffled[held:], shuffled[:held]


async def _current_head(store, task_id: str, spec) -> HeadRecord | None:
    try:
        return decode_head(await store.get_bytes(task_id), spec)
    except UnknownTask:
        return None
    finally:
        await store.close()


async def _register(
    store, new: HeadRecord, record: JobRecord, current: HeadRecord | None, beats: bool
) -> tuple[HeadRecord, bool]:
    """Put the new version (atomic), made current only if promoted."""
    keep = record.promote == "always" or (record.promote == "if_better" and beats)
    meta = replace(new.meta, created_at=time.time(), description=f"fine-tuning job {record.id}")
    try:
        stored = await store.put(
            HeadRecord(meta, new.tensors),
            acting_tenant=record.owner,
            keep_owner=record.owner is None,  # an admin's job keeps the task's owner
            make_current=keep or current is None,
        )
        return stored, keep or current is None
    finally:
        await store.close()


class _StepCheck:
    """After every step: progress (at most once a second), cancel, time limit, parent;
    between items of the feature and scoring loops: the same checks (`poll`)."""

    def __init__(
        self, record: JobRecord, settings: Settings, jobs: JobStore, parent_pid: int | None
    ) -> None:
        self.record, self.jobs, self.parent_pid = record, jobs, parent_pid
        self.limit = settings.jobs.max_train_seconds
        self.began = time.monotonic()
        self.last = 0.0
        self.polled = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def __call__(self, step: int, loss: float) -> None:
        now = time.monotonic()
        steps = self.record.hyperparameters.steps
        if now - self.last >= PROGRESS_EVERY_S or step == steps:
            self.last = now
            eta = self.elapsed() / step * (steps - step)
            progress = {
                "step": step,
                "steps": steps,
                "loss": round(loss, 4),
                "eta_s": round(eta, 1),
            }
            self.jobs.update(
                self.record.id,
                lambda r: replace(r, progress=progress, heartbeat_at=time.time()),
            )
            self.jobs.event(self.record.id, f"step {step}/{steps}: loss {loss:.4f}", data=progress)
        self.ensure_live()

    def poll(self) -> None:
        """Between the items of a long loop (features, scoring): `ensure_live` at most
        every POLL_EVERY_S, so a cancel lands within it plus one item's work."""
        now = time.monotonic()
        if now - self.polled >= POLL_EVERY_S:
            self.polled = now
            self.ensure_live()

    def ensure_live(self) -> None:
        if self.jobs.get(self.record.id).cancel_requested:
            raise JobStopped("cancelled", "cancelled", "cancelled by request")
        if self.elapsed() > self.limit:
            raise JobStopped("failed", "time_limit", f"training passed its {self.limit:g} s limit")
        if self.parent_pid is not None and not _alive(self.parent_pid):
            raise JobStopped("failed", "worker_lost", "the server that ran this job is gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_rq_job(job_id: str) -> str:
    """RQ's entry point: the worker machine's own HRA_* environment configures it."""
    from server.config import get_settings

    return run_job(job_id, get_settings())
