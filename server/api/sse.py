"""`stream=true` on /v1/audio/transcriptions: server-sent events as OpenAI defines them.

    data: {"type": "transcript.text.delta", "delta": "..."}     one per window with words,
                                                                 in order, as windows finish
    data: {"type": "transcript.text.done", "text": "..."}       the whole text, last
The deltas concatenate to the done event's text. Every refusal (bad audio, too long,
unknown task) happens before the first event, as an ordinary JSON error with its status;
an error after the stream has started (a window's deadline, an engine failure) ends it
with `data: {"type": "error", "error": {"code", "message", "type"}}`, which the official
`openai` client raises as an APIError. A client that disconnects closes the stream: the
windows not yet submitted never are (server/serving/window_runner.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable

from fastapi.responses import StreamingResponse

from server.api.errors import error_body
from server.errors import HraError
from server.serving.request import Transcription
from server.serving.run import TranscriptionRun

logger = logging.getLogger(__name__)


def event(body: dict) -> bytes:
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n".encode()


async def transcript_events(
    run: TranscriptionRun, finish: Callable[[TranscriptionRun], Transcription]
) -> AsyncIterator[bytes]:
    try:
        async with contextlib.aclosing(run.pieces()) as pieces:
            async for delta in pieces:
                if delta:
                    yield event({"type": "transcript.text.delta", "delta": delta})
        yield event({"type": "transcript.text.done", "text": finish(run).text})
    except HraError as exc:
        if not exc.public:
            raise
        logger.warning("stream %s ended early: %s", run.request_id, exc.code)
        yield event({"type": "error", "error": error_body(exc)})
    finally:
        run.close()  # never read (the response was dropped before its body): release anyway


def streaming_response(run: TranscriptionRun, finish) -> StreamingResponse:
    return StreamingResponse(
        transcript_events(run, finish),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
