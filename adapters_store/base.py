"""The async interface every head store offers the cache and the head registry.

Stores deal in bytes (the safetensors head file) and versions; decoding and
validation against the loaded model happen once, in the cache.

Lifecycle contract, shared by every store:
- Versions of a task id are never reused, not even after DELETE: caches key
  heads by (task, version), so a reused pair would serve a deleted head.
- Each write (put, set_current, delete) checks ownership and writes in ONE
  atomic step. `acting_tenant` is the caller's tenant, None for an admin; a
  tenant acting on a task owned by anyone else gets UnknownTask, exactly as
  for a task that does not exist.
- The task's owner is the owner embedded in its current version's file.
- A tenant's writes are bounded by `Quotas`, counted in the same atomic step;
  an admin's are not.
- A write that raises left nothing behind; a write that returned is durable
  (a failed change notification afterwards is logged, not raised).
- A task's visibility ("private" or "public") is task state beside
  its owner, written in the same atomic step as the write that sets it; it is
  not part of any version, so rollback and replace keep it. Only an admin sets
  it (server/serving/heads.py refuses a tenant's); a new task is private unless the admin
  writing it says otherwise.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final, Protocol

from adapters_store.errors import InvalidVisibility, QuotaExceeded, UnknownTask
from adapters_store.head_format import METADATA_KEY, HeadRecord

PRIVATE: Final = "private"
PUBLIC: Final = "public"
VISIBILITIES: Final = (PRIVATE, PUBLIC)


def validate_visibility(value: object) -> str:
    """The visibility named exactly ("private" or "public"), else InvalidVisibility."""
    if not isinstance(value, str) or value not in VISIBILITIES:
        shown = repr(value)[:40] if isinstance(value, str) else type(value).__name__
        raise InvalidVisibility(f"visibility must be 'private' or 'public', not {shown}")
    return value


@dataclass(frozen=True)
class TaskAccess:
    """Who may use a task, read without loading its head: its owner and visibility."""

    owner: str | None
    visibility: str = PRIVATE

    @property
    def public(self) -> bool:
        return self.visibility == PUBLIC


@dataclass(frozen=True)
class Quotas:
    """Per-tenant limits a store enforces on tenant writes (admin writes are free)."""

    max_tasks_per_tenant: int = 1000
    max_versions_per_task: int = 100
    max_bytes_per_tenant: int = 1 << 30

    def check(
        self, tenant: str, *, tasks: int, versions: int, stored_bytes: int, new_bytes: int
    ) -> None:
        """Raise QuotaExceeded if the write would pass a limit.

        `tasks` counts the tenant's tasks after the write, `versions` the task's
        versions after it, `stored_bytes` the tenant's bytes before it.
        """
        if tasks > self.max_tasks_per_tenant:
            raise QuotaExceeded(
                f"tenant {tenant!r} would own {tasks} tasks, limit {self.max_tasks_per_tenant}"
            )
        if versions > self.max_versions_per_task:
            raise QuotaExceeded(
                f"task would hold {versions} versions, limit {self.max_versions_per_task}; "
                "delete the task to start again"
            )
        if stored_bytes + new_bytes > self.max_bytes_per_tenant:
            raise QuotaExceeded(
                f"tenant {tenant!r} stores {stored_bytes} bytes of heads; {new_bytes} more "
                f"would pass its limit of {self.max_bytes_per_tenant}"
            )


def owner_after_put(
    record: HeadRecord,
    exists: bool,
    owner_now: str | None,
    acting_tenant: str | None,
    keep_owner: bool,
) -> str | None:
    """Who owns the task after this put; UnknownTask (404) if the tenant may not write it.

    A tenant writes only its own or new tasks, and owns what it writes; an admin sets
    the owner it names, or keeps the current one (`keep_owner`) when it names none.
    Stores call this under the same lock or transaction as the write.
    """
    if exists and acting_tenant is not None and owner_now != acting_tenant:
        raise UnknownTask(f"task {record.meta.task_id!r} is not registered")
    if acting_tenant is not None:
        return acting_tenant
    if keep_owner and exists:
        return owner_now
    return record.meta.owner or None


def embedded_owner(data: bytes) -> str | None:
    """The owner written into a stored head file's metadata (files the store wrote)."""
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    return meta.get("owner") or None


class HeadStore(Protocol):
    async def put(
        self,
        record: HeadRecord,
        acting_tenant: str | None = None,
        keep_owner: bool = False,
        visibility: str | None = None,
        make_current: bool = True,
    ) -> HeadRecord:
        """Store as a new version, make it current, notify watchers; returns it versioned.
        `make_current=False` only adds the version (a fine-tuning job's head that did not
        win): the task must exist, and what it serves does not change, not even briefly.

        The owner written is `acting_tenant` for a tenant; for an admin, the task's
        current owner when `keep_owner` and the task exists, else `record.meta.owner`.
        `visibility` (admins only) is set in the same step; None keeps the task's
        (private for a new task). Raises UnknownTask (foreign task), QuotaExceeded
        or InvalidVisibility, having written nothing.
        """

    async def get_bytes(self, task_id: str, version: int | None = None) -> bytes:
        """The head file of `version` (default: current). Raises UnknownTask."""

    async def current_version(self, task_id: str) -> int: ...

    async def owner(self, task_id: str) -> str | None:
        """The tenant owning the task (its current version's owner); UnknownTask if none.
        Read without loading the head, so a foreign head is never decoded for a 404."""

    async def access(self, task_id: str) -> TaskAccess:
        """Owner and visibility in one read, without loading the head; UnknownTask if none."""

    async def set_visibility(self, task_id: str, visibility: str) -> None:
        """Admin only: make the task private or public (one atomic write, watchers told)."""

    async def versions(self, task_id: str) -> list[int]: ...

    async def set_current(
        self, task_id: str, version: int, acting_tenant: str | None = None
    ) -> None:
        """Rollback (or forward); the task's owner becomes that version's owner.

        A tenant may only make current a version it owns, of a task it owns.
        """

    async def delete(self, task_id: str, acting_tenant: str | None = None) -> None:
        """Remove every version; the task's version counter survives."""

    async def list_tasks(
        self, offset: int, limit: int, owner: str | None = None, with_public: bool = False
    ) -> tuple[list[str], int]:
        """A page of task ids in sorted order, and the total: all tasks, or only
        `owner`'s if given, together with every public task when `with_public`."""

    async def ping(self) -> bool:
        """True when the backing service answers."""

    def watch(self) -> AsyncIterator[str]:
        """Task ids as they change (put, rollback, delete), from any replica."""

    async def close(self) -> None: ...
