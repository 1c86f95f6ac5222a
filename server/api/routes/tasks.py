"""Task heads: register/replace, list, inspect, download, roll back, delete, visibility."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from adapters_store.head_format import HeadRecord
from adapters_store.json_limits import JsonTooDeep, loads_bounded
from server.api.deps import Caller, Heads
from server.auth import Principal
from server.errors import InvalidRequest
from server.serving.heads import HeadRegistry

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
TaskId = Annotated[str, Path(min_length=1, max_length=128)]
MAX_METADATA_FIELD = 8192
MAX_VOCABULARY_FIELD = 131_072
MAX_OFFSET = 2**62  # Redis ranges are signed 64-bit: offset + limit must fit


class HeadInfo(BaseModel):
    task_id: str
    version: int
    head_type: str
    rank: int
    parameters: int
    dtype: str
    fingerprint: str
    created_at: float
    owner: str | None
    description: str | None
    extra: dict
    vocabulary: list[str]


class TaskInfo(HeadInfo):
    versions: list[int]
    visibility: str


class VisibilityChange(BaseModel):
    visibility: str = Field(max_length=16, description='"private" or "public"')


class TaskPage(BaseModel):
    tasks: list[str]
    total: int
    offset: int
    limit: int


def _info(record: HeadRecord) -> dict:
    m = record.meta
    return dict(
        task_id=m.task_id,
        version=m.version,
        head_type=m.head_type,
        rank=m.rank,
        parameters=record.num_parameters,
        dtype=str(next(iter(record.tensors.values())).dtype).removeprefix("torch."),
        fingerprint=m.fingerprint,
        created_at=m.created_at,
        owner=m.owner,
        description=m.description,
        extra=m.extra,
        vocabulary=list(m.vocabulary),
    )


@router.put("/{task_id}", response_model=HeadInfo)
async def register(
    task_id: TaskId,
    heads: Heads,
    caller: Caller,
    file: Annotated[UploadFile, File(description="head as safetensors")],
    metadata: Annotated[str | None, Form(max_length=MAX_METADATA_FIELD)] = None,
    vocabulary: Annotated[
        str | None,
        Form(
            max_length=MAX_VOCABULARY_FIELD,
            description="the task's words, separated by spaces, commas or new lines, or as "
            "a JSON list: transcripts then use only these words; [] clears the head "
            "file's own list; absent keeps it",
        ),
    ] = None,
    visibility: Annotated[
        str | None,
        Form(
            max_length=16,
            description='admins only: "private" or "public"; absent keeps the task\'s '
            "(new tasks are private)",
        ),
    ] = None,
) -> HeadInfo:
    """Register a new head, or a new version of an existing task's head."""
    extra = None
    if metadata:
        try:
            extra = loads_bounded(metadata)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"metadata is not JSON: {exc}") from None
        except JsonTooDeep as exc:
            raise InvalidRequest(f"metadata: {exc}") from None
        if not isinstance(extra, dict):
            raise InvalidRequest("metadata must be a JSON object")
    words = None if vocabulary is None else _words(vocabulary)
    stored = await heads.register(task_id, await file.read(), extra, caller, words, visibility)
    return HeadInfo(**_info(stored))


def _words(field: str) -> list[str]:
    if not field.lstrip().startswith("["):
        return field.replace(",", " ").split()
    try:
        words = loads_bounded(field)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"vocabulary is not a JSON list: {exc}") from None
    except JsonTooDeep as exc:
        raise InvalidRequest(f"vocabulary: {exc}") from None
    return words  # checked (a list of spellable words) with the rest of the head


@router.get("", response_model=TaskPage)
async def list_tasks(
    heads: Heads,
    caller: Caller,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TaskPage:
    ids, total = await heads.list_managed(offset, limit, caller)
    return TaskPage(tasks=ids, total=total, offset=offset, limit=limit)


@router.get("/{task_id}", response_model=TaskInfo)
async def inspect(task_id: TaskId, heads: Heads, caller: Caller) -> TaskInfo:
    return await _task_info(heads, task_id, caller)


async def _task_info(heads: HeadRegistry, task_id: str, caller: Principal) -> TaskInfo:
    """What GET /v1/tasks/{id} answers; PATCH and rollback answer the same after their change."""
    record, versions, visibility = await heads.info(task_id, caller)
    return TaskInfo(**_info(record), versions=versions, visibility=visibility)


@router.patch("/{task_id}", response_model=TaskInfo)
async def change_visibility(
    task_id: TaskId, body: VisibilityChange, heads: Heads, caller: Caller
) -> TaskInfo:
    """Admins only: make a task private (its owner's alone) or public (every tenant's)."""
    await heads.set_visibility(task_id, body.visibility, caller)
    return await _task_info(heads, task_id, caller)


@router.get(
    "/{task_id}/head",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download(task_id: TaskId, heads: Heads, caller: Caller):
    """The current version's safetensors file, metadata included: uploads again as is."""
    data = await heads.download(task_id, caller)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{task_id}.safetensors"'},
    )


class RollbackRequest(BaseModel):
    version: int


@router.post("/{task_id}/rollback", response_model=TaskInfo)
async def rollback(
    task_id: TaskId, body: RollbackRequest, heads: Heads, caller: Caller
) -> TaskInfo:
    await heads.rollback(task_id, body.version, caller)
    return await _task_info(heads, task_id, caller)


@router.delete("/{task_id}", status_code=204, response_class=Response)
async def delete(task_id: TaskId, heads: Heads, caller: Caller):
    await heads.delete(task_id, caller)
    return Response(status_code=204)
