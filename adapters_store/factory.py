"""The configured head store: the embedded DiskStore, or Redis.

Settings are read by attribute (server.config.Settings: `store`, `redis_url`,
`redis_prefix`, `quotas`, `heads_path`), so this layer imports nothing of the server's.
The default DiskStore lives in the state dir, made on first open as a copy of the model
directory's shipped heads (adapters_store/seeding.py), which are never written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters_store.base import HeadStore, Quotas
from adapters_store.disk_store import AsyncDiskStore
from adapters_store.redis_store import RedisStore
from adapters_store.seeding import seed_state_dir

if TYPE_CHECKING:
    from server.config import Settings


def make_store(settings: Settings) -> HeadStore:
    quotas = Quotas(**settings.quotas.model_dump())
    if settings.store.value == "redis":
        return RedisStore(
            settings.redis_url.get_secret_value(), settings.redis_prefix, quotas=quotas
        )
    seed_state_dir(settings)
    return AsyncDiskStore(settings.heads_path, quotas)
