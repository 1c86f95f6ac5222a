"""WebSocket /v1/realtime: live transcription, OpenAI Realtime's transcription events.

The socket is the transport only: the protocol, VAD and model passes are
server/live/. The caller comes from server/api/auth_gate.py (headers or the
`openai-insecure-api-key.<key>` subprotocol); the task is the `model` (or `task_id`)
query parameter or the session's `input_audio_transcription.model`, default `base`.
"""

from __future__ import annotations

import asyncio
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from server.api.auth_gate import PRINCIPAL_KEY
from server.errors import HraError, shown
from server.live import protocol
from server.live.errors import SlowConsumer
from server.live.session import LiveStream
from server.observability.log_safety import printable
from server.serving.request import BASE_TASK

logger = logging.getLogger(__name__)
router = APIRouter(tags=["realtime"])

# An error's close code is its class's (server/errors.py); 1000 is a normal close.
CLOSE_TIMEOUT_S = 2.0


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    runtime = websocket.app.state.runtime
    hub = websocket.app.state.streams
    caller = websocket.scope[PRINCIPAL_KEY]
    query = websocket.query_params
    # bounded for the log, one past the longest valid id: an overlong id stays invalid
    task_id = (query.get("model") or query.get("task_id") or BASE_TASK)[:129]
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
    timeout = runtime.settings.streaming.send_timeout_s

    async def send(event: dict) -> None:
        try:
            await asyncio.wait_for(websocket.send_text(json.dumps(event)), timeout)
        except TimeoutError:
            raise SlowConsumer(f"an event was not read within {timeout:g} s") from None

    async def receive() -> str | bytes | None:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        return message.get("text") if message.get("text") is not None else message.get("bytes")

    code, reason = 1000, "disconnect"
    try:
        lease = hub.open(caller)
    except HraError as exc:
        return await _close_with(websocket, send, shown(exc, "the stream failed"))
    stream = LiveStream(runtime.transcription, hub, caller, send, task_id)
    try:
        reason = await stream.run(receive)
    except (WebSocketDisconnect, RuntimeError) as exc:  # the socket went away mid-send
        reason = type(exc).__name__
    except Exception as exc:  # typed: its code and close code; a bug: internal_error, 1011
        error = shown(exc, "the stream failed")
        if error is not exc:  # a bug ends this stream only
            logger.exception("stream %s failed", stream.id)
        reason = error.code
        if not isinstance(error, SlowConsumer):  # a client that does not read gets no event
            return await _close_with(websocket, send, error)
        code = error.close_code
    finally:
        lease.release()
        logger.info("stream %s closed: %s", stream.id, printable(reason))
    if websocket.client_state == WebSocketState.CONNECTED:
        await _close(websocket, code)


async def _close_with(websocket: WebSocket, send, exc: HraError) -> None:
    """An `error` event with the stable code, then the close with the error's close code."""
    try:
        await send(protocol.error_event(exc))
    except (HraError, WebSocketDisconnect, RuntimeError):
        pass
    await _close(websocket, exc.close_code)


async def _close(websocket: WebSocket, code: int) -> None:
    """The close handshake, bounded: a client that reads nothing never takes our close
    frame (uvicorn drops the connection once the handler returns)."""
    try:
        await asyncio.wait_for(websocket.close(code), CLOSE_TIMEOUT_S)
    except (RuntimeError, WebSocketDisconnect, TimeoutError):
        pass
