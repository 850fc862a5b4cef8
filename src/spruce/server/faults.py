"""Test-only fault injection for the data plane: throttling, and ids missing from list or fetch.

Never mounted by default: ``create_app(engine, faults=FaultConfig(...))`` is the only way in,
and tests are its only users. It answers for what a real Pinecone does on a bad day, so a
connector can be proven to survive it (429s with ``Retry-After``) or to notice it (a list page
that silently leaves an id out, a fetch that omits an id it was asked for).

Everything is deterministic: which requests are throttled comes from a seeded random
generator, and which ids are dropped is named (``drop_list_ids``) or counted
(``drop_list_every``: every Nth id listed, over the server's lifetime).

    faults = FaultConfig(throttle_fraction=0.2, seed=7)        # ~20% of data-plane requests get 429
    faults = FaultConfig(drop_list_ids={"ns1-000042"})         # list pages leave that id out
    faults = FaultConfig(omit_fetch_ids={"ns1-000042"})        # fetch never returns that id
    app = create_app(engine, faults=faults)
    ...
    faults.throttled                                           # how many 429s were served
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

__all__ = ["FaultConfig", "FaultMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Data-plane routes, under /index/NAME/ or at the root (Host-header addressing).
_DATA_PLANE = re.compile(r"(^|/)(vectors/[a-z_]+|query|describe_index_stats|namespaces(/.*)?|bulk/.*)$")
_LIST = re.compile(r"(^|/)vectors/list$")
_FETCH = re.compile(r"(^|/)vectors/fetch$")


@dataclass
class FaultConfig:
    """What to break. All fields default to "nothing".

    throttle_fraction: fraction (0..1) of data-plane requests answered ``status`` (429 by
        default) instead of being served, chosen by a generator seeded with ``seed``.
    retry_after: the ``Retry-After`` header sent with them (seconds), or None for no header.
    throttle_paths: regular expression the request path must match to be throttled
        (default: every data-plane route).
    drop_list_ids: ids that list pages leave out (the records stay, and stats count them).
    drop_list_every: leave out every Nth id that list pages would return (0: never).
    omit_fetch_ids: ids that fetch never returns, as if they did not exist.
    """

    throttle_fraction: float = 0.0
    retry_after: float | None = 0
    status: int = 429
    seed: int = 0
    throttle_paths: str | None = None
    drop_list_ids: set[str] | frozenset[str] = frozenset()
    drop_list_every: int = 0
    omit_fetch_ids: set[str] | frozenset[str] = frozenset()
    # counters, for tests to assert on
    throttled: int = 0
    requests: int = 0
    dropped: list[str] = field(default_factory=list)
    omitted: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 <= self.throttle_fraction <= 1.0:
            raise ValueError("throttle_fraction must be between 0 and 1")
        if self.drop_list_every < 0:
            raise ValueError("drop_list_every must be >= 0")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._listed = 0
        self._paths = re.compile(self.throttle_paths) if self.throttle_paths else None

    def configure(self, **settings: Any) -> FaultConfig:
        """Replace every setting (unnamed ones go back to "nothing") and reset the counters."""
        fresh = FaultConfig(**settings)
        with self._lock:
            for name in ("throttle_fraction", "retry_after", "status", "seed", "throttle_paths", "drop_list_ids",
                         "drop_list_every", "omit_fetch_ids", "throttled", "requests", "dropped", "omitted",
                         "_rng", "_listed", "_paths"):
                setattr(self, name, getattr(fresh, name))
        return self

    # -- decisions (thread-safe) --------------------------------------------------------

    def _throttle(self, path: str) -> bool:
        with self._lock:
            self.requests += 1
            if self.throttle_fraction <= 0 or (self._paths is not None and not self._paths.search(path)):
                return False
            hit = self._rng.random() < self.throttle_fraction
            if hit:
                self.throttled += 1
            return hit

    def _keep_listed(self, rid: str) -> bool:
        with self._lock:
            self._listed += 1
            drop = rid in self.drop_list_ids or (
                self.drop_list_every > 0 and self._listed % self.drop_list_every == 0)
            if drop:
                self.dropped.append(rid)
            return not drop

    def _keep_fetched(self, rid: str) -> bool:
        if rid in self.omit_fetch_ids:
            with self._lock:
                self.omitted.append(rid)
            return False
        return True

    @property
    def rewrites(self) -> bool:
        return bool(self.drop_list_ids or self.drop_list_every or self.omit_fetch_ids)


class FaultMiddleware:
    """Pure ASGI middleware applying a FaultConfig to data-plane requests."""

    def __init__(self, app: ASGIApp, config: FaultConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if not _DATA_PLANE.search(path):
            await self.app(scope, receive, send)
            return
        cfg = self.config
        if cfg._throttle(path):
            await self._reject(send)
            return
        if cfg.rewrites and scope.get("method") == "GET" and (_LIST.search(path) or _FETCH.search(path)):
            await self._rewrite(scope, receive, send, is_list=bool(_LIST.search(path)))
            return
        await self.app(scope, receive, send)

    async def _reject(self, send: Send) -> None:
        cfg = self.config
        body = orjson.dumps({"error": {"code": "RESOURCE_EXHAUSTED",
                                       "message": "Too many requests (injected fault)"},
                             "status": cfg.status})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if cfg.retry_after is not None:
            ra = cfg.retry_after
            headers.append((b"retry-after", (str(int(ra)) if float(ra).is_integer() else str(ra)).encode()))
        await send({"type": "http.response.start", "status": cfg.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _rewrite(self, scope: Scope, receive: Receive, send: Send, *, is_list: bool) -> None:
        """Buffer the response, take ids out of it, and send it with a corrected length."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._send_rewritten(start, b"".join(chunks), send, is_list=is_list)

        if not is_list:
            # fetch: take omitted ids out of the query, so the engine never sees them
            pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            kept = [(k, v) for k, v in pairs if k != "ids" or self.config._keep_fetched(v)]
            if len(kept) != len(pairs):
                if not any(k == "ids" for k, _ in kept):
                    body = orjson.dumps({"vectors": {}, "namespace": dict(pairs).get("namespace", ""),
                                         "usage": {"readUnits": 1}})
                    await send({"type": "http.response.start", "status": 200, "headers": [
                        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
                scope = dict(scope)
                scope["query_string"] = urlencode(kept).encode("latin-1")
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, capture)

    async def _send_rewritten(self, start: Message | None, body: bytes, send: Send, *, is_list: bool) -> None:
        assert start is not None
        if start.get("status") == 200 and is_list:
            try:
                doc = orjson.loads(body)
                doc["vectors"] = [v for v in doc.get("vectors", []) if self.config._keep_listed(v.get("id"))]
                body = orjson.dumps(doc)
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                pass
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})
