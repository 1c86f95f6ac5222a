"""FastAPI dependency: the process-wide JobService (built by the app's lifespan)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from server.jobs.service import JobService


def get_jobs(request: Request) -> JobService:
    return request.app.state.jobs


Jobs = Annotated[JobService, Depends(get_jobs)]
