"""Request body cap: Pinecone's 2 MB per data-plane write, enforced before the body is read.

Why in ASGI and not in a handler: a handler sees the body only after it was read whole, so a
100 MB upsert would already sit in memory. This middleware answers 413 (in Pinecone's error
shape) from the Content-Length header, or, for a chunked body, as soon as the bytes received
pass the cap, without reading further.
"""

from __future__ import annotations

import os
from typing import Any

from spruce.server.errors import error_response

#: Pinecone's limit on an upsert request ("2 MB"); every body is held to it by default.
DEFAULT_MAX_BODY = 2 * 1000 * 1000
#: Overrides the cap (bytes) for a server whose clients send larger bodies.
MAX_BODY_ENV = "SPRUCE_MAX_BODY_BYTES"


def max_body_from_env(default: int = DEFAULT_MAX_BODY) -> int:
    raw = os.environ.get(MAX_BODY_ENV)
    try:
        return max(1024, int(raw)) if raw else default
    except ValueError:
        return default


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: Any, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    def _refuse(self, path: str, size: str) -> Any:
        return error_response(path, 413, "OUT_OF_RANGE",
                              f"request body of {size} exceeds the limit of {self.max_body:,} bytes; send the "
                              "records in smaller batches (Pinecone accepts at most 2 MB per upsert)")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # every method: a DELETE or GET may carry a body too
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > self.max_body:
                await self._refuse(scope["path"], f"{declared:,} bytes")(scope, receive, send)
                return
        seen = 0
        started = False

        async def counting_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(scope["path"], f"more than {self.max_body:,} bytes")(scope, receive, send)
