"""Seeding a head store with the model directory's shipped heads.

The model directory (`models/default/heads/`) is committed and read-only at run time:
the server never writes into it. Two ways its heads reach a store:

- `seed_state_dir`: the embedded default (`HRA_STORE=disk`, no HRA_DISK_STORE_PATH) keeps
  its DiskStore under HRA_STATE_DIR; on first start that folder is made as a copy of the
  shipped heads (a temporary sibling renamed into place, so a crash leaves no half copy).
  Later starts leave it alone: a task the user deleted stays deleted.
- `seed_store` (`hra seed-store`): copies every shipped head into the configured store,
  disk or Redis. Idempotent: a task whose current head has the same fingerprint, type,
  vocabulary and tensor bytes is skipped; one that differs (or is missing) gets the shipped
  head as a new version, so a re-run after a model rebuild updates, never duplicates.

Each shipped task carries its visibility (`<task>/VISIBILITY`: the shipped heads are
"public", usable by every tenant). `seed_store` writes it with the head, as admin, and
gives a skipped task the shipped visibility too, so seeding a store that predates
visibility makes the shipped heads public (an admin who wants one private sets it
after seeding; a re-run of seed-store makes it public again).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from adapters_store.base import HeadStore
from adapters_store.disk_store import DiskStore
from adapters_store.errors import UnknownTask
from adapters_store.head_format import HeadRecord, decode_head

if TYPE_CHECKING:  # read by attribute: this layer imports nothing of the server's
    from server.config import Settings

logger = logging.getLogger(__name__)


def seed_state_dir(settings: Settings) -> bool:
    """Make the default DiskStore folder as a copy of the shipped heads, if it does not exist.

    Only for the default location under the state dir: an HRA_DISK_STORE_PATH override is
    used as is. Returns whether a copy was made.
    """
    if settings.store.value != "disk" or settings.disk_store_path is not None:
        return False
    target, seed = settings.heads_path, settings.seed_heads_path
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".seeding-") as tmp:
        staged = Path(tmp) / "heads"
        if seed.is_dir():
            shutil.copytree(seed, staged, ignore=shutil.ignore_patterns(".lock", ".locks"))
        else:
            staged.mkdir()
        staged.rename(target)
    logger.info("state: seeded %s with a copy of %s", target, seed)
    return True


@dataclass
class SeedReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def same_head(a: HeadRecord, b: HeadRecord) -> bool:
    """Same fingerprint, type, rank, vocabulary and tensor bytes (versions and dates aside)."""
    if (a.meta.fingerprint, a.meta.head_type, a.meta.rank, a.meta.vocabulary) != (
        b.meta.fingerprint,
        b.meta.head_type,
        b.meta.rank,
        b.meta.vocabulary,
    ):
        return False
    if a.tensors.keys() != b.tensors.keys():
        return False
    return all(
        a.tensors[k].dtype == b.tensors[k].dtype and torch.equal(a.tensors[k], b.tensors[k])
        for k in a.tensors
    )


async def seed_store(store: HeadStore, seed: Path) -> SeedReport:
    """Put every head of the DiskStore folder `seed` into `store` unless already there."""
    report = SeedReport()
    if not seed.is_dir():
        return report
    shipped = DiskStore(seed)  # reads only: nothing is written into the model directory
    for task_id in shipped.task_ids():
        record = shipped.get(task_id)
        visibility = shipped.access(task_id).visibility
        try:
            current = decode_head(await store.get_bytes(task_id))
        except UnknownTask:
            current = None
        if current is not None and same_head(current, record):
            if (await store.access(task_id)).visibility != visibility:
                await store.set_visibility(task_id, visibility)
            report.skipped.append(task_id)
            continue
        await store.put(record, visibility=visibility)  # as admin: the shipped owner is kept
        (report.updated if current is not None else report.added).append(task_id)
    logger.info(
        "seeded from %s: %d added, %d updated, %d already there",
        seed,
        len(report.added),
        len(report.updated),
        len(report.skipped),
    )
    return report


async def hint_if_empty(store: HeadStore, settings: Settings) -> bool:
    """Log how to seed a store that holds no task at all; returns whether it was empty."""
    try:
        tasks, _ = await store.list_tasks(0, 1)
    except Exception:  # an unreachable store is readiness's business, not start-up's
        return False
    if tasks:
        return False
    logger.warning(
        "the %s store holds no tasks: only 'base' can be transcribed. "
        "Copy the shipped heads of %s into it with `hra seed-store` (idempotent)",
        settings.store.value,
        settings.seed_heads_path,
    )
    return True
