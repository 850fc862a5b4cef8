"""Pagination tokens of the engine's listings (ids, namespaces).

A token is the last name a page returned, so a listing resumes exactly after it however the
set changed in between: no offsets that shift when an earlier entry is added or removed.
"""

from __future__ import annotations

import base64

import orjson

from spruce.errors import InvalidArgument

__all__ = ["decode_token", "encode_token"]


def encode_token(last: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": last})).decode().rstrip("=")


def decode_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        after = orjson.loads(raw)["after"]
    except Exception:
        after = None
    if not isinstance(after, str):
        raise InvalidArgument(f"invalid pagination token {token!r}")
    return after
