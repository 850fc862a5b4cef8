"""Pinecone API versions: which response shape a request asked for.

Every official SDK sends ``X-Pinecone-API-Version`` (7.x: 2025-04, 9.x: 2025-10,
10.x: 2026-07). The request's version picks the response shape; requests are
accepted in every version's shape, whatever the header says. Without the header
the server answers as the newest version, as Pinecone does.
"""

from __future__ import annotations

import re

from starlette.requests import Request

from spruce.errors import InvalidArgument

__all__ = ["HEADER", "LATEST", "SUPPORTED", "V2025_04", "V2025_10", "V2026_04", "V2026_07", "at_least",
           "requested", "resolve", "uses_schema"]

HEADER = "X-Pinecone-API-Version"

V2025_04 = "2025-04"
V2025_10 = "2025-10"
V2026_04 = "2026-04"
V2026_07 = "2026-07"
SUPPORTED: tuple[str, ...] = (V2025_04, V2025_10, V2026_04, V2026_07)
LATEST = V2026_07

_DATE = re.compile(r"^(\d{4})-(\d{2})(?:[.\-][A-Za-z0-9.\-]*)?$")


def resolve(value: str | None) -> str:
    """Map a header value to the supported version whose shapes it gets.

    An exact match wins; another date (e.g. a preview "2026-01.alpha") gets the
    newest supported version not after it, and a date older than all of them
    the oldest. Anything that is not a date is a 400.
    """
    if value is None or not value.strip():
        return LATEST
    value = value.strip()
    if value in SUPPORTED:
        return value
    m = _DATE.match(value)
    if m is None:
        raise InvalidArgument(
            f"unsupported {HEADER} {value!r}: use one of {', '.join(SUPPORTED)}")
    asked = f"{m.group(1)}-{m.group(2)}"
    older = [v for v in SUPPORTED if v <= asked]
    return older[-1] if older else SUPPORTED[0]


def requested(request: Request) -> str:
    """The version a request asked for (the header is read case-insensitively)."""
    cached = getattr(request.state, "api_version", None)
    if cached is None:
        cached = resolve(request.headers.get(HEADER))
        request.state.api_version = cached
    return cached


def uses_schema(version: str) -> bool:
    """2026-07 describes an index by ``schema`` and ``deployment`` instead of
    ``dimension``/``metric``/``spec``."""
    return version >= V2026_07


def at_least(version: str, minimum: str) -> bool:
    """Whether ``version`` has what ``minimum`` introduced (2025-10: read capacity,
    ``matchedRecords``, namespaces' ``total_count``, ``schema`` and ``indexed_fields``)."""
    return version >= minimum
