"""POST /v1/transcribe (ours) and POST /v1/audio/transcriptions (OpenAI's shape)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from server.api import formats, sse
from server.api.deps import Caller, Transcriber
from server.errors import InvalidRequest
from server.serving.request import BASE_TASK, TranscriptionRequest

router = APIRouter(tags=["transcription"])
RAW_AUDIO_TYPES = ("audio/", "application/octet-stream")


class Timings(BaseModel):
    queue_ms: float
    compute_ms: float


class TranscribeResponse(BaseModel):
    task_id: str
    head_version: int | None
    text: str
    duration_s: float
    timings: Timings


@router.post(
    "/v1/transcribe",
    response_model=TranscribeResponse,
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "task_id": {"type": "string"},
                        },
                        "required": ["file"],
                    }
                },
                "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            }
        }
    },
)
async def transcribe(
    request: Request,
    transcription: Transcriber,
    caller: Caller,
    task_id: Annotated[str | None, Query(max_length=128)] = None,
    language: Annotated[str | None, Query(max_length=32)] = None,
) -> TranscribeResponse:
    """Audio as a multipart `file` or as the raw body; `task_id` omitted means `base`;
    `language` (a code, e.g. `de`) for multilingual models, else the model detects it."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidRequest("multipart request needs a 'file' part with the audio")
        task_id = task_id or form.get("task_id") or None
        audio = await upload.read()
    elif content_type.startswith(RAW_AUDIO_TYPES) or not content_type:
        audio = await request.body()
    else:
        raise InvalidRequest(
            f"content type {content_type!r} is not audio; send audio/* "
            "or multipart/form-data with a 'file' part"
        )
    asked = TranscriptionRequest(audio, str(task_id or BASE_TASK), language)
    result = await transcription.transcribe(asked, caller, gone=request.is_disconnected)
    return TranscribeResponse(
        task_id=result.task_id,
        head_version=result.head_version,
        text=result.text,
        duration_s=round(result.duration_s, 3),
        timings=Timings(queue_ms=round(result.queue_ms, 2), compute_ms=round(result.compute_ms, 2)),
    )


@router.post("/v1/audio/transcriptions")
async def openai_transcriptions(
    request: Request,
    transcription: Transcriber,
    caller: Caller,
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form()] = BASE_TASK,
    response_format: Annotated[str, Form()] = "json",
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    temperature: Annotated[float, Form(ge=0, le=1)] = 0.0,
    timestamp_granularities: Annotated[
        list[str] | None, Form(alias="timestamp_granularities[]")
    ] = None,
    stream: Annotated[bool, Form()] = False,
):
    """OpenAI-compatible: `model` is the task id; `language` a code the model knows
    (unknown: 400 `unsupported_language`); `prompt` conditions Whisper (CTC models
    ignore it); `temperature` is Whisper's first decoding temperature, 0 (the default)
    greedy, with openai-whisper's fallback to higher ones on a loop (CTC: no effect).
    `stream=true` answers server-sent events (server/api/sse.py), with response_format
    json or text."""
    if response_format not in formats.FORMATS:
        raise InvalidRequest(f"response_format must be one of {', '.join(formats.FORMATS)}")
    if stream and response_format not in ("json", "text"):
        raise InvalidRequest("stream=true takes response_format json or text")
    granularities = set(timestamp_granularities or ["segment"])
    if not granularities <= {"word", "segment"}:
        raise InvalidRequest("timestamp_granularities[] takes 'word' and/or 'segment'")
    words = response_format == "verbose_json" and "word" in granularities
    asked = TranscriptionRequest(await file.read(), model, language, words, prompt, temperature)
    if stream:
        run = await transcription.open(asked, caller)
        return sse.streaming_response(run, transcription.finish)
    result = await transcription.transcribe(asked, caller, gone=request.is_disconnected)
    if response_format == "text":
        return PlainTextResponse(result.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(formats.srt(result), media_type="application/x-subrip")
    if response_format == "vtt":
        return PlainTextResponse(formats.vtt(result), media_type="text/vtt")
    if response_format == "verbose_json":
        return JSONResponse(formats.verbose_json(result, with_words="word" in granularities))
    return JSONResponse({"text": result.text})
