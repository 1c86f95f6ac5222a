"""Which models (the backbone and tasks) a caller may use, in OpenAI's models shape.

GET /v1/models lists "base" and then, sorted by id, every task the caller may use: an
admin's are all tasks, a tenant's are its own and the public ones. The list reads no
head: each entry's `created` is 0 and `owned_by` comes from the store's owner record
("system" for a task with no owner, like the shipped ones). GET /v1/models/{id} reads
the task's current head and answers its creation time. A task the caller may not use
answers 404 unknown_task, exactly like a missing one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from adapters_store.errors import UnknownTask
from server.auth import Principal
from server.serving.heads import HeadRegistry
from server.serving.request import BASE_TASK

logger = logging.getLogger(__name__)
SYSTEM_OWNER = "system"


@dataclass(frozen=True)
class ModelEntry:
    id: str
    created: int
    owned_by: str


@dataclass(frozen=True)
class ModelPage:
    entries: list[ModelEntry]
    total: int  # "base" included
    has_more: bool


async def list_models(heads: HeadRegistry, caller: Principal, offset: int, limit: int) -> ModelPage:
    """Entries `offset` .. `offset + limit` of ["base", *usable task ids]."""
    entries: list[ModelEntry] = []
    if offset == 0:
        entries.append(ModelEntry(BASE_TASK, 0, SYSTEM_OWNER))
    first = max(offset - 1, 0)
    ids, tasks = await heads.list_usable(first, limit - len(entries), caller)
    for task_id in ids:
        try:
            access = await heads.access(task_id, caller)
        except UnknownTask:  # deleted (or made private) since the listing: leave it out
            continue
        entries.append(ModelEntry(task_id, 0, access.owner or SYSTEM_OWNER))
    total = tasks + 1
    return ModelPage(entries, total, has_more=first + len(ids) < tasks)


async def get_model(heads: HeadRegistry, caller: Principal, model_id: str) -> ModelEntry:
    """One model the caller may use; UnknownTask (404) otherwise."""
    if model_id == BASE_TASK:
        return ModelEntry(BASE_TASK, 0, SYSTEM_OWNER)
    record, _, _ = await heads.info(model_id, caller)
    return ModelEntry(model_id, int(record.meta.created_at), record.meta.owner or SYSTEM_OWNER)
