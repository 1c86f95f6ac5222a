"""Fine-tuning jobs in the shape of OpenAI's /v1/fine_tuning/jobs.

Differences, plainly: `model` names the task whose head is trained (a new task or one
the caller owns), not a base model; `hyperparameters` are ours (steps, learning_rate,
head_type, rank, speeds, tempos, vocabulary_from_data, max_frames), OpenAI's n_epochs,
batch_size and learning_rate_multiplier are refused; `promote` (always | if_better |
never) is ours; `GET .../events?stream=true` streams events as server-sent events.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from server.api.deps import Caller, Jobs
from server.jobs.records import TERMINAL

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])
JobId = Annotated[str, Path(min_length=1, max_length=64)]
POLL_S = 0.5


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(max_length=128, description="the task id the new head is trained for")
    training_file: str = Field(max_length=64)
    validation_file: str | None = Field(default=None, max_length=64)
    hyperparameters: dict = Field(default_factory=dict, max_length=16)
    promote: str = Field(default="if_better", max_length=16)


@router.post("")
async def create(body: JobRequest, jobs: Jobs, caller: Caller) -> dict:
    record = await jobs.create_job(
        body.model,
        body.training_file,
        body.validation_file,
        body.hyperparameters,
        body.promote,
        caller,
    )
    return record.openai()


@router.get("")
async def list_jobs(
    jobs: Jobs,
    caller: Caller,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    records = await jobs.list_jobs(caller)
    if after is not None:
        ids = [r.id for r in records]
        records = records[ids.index(after) + 1 :] if after in ids else []
    page = records[:limit]
    return {
        "object": "list",
        "data": [r.openai() for r in page],
        "has_more": len(records) > limit,
    }


@router.get("/{job_id}")
async def retrieve(job_id: JobId, jobs: Jobs, caller: Caller) -> dict:
    return (await jobs.get_job(job_id, caller)).openai()


@router.post("/{job_id}/cancel")
async def cancel(job_id: JobId, jobs: Jobs, caller: Caller) -> dict:
    return (await jobs.cancel_job(job_id, caller)).openai()


@router.get("/{job_id}/events", response_model=None)
async def events(
    job_id: JobId,
    jobs: Jobs,
    caller: Caller,
    stream: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
):
    """Newest first, like OpenAI's list; `stream=true`: every event oldest first as
    server-sent events (`data: {...}`), then `data: [DONE]` once the job has ended."""
    found = await jobs.events(job_id, caller)  # 404 before any stream starts
    if not stream:
        newest = list(reversed(found))
        return {"object": "list", "data": newest[:limit], "has_more": len(found) > limit}
    bound_s = jobs.settings.jobs.max_train_seconds + 3600
    lease = jobs.open_event_stream(caller)  # 429 before any stream starts

    async def sse():
        sent, began = 0, time.monotonic()
        try:
            while time.monotonic() - began < bound_s:
                new = await jobs.events(job_id, caller, after=sent)
                for event in new:
                    yield f"data: {json.dumps(event)}\n\n"
                sent += len(new)
                if not new:
                    if (await jobs.get_job(job_id, caller)).status in TERMINAL:
                        if not await jobs.events(job_id, caller, after=sent):
                            break
                    await asyncio.sleep(POLL_S)
            yield "data: [DONE]\n\n"
        finally:
            lease.release()

    return StreamingResponse(sse(), media_type="text/event-stream")
