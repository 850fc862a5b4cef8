"""API-key authentication, as Pinecone does it: the ``Api-Key`` header.

With a key configured, every request except the health check (and, if asked,
the OpenAPI docs) must carry it. The comparison is constant-time and the key
never reaches a log line or an error message.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from spruce.server.errors import error_response

__all__ = ["HEALTH_PATH", "ApiKeyMiddleware"]

HEALTH_PATH = "/health"
_DOC_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


class ApiKeyMiddleware:
    """Pure ASGI middleware (cheaper per request than BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, *, api_key: str, public_paths: Iterable[str] = (),
                 public_docs: bool = False) -> None:
        if not api_key:
            raise ValueError("api_key must be a non-empty string")
        self.app = app
        self._key = api_key.encode()
        self._public = frozenset((HEALTH_PATH, *public_paths, *(_DOC_PATHS if public_docs else ())))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._public:
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:  # ASGI header names are lowercase bytes
            if name == b"api-key":
                given = value
                break
        if given is not None and hmac.compare_digest(given, self._key):
            await self.app(scope, receive, send)
            return
        message = "Invalid API key." if given is not None else "Missing Api-Key header."
        response = error_response(scope["path"], 401, "UNAUTHENTICATED", message)
        await response(scope, receive, send)
