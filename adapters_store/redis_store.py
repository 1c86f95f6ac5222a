"""RedisStore: heads shared by every replica, with change notification.

Keys, under a configurable prefix p:
    p:task:<id>:v:<n>      head file bytes of version n (immutable)
    p:task:<id>:current    the version served
    p:task:<id>:versions   list of versions, oldest first
    p:task:<id>:next       version counter
    p:task:<id>:owner      tenant that registered the current head ("" for none)
    p:tasks                sorted set of task ids (for paginated listing)
    p:owner:<tenant>       sorted set of that tenant's task ids
    p:events               pub/sub channel: a task id each time that task changes

A registration is one MULTI/EXEC transaction, then one PUBLISH, so a reader
sees either the old head or the new one and every replica hears of it at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters_store.errors import StoreUnavailable, UnknownTask
from adapters_store.head_format import HeadRecord, encode_head, validate_task_id

logger = logging.getLogger(__name__)
_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisStore:
    def __init__(self, url: str, prefix: str = "hra", timeout_s: float = 2.0) -> None:
        self.prefix = prefix
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def _key(self, task_id: str, *parts: str) -> str:
        return ":".join((self.prefix, "task", validate_task_id(task_id), *parts))

    def _owner_key(self, owner: str) -> str:
        return f"{self.prefix}:owner:{owner}"

    @property
    def _channel(self) -> str:
        return f"{self.prefix}:events"

    async def put(self, record: HeadRecord) -> HeadRecord:
        task_id = record.meta.task_id
        owner = record.meta.owner or ""
        async with _translate_errors():
            version = int(await self.client.incr(self._key(task_id, "next")))
            previous_owner = await self.client.get(self._key(task_id, "owner"))
            stored = HeadRecord(replace(record.meta, version=version), record.tensors)
            async with self.client.pipeline(transaction=True) as tx:
                tx.set(self._key(task_id, "v", str(version)), encode_head(stored))
                tx.rpush(self._key(task_id, "versions"), version)
                tx.set(self._key(task_id, "current"), version)
                tx.set(self._key(task_id, "owner"), owner)
                tx.zadd(f"{self.prefix}:tasks", {task_id: 0})
                if previous_owner and previous_owner.decode() != owner:
                    tx.zrem(self._owner_key(previous_owner.decode()), task_id)
                if owner:
                    tx.zadd(self._owner_key(owner), {task_id: 0})
                await tx.execute()
            await self.client.publish(self._channel, task_id)
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

    async def versions(self, task_id: str) -> list[int]:
        await self.current_version(task_id)
        async with _translate_errors():
            return [int(v) for v in await self.client.lrange(self._key(task_id, "versions"), 0, -1)]

    async def set_current(self, task_id: str, version: int) -> None:
        if version not in await self.versions(task_id):
            raise UnknownTask(f"task {task_id!r} has no version {version}")
        async with _translate_errors():
            await self.client.set(self._key(task_id, "current"), version)
            await self.client.publish(self._channel, task_id)

    async def delete(self, task_id: str) -> None:
        versions = await self.versions(task_id)
        async with _translate_errors():
            owner = await self.client.get(self._key(task_id, "owner"))
            async with self.client.pipeline(transaction=True) as tx:
                tx.delete(*(self._key(task_id, "v", str(v)) for v in versions))
                tx.delete(
                    self._key(task_id, "versions"),
                    self._key(task_id, "current"),
                    self._key(task_id, "owner"),
                )
                tx.zrem(f"{self.prefix}:tasks", task_id)
                if owner:
                    tx.zrem(self._owner_key(owner.decode()), task_id)
                await tx.execute()
            await self.client.publish(self._channel, task_id)

    async def list_tasks(
        self, offset: int, limit: int, owner: str | None = None
    ) -> tuple[list[str], int]:
        key = f"{self.prefix}:tasks" if owner is None else self._owner_key(owner)
        async with _translate_errors():
            total = await self.client.zcard(key)
            ids = await self.client.zrange(key, offset, offset + limit - 1)
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


class _translate_errors:
    """Connection failures become StoreUnavailable, which callers can handle."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and isinstance(exc, _DOWN):
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc
        return False
