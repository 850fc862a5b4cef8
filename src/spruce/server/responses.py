"""JSON responses encoded with orjson (numpy arrays included), stamped with the API version."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from spruce.server.versions import HEADER

__all__ = ["empty", "json_bytes", "json_response"]

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def json_bytes(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_OPTS)


def json_response(obj: Any, version: str, status: int = 200) -> Response:
    return Response(json_bytes(obj), status_code=status, media_type="application/json",
                    headers={HEADER: version})


def empty(version: str, status: int = 202) -> Response:
    """A bodiless answer (Pinecone's 202 for delete_index)."""
    return Response(b"", status_code=status, headers={HEADER: version})
