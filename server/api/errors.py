"""The one place domain errors become HTTP: status, stable code, message.

Body shape follows OpenAI's so their clients surface our messages:
    {"error": {"code": "unknown_task", "message": "...", "type": "not_found"}}
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from server import errors as e
from server.api.limits import RequestTimeout
from server.auth import Unauthorized
from server.observability.log_safety import printable

logger = logging.getLogger(__name__)

# Most specific first: the first matching class decides.
STATUS: list[tuple[type[Exception], int]] = [
    (Unauthorized, 401),
    (e.UnknownTask, 404),
    (e.InvalidTaskId, 422),
    (e.HeadRejected, 422),
    (RequestTimeout, 408),
    (e.AudioTooLong, 413),
    (e.PayloadTooLarge, 413),
    (e.AudioDecodeError, 400),
    (e.InvalidRequest, 400),
    (e.InvalidVisibility, 400),
    (e.QuotaExceeded, 429),
    (e.TooManyStreams, 429),
    (e.Overloaded, 503),
    (e.SlotPoolExhausted, 503),
    (e.StoreUnavailable, 503),
    (e.DeadlineExceeded, 504),
    (e.BatchFailed, 500),
    (e.InferenceFailed, 500),
    (e.ClientGone, 499),
]

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
HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}


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


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    kind = KIND.get(status, "invalid_request" if status < 500 else "server_error")
    body = {"error": {"code": code, "message": message, "type": kind}}
    return JSONResponse(body, status_code=status, headers=headers)


def _status_for(exc: Exception) -> int:
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


def status_for(exc: Exception) -> int:
    """The HTTP status of a domain error (also for errors sent inside a stream)."""
    return _status_for(exc)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    status = _status_for(exc)
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, e.Overloaded) else None
    if status >= 500 and status not in (503, 504):
        logger.error("request %s failed: %s", printable(request.url.path), printable(exc))
    return error_response(status, exc.code, str(exc), headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    return error_response(422, "validation_error", details or "invalid request")


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    code = HTTP_CODES.get(status, "invalid_request" if status < 500 else "internal_error")
    return error_response(status, code, str(exc.detail), getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s", printable(request.url.path))
    return error_response(500, "internal_error", "internal server error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.StoreError, _domain_error)
    app.add_exception_handler(e.ServingError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
