"""The head registry: resolve, authorize, register, roll back, delete and list heads.

Every path that reads or writes a tenant's head goes through here (the API's task
routes, transcriptions, live streams, fine-tuning jobs' ownership checks), so each
rule lives in one place:
- a tenant's right is checked on (owner, visibility) before a head it may not see is
  read, so probing other tenants' ids loads none of their heads into the cache;
- another tenant's private task answers exactly like a missing one (404);
- the store checks ownership, quotas and writes in one atomic step, and every write
  drops the task from the host cache (other replicas hear it from the store).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import replace

from adapters_store.base import HeadStore, TaskAccess, validate_visibility
from adapters_store.cache import HostHeadCache
from adapters_store.errors import InvalidVocabulary, UnknownTask
from adapters_store.head_format import (
    HeadMetadata,
    HeadRecord,
    HeadSpec,
    decode_head,
    validate_task_id,
    validate_vocabulary,
)
from server.auth import OPEN, Principal
from server.errors import HeadRejected, InvalidRequest
from server.observability.log_safety import printable
from server.serving.request import BASE_TASK

logger = logging.getLogger(__name__)
MAX_METADATA_DEPTH = 16


class HeadRegistry:
    def __init__(
        self, store: HeadStore, cache: HostHeadCache, spec: HeadSpec, vocabularies: bool
    ) -> None:
        self.store, self.cache, self.spec = store, cache, spec
        self.vocabularies = vocabularies  # whether the model decodes within a word list

    async def resolve(self, task_id: str, caller: Principal = OPEN) -> HeadRecord | None:
        """The head a transcription of `task_id` uses, if `caller` may use it (else 404)."""
        if task_id == BASE_TASK:
            return None
        return await self.authorized(task_id, caller)

    async def authorized(
        self, task_id: str, caller: Principal, allow_public: bool = True
    ) -> HeadRecord:
        """The task's current head, if `caller` may see it (else UnknownTask, as if missing).

        The loaded head's own owner is checked again (an owner may change between the two
        reads). `allow_public=False` (download) asks for ownership: a public task is for
        using, not for copying.
        """
        validate_task_id(task_id)
        head = self.cache.peek(task_id)
        if caller.admin or (head is not None and caller.may_use(head.meta.owner)):
            return head if head is not None else await self.cache.resolve(task_id)
        access = await self.store.access(task_id)
        if not allow_public:
            access = TaskAccess(access.owner)
        caller.check_access(task_id, access)
        head = head if head is not None else await self.cache.resolve(task_id)
        if not access.public:
            caller.check_owner(task_id, head.meta.owner)
        return head

    async def register(
        self,
        task_id: str,
        data: bytes,
        metadata: dict | None,
        caller: Principal = OPEN,
        vocabulary: list[str] | None = None,
        visibility: str | None = None,
    ) -> HeadRecord:
        """`vocabulary`, when given, replaces the file's own (an empty list clears it).
        `visibility`, admins only, sets the task's in the same write (None keeps it).

        Of two tenants racing for a new id exactly one wins, the other gets UnknownTask.
        An admin update keeps the task's owner unless `metadata` names one.
        """
        if task_id == BASE_TASK:
            raise InvalidRequest("'base' is reserved for the backbone without a head")
        validate_task_id(task_id)
        if visibility is not None:
            check_may_set_visibility(caller, visibility)
        metadata = metadata or {}
        check_metadata(metadata)  # refused before the write, never after it
        record = await asyncio.to_thread(decode_head, data, self.spec)
        check_head_metadata(record.meta)  # the file's own, before the request's merges in
        changes: dict = {"task_id": task_id, "created_at": time.time()}
        for key, value in metadata.items():
            if key in ("owner", "description"):
                changes[key] = None if value is None else str(value)
            else:
                changes.setdefault("extra", dict(record.meta.extra))[key] = value
        if vocabulary is not None:
            changes["vocabulary"] = validate_vocabulary(vocabulary)
        meta = replace(record.meta, **changes)
        if meta.vocabulary and not self.vocabularies:
            raise InvalidVocabulary(
                "this model decodes Whisper's BPE tokens, not a word loop: task vocabularies "
                "do not apply to it; upload the head without one"
            )
        check_head_metadata(meta)  # what the file itself brings, echoed back after the write
        stored = await self.store.put(
            HeadRecord(meta, record.tensors),
            acting_tenant=caller.acting_tenant,
            keep_owner=caller.admin and "owner" not in metadata,
            visibility=visibility,
        )
        self.cache.invalidate(task_id)
        logger.info("registered %s version %d", printable(task_id), stored.meta.version)
        return stored

    async def rollback(self, task_id: str, version: int, caller: Principal = OPEN) -> None:
        validate_task_id(task_id)
        await self.store.set_current(task_id, version, acting_tenant=caller.acting_tenant)
        self.cache.invalidate(task_id)

    async def delete(self, task_id: str, caller: Principal = OPEN) -> None:
        validate_task_id(task_id)
        await self.store.delete(task_id, acting_tenant=caller.acting_tenant)
        self.cache.invalidate(task_id)

    def invalidate(self, task_id: str) -> None:
        """A head was written elsewhere (a local training worker): read it afresh."""
        self.cache.invalidate(task_id)

    async def set_visibility(
        self, task_id: str, visibility: object, caller: Principal = OPEN
    ) -> None:
        """Admins only: a tenant gets 404 on a task it may not see, else 400."""
        validate_task_id(task_id)
        if not caller.admin:
            caller.check_access(task_id, await self.store.access(task_id))
        check_may_set_visibility(caller, visibility)
        await self.store.set_visibility(task_id, visibility)  # type: ignore[arg-type]
        self.cache.invalidate(task_id)

    async def info(
        self, task_id: str, caller: Principal = OPEN
    ) -> tuple[HeadRecord, list[int], str]:
        """The current head, its versions and the task's visibility."""
        record = await self.authorized(task_id, caller)
        access = await self.store.access(task_id)
        return record, await self.store.versions(task_id), access.visibility

    async def download(self, task_id: str, caller: Principal = OPEN) -> bytes:
        record = await self.authorized(task_id, caller, allow_public=False)
        return await self.store.get_bytes(task_id, record.meta.version)

    async def list_managed(self, offset: int, limit: int, caller: Principal = OPEN):
        """A page of the tasks `caller` manages: all for an admin, else its own."""
        return await self.store.list_tasks(offset, limit, caller.acting_tenant)

    async def list_usable(self, offset: int, limit: int, caller: Principal = OPEN):
        """A page of the tasks `caller` may use: all for an admin, else its own and public."""
        return await self.store.list_tasks(offset, limit, caller.acting_tenant, with_public=True)

    async def access(self, task_id: str, caller: Principal = OPEN) -> TaskAccess:
        """Owner and visibility of a task `caller` may use (else UnknownTask)."""
        validate_task_id(task_id)
        access = await self.store.access(task_id)
        caller.check_access(task_id, access)
        return access

    async def check_trainable(self, task_id: str, caller: Principal) -> bool:
        """Whether the task exists; 404 if it is another tenant's (even a public one: only
        its owner trains new versions of it)."""
        try:
            access = await self.store.access(task_id)
        except UnknownTask:
            return False
        caller.check_owner(task_id, access.owner)
        return True


def check_may_set_visibility(caller: Principal, visibility: object) -> None:
    """Only admins set visibility (400 for a tenant); the value must be exact."""
    if not caller.admin:
        raise InvalidRequest("only admins set visibility")
    validate_visibility(visibility)


def check_head_metadata(meta: HeadMetadata) -> None:
    """Fields of a head file's own metadata that are stored and answered as typed JSON."""
    for name in ("owner", "description"):
        value = getattr(meta, name)
        if not isinstance(value, str | None):
            raise HeadRejected(f"head metadata {name!r} must be a string")
        if value is not None and not _encodable(value):
            raise HeadRejected(f"head metadata {name!r} is not valid Unicode text")
    if not isinstance(meta.extra, dict):
        raise HeadRejected("head metadata 'extra' must be an object")
    if not isinstance(meta.rank, int) or isinstance(meta.rank, bool):
        raise HeadRejected("head metadata 'rank' must be an integer")
    try:
        check_metadata(meta.extra)
    except InvalidRequest as exc:
        raise HeadRejected(f"head file: {exc}") from None


def check_metadata(value: object, depth: int = 0) -> None:
    """Metadata is stored and echoed back as JSON: finite numbers, bounded nesting, text
    that is valid Unicode (JSON's "\ud800" escape decodes to a lone surrogate, which no
    UTF-8 writer accepts)."""
    if depth > MAX_METADATA_DEPTH:
        raise InvalidRequest(f"metadata nests deeper than {MAX_METADATA_DEPTH} levels")
    if isinstance(value, str) and not _encodable(value):
        raise InvalidRequest("metadata text must be valid Unicode (no unpaired surrogates)")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest("metadata numbers must be finite (no NaN or Infinity)")
    if isinstance(value, dict):
        for key, item in value.items():
            check_metadata(key, depth + 1)
            check_metadata(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_metadata(item, depth + 1)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
