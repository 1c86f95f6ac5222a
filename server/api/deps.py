"""FastAPI dependencies: the process-wide service and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from server.api.auth_gate import PRINCIPAL_KEY
from server.auth import Principal
from server.errors import Unauthorized
from server.serving.service import AsrService

# Declared for the OpenAPI schema ("Authorize" in /docs); the key itself is checked by
# server/api/auth_gate.py before the body is read, and get_caller only collects its verdict.
_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")


def get_service(request: Request) -> AsrService:
    return request.app.state.service


def get_caller(
    request: Request,
    _bearer_doc: Annotated[object, Security(_bearer)],
    _header_doc: Annotated[object, Security(_header)],
) -> Principal:
    principal = request.scope.get(PRINCIPAL_KEY)
    if principal is None:  # a route the gate leaves open must not ask for a caller
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    return principal


Service = Annotated[AsrService, Depends(get_service)]
Caller = Annotated[Principal, Depends(get_caller)]
