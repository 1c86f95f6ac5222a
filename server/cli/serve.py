"""`hra serve`: the HTTP server under uvicorn, with its connection bounds."""

from __future__ import annotations

from server.config import Settings, get_settings


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the HTTP server on HRA_HOST:HRA_PORT")
    p.set_defaults(run=serve)


def uvicorn_options(settings: Settings) -> dict:
    """uvicorn's connection bounds from HttpSettings (the body-read timeout is middleware,
    server/api/limits.py, so it holds under any ASGI server)."""
    return dict(
        host=settings.host,
        port=settings.port,
        limit_concurrency=settings.http.max_connections,
        timeout_keep_alive=settings.http.keep_alive_timeout_s,
        h11_max_incomplete_event_size=settings.http.max_header_bytes,
        # a WebSocket message is read whole before /v1/realtime sees it: twice the streaming
        # limit (between the two, an error event; past it, uvicorn closes with 1009)
        ws_max_size=2 * settings.streaming.max_message_bytes,
    )


def serve(args) -> int:
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "server.api.app:create_app",
        factory=True,
        log_level="info",
        **uvicorn_options(settings),
    )
    return 0
