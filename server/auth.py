"""API keys: who is calling, and which tasks they may see.

Admin keys manage every task; tenant keys transcribe with and manage only the
tasks their tenant owns (the `owner` in head metadata), and may also use (not
download or change) tasks an admin made public. Another tenant's private task
answers 404, exactly like a task that does not exist, so ids never leak.
Keys are compared as SHA-256 digests with hmac.compare_digest against every
configured key (no early exit) and are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from adapters_store.base import TaskAccess
from server.config import ApiKey
from server.errors import Unauthorized, UnknownTask  # Unauthorized: re-exported

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    tenant: str | None
    admin: bool

    @property
    def acting_tenant(self) -> str | None:
        """The tenant a write or a charge acts for; None for an admin (any task, no quota)."""
        return None if self.admin else self.tenant

    def may_use(self, owner: str | None) -> bool:
        return self.admin or (owner is not None and owner == self.tenant)

    def check_owner(self, task_id: str, owner: str | None) -> None:
        """Raise the same error as for a missing task: existence must not leak."""
        if not self.may_use(owner):
            raise UnknownTask(f"task {task_id!r} is not registered")

    def check_access(self, task_id: str, access: TaskAccess) -> None:
        """Use (transcribe, inspect, list): its owner, an admin, or anyone if public."""
        if not access.public:
            self.check_owner(task_id, access.owner)


OPEN = Principal(tenant=None, admin=True)


class KeyRing:
    def __init__(self, keys: list[ApiKey]) -> None:
        for k in keys:
            if not k.admin and not k.tenant:
                raise ValueError("a non-admin API key needs a tenant")
        self._entries = [
            (_digest(k.key.get_secret_value()), Principal(k.tenant, k.admin)) for k in keys
        ]

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def load(cls, inline: list[ApiKey], keys_file: Path | None) -> KeyRing:
        keys = list(inline)
        if keys_file is not None:
            keys += [ApiKey(**entry) for entry in json.loads(keys_file.read_text())]
        return cls(keys)

    def authenticate(self, presented: str | None) -> Principal:
        if not presented:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        digest = _digest(presented)
        found = None
        for known, principal in self._entries:  # compare against all: no timing shortcut
            if hmac.compare_digest(known, digest):
                found = principal
        if found is None:
            raise Unauthorized("invalid API key")
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
