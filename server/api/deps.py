"""FastAPI dependencies: the process-wide service and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from server.auth import Principal
from server.service import AsrService

_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")


def get_service(request: Request) -> AsrService:
    return request.app.state.service


def get_caller(
    service: Annotated[AsrService, Depends(get_service)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_header)],
) -> Principal:
    return service.authenticate(bearer.credentials if bearer else api_key)


Service = Annotated[AsrService, Depends(get_service)]
Caller = Annotated[Principal, Depends(get_caller)]
