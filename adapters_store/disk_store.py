"""DiskStore: the embedded default head store, one folder per task.

    <root>/<task_id>/v000003.safetensors   one immutable file per version
    <root>/<task_id>/CURRENT               the version served, e.g. "3"
    <root>/<task_id>/OWNER                 owner of the current version ("" for none)
    <root>/<task_id>/VISIBILITY            "public" or "private" (absent: private)
    <root>/.versions/<task_id>             last version ever assigned; survives DELETE
    <root>/.owners/<owner hash>/<task_id>  index of each owner's tasks (listing, quotas)
    <root>/.public/<task_id>               index of public tasks (listing)
    <root>/.locks/write.lock               held by every write, across processes

Every file write goes to a temporary file that is fsynced and renamed into
place, so a crash leaves either the old state or the new one, never half a head.

Writes (put, set_current, delete) take one store-wide lock, kept outside every
task folder, so DELETE can remove a folder while another writer waits. One
lock, not one per task, because the per-tenant quotas count across a tenant's
tasks and must be counted under the same lock as the write; writes are rare
management calls (a few ms each). Readers never lock: they see CURRENT and the
version files, each replaced atomically.

OWNER is the truth about ownership; the owner index is a superset of it (a
marker is added before OWNER names the owner, removed after OWNER stops), so a
crash can leave a stale marker, which readers skip, but never a missing one.
VISIBILITY and the public index follow the same rule.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from adapters_store.base import (
    PRIVATE,
    PUBLIC,
    Quotas,
    TaskAccess,
    embedded_owner,
    owner_after_put,
    validate_visibility,
)
from adapters_store.errors import UnknownTask
from adapters_store.head_format import HeadRecord, decode_head, encode_head, validate_task_id

logger = logging.getLogger(__name__)

_CURRENT = "CURRENT"
_OWNER = "OWNER"  # owner of the current version, for listing and ownership checks
_VISIBILITY = "VISIBILITY"  # the task's, not a version's: rollback and replace keep it
_PUBLIC = ".public"
_COUNTERS = ".versions"
_OWNERS = ".owners"
_LOCKS = ".locks"


class DiskStore:
    def __init__(self, root: str | Path, quotas: Quotas | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.quotas = quotas or Quotas()

    def put(
        self,
        record: HeadRecord,
        acting_tenant: str | None = None,
        keep_owner: bool = False,
        visibility: str | None = None,
        make_current: bool = True,
    ) -> HeadRecord:
        """Store as a new version and make it current (unless `make_current` is False);
        returns it with its version.

        See adapters_store.base.HeadStore.put for the ownership and visibility rules.
        """
        task_id = validate_task_id(record.meta.task_id)
        if visibility is not None:
            validate_visibility(visibility)
        folder = self.root / task_id
        with self._write_lock():
            exists = (folder / _CURRENT).exists()
            if not make_current and not exists:
                raise UnknownTask(task_id)  # a version nobody serves needs a current one
            owner_now = _read_owner(folder) if exists else None
            visibility_now = _read_visibility(folder) if exists else PRIVATE
            visibility_new = visibility or visibility_now
            owner = owner_after_put(record, exists, owner_now, acting_tenant, keep_owner)
            versions = self._versions(folder) if exists else []
            version = self._last_version(task_id, folder) + 1
            stored = HeadRecord(replace(record.meta, version=version, owner=owner), record.tensors)
            data = encode_head(stored)
            if acting_tenant is not None:
                tasks, used = self._usage(acting_tenant)
                self.quotas.check(
                    acting_tenant,
                    tasks=tasks + (0 if exists else 1),
                    versions=len(versions) + 1,
                    stored_bytes=used,
                    new_bytes=len(data),
                )
            # The counter first: whatever happens next, this version is spent.
            self._set_last_version(task_id, version)
            created = not folder.exists()
            folder.mkdir(exist_ok=True)
            path = folder / _version_file(version)
            try:
                self._mark(owner, task_id)
                if visibility_new == PUBLIC:
                    self._mark_public(task_id)
                _atomic_write(path, data)
                _atomic_write(folder / _OWNER, (owner or "").encode())
                if visibility_new != _read_visibility(folder):  # absent reads private
                    _atomic_write(folder / _VISIBILITY, visibility_new.encode())
                if make_current:
                    _atomic_write(folder / _CURRENT, str(version).encode())
            except BaseException:
                # Leave nothing behind: the previous CURRENT and OWNER still stand
                # (OWNER is rewritten from the current version if it was replaced).
                path.unlink(missing_ok=True)
                if created:
                    shutil.rmtree(folder, ignore_errors=True)
                elif exists:
                    _restore_owner(folder)
                    _write_visibility_quietly(folder, visibility_now)
                if owner != owner_now:
                    self._unmark(owner, task_id)
                if visibility_now != PUBLIC:
                    self._unmark_public(task_id)
                raise
            if owner != owner_now:
                self._unmark(owner_now, task_id)
            if visibility_new != PUBLIC:
                self._unmark_public(task_id)
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
            return int((self.root / validate_task_id(task_id) / _CURRENT).read_text())
        except FileNotFoundError:
            raise UnknownTask(f"task {task_id!r} is not registered") from None

    def versions(self, task_id: str) -> list[int]:
        return self._versions(self._folder(task_id))

    def owner(self, task_id: str) -> str | None:
        return _read_owner(self._folder(task_id))

    def access(self, task_id: str) -> TaskAccess:
        folder = self._folder(task_id)
        return TaskAccess(_read_owner(folder), _read_visibility(folder))

    def set_visibility(self, task_id: str, visibility: str) -> None:
        """Admin only: the marker goes in before VISIBILITY says public, out after."""
        validate_visibility(visibility)
        with self._write_lock():
            folder = self._folder(task_id)
            if visibility == PUBLIC:
                self._mark_public(task_id)
            _atomic_write(folder / _VISIBILITY, visibility.encode())
            if visibility != PUBLIC:
                self._unmark_public(task_id)

    def set_current(self, task_id: str, version: int, acting_tenant: str | None = None) -> None:
        """Rollback (or forward): serve an existing version again; its owner owns the task."""
        with self._write_lock():
            folder = self._folder(task_id)
            if acting_tenant is not None and _read_owner(folder) != acting_tenant:
                raise UnknownTask(f"task {task_id!r} is not registered")
            path = folder / _version_file(version)
            try:
                version_owner = embedded_owner(path.read_bytes())
            except FileNotFoundError:
                raise UnknownTask(f"task {task_id!r} has no version {version}") from None
            if acting_tenant is not None and version_owner != acting_tenant:
                # Written before an admin gave the task to this tenant: not theirs.
                raise UnknownTask(f"task {task_id!r} has no version {version}")
            owner_now = _read_owner(folder)
            self._mark(version_owner, task_id)
            _atomic_write(folder / _OWNER, (version_owner or "").encode())
            try:
                _atomic_write(folder / _CURRENT, str(version).encode())
            except BaseException:
                _restore_owner(folder)
                raise
            if version_owner != owner_now:
                self._unmark(owner_now, task_id)

    def delete(self, task_id: str, acting_tenant: str | None = None) -> None:
        """Remove the task and its versions; its version counter stays."""
        with self._write_lock():
            folder = self._folder(task_id)
            owner = _read_owner(folder)
            if acting_tenant is not None and owner != acting_tenant:
                raise UnknownTask(f"task {task_id!r} is not registered")
            # Folders written before the counter existed: record their last version.
            self._set_last_version(task_id, self._last_version(task_id, folder))
            # Rename first so readers never see a half-deleted folder.
            trash = self.root / f".deleted-{task_id}-{os.getpid()}-{id(folder)}"
            folder.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
            self._unmark(owner, task_id)
            self._unmark_public(task_id)

    def task_ids(self, owner: str | None = None) -> list[str]:
        """All task ids, or only those `owner` owns (from the index: O(owner's tasks))."""
        if owner is None or not (self.root / _OWNERS).is_dir():
            ids = sorted(
                p.name for p in self.root.iterdir() if not p.name.startswith(".") and _is_task(p)
            )
            return ids if owner is None else [t for t in ids if self.owns(owner, t)]
        index = self._index(owner)
        marked = sorted(p.name for p in index.iterdir()) if index.is_dir() else []
        return [t for t in marked if self.owns(owner, t)]  # a stale marker is skipped

    def public_task_ids(self) -> list[str]:
        """Every public task id (from the index when it exists, else a scan)."""
        index = self.root / _PUBLIC
        if index.is_dir():
            candidates = sorted(p.name for p in index.iterdir())
        else:
            candidates = sorted(p.name for p in self.root.iterdir() if not p.name.startswith("."))
        return [t for t in candidates if self.is_public(t)]  # stale markers skipped

    def is_public(self, task_id: str) -> bool:
        folder = self.root / task_id
        return _is_task(folder) and _read_visibility(folder) == PUBLIC

    def owns(self, owner: str, task_id: str) -> bool:
        folder = self.root / task_id
        return _is_task(folder) and _read_owner(folder) == owner

    def _usage(self, tenant: str) -> tuple[int, int]:
        """(tasks, stored bytes) of `tenant`, O(its tasks), under the write lock."""
        tasks = used = 0
        for task_id in self.task_ids(tenant):
            tasks += 1
            used += sum(p.stat().st_size for p in (self.root / task_id).glob("v*.safetensors"))
        return tasks, used

    def _folder(self, task_id: str) -> Path:
        folder = self.root / validate_task_id(task_id)
        if not (folder / _CURRENT).exists():
            raise UnknownTask(f"task {task_id!r} is not registered")
        return folder

    def _last_version(self, task_id: str, folder: Path) -> int:
        counted = _read_text(self.root / _COUNTERS / task_id)
        on_disk = self._versions(folder) if folder.exists() else []
        return max([int(counted) if counted.isdigit() else 0, *on_disk])

    def _set_last_version(self, task_id: str, version: int) -> None:
        (self.root / _COUNTERS).mkdir(exist_ok=True)
        _atomic_write(self.root / _COUNTERS / task_id, str(version).encode())

    def _index(self, owner: str) -> Path:
        # Owners are free text an admin may set: hashed, never a path.
        return self.root / _OWNERS / hashlib.sha256(owner.encode()).hexdigest()[:40]

    def _mark(self, owner: str | None, task_id: str) -> None:
        if owner:
            index = self._index(owner)
            index.mkdir(parents=True, exist_ok=True)
            (index / task_id).touch()

    def _unmark(self, owner: str | None, task_id: str) -> None:
        if owner:
            (self._index(owner) / task_id).unlink(missing_ok=True)

    def _mark_public(self, task_id: str) -> None:
        (self.root / _PUBLIC).mkdir(exist_ok=True)
        (self.root / _PUBLIC / task_id).touch()

    def _unmark_public(self, task_id: str) -> None:
        (self.root / _PUBLIC / task_id).unlink(missing_ok=True)

    def _build_public_index(self) -> None:
        """Once per store, under the lock: index public folders written before the index."""
        building = self.root / ".public-building"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        for folder in self.root.iterdir():
            if not folder.name.startswith(".") and self.is_public(folder.name):
                (building / folder.name).touch()
        building.rename(self.root / _PUBLIC)

    def _build_index(self) -> None:
        """Once per store, under the lock: index folders written before the index existed."""
        building = self.root / ".owners-building"
        shutil.rmtree(building, ignore_errors=True)
        for folder in self.root.iterdir():
            owner = _read_owner(folder) if not folder.name.startswith(".") else None
            if owner and _is_task(folder):
                index = building / self._index(owner).name
                index.mkdir(parents=True, exist_ok=True)
                (index / folder.name).touch()
        building.mkdir(exist_ok=True)
        building.rename(self.root / _OWNERS)

    @staticmethod
    def _versions(folder: Path) -> list[int]:
        return sorted(
            int(p.stem[1:]) for p in folder.glob("v*.safetensors") if p.stem[1:].isdigit()
        )

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        # Outside every task folder, never removed: a writer waiting on it cannot
        # find it renamed away by a DELETE (flock is per open file, so threads and
        # processes holding their own DiskStore exclude each other too).
        locks = self.root / _LOCKS
        locks.mkdir(exist_ok=True)
        with open(locks / "write.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not (self.root / _OWNERS).is_dir():
                    self._build_index()
                if not (self.root / _PUBLIC).is_dir():
                    self._build_public_index()
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _is_task(folder: Path) -> bool:
    return (folder / _CURRENT).exists()


def _read_owner(folder: Path) -> str | None:
    return _read_text(folder / _OWNER) or None


def _read_visibility(folder: Path) -> str:
    return PUBLIC if _read_text(folder / _VISIBILITY).strip() == PUBLIC else PRIVATE


def _write_visibility_quietly(folder: Path, visibility: str) -> None:
    try:
        _atomic_write(folder / _VISIBILITY, visibility.encode())
    except Exception:  # the original error matters more
        logger.exception("could not restore VISIBILITY of %s", folder.name)


def _restore_owner(folder: Path) -> None:
    """OWNER follows the current version's file: rewrite it from there."""
    try:
        current = int((folder / _CURRENT).read_text())
        owner = embedded_owner((folder / _version_file(current)).read_bytes())
        _atomic_write(folder / _OWNER, (owner or "").encode())
    except Exception:  # the original error matters more; a later write repairs OWNER
        logger.exception("could not restore OWNER of %s", folder.name)


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

    def __init__(self, root: str | Path, quotas: Quotas | None = None) -> None:
        self.disk = DiskStore(root, quotas)
        self._watchers: list[asyncio.Queue[str]] = []

    async def put(
        self,
        record: HeadRecord,
        acting_tenant: str | None = None,
        keep_owner: bool = False,
        visibility: str | None = None,
        make_current: bool = True,
    ) -> HeadRecord:
        stored = await asyncio.to_thread(
            self.disk.put, record, acting_tenant, keep_owner, visibility, make_current
        )
        self._notify(stored.meta.task_id)
        return stored

    async def get_bytes(self, task_id: str, version: int | None = None) -> bytes:
        return await asyncio.to_thread(self.disk.get_bytes, task_id, version)

    async def current_version(self, task_id: str) -> int:
        return await asyncio.to_thread(self.disk.current_version, task_id)

    async def owner(self, task_id: str) -> str | None:
        return await asyncio.to_thread(self.disk.owner, task_id)

    async def access(self, task_id: str) -> TaskAccess:
        return await asyncio.to_thread(self.disk.access, task_id)

    async def set_visibility(self, task_id: str, visibility: str) -> None:
        await asyncio.to_thread(self.disk.set_visibility, task_id, visibility)
        self._notify(task_id)

    async def versions(self, task_id: str) -> list[int]:
        return await asyncio.to_thread(self.disk.versions, task_id)

    async def set_current(
        self, task_id: str, version: int, acting_tenant: str | None = None
    ) -> None:
        await asyncio.to_thread(self.disk.set_current, task_id, version, acting_tenant)
        self._notify(task_id)

    async def delete(self, task_id: str, acting_tenant: str | None = None) -> None:
        await asyncio.to_thread(self.disk.delete, task_id, acting_tenant)
        self._notify(task_id)

    async def list_tasks(
        self, offset: int, limit: int, owner: str | None = None, with_public: bool = False
    ) -> tuple[list[str], int]:
        ids = await asyncio.to_thread(self._ids, owner, with_public)
        return ids[offset : offset + limit], len(ids)

    def _ids(self, owner: str | None, with_public: bool) -> list[str]:
        ids = self.disk.task_ids(owner)
        if with_public and owner is not None:
            ids = sorted(set(ids) | set(self.disk.public_task_ids()))
        return ids

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
