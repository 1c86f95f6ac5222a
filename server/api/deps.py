"""FastAPI dependencies: the process's runtime, its use cases and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from server.api.auth_gate import PRINCIPAL_KEY
from server.auth import Principal
from server.errors import Unauthorized
from server.jobs.service import JobService
from server.runtime import Runtime
from server.serving.heads import HeadRegistry
from server.serving.transcription import TranscriptionService

# Declared for the OpenAPI schema ("Authorize" in /docs); the key itself is checked by
# server/api/auth_gate.py before the body is read, and get_caller only collects its verdict.
_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_heads(request: Request) -> HeadRegistry:
    return request.app.state.runtime.heads


def get_transcription(request: Request) -> TranscriptionService:
    return request.app.state.runtime.transcription


def get_jobs(request: Request) -> JobService:
    return request.app.state.jobs


def get_caller(
    request: Request,
    _bearer_doc: Annotated[object, Security(_bearer)],
    _header_doc: Annotated[object, Security(_header)],
) -> Principal:
    principal = request.scope.get(PRINCIPAL_KEY)
    if principal is None:  # a route the gate leaves open must not ask for a caller
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    return principal


Served = Annotated[Runtime, Depends(get_runtime)]
Heads = Annotated[HeadRegistry, Depends(get_heads)]
Transcriber = Annotated[TranscriptionService, Depends(get_transcription)]
Jobs = Annotated[JobService, Depends(get_jobs)]
Caller = Annotated[Principal, Depends(get_caller)]
