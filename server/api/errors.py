"""The one place errors become HTTP: each error's status and stable code are read off its
class (server/errors.py); one handler serves the whole taxonomy.

Body shape follows OpenAI's so their clients surface our messages:
    {"error": {"code": "unknown_task", "message": "...", "type": "not_found"}}
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from server import errors as e
from server.observability.log_safety import printable

logger = logging.getLogger(__name__)

# The error `type` (OpenAI's coarse class) per status; anything else 5xx is a server error.
KIND = {
    400: "invalid_request",
    401: "authentication",
    404: "not_found",
    405: "invalid_request",
    408: "timeout",
    413: "too_large",
    499: "client_closed_request",
    422: "invalid_request",
    429: "quota_exceeded",
    503: "unavailable",
    504: "timeout",
}
# Framework-raised HTTP errors (no route, wrong method, a body FastAPI could not parse).
HTTP_ERRORS = {c.status: c for c in (e.InvalidRequest, e.UnknownPath, e.MethodNotAllowed)}
HTTP_CODES = {status: cls.code for status, cls in HTTP_ERRORS.items()}


class ErrorDetail(BaseModel):
    code: str
    message: str
    type: str


class ErrorBody(BaseModel):
    error: ErrorDetail


# Every route may answer these; listed once for the OpenAPI schema.
DOCUMENTED_ERRORS = {
    status: {"model": ErrorBody, "description": text}
    for status, text in [
        (400, "invalid request or audio"),
        (401, "missing or invalid API key"),
        (404, "unknown task"),
        (405, "method not allowed"),
        (408, "request body not received in time"),
        (413, "audio or body too large"),
        (422, "validation error or rejected head"),
        (429, "a tenant quota (tasks, versions, stored bytes) would be exceeded"),
        (500, "batch failed or internal error"),
        (503, "overloaded or store unavailable"),
        (504, "deadline exceeded"),
    ]
}


def kind_for(status: int) -> str:
    return KIND.get(status, "invalid_request" if status < 500 else "server_error")


def error_body(exc: e.HraError) -> dict:
    """The `error` object of a body or an SSE event: its code, message and type."""
    return {"code": exc.code, "message": str(exc), "type": kind_for(exc.status)}


def error_response(exc: e.HraError, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error_body(exc)}, status_code=exc.status, headers=headers)


async def send_error(send: Send, exc: e.HraError) -> None:
    """error_response's body, sent by raw ASGI (middleware, before any app)."""
    body = json.dumps({"error": error_body(exc)}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def status_for(exc: Exception) -> int:
    """The HTTP status of an error as a client sees it (also for errors inside a stream)."""
    return e.shown(exc).status


async def _domain_error(request: Request, exc: e.HraError) -> JSONResponse:
    if not exc.public:
        return await _unexpected(request, exc)
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, e.Overloaded) else None
    if exc.status >= 500 and exc.status not in (503, 504):
        logger.error("request %s failed: %s", printable(request.url.path), printable(exc))
    return error_response(exc, headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    return error_response(e.ValidationFailed(details or "invalid request"))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Any other status gets the generic code of its class: InvalidRequest's or the root's.
    status = exc.status_code
    code = HTTP_CODES.get(status, "invalid_request" if status < 500 else "internal_error")
    body = {"error": {"code": code, "message": str(exc.detail), "type": kind_for(status)}}
    return JSONResponse(body, status_code=status, headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s", printable(request.url.path))
    return error_response(e.shown(exc))


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.HraError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
