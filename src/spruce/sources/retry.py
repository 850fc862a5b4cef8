"""Retries with backoff for calls to other engines, written once for every connector.

What is retried: transport errors (connection refused or reset, timeouts, urllib3's
MaxRetryError, httpx's transport errors, anywhere in the exception's cause chain) and HTTP
408, 429 and 5xx answers. What is not: every other answer (a 4xx validation error, a 404) and
every ``SpruceError`` (spruce's own, already meaningful, errors). Waits are capped exponential
backoff with full jitter, or the server's ``Retry-After`` (capped, plus a little jitter), and
go through the caller's ``sleep`` and ``check_cancel``, so a cancelled job stops waiting.

This module sits in the sources layer and imports nothing above ``spruce.errors``: the job
context's cancellation comes in as callables (see ``cancellable_sleep``).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from spruce.errors import NotFound, SpruceError

__all__ = [
    "RETRYABLE_STATUS",
    "Failure",
    "RemoteError",
    "Retrier",
    "cancellable_sleep",
    "classify",
    "describe_error",
    "parse_retry_after",
]

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
TRANSPORT_ERRORS = frozenset({
    "PineconeConnectionError", "PineconeTimeoutError", "MaxRetryError", "ProtocolError",
    "NewConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "TransportError",
    "RemoteProtocolError", "ConnectError", "ReadError", "WriteError", "PoolTimeout",
})


class RemoteError(SpruceError):
    """The remote index (Pinecone or another spruce) refused or kept failing a request."""

    status = 502
    code = "UNAVAILABLE"


@dataclass
class Failure:
    retryable: bool
    status: int | None = None
    retry_after: float | None = None


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    try:
        value = headers.get(name)
        if value is None:
            value = headers.get(name.lower())
        if value is None and hasattr(headers, "items"):
            value = next((v for k, v in headers.items() if str(k).lower() == name.lower()), None)
        return None if value is None else str(value)
    except Exception:
        return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After value: a number, or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
        return seconds if seconds >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _transport(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & TRANSPORT_ERRORS) or isinstance(exc, (ConnectionError, TimeoutError))


def classify(exc: BaseException) -> Failure:
    """How a client library reported a failure: its HTTP status, whether to retry, Retry-After.

    Pinecone 10.x/9.x: ``ApiError.status_code``, ``.headers``, ``RateLimitError.retry_after``;
    7.3: ``PineconeApiException.status``/``.headers`` (``status=0`` for local failures); other
    clients built on httpx or urllib3 (qdrant-client's ``UnexpectedResponse.status_code``...)
    alike. Transport errors (connection refused, timeouts, urllib3's MaxRetryError), also when
    they are the cause of the exception raised, are retryable.
    """
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0:
        retry_after = getattr(exc, "retry_after", None)
        if not isinstance(retry_after, (int, float)):
            retry_after = parse_retry_after(_header(getattr(exc, "headers", None), "Retry-After"))
        return Failure(retryable=status in RETRYABLE_STATUS, status=status,
                       retry_after=float(retry_after) if retry_after is not None else None)
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen and len(seen) < 8:
        if _transport(cause):
            return Failure(retryable=True)
        seen.add(id(cause))
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    return Failure(retryable=False)


def describe_error(exc: BaseException) -> str:
    """One line for a user. SDK errors carry the status and server message, never the request's key."""
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    message = getattr(exc, "message", None)
    body = getattr(exc, "body", None)
    if not message and body:
        try:
            doc = orjson.loads(body) if isinstance(body, (bytes, str)) else body
            message = (doc.get("error") or {}).get("message") if isinstance(doc.get("error"), dict) else (
                doc.get("message") or doc.get("error"))
        except Exception:
            message = None
    text = str(message or getattr(exc, "reason", None) or exc or type(exc).__name__)
    text = " ".join(text.split())[:500]
    return f"HTTP {status}: {text}" if isinstance(status, int) and status > 0 else f"{type(exc).__name__}: {text}"


def cancellable_sleep(seconds: float, check_cancel: Callable[[], None], *, step: float = 0.2,
                      wait: Callable[[float], Any] = time.sleep) -> None:
    """Sleep ``seconds`` in slices of at most ``step``, calling ``check_cancel`` (which raises to
    stop) before and between them. ``wait`` sleeps one slice; a ``threading.Event.wait`` that a
    cancellation sets ends the slice at once."""
    end = time.monotonic() + max(0.0, seconds)
    while True:
        check_cancel()
        left = end - time.monotonic()
        if left <= 0:
            return
        wait(min(left, step))


def _no_cancel() -> None:
    return None


class Retrier:
    """Bounded exponential backoff with full jitter, honouring Retry-After.

    ``call(what, fn)`` runs ``fn`` up to ``attempts`` times. With ``wrap`` (the default), a
    failure that is not retried, or still there after the last attempt, is raised as
    ``NotFound`` (HTTP 404) or ``RemoteError`` naming ``what``; without it, as it was raised.
    ``sleep`` waits (and may raise to stop), ``check_cancel`` runs before every attempt,
    ``on_retry`` gets the status (or None) of each failure about to be retried.
    """

    def __init__(self, *, attempts: int = 8, base: float = 0.25, cap: float = 20.0,
                 max_retry_after: float = 300.0, rng: random.Random | None = None,
                 sleep: Callable[[float], None] = time.sleep, check_cancel: Callable[[], None] = _no_cancel,
                 on_retry: Callable[[int | None], None] | None = None, wrap: bool = True) -> None:
        self.attempts, self.base, self.cap, self.max_retry_after = attempts, base, cap, max_retry_after
        self.rng = rng if rng is not None else random.Random()
        self._sleep, self._check_cancel, self._on_retry = sleep, check_cancel, on_retry
        self.wrap = wrap

    def delay(self, attempt: int, failure: Failure) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if failure.retry_after is not None:
            # the server said when: wait that long, plus a little jitter so workers spread
            ra = min(failure.retry_after, self.max_retry_after)
            return ra + self.rng.uniform(0, 0.1 * ra + 0.05)
        return self.rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        for attempt in range(1, self.attempts + 1):
            self._check_cancel()
            try:
                return fn()
            except (SpruceError, KeyboardInterrupt):
                raise
            except Exception as exc:
                f = classify(exc)
                if not f.retryable:
                    if not self.wrap:
                        raise
                    if f.status == 404:
                        raise NotFound(f"{what}: {describe_error(exc)}") from exc
                    raise RemoteError(f"{what}: {describe_error(exc)}") from exc
                if attempt == self.attempts:
                    if not self.wrap:
                        raise
                    raise RemoteError(f"{what}: still failing after {attempt} attempts: "
                                      f"{describe_error(exc)}") from exc
                delay = self.delay(attempt, f)
                if self._on_retry is not None:
                    self._on_retry(f.status)
                self._sleep(delay)
        raise AssertionError("unreachable")
