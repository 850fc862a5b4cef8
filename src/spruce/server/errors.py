"""Errors in Pinecone's wire shapes, so each SDK raises its own exceptions.

The control plane answers ``{"error": {"code": "NOT_FOUND", "message": ...}, "status": 404}``;
the data plane answers a gRPC status, ``{"code": 5, "message": ..., "details": []}``.
Which plane a request belongs to is decided by its path alone, so an error
raised anywhere (the auth middleware, routing, a handler) gets the right shape.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from spruce.errors import SpruceError

__all__ = ["DATA_PREFIX", "ApiError", "error_body", "error_response", "install_handlers", "is_data_plane"]

log = logging.getLogger("spruce.server")

DATA_PREFIX = "/index/"
"""Data-plane routes of index NAME live under /index/NAME/ (the host describe_index returns)."""

_DATA_ROOTS = ("/vectors/", "/query", "/describe_index_stats", "/namespaces", "/bulk/", "/records/")

# gRPC status numbers, which the data plane reports as "code".
_GRPC: dict[str, int] = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "FORBIDDEN": 7,
    "RESOURCE_EXHAUSTED": 8, "QUOTA_EXCEEDED": 8, "FAILED_PRECONDITION": 9, "ABORTED": 10,
    "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16, "UNPROCESSABLE_ENTITY": 3, "PAYMENT_REQUIRED": 9,
}

_CODE_FOR_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND",
    405: "UNIMPLEMENTED", 409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION", 413: "OUT_OF_RANGE",
    415: "INVALID_ARGUMENT", 422: "UNPROCESSABLE_ENTITY", 429: "RESOURCE_EXHAUSTED",
    501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
}


class ApiError(SpruceError):
    """An HTTP-level failure with an explicit status and Pinecone error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def is_data_plane(path: str) -> bool:
    return path.startswith(DATA_PREFIX) or path.startswith(_DATA_ROOTS)


def error_body(*, data_plane: bool, status: int, code: str, message: str) -> dict[str, Any]:
    if data_plane:
        return {"code": _GRPC.get(code, 2), "message": message, "details": []}
    return {"error": {"code": code, "message": message}, "status": status}


def error_response(path: str, status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    body = error_body(data_plane=is_data_plane(path), status=status, code=code, message=message)
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "invalid request: " + "; ".join(parts)


def install_handlers(app: FastAPI) -> None:
    """Map every failure to Pinecone's shapes; request validation is a 400, never a 422."""

    @app.exception_handler(SpruceError)
    async def _spruce(request: Request, exc: SpruceError) -> Response:
        if exc.status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(request.url.path, exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request.url.path, 400, "INVALID_ARGUMENT", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _CODE_FOR_STATUS.get(exc.status_code, "UNKNOWN")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return error_response(request.url.path, exc.status_code, code, message,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(orjson.JSONDecodeError)
    async def _bad_json(request: Request, exc: orjson.JSONDecodeError) -> Response:
        return error_response(request.url.path, 400, "INVALID_ARGUMENT", f"the body is not valid JSON: {exc}")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        log.exception("%s %s crashed", request.method, request.url.path)
        return error_response(request.url.path, 500, "INTERNAL",
                              f"internal error: {type(exc).__name__}")
