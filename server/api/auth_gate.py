"""Authenticate from the headers alone, before anything reads the body.

FastAPI solves File()/Form() parameters (parsing the whole multipart body,
up to the size limit) before it solves a key dependency, so a key checked in
a dependency lets an anonymous client make us parse 25 MB bodies. This pure
ASGI middleware runs first: it reads only the request headers, answers 401
(the JSON body of server/api/errors.py) without ever calling `receive`, and
hands the authenticated Principal to the routes in the ASGI scope
(deps.get_caller reads it from there).

Open paths: the probes (/healthz, /readyz) and the API docs. /metrics carries
task ids, so with API keys configured it needs an admin key or the metrics key
(HttpSettings.metrics_key), which opens /metrics and nothing else; in
open-access mode everything is open (server/observability/metrics.py says why).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from server.api.errors import send_error
from server.auth import OPEN, Principal
from server.errors import Unauthorized

PRINCIPAL_KEY = "hra.principal"  # where the authenticated caller lives in the ASGI scope
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
METRICS_PATH = "/metrics"


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """`Authorization: Bearer <key>`, else `X-API-Key` (the first of each header)."""
    authorization = api_key = None
    for name, value in headers:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return api_key


class AuthGate:
    """`authenticate(scope, key)` gives the caller's Principal or raises Unauthorized."""

    def __init__(
        self,
        app: ASGIApp,
        authenticate: Callable[[Scope, str | None], Principal],
        open_access: bool,
        metrics_key: SecretStr | None = None,
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.open_access = open_access
        secret = metrics_key.get_secret_value() if metrics_key else ""
        self._metrics_digest = hashlib.sha256(secret.encode()).digest() if secret else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            return await self._websocket(scope, receive, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if self.open_access:
            scope[PRINCIPAL_KEY] = OPEN
            return await self.app(scope, receive, send)
        if path in OPEN_PATHS:
            return await self.app(scope, receive, send)
        key = presented_key(scope["headers"])
        try:
            if path == METRICS_PATH:
                self._check_metrics_reader(scope, key)
            else:
                scope[PRINCIPAL_KEY] = self.authenticate(scope, key)
        except Unauthorized as exc:
            # The body stays unread: `receive` is never called for a refused request.
            return await send_error(send, exc)
        await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket handshake is judged like a request: its key from the headers or the
        OpenAI browser subprotocol `openai-insecure-api-key.<key>`; refused with the JSON 401
        body where the server can answer the handshake with HTTP, else its close code (1008)."""
        if self.open_access:
            scope[PRINCIPAL_KEY] = OPEN
            return await self.app(scope, receive, send)
        try:
            key = presented_key(scope["headers"]) or subprotocol_key(scope)
            scope[PRINCIPAL_KEY] = self.authenticate(scope, key)
        except Unauthorized as exc:
            if "websocket.http.response" in scope.get("extensions", {}):
                reply = _as_websocket(send)
                return await send_error(reply, exc)
            return await send({"type": "websocket.close", "code": exc.close_code})
        await self.app(scope, receive, send)

    def _check_metrics_reader(self, scope: Scope, key: str | None) -> None:
        if key and self._metrics_digest is not None:
            digest = hashlib.sha256(key.encode()).digest()
            if hmac.compare_digest(digest, self._metrics_digest):
                return
        principal = self.authenticate(scope, key)
        if not principal.admin:
            raise Unauthorized("/metrics needs an admin key or the metrics key")


KEY_SUBPROTOCOL = "openai-insecure-api-key."


def subprotocol_key(scope: Scope) -> str | None:
    """The key a browser client passes as the subprotocol `openai-insecure-api-key.<key>`."""
    for protocol in scope.get("subprotocols", ()):
        if protocol.startswith(KEY_SUBPROTOCOL) and len(protocol) > len(KEY_SUBPROTOCOL):
            return protocol[len(KEY_SUBPROTOCOL) :]
    return None


def _as_websocket(send: Send) -> Send:
    """send_error's HTTP messages as the websocket.http.response extension's."""

    async def wrapped(message):
        await send({**message, "type": "websocket." + message["type"]})

    return wrapped
