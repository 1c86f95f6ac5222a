"""Liveness, readiness and Prometheus metrics.

Probes answer GET and HEAD. /metrics is guarded by server/api/auth_gate.py
(an admin or metrics key when keys are configured).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from server.api.deps import Served

router = APIRouter(tags=["health"])


@router.get("/healthz")
@router.head("/healthz", include_in_schema=False)
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
@router.head("/readyz", include_in_schema=False)
async def readyz(runtime: Served):
    """200 when ready; 503 with status "degraded" while the store is unreachable."""
    report = await runtime.readiness()
    return JSONResponse(report, status_code=200 if report["store_reachable"] else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {}},
            "description": "Prometheus text format",
        }
    },
)
async def metrics(runtime: Served) -> Response:
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
