"""Bounds on what a client may make us read: body size (413) and body time (408).

BodySizeLimit: a declared Content-Length over the limit is refused at once; a
chunked body is counted as it streams and cut off at the limit, so memory
stays bounded.

BodyReadTimeout: the whole body must arrive within `timeout_s` of the request's
start, however it trickles (a slowloris client sending a byte a second would
otherwise hold a request, its buffers and its connection for ever). This is
ASGI middleware, not a server setting, so it holds under any ASGI server.

Both raise a domain error from inside the app's `receive`. Where the app turns
that into some other response (FastAPI wraps any error while parsing a form
into a 400), the first response start after the limit tripped is replaced by
the limit's own answer, so the client always gets 413 / 408 with its code.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.errors import send_error
from server.errors import HraError, PayloadTooLarge, RequestTimeout


class BodySizeLimit:
    """`max_bytes` for every body, except paths starting with a key of `per_prefix`
    (e.g. dataset uploads), which get that key's limit."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, per_prefix: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_prefix = per_prefix or {}

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.per_prefix.items():
            if path == prefix or path.startswith(prefix + "/"):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope.get("path", ""))
        message = f"request body exceeds {limit} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await send_error(send, PayloadTooLarge(message))
        seen = 0
        guard = _Guard(send)

        async def limited_receive() -> Message:
            nonlocal seen
            message_in = await receive()
            if message_in["type"] == "http.request":
                seen += len(message_in.get("body", b""))
                if seen > limit:
                    raise guard.trip(_TooLarge(message))
            return message_in

        await guard.run(self.app, scope, limited_receive)


class BodyReadTimeout:
    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        deadline = time.monotonic() + self.timeout_s
        guard = _Guard(send)
        body_done = False
        message_text = f"request body not received within {self.timeout_s:g} s"

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # after the body, receive only waits for a disconnect: no bound
                return await receive()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise guard.trip(RequestTimeout(message_text)) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await guard.run(self.app, scope, timed_receive)


class _Guard:
    """Sends the app's response, unless a limit tripped first: then the limit's."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._started = False
        self._refusal: HraError | None = None
        self._replaced = False

    def trip(self, refusal: HraError) -> HraError:
        """Record the first refusal (the one answered); returns `refusal`, to raise."""
        if self._refusal is None:
            self._refusal = refusal
        return refusal

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive) -> None:
        try:
            await app(scope, receive, self.send)
        except (_TooLarge, RequestTimeout):
            pass  # answered below
        if self._refusal is not None and not self._started:
            self._started = True
            await send_error(self._send, self._refusal)

    async def send(self, message: Message) -> None:
        if self._replaced:
            return  # the rest of the app's answer to a refused request
        if self._refusal is not None and not self._started:
            self._started = self._replaced = True
            await send_error(self._send, self._refusal)
            return
        self._started = self._started or message["type"] == "http.response.start"
        await self._send(message)


class _TooLarge(PayloadTooLarge):
    """Raised from inside the app's body read; mapped to 413 wherever caught."""
