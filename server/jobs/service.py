"""The jobs surface the app holds: datasets and fine-tuning jobs, owner-scoped.

Every lookup answers 404 alike for "absent" and "another tenant's": a dataset or job
is visible to its owner and to admin keys only. Blocking file work runs in threads.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
import weakref
from dataclasses import replace

import soundfile as sf

from adapters_store.head_format import validate_task_id, validate_vocabulary
from server.auth import Principal
from server.config import Settings
from server.errors import InvalidRequest, TooManyJobs, TranscriptTooLong, UnknownJob
from server.jobs.datasets import Dataset, DatasetStore
from server.jobs.model_kinds import refuse_too_large, refuse_unsupported
from server.jobs.queue import make_queue
from server.jobs.records import (
    ACTIVE,
    PROMOTE_POLICIES,
    TERMINAL,
    Hyperparameters,
    JobRecord,
    JobStore,
)
from server.models.ctc.tokenizer import CharTokenizer
from server.models.registry import HF_CTC, HRA_CTC, model_kind_of
from server.serving.heads import HeadRegistry

logger = logging.getLogger(__name__)
CTC_KINDS = (HRA_CTC, HF_CTC)
HEAD_TYPES = ("linear", "ffn")
SPEED_STEPS = 20  # speed factors lie on a 0.05 grid
UPLOADS_AT_ONCE = 2  # archives parsed at once, all tenants: each may hold an hour of audio


class JobService:
    def __init__(
        self, settings: Settings, heads: HeadRegistry, frame_seconds: float | None = None
    ) -> None:
        self.settings = settings
        self.frame_seconds = frame_seconds  # the served model's output frame (CTC alignment)
        self.heads = heads  # the serving heads: ownership, and invalidation after a job
        self.model_kind = model_kind_of(settings.model_dir)  # what jobs train: model_kinds.py
        self.datasets = DatasetStore(settings.jobs_root, settings.jobs, settings.audio)
        self.jobs = JobStore(settings.jobs_root)
        self.queue = make_queue(settings, self._finished)
        self._admit = asyncio.Lock()
        self._parsing = asyncio.Semaphore(UPLOADS_AT_ONCE)
        self._event_streams: collections.Counter[str] = collections.Counter()
        self._uploading: set[str | None] = set()  # tenants with an upload being parsed

    async def start(self) -> None:
        self.queue.start()
        await asyncio.to_thread(self._recover)

    async def stop(self) -> None:
        await self.queue.stop()

    def _recover(self) -> None:
        """After a restart: no job stays "running" without a worker; local queued jobs
        are queued again (RQ keeps its own queue in Redis)."""
        local = self.settings.jobs.queue == "local"
        stale = time.time() - self.settings.jobs.heartbeat_timeout_s
        for record in reversed(self.jobs.all()):
            if record.status == "running" and (local or (record.heartbeat_at or 0) < stale):
                message = "the server restarted while it ran" if local else "worker silent"
                if self.jobs.transition(
                    record.id, "failed", error={"code": "worker_lost", "message": message}
                ):
                    self.jobs.event(record.id, f"job failed: {message}", level="error")
                    logger.warning("job %s failed at start: %s", record.id, message)
            elif record.status == "queued" and local:
                self.queue.submit(record.id, record.owner)
                logger.info("job %s queued again", record.id)

    def _finished(self, job_id: str) -> None:
        """A local worker ended: the serving cache drops the task's head (disk stores do
        not notify across processes; Redis stores do by themselves)."""
        try:
            self.heads.invalidate(self.jobs.get(job_id).task_id)
        except UnknownJob:
            pass

    # --- datasets ---

    async def create_dataset(self, data: bytes, filename: str, caller: Principal) -> Dataset:
        """One upload per tenant at a time, UPLOADS_AT_ONCE in all: a parse holds up to
        `max_dataset_audio_s` of decoded audio in memory."""
        owner = caller.acting_tenant
        if owner is not None and owner in self._uploading:
            raise TooManyJobs("this tenant has a dataset upload in progress; one at a time")
        self._uploading.add(owner)
        try:
            async with self._parsing:
                return await asyncio.to_thread(self.datasets.create, data, filename, owner)
        finally:
            self._uploading.discard(owner)

    async def list_datasets(self, caller: Principal) -> list[Dataset]:
        return await asyncio.to_thread(self.datasets.list, caller.tenant, caller.admin)

    async def get_dataset(self, file_id: str, caller: Principal) -> Dataset:
        return await asyncio.to_thread(self.datasets.get, file_id, caller.tenant, caller.admin)

    async def delete_dataset(self, file_id: str, caller: Principal) -> None:
        await asyncio.to_thread(self.datasets.delete, file_id, caller.tenant, caller.admin)

    # --- jobs ---

    async def create_job(
        self,
        task_id: str,
        training_file: str,
        validation_file: str | None,
        hyperparameters: dict,
        promote: str,
        caller: Principal,
    ) -> JobRecord:
        validate_task_id(task_id)
        if task_id == "base":
            raise InvalidRequest("'base' is the backbone without a head: name a task to train")
        if promote not in PROMOTE_POLICIES:
            raise InvalidRequest(f"promote must be one of {', '.join(PROMOTE_POLICIES)}")
        hp = self._hyperparameters(hyperparameters)
        train = await self.get_dataset(training_file, caller)
        validation = None
        if validation_file is not None:
            validation = await self.get_dataset(validation_file, caller)
        eval_s = validation.audio_seconds if validation else 0.0
        limit = self.settings.jobs.max_feature_bytes
        refuse_too_large(self.model_kind, hp, train.audio_seconds, eval_s, limit)
        if hp.vocabulary_from_data:  # refused now, not after the job has trained
            await asyncio.to_thread(self._check_vocabulary_from, training_file)
        if self.model_kind in CTC_KINDS and self.frame_seconds:
            await asyncio.to_thread(self._check_alignable, training_file, validation_file)
        exists = await self._check_task(task_id, caller)
        if promote == "never" and not exists:
            raise InvalidRequest(
                "promote=never needs an existing task: a new task's first "
                "version is its current one"
            )
        owner = caller.acting_tenant
        async with self._admit:
            if owner is not None:
                mine = [r for r in await asyncio.to_thread(self.jobs.all) if r.owner == owner]
                active = [r for r in mine if r.status in ACTIVE]
                limit = self.settings.jobs.max_concurrent_jobs_per_tenant
                if len(active) >= limit:
                    raise TooManyJobs(
                        f"tenant has {len(active)} jobs queued or running; the limit is {limit}"
                    )
                await asyncio.to_thread(self._prune, mine)
            record = JobRecord(
                id=JobStore.new_id(),
                owner=owner,
                task_id=task_id,
                training_file=training_file,
                validation_file=validation_file,
                hyperparameters=hp,
                promote=promote,
                created_at=time.time(),
            )
            await asyncio.to_thread(self.jobs.create, record)
        self.queue.submit(record.id, record.owner)
        logger.info("job %s queued", record.id)
        return record

    def _check_vocabulary_from(self, training_file: str) -> None:
        """The vocabulary a job with vocabulary_from_data would give its head (the words of
        the dataset's transcripts, as training spells them) is within the head format's
        bounds, else InvalidVocabulary (422) before anything runs."""
        tokenizer = CharTokenizer()
        items = self.datasets.items(training_file)
        validate_vocabulary(sorted({w for i in items for w in tokenizer.normalize(i.text).split()}))

    def _check_alignable(self, *files: str | None) -> None:
        """CTC aligns a transcript to the audio's frames only if it has at least one frame per
        character, plus one between repeated ones: an item with more is refused here (422),
        not trained on to a loss of 0."""
        tokenizer, refused = CharTokenizer(), []
        for file_id in (f for f in files if f is not None):
            for line, item in enumerate(self.datasets.items(file_id), 1):
                ids = tokenizer.encode(tokenizer.normalize(item.text))
                needed = len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))
                info = sf.info(str(item.audio))
                # +1: the front end's rounding at the clip's edges, never refused for it
                frames = math.ceil(info.frames / info.samplerate / self.frame_seconds) + 1
                if needed > frames:
                    refused.append(
                        f"{file_id} line {line}: {needed} frames needed, {frames} in audio"
                    )
        if refused:
            shown = "; ".join(refused[:10]) + (
                f" (and {len(refused) - 10} more)" if len(refused) > 10 else ""
            )
            raise TranscriptTooLong(
                f"{len(refused)} transcripts are longer than their audio can align: {shown}"
            )

    def _prune(self, mine: list[JobRecord]) -> None:
        """Room for one more record: the tenant's oldest finished jobs go (newest first)."""
        keep = self.settings.jobs.max_job_records_per_tenant - 1
        running = getattr(self.queue, "running", {})  # a local worker may still write
        finished = [r for r in mine if r.status in TERMINAL and r.id not in running]
        for record in finished[max(0, keep - (len(mine) - len(finished))) :]:
            self.jobs.delete(record.id)
            logger.info("job %s removed: its tenant's history is at its limit", record.id)

    async def _check_task(self, task_id: str, caller: Principal) -> bool:
        """Whether the task exists; 404 if it is another tenant's (even a public one:
        only its owner trains new versions of it)."""
        return await self.heads.check_trainable(task_id, caller)

    def _hyperparameters(self, given: dict) -> Hyperparameters:
        limits = self.settings.jobs
        known = set(Hyperparameters.__dataclass_fields__)
        unknown = set(given) - known
        if unknown:
            raise InvalidRequest(f"unknown hyperparameters: {', '.join(sorted(unknown))}")
        hp = Hyperparameters(**{"steps": limits.default_steps, **given})
        if type(hp.steps) is not int or not 1 <= hp.steps <= limits.max_steps:
            raise InvalidRequest(f"steps must be an integer in 1..{limits.max_steps}")
        if not isinstance(hp.learning_rate, int | float) or not 0 < hp.learning_rate <= 1:
            raise InvalidRequest("learning_rate must be in (0, 1]")
        if hp.head_type not in HEAD_TYPES:
            raise InvalidRequest(f"head_type must be one of {', '.join(HEAD_TYPES)}")
        if not isinstance(hp.rank, int) or not 1 <= hp.rank <= self.settings.heads.max_ffn_rank:
            raise InvalidRequest(f"rank must be in 1..{self.settings.heads.max_ffn_rank}")
        for name in ("speeds", "tempos"):
            values = getattr(hp, name)
            if (
                not isinstance(values, list | tuple)
                or len(values) > 4
                or not all(isinstance(v, int | float) and 0.5 <= v <= 2.0 for v in values)
            ):
                raise InvalidRequest(f"{name}: at most 4 factors, each in 0.5..2.0")
        if not hp.speeds:
            raise InvalidRequest("speeds needs at least one factor (1.0: as recorded)")
        if any(abs(v * SPEED_STEPS - round(v * SPEED_STEPS)) > 1e-6 for v in hp.speeds):
            # resampling 16 kHz to 16 kHz x 0.5003 builds a 4,000-phase filter: ~10 s and
            # ~3 GB per clip (measured); on a 0.05 grid a speed costs at most 20 phases
            raise InvalidRequest(f"speeds: each a multiple of {1 / SPEED_STEPS:g} (0.9, 1.05)")
        if not isinstance(hp.vocabulary_from_data, bool):
            raise InvalidRequest("vocabulary_from_data must be true or false")
        if not isinstance(hp.max_frames, int) or not 500 <= hp.max_frames <= 20_000:
            raise InvalidRequest("max_frames must be in 500..20000")
        hp = replace(
            hp,
            learning_rate=float(hp.learning_rate),
            speeds=tuple(round(v * SPEED_STEPS) / SPEED_STEPS for v in hp.speeds),
            tempos=tuple(float(v) for v in hp.tempos),
        )
        refuse_unsupported(self.model_kind, hp)  # e.g. CTC-only ones on a Whisper model
        return hp

    async def get_job(self, job_id: str, caller: Principal) -> JobRecord:
        record = await asyncio.to_thread(self.jobs.get, job_id)
        if not (caller.admin or record.owner == caller.tenant):
            raise UnknownJob(f"fine-tuning job {job_id!r} does not exist")
        return record

    async def list_jobs(self, caller: Principal) -> list[JobRecord]:
        records = await asyncio.to_thread(self.jobs.all)
        return [r for r in records if caller.admin or r.owner == caller.tenant]

    async def cancel_job(self, job_id: str, caller: Principal) -> JobRecord:
        """Queued: cancelled at once. Running: flagged; the worker stops at its next step
        and writes nothing. Finished: unchanged."""
        record = await self.get_job(job_id, caller)
        if record.status == "queued":
            moved = await asyncio.to_thread(self.jobs.transition, job_id, "cancelled")
            if moved:
                await asyncio.to_thread(self.jobs.event, job_id, "cancelled while queued")
                return moved
        if record.status in TERMINAL:
            return record
        updated = await asyncio.to_thread(
            self.jobs.update,
            job_id,
            lambda r: None if r.status in TERMINAL else replace(r, cancel_requested=True),
        )
        await asyncio.to_thread(self.jobs.event, job_id, "cancel requested")
        return updated

    def open_event_stream(self, caller: Principal) -> EventStreamLease:
        """A lease on one of the tenant's `max_event_streams_per_tenant` event streams
        (admins are not counted): each open stream polls the job's files until it ends."""
        owner = caller.acting_tenant
        if owner is not None:
            if self._event_streams[owner] >= self.settings.jobs.max_event_streams_per_tenant:
                raise TooManyJobs("this tenant has too many job event streams open")
            self._event_streams[owner] += 1
        return EventStreamLease(self._event_streams, owner)

    async def events(self, job_id: str, caller: Principal, after: int = 0) -> list[dict]:
        await self.get_job(job_id, caller)
        return await asyncio.to_thread(self.jobs.events, job_id, after)


class EventStreamLease:
    """Released once: by the stream's end, or when the stream is collected unread (a
    response whose body never started)."""

    def __init__(self, counts: collections.Counter, owner: str | None) -> None:
        self._release = weakref.finalize(self, _release_stream, counts, owner)

    def release(self) -> None:
        self._release()


def _release_stream(counts: collections.Counter, owner: str | None) -> None:
    if owner is not None:
        counts[owner] -= 1
        if counts[owner] <= 0:
            del counts[owner]
