"""create_app(settings): the FastAPI app; its lifespan owns the runtime (server/runtime.py).

uvicorn --factory server.api.app:create_app
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from server.api import errors
from server.api.auth_gate import AuthGate
from server.api.limits import BodyReadTimeout, BodySizeLimit
from server.api.routes import files, fine_tuning, health, models, realtime, tasks, transcription
from server.auth import Principal
from server.config import Settings, get_settings
from server.jobs.service import JobService
from server.live.hub import StreamHub
from server.runtime import build_runtime

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runtime = build_runtime(settings)
        await runtime.start()
        app.state.runtime = runtime
        app.state.streams = StreamHub(settings.streaming, runtime.metrics.registry)
        jobs = JobService(settings, runtime.heads, runtime.engine.frame_seconds)
        await jobs.start()
        app.state.jobs = jobs
        logger.info("serving on %s:%d", settings.host, settings.port)
        try:
            yield
        finally:
            await jobs.stop()
            await runtime.stop()

    app = FastAPI(
        title="HRA-ASR",
        version="0.1.0",
        lifespan=lifespan,
        description="Multi-tenant speech recognition with per-task HRA heads.",
        responses=errors.DOCUMENTED_ERRORS,
    )
    # Last added runs first: the gate (headers only), then the body's time and size bounds.
    # Dataset uploads (/v1/files) have their own, larger bound; every other body the audio's.
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.audio.max_bytes + 64 * 1024,
        per_prefix={"/v1/files": settings.jobs.max_dataset_bytes + 64 * 1024},
    )
    app.add_middleware(BodyReadTimeout, timeout_s=settings.http.body_read_timeout_s)
    app.add_middleware(
        AuthGate,
        authenticate=_authenticate,
        open_access=settings.open_access,
        metrics_key=settings.http.metrics_key,
    )
    errors.install(app)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        path = route.path if route is not None else "unmatched"
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None:
            runtime.metrics.requests.labels(path, str(response.status_code)).inc()
        return response

    app.include_router(transcription.router)
    app.include_router(tasks.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.include_router(realtime.router)
    app.include_router(files.router)
    app.include_router(fine_tuning.router)
    return app


def _authenticate(scope, key: str | None) -> Principal:
    """The runtime's key ring (built by the lifespan) judges the key."""
    return scope["app"].state.runtime.authenticate(key)
