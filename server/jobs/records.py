"""Fine-tuning job records: one folder per job, a state machine, an event log.

    queued ──► running ──► succeeded
       │          ├──────► failed      (error, time limit, worker gone, server restart)
       └──────────┴──────► cancelled

A terminal state never changes again. The record (record.json) is read-modify-written
under an exclusive file lock, so the server (cancel, recovery) and the worker process
(progress, result) never lose each other's writes; it is replaced atomically (temp file
+ rename). Events are appended, one JSON line each, in OpenAI's event shape.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from server.errors import UnknownJob

JOB_PREFIX = "ftjob-"
ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
NEXT = {
    "queued": {"running", "failed", "cancelled"},
    "running": {"succeeded", "failed", "cancelled"},
}
PROMOTE_POLICIES = ("always", "if_better", "never")


class JobStopped(Exception):
    """A running job ends early in `status` (failed, cancelled) with error `code`.

    A job's outcome, recorded in its record's `error`, not an error any boundary maps:
    so not an HraError (server/errors.py)."""

    def __init__(self, status: str, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Hyperparameters:
    steps: int
    learning_rate: float = 3e-3
    head_type: str = "linear"  # linear | ffn
    rank: int = 32  # FFN hidden size
    speeds: tuple[float, ...] = (1.0,)
    tempos: tuple[float, ...] = ()
    vocabulary_from_data: bool = False
    max_frames: int = 5000


@dataclass(frozen=True)
class JobRecord:
    id: str
    owner: str | None
    task_id: str
    training_file: str
    validation_file: str | None
    hyperparameters: Hyperparameters
    promote: str
    created_at: float
    status: str = "queued"
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    cancel_requested: bool = False
    progress: dict = field(default_factory=dict)  # step, steps, loss, eta_s
    result: dict = field(default_factory=dict)  # wer, version, promoted, ...
    error: dict | None = None  # code, message

    @classmethod
    def from_json(cls, data: dict) -> JobRecord:
        hp = data.pop("hyperparameters")
        hp["speeds"], hp["tempos"] = tuple(hp["speeds"]), tuple(hp["tempos"])
        return cls(hyperparameters=Hyperparameters(**hp), **data)

    def openai(self) -> dict:
        """OpenAI's fine_tuning.job object; our own fields beside theirs."""
        hp = asdict(self.hyperparameters)
        return {
            "object": "fine_tuning.job",
            "id": self.id,
            "model": self.task_id,
            "created_at": int(self.created_at),
            "finished_at": int(self.finished_at) if self.finished_at else None,
            "fine_tuned_model": self.result.get("fine_tuned_model"),
            "organization_id": self.owner,
            "status": self.status,
            "training_file": self.training_file,
            "validation_file": self.validation_file,
            "hyperparameters": hp,
            "promote": self.promote,
            "trained_steps": self.progress.get("step"),
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
        }


class JobStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "jobs"  # made by the first job, not at start

    def create(self, record: JobRecord) -> JobRecord:
        folder = self.root / record.id
        folder.mkdir(parents=True)
        self._write(folder, record)
        self.event(record.id, f"created job for task {record.task_id}")
        return record

    @staticmethod
    def new_id() -> str:
        return JOB_PREFIX + uuid.uuid4().hex[:24]

    def get(self, job_id: str) -> JobRecord:
        folder = self._folder(job_id)
        try:
            return JobRecord.from_json(json.loads((folder / "record.json").read_text()))
        except FileNotFoundError:
            raise UnknownJob(f"fine-tuning job {job_id!r} does not exist") from None

    def all(self) -> list[JobRecord]:
        records = []
        for folder in self.root.glob(f"{JOB_PREFIX}*"):
            with contextlib.suppress(UnknownJob):
                records.append(self.get(folder.name))
        return sorted(records, key=lambda r: -r.created_at)

    def update(self, job_id: str, change: Callable[[JobRecord], JobRecord | None]) -> JobRecord:
        """Apply `change` under the job's lock; it returns the new record or None (keep)."""
        folder = self._folder(job_id)
        with self._locked(folder):
            record = self.get(job_id)
            new = change(record)
            if new is None or new == record:
                return record
            if new.status != record.status and new.status not in NEXT.get(record.status, ()):
                raise ValueError(f"job {job_id}: {record.status} -> {new.status} is not allowed")
            self._write(folder, new)
            return new

    def transition(self, job_id: str, status: str, **changes) -> JobRecord | None:
        """Move to `status` if allowed from the current one; None if it was not."""
        moved: list[JobRecord] = []

        def change(r: JobRecord) -> JobRecord | None:
            if status not in NEXT.get(r.status, ()):
                return None
            now = time.time()
            stamps = {"finished_at": now} if status in TERMINAL else {"started_at": now}
            moved.append(replace(r, status=status, **stamps, **changes))
            return moved[-1]

        self.update(job_id, change)
        return moved[0] if moved else None

    def event(self, job_id: str, message: str, level: str = "info", data: dict | None = None):
        folder = self._folder(job_id)
        with self._locked(folder):
            path = folder / "events.jsonl"
            number = sum(1 for _ in path.open()) if path.exists() else 0
            event = {
                "object": "fine_tuning.job.event",
                "id": f"ftevent-{job_id.removeprefix(JOB_PREFIX)}-{number}",
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "type": "metrics" if data else "message",
                "data": data or {},
            }
            with path.open("a") as f:
                f.write(json.dumps(event) + "\n")

    def events(self, job_id: str, after: int = 0) -> list[dict]:
        """Events from index `after` on (oldest first)."""
        path = self._folder(job_id) / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()[after:]]

    def delete(self, job_id: str) -> None:
        import shutil

        shutil.rmtree(self._folder(job_id), ignore_errors=True)

    def _folder(self, job_id: str) -> Path:
        rest = job_id.removeprefix(JOB_PREFIX)
        if not (
            job_id.startswith(JOB_PREFIX)
            and len(rest) == 24
            and all(c in "0123456789abcdef" for c in rest)
        ):
            raise UnknownJob(f"fine-tuning job {job_id!r} does not exist")
        return self.root / job_id

    @staticmethod
    def _write(folder: Path, record: JobRecord) -> None:
        tmp = folder / f"record.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(asdict(record)))
        tmp.replace(folder / "record.json")

    @staticmethod
    @contextlib.contextmanager
    def _locked(folder: Path) -> Iterator[None]:
        if not folder.is_dir():
            raise UnknownJob(f"fine-tuning job {folder.name!r} does not exist")
        with (folder / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
