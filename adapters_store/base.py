"""The async interface every head store offers the cache.

Stores deal in bytes (the safetensors head file) and versions; decoding and
validation against the loaded model happen once, in the cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from adapters_store.head_format import HeadRecord


class HeadStore(Protocol):
    async def put(self, record: HeadRecord) -> HeadRecord:
        """Store as a new version, make it current, notify watchers; returns it versioned."""

    async def get_bytes(self, task_id: str, version: int | None = None) -> bytes:
        """The head file of `version` (default: current). Raises UnknownTask."""

    async def current_version(self, task_id: str) -> int: ...

    async def versions(self, task_id: str) -> list[int]: ...

    async def set_current(self, task_id: str, version: int) -> None: ...

    async def delete(self, task_id: str) -> None: ...

    async def list_tasks(
        self, offset: int, limit: int, owner: str | None = None
    ) -> tuple[list[str], int]:
        """A page of task ids in sorted order (only `owner`'s if given), and the total."""

    async def ping(self) -> bool:
        """True when the backing service answers."""

    def watch(self) -> AsyncIterator[str]:
        """Task ids as they change (put, rollback, delete), from any replica."""

    async def close(self) -> None: ...
