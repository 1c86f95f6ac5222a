"""GET /v1/models and /v1/models/{id}: OpenAI's model list, as the tasks a caller may use.

The `openai` client's `models.list()` and `models.retrieve(id)` work against these.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from server.api.deps import Caller, Served
from server.serving.discovery import ModelEntry, get_model, list_models

router = APIRouter(prefix="/v1/models", tags=["models"])
MAX_OFFSET = 2**62  # Redis ranges are signed 64-bit: offset + limit must fit


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
    has_more: bool
    total: int


def _model(entry: ModelEntry) -> Model:
    return Model(id=entry.id, created=entry.created, owned_by=entry.owned_by)


@router.get("", response_model=ModelList)
async def models(
    runtime: Served,
    caller: Caller,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> ModelList:
    """ "base" and the tasks the caller may use, sorted by id; at most
    HRA_DISCOVERY__MAX_MODELS_LISTED per answer (page on with `offset`)."""
    cap = runtime.settings.discovery.max_models_listed
    page = await list_models(runtime.heads, caller, offset, min(limit or cap, cap))
    return ModelList(
        data=[_model(e) for e in page.entries], has_more=page.has_more, total=page.total
    )


@router.get("/{model_id}", response_model=Model)
async def model(
    model_id: Annotated[str, Path(min_length=1, max_length=128)],
    runtime: Served,
    caller: Caller,
) -> Model:
    return _model(await get_model(runtime.heads, caller, model_id))
