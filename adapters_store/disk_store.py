"""DiskStore: the embedded default head store, one folder per task.

    <root>/<task_id>/v000003.safetensors   one immutable file per version
    <root>/<task_id>/CURRENT               the version served, e.g. "3"

Every write goes to a temporary file that is fsynced and renamed into place,
so a crash leaves either the old state or the new one, never half a head.
A per-task lock file serialises concurrent registrations across processes.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from adapters_store.errors import UnknownTask
from adapters_store.head_format import HeadRecord, decode_head, encode_head, validate_task_id

_CURRENT = "CURRENT"
_OWNER = "OWNER"  # owner of the current registration, for per-tenant listing
_LOCK = ".lock"


class DiskStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, record: HeadRecord) -> HeadRecord:
        """Store as a new version and make it current; returns it with its version."""
        task_id = validate_task_id(record.meta.task_id)
        folder = self.root / task_id
        folder.mkdir(exist_ok=True)
        with self._locked(folder):
            versions = self._versions(folder)
            version = (max(versions) + 1) if versions else 1
            stored = HeadRecord(replace(record.meta, version=version), record.tensors)
            _atomic_write(folder / _version_file(version), encode_head(stored))
            _atomic_write(folder / _OWNER, (record.meta.owner or "").encode())
            _atomic_write(folder / _CURRENT, str(version).encode())
        return stored

    def get(self, task_id: str, version: int | None = None) -> HeadRecord:
        return decode_head(self.get_bytes(task_id, version))

    def get_bytes(self, task_id: str, version: int | None = None) -> bytes:
        folder = self._folder(task_id)
        version = self.current_version(task_id) if version is None else version
        try:
            return (folder / _version_file(version)).read_bytes()
        except FileNotFoundError:
            raise UnknownTask(f"task {task_id!r} has no version {version}") from None

    def current_version(self, task_id: str) -> int:
        try:
            return int((self._folder(task_id) / _CURRENT).read_text())
        except FileNotFoundError:
            raise UnknownTask(f"task {task_id!r} is not registered") from None

    def versions(self, task_id: str) -> list[int]:
        return self._versions(self._folder(task_id))

    def set_current(self, task_id: str, version: int) -> None:
        """Rollback (or forward): serve an existing version again."""
        folder = self._folder(task_id)
        with self._locked(folder):
            if version not in self._versions(folder):
                raise UnknownTask(f"task {task_id!r} has no version {version}")
            _atomic_write(folder / _CURRENT, str(version).encode())

    def delete(self, task_id: str) -> None:
        folder = self._folder(task_id)
        # Rename first so readers never see a half-deleted folder.
        trash = self.root / f".deleted-{task_id}-{os.getpid()}-{id(folder)}"
        folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def task_ids(self, owner: str | None = None) -> list[str]:
        """All task ids, or only those `owner` registered."""
        ids = sorted(p.name for p in self.root.iterdir() if (p / _CURRENT).exists())
        if owner is None:
            return ids
        return [t for t in ids if _read_text(self.root / t / _OWNER) == owner]

    def _folder(self, task_id: str) -> Path:
        folder = self.root / validate_task_id(task_id)
        if not (folder / _CURRENT).exists():
            raise UnknownTask(f"task {task_id!r} is not registered")
        return folder

    @staticmethod
    def _versions(folder: Path) -> list[int]:
        return sorted(
            int(p.stem[1:]) for p in folder.glob("v*.safetensors") if p.stem[1:].isdigit()
        )

    @staticmethod
    @contextmanager
    def _locked(folder: Path) -> Iterator[None]:
        with open(folder / _LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _version_file(version: int) -> str:
    return f"v{version:06d}.safetensors"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AsyncDiskStore:
    """DiskStore behind the async HeadStore interface (file I/O in a thread).

    Change notifications reach watchers in this process only: a disk store is
    the single-replica embedded default; replicas share a RedisStore.
    """

    def __init__(self, root: str | Path) -> None:
        self.disk = DiskStore(root)
        self._watchers: list[asyncio.Queue[str]] = []

    async def put(self, record: HeadRecord) -> HeadRecord:
        stored = await asyncio.to_thread(self.disk.put, record)
        self._notify(stored.meta.task_id)
        return stored

    async def get_bytes(self, task_id: str, version: int | None = None) -> bytes:
        return await asyncio.to_thread(self.disk.get_bytes, task_id, version)

    async def current_version(self, task_id: str) -> int:
        return await asyncio.to_thread(self.disk.current_version, task_id)

    async def versions(self, task_id: str) -> list[int]:
        return await asyncio.to_thread(self.disk.versions, task_id)

    async def set_current(self, task_id: str, version: int) -> None:
        await asyncio.to_thread(self.disk.set_current, task_id, version)
        self._notify(task_id)

    async def delete(self, task_id: str) -> None:
        await asyncio.to_thread(self.disk.delete, task_id)
        self._notify(task_id)

    async def list_tasks(
        self, offset: int, limit: int, owner: str | None = None
    ) -> tuple[list[str], int]:
        ids = await asyncio.to_thread(self.disk.task_ids, owner)
        return ids[offset : offset + limit], len(ids)

    async def ping(self) -> bool:
        return await asyncio.to_thread(self.disk.root.is_dir)

    async def watch(self) -> AsyncIterator[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._watchers.remove(queue)

    async def close(self) -> None:
        return None

    def _notify(self, task_id: str) -> None:
        for queue in self._watchers:
            queue.put_nowait(task_id)
