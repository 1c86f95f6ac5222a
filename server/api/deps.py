"""FastAPI dependencies: the process-wide service and settings."""

from __future__ import annotations

from fastapi import Request

from server.service import AsrService


def get_service(request: Request) -> AsrService:
    return request.app.state.service
