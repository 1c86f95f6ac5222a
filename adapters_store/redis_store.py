"""RedisStore: heads shared by every replica, with change notification.

Keys, under a configurable prefix p:
    p:task:<id>:v:<n>      head file bytes of version n (immutable)
    p:task:<id>:current    the version served
    p:task:<id>:versions   list of versions, oldest first
    p:task:<id>:next       last version assigned; survives DELETE, so none is reused
    p:task:<id>:owner      owner of the current version ("" for none)
    p:task:<id>:bytes      bytes of all the task's versions
    p:task:<id>:visibility "public" or "private" (absent: private); the task's, not a version's
    p:tasks                sorted set of task ids (for paginated listing)
    p:owner:<tenant>       sorted set of that tenant's task ids
    p:public               sorted set of public task ids
    p:usage:<tenant>       bytes of all that tenant's tasks (quota)
    p:events               pub/sub channel: a task id each time that task changes

Each write (put, rollback, delete) is one optimistic transaction: WATCH the keys
it reads (ownership, versions, the tenant's counters), check, then MULTI/EXEC
every change at once; if another client touched a watched key in between, EXEC
fails and the whole step is re-run. So the ownership check, the quota count and
the write are one atomic step, a reader sees the old state or the new one, and
no interleaving leaves a version blob outside the `versions` list. The head is
encoded client-side (its metadata carries the version), hence WATCH, not Lua.
Then one PUBLISH tells every replica; a publish that fails after EXEC is logged,
not raised: the write happened, and replicas re-read everything on reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from adapters_store.base import (
    PRIVATE,
    PUBLIC,
    Quotas,
    TaskAccess,
    embedded_owner,
    owner_after_put,
    validate_visibility,
)
from adapters_store.errors import StoreUnavailable, UnknownTask
from adapters_store.head_format import HeadRecord, encode_head, validate_task_id

logger = logging.getLogger(__name__)
_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_MAX_ATTEMPTS = 200  # optimistic retries of one write under contention
T = TypeVar("T")


class RedisStore:
    def __init__(
        self,
        url: str,
        prefix: str = "hra",
        timeout_s: float = 2.0,
        quotas: Quotas | None = None,
    ) -> None:
        self.prefix = prefix
        self.quotas = quotas or Quotas()
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def _key(self, task_id: str, *parts: str) -> str:
        return ":".join((self.prefix, "task", validate_task_id(task_id), *parts))

    def _owner_key(self, owner: str) -> str:
        return f"{self.prefix}:owner:{owner}"

    def _usage_key(self, owner: str) -> str:
        return f"{self.prefix}:usage:{owner}"

    @property
    def _tasks_key(self) -> str:
        return f"{self.prefix}:tasks"

    @property
    def _public_key(self) -> str:
        return f"{self.prefix}:public"

    @property
    def _channel(self) -> str:
        return f"{self.prefix}:events"

    def _task_keys(self, task_id: str) -> list[str]:
        return [
            self._key(task_id, k)
            for k in ("current", "owner", "versions", "next", "bytes", "visibility")
        ]

    async def put(
        self,
        record: HeadRecord,
        acting_tenant: str | None = None,
        keep_owner: bool = False,
        visibility: str | None = None,
        make_current: bool = True,
    ) -> HeadRecord:
        task_id = validate_task_id(record.meta.task_id)
        if visibility is not None:
            validate_visibility(visibility)

        async def step(tx: Pipeline) -> HeadRecord:
            exists, owner_now = await self._owner_of(tx, task_id)
            if not make_current and not exists:
                raise UnknownTask(task_id)  # a version nobody serves needs a current one
            visibility_now = await self._visibility_of(tx, task_id) if exists else PRIVATE
            visibility_new = visibility or visibility_now
            owner = owner_after_put(record, exists, owner_now, acting_tenant, keep_owner)
            version = int(await tx.get(self._key(task_id, "next")) or 0) + 1
            stored = HeadRecord(replace(record.meta, version=version, owner=owner), record.tensors)
            data = encode_head(stored)
            task_bytes = int(await tx.get(self._key(task_id, "bytes")) or 0) if exists else 0
            await self._watch_owners(tx, owner_now, owner)
            if acting_tenant is not None:
                count = await tx.llen(self._key(task_id, "versions")) if exists else 0
                self.quotas.check(
                    acting_tenant,
                    tasks=await tx.zcard(self._owner_key(acting_tenant)) + (0 if exists else 1),
                    versions=count + 1,
                    stored_bytes=int(await tx.get(self._usage_key(acting_tenant)) or 0),
                    new_bytes=len(data),
                )
            tx.multi()
            tx.set(self._key(task_id, "next"), version)
            tx.set(self._key(task_id, "v", str(version)), data)
            tx.rpush(self._key(task_id, "versions"), version)
            if make_current:
                tx.set(self._key(task_id, "current"), version)
            tx.incrby(self._key(task_id, "bytes"), len(data))
            tx.zadd(self._tasks_key, {task_id: 0})
            self._move_owner(tx, task_id, owner_now, owner, task_bytes, len(data))
            self._queue_visibility(tx, task_id, visibility_new)
            return stored

        stored = await self._atomically(step, self._task_keys(task_id))
        await self._publish(task_id)
        return stored

    async def get_bytes(self, task_id: str, version: int | None = None) -> bytes:
        async with _translate_errors():
            if version is None:
                version = await self.current_version(task_id)
            data = await self.client.get(self._key(task_id, "v", str(version)))
        if data is None:
            raise UnknownTask(f"task {task_id!r} has no version {version}")
        return data

    async def current_version(self, task_id: str) -> int:
        async with _translate_errors():
            value = await self.client.get(self._key(task_id, "current"))
        if value is None:
            raise UnknownTask(f"task {task_id!r} is not registered")
        return int(value)

    async def owner(self, task_id: str) -> str | None:
        async with _translate_errors():
            current, owner = await self.client.mget(
                self._key(task_id, "current"), self._key(task_id, "owner")
            )
        if current is None:
            raise UnknownTask(f"task {task_id!r} is not registered")
        return owner.decode() or None if owner else None

    async def access(self, task_id: str) -> TaskAccess:
        async with _translate_errors():
            current, owner, visibility = await self.client.mget(
                self._key(task_id, "current"),
                self._key(task_id, "owner"),
                self._key(task_id, "visibility"),
            )
        if current is None:
            raise UnknownTask(f"task {task_id!r} is not registered")
        return TaskAccess(
            (owner.decode() or None) if owner else None,
            PUBLIC if visibility == PUBLIC.encode() else PRIVATE,
        )

    async def set_visibility(self, task_id: str, visibility: str) -> None:
        validate_visibility(visibility)

        async def step(tx: Pipeline) -> None:
            exists, _ = await self._owner_of(tx, task_id)
            if not exists:
                raise UnknownTask(f"task {task_id!r} is not registered")
            tx.multi()
            self._queue_visibility(tx, task_id, visibility)

        await self._atomically(step, self._task_keys(task_id))
        await self._publish(task_id)

    async def versions(self, task_id: str) -> list[int]:
        await self.current_version(task_id)
        async with _translate_errors():
            return [int(v) for v in await self.client.lrange(self._key(task_id, "versions"), 0, -1)]

    async def set_current(
        self, task_id: str, version: int, acting_tenant: str | None = None
    ) -> None:
        async def step(tx: Pipeline) -> None:
            exists, owner_now = await self._owner_of(tx, task_id)
            if not exists or (acting_tenant is not None and owner_now != acting_tenant):
                raise UnknownTask(f"task {task_id!r} is not registered")
            versions = [int(v) for v in await tx.lrange(self._key(task_id, "versions"), 0, -1)]
            data = await tx.get(self._key(task_id, "v", str(version)))
            if version not in versions or data is None:
                raise UnknownTask(f"task {task_id!r} has no version {version}")
            owner = embedded_owner(data)
            if acting_tenant is not None and owner != acting_tenant:
                # Written before an admin gave the task to this tenant: not theirs.
                raise UnknownTask(f"task {task_id!r} has no version {version}")
            task_bytes = int(await tx.get(self._key(task_id, "bytes")) or 0)
            await self._watch_owners(tx, owner_now, owner)
            tx.multi()
            tx.set(self._key(task_id, "current"), version)
            self._move_owner(tx, task_id, owner_now, owner, task_bytes, 0)

        await self._atomically(step, self._task_keys(task_id))
        await self._publish(task_id)

    async def delete(self, task_id: str, acting_tenant: str | None = None) -> None:
        async def step(tx: Pipeline) -> None:
            exists, owner = await self._owner_of(tx, task_id)
            if not exists or (acting_tenant is not None and owner != acting_tenant):
                raise UnknownTask(f"task {task_id!r} is not registered")
            versions = await tx.lrange(self._key(task_id, "versions"), 0, -1)
            task_bytes = int(await tx.get(self._key(task_id, "bytes")) or 0)
            await self._watch_owners(tx, owner, None)
            tx.multi()
            if versions:
                tx.delete(*(self._key(task_id, "v", v.decode()) for v in versions))
            tx.delete(
                *(
                    self._key(task_id, k)
                    for k in ("versions", "current", "owner", "bytes", "visibility")
                )
            )
            tx.zrem(self._tasks_key, task_id)  # "next" stays: versions are never reused
            tx.zrem(self._public_key, task_id)
            if owner:
                tx.zrem(self._owner_key(owner), task_id)
                tx.decrby(self._usage_key(owner), task_bytes)

        await self._atomically(step, self._task_keys(task_id))
        await self._publish(task_id)

    async def list_tasks(
        self, offset: int, limit: int, owner: str | None = None, with_public: bool = False
    ) -> tuple[list[str], int]:
        key = self._tasks_key if owner is None else self._owner_key(owner)
        async with _translate_errors():
            if owner is None or not with_public:
                total = await self.client.zcard(key)
                ids = await self.client.zrange(key, offset, offset + limit - 1)
                return [i.decode() for i in ids], int(total)
            # The union, paged in one MULTI (all scores are 0: ordered by id).
            scratch = f"{self.prefix}:scratch:{uuid.uuid4().hex}"
            async with self.client.pipeline(transaction=True) as tx:
                tx.zunionstore(scratch, [key, self._public_key], aggregate="MIN")
                tx.zrange(scratch, offset, offset + limit - 1)
                tx.delete(scratch)
                total, ids, _ = await tx.execute()
        return [i.decode() for i in ids], int(total)

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except _DOWN:
            return False

    async def watch(self) -> AsyncIterator[str]:
        """Yields changed task ids; on reconnect yields "*" (changes may have been missed)."""
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                yield "*"
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        yield message["data"].decode()
            except _DOWN as exc:
                logger.warning("redis watch lost its connection (%s); retrying", exc)
                await asyncio.sleep(0.5)
            finally:
                try:
                    await pubsub.aclose()
                except _DOWN:
                    pass

    async def close(self) -> None:
        await self.client.aclose()

    # --- transactions ---

    async def _atomically(self, step: Callable[[Pipeline], Awaitable[T]], keys: list[str]) -> T:
        """Run `step` (reads, checks, then tx.multi() and queued writes) until EXEC holds."""
        async with _translate_errors():
            for attempt in range(_MAX_ATTEMPTS):
                async with self.client.pipeline(transaction=True) as tx:
                    try:
                        await tx.watch(*keys)
                        result = await step(tx)
                        await tx.execute()
                        return result
                    except WatchError:
                        await asyncio.sleep(random.uniform(0, 0.001 * min(attempt, 20)))
        raise StoreUnavailable(f"write gave up after {_MAX_ATTEMPTS} conflicting attempts")

    async def _owner_of(self, tx: Pipeline, task_id: str) -> tuple[bool, str | None]:
        """(exists, owner) read inside a watched transaction."""
        current = await tx.get(self._key(task_id, "current"))
        owner = await tx.get(self._key(task_id, "owner"))
        return current is not None, (owner.decode() if owner else None)

    async def _visibility_of(self, tx: Pipeline, task_id: str) -> str:
        value = await tx.get(self._key(task_id, "visibility"))
        return PUBLIC if value == PUBLIC.encode() else PRIVATE

    def _queue_visibility(self, tx: Pipeline, task_id: str, visibility: str) -> None:
        tx.set(self._key(task_id, "visibility"), visibility)
        if visibility == PUBLIC:
            tx.zadd(self._public_key, {task_id: 0})
        else:
            tx.zrem(self._public_key, task_id)

    async def _watch_owners(self, tx: Pipeline, *owners: str | None) -> None:
        """Watch the per-tenant keys the write will read or change."""
        keys = [k for o in owners if o for k in (self._owner_key(o), self._usage_key(o))]
        if keys:
            await tx.watch(*keys)

    def _move_owner(
        self,
        tx: Pipeline,
        task_id: str,
        old: str | None,
        new: str | None,
        task_bytes: int,
        added: int,
    ) -> None:
        """Queue the owner key, index and usage changes of a write that adds `added` bytes."""
        tx.set(self._key(task_id, "owner"), new or "")
        if old != new and old:
            tx.zrem(self._owner_key(old), task_id)
            tx.decrby(self._usage_key(old), task_bytes)
        if new:
            tx.zadd(self._owner_key(new), {task_id: 0})
            tx.incrby(self._usage_key(new), added + (task_bytes if old != new else 0))

    async def _publish(self, task_id: str) -> None:
        try:
            await self.client.publish(self._channel, task_id)
        except _DOWN as exc:  # the write is done; replicas re-read all on reconnect
            logger.warning("change notification for %s not sent: %s", task_id, exc)


class _translate_errors:
    """Connection failures become StoreUnavailable, which callers can handle."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and isinstance(exc, _DOWN):
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc
        return False
