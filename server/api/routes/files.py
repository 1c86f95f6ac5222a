"""Datasets for fine-tuning, in the shape of OpenAI's /v1/files (purpose "fine-tune").

The upload is a zip holding manifest.jsonl ({"audio": "<member>", "text": "..."} per
line) and those audio files; every item is checked like a transcription upload.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, UploadFile

from server.api.deps import Caller, Jobs
from server.errors import InvalidRequest, PayloadTooLarge

router = APIRouter(prefix="/v1/files", tags=["fine-tuning"])
FileId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post("")
async def upload(
    jobs: Jobs,
    caller: Caller,
    file: Annotated[UploadFile, File(description="zip: manifest.jsonl + audio files")],
    purpose: Annotated[str, Form(max_length=32)] = "fine-tune",
) -> dict:
    if purpose != "fine-tune":
        raise InvalidRequest('purpose must be "fine-tune" (the only kind of file kept here)')
    limit = jobs.settings.jobs.max_dataset_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"dataset is larger than {limit} bytes")
    dataset = await jobs.create_dataset(data, file.filename or "dataset.zip", caller)
    return dataset.openai()


@router.get("")
async def list_files(jobs: Jobs, caller: Caller) -> dict:
    return {"object": "list", "data": [d.openai() for d in await jobs.list_datasets(caller)]}


@router.get("/{file_id}")
async def retrieve(file_id: FileId, jobs: Jobs, caller: Caller) -> dict:
    return (await jobs.get_dataset(file_id, caller)).openai()


@router.delete("/{file_id}")
async def delete(file_id: FileId, jobs: Jobs, caller: Caller) -> dict:
    """Deletes the dataset's audio and transcripts (a job already training keeps its
    features in memory; a queued one fails with `dataset_missing`)."""
    await jobs.delete_dataset(file_id, caller)
    return {"id": file_id, "object": "file", "deleted": True}
