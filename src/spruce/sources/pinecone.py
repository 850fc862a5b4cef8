"""Export any index behind the Pinecone API into a spruce archive, and restore one into it.

Pinecone has no export. This connector is that export, through the official ``pinecone``
SDK (7.3, 9.x, 10.x: the differences are feature-detected), against Pinecone itself or
against another ``spruce serve``::

    from spruce.sources import pinecone as pc_source

    manifest = pc_source.export("docs", "s3://backups/docs-2025-03-01", api_key=key)
    summary = pc_source.restore("s3://backups/docs-2025-03-01", "docs-copy", api_key=key)

Export: every namespace (``list_namespaces``, else ``describe_index_stats``), every id
(``list_paginated``, page by page), fetched in batches of at most 1000 ids (fewer when the
URL or the expected response would be large) by a small thread pool, and written through
the same ArchiveWriter as local exports (jsonl.gz or parquet). Fetch responses are taken as
raw JSON from the SDK's own HTTP client and parsed by simdjson straight into a float32
matrix; whatever that does not take is decoded the general way (orjson, else the standard
library), which accepts it or names the record and field at fault. The proof is completeness:
at the end, each namespace's exported count must equal ``describe_index_stats``, and an id
that was listed but cannot be fetched fails the export, naming it; nothing is committed
otherwise. A remote index cannot be frozen, so the manifest says ``consistency: "live"``.
``verify_after`` lists every id again after the data is written and commits only if the
second listing matches the archive exactly.

Restore: batches that respect Pinecone's upsert limits (1000 records and 2 MB per request,
96 records for indexes with integrated embedding), upserted by a thread pool, each archive
file staged and checked against its checksum before any of it is sent (on SDK 9.x/10.x its
JSON lines go out as they are, in request bodies built around them). The index is
created when missing (serverless, cloud/region from the caller; dimension, metric and
vector type from the manifest). A Parquet archive in s3/gs/az storage can instead be
handed to the target's own bulk import (``start_import``) and followed to the end.

Throttling: every call goes through ``_Retrier``: 429, 408 and 5xx answers and transport
errors are retried with exponential backoff and full jitter, bounded, honouring
``Retry-After`` (from the SDK's ``retry_after``/``headers``, whatever the version). The
SDK's own retries (10.x: 3 per request, with Retry-After; 7.3: urllib3's, 5xx only) run
first; whatever they give up on reaches ``_Retrier``, and whatever ``_Retrier`` gives up on
fails the job with the last status, so nothing is hidden.

The API key is never logged, persisted in job state, or written to a manifest: it lives in
this process's memory (and, for resumed jobs, comes from ``PINECONE_API_KEY``).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import os
import queue
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson
from isal import igzip

try:
    import simdjson
except ImportError:  # pragma: no cover - a dependency; without it fetches decode through orjson
    simdjson = None  # type: ignore[assignment]

from spruce.archive import ArchiveWriter, Manifest, open_source
from spruce.archive.jsonl import encode_lines
from spruce.archive.manifest import MANIFEST_NAME, check_no_credentials
from spruce.errors import (
    AlreadyExists,
    ChecksumMismatch,
    IntegrityError,
    InvalidArgument,
    JobCancelled,
    MissingFile,
    NotFound,
    RecordCountMismatch,
    SpruceError,
    ValidationError,
)
from spruce.jobs import split_storage_options
from spruce.jobs.manager import register_runner
from spruce.records import (
    MAX_FETCH_IDS,
    RecordBatch,
    normalize_namespace,
    validate_batch,
    validate_index_name,
)
from spruce.storage import open_store

__all__ = [
    "DEFAULT_CONTROL_HOST",
    "IncompleteExport",
    "IncompleteRestore",
    "Progress",
    "RemoteError",
    "RestoreSummary",
    "export",
    "restore",
    "run_remote_export",
    "run_remote_import",
    "start_remote_export",
    "start_remote_import",
]

#: Pinecone's own control plane (the SDK's default).
DEFAULT_CONTROL_HOST = "https://api.pinecone.io"
API_KEY_ENV = "PINECONE_API_KEY"
FORMATS = ("jsonl.gz", "parquet")

# -- Pinecone's limits ---------------------------------------------------------------------
MAX_UPSERT_RECORDS = 1000
MAX_UPSERT_RECORDS_TEXT = 96  # indexes with integrated embedding
MAX_UPSERT_BYTES = 2 * 1000 * 1000  # "2 MB" per request; we stay under the smaller reading
_UPSERT_ENVELOPE = 1024  # {"vectors": [...], "namespace": "..."} around the records
LIST_PAGE = 100  # the largest page list_paginated takes
NAMESPACE_PAGE = 100
#: Pages of ids the lister may hold ahead of the fetches (100 ids each: 200,000 ids)...
LIST_AHEAD_PAGES = 2000
#: ...and how long fetching waits for the lister to get ahead (or finish) before it starts.
LIST_HEAD_START_SECONDS = 2.0
#: Fetch batches are cut so the query string stays under this (ids travel in the URL)...
FETCH_URL_BUDGET = 12 * 1024
#: ...and the expected response under this (4 MB is Pinecone's query-response cap).
FETCH_RESPONSE_BUDGET = 4 * 1024 * 1024
#: Pauses before describe_index_stats is asked again when its counts differ from the export's.
STATS_SETTLE_SECONDS: tuple[float | None, ...] = (0.5, 1.0, 2.0, None)
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSPORT_ERRORS = (
    "PineconeConnectionError", "PineconeTimeoutError", "MaxRetryError", "ProtocolError",
    "NewConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "TransportError",
    "RemoteProtocolError", "ConnectError", "ReadError", "WriteError", "PoolTimeout",
)


class RemoteError(SpruceError):
    """The remote index (Pinecone or another spruce) refused or kept failing a request."""

    status = 502
    code = "UNAVAILABLE"


class IncompleteExport(IntegrityError):
    """What was exported is not everything the index holds (or no longer matches it)."""


class IncompleteRestore(IntegrityError):
    """After a restore, the target does not hold what the archive does."""


# -- progress ------------------------------------------------------------------------------


@dataclass
class Progress:
    """A snapshot handed to ``on_progress``: enough to draw a progress bar."""

    phase: str  # "listing", "exporting", "checking", "recount", "restoring", "importing", "done"
    records_done: int = 0
    records_total: int | None = None
    bytes_done: int = 0
    namespace: str | None = None
    retries: int = 0
    throttled: int = 0


class _Reporter:
    """Progress, cancellation and notes for one run (a job, or a plain function call)."""

    def __init__(self, on_progress: Callable[[Progress], None] | None = None) -> None:
        self._cb = on_progress
        self._lock = threading.Lock()
        self.p = Progress(phase="starting")
        self.stop = threading.Event()  # set on cancellation or failure: workers stop retrying
        self.notes: list[str] = []

    def _emit(self) -> None:
        if self._cb is not None:
            self._cb(Progress(**vars(self.p)))

    def phase(self, name: str, namespace: str | None = None) -> None:
        with self._lock:
            self.p.phase, self.p.namespace = name, namespace
            self._emit()

    def total(self, n: int | None) -> None:
        with self._lock:
            self.p.records_total = n
            self._emit()

    def advance(self, records: int, nbytes: int) -> None:
        with self._lock:
            self.p.records_done += records
            self.p.bytes_done += nbytes
            self._emit()

    def retried(self, status: int | None) -> None:
        with self._lock:
            self.p.retries += 1
            if status == 429:
                self.p.throttled += 1

    def note(self, text: str) -> None:
        self.notes.append(text)

    def check_cancel(self) -> None:
        if self.stop.is_set():
            raise JobCancelled("cancelled")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early (and raising) when the run is stopped."""
        if self.stop.wait(max(0.0, seconds)):
            raise JobCancelled("cancelled")


# -- retries -------------------------------------------------------------------------------


@dataclass
class _Failure:
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


def _parse_retry_after(value: str | None) -> float | None:
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


def classify(exc: BaseException) -> _Failure:
    """How the SDK (any version) reported a failure: its HTTP status, whether to retry, Retry-After.

    10.x/9.x: ``ApiError.status_code``, ``.headers``, ``RateLimitError.retry_after``;
    7.3: ``PineconeApiException.status``/``.headers`` (``status=0`` for local failures).
    Transport errors (connection refused, timeouts, urllib3's MaxRetryError) are retryable.
    """
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0:
        retry_after = getattr(exc, "retry_after", None)
        if not isinstance(retry_after, (int, float)):
            retry_after = _parse_retry_after(_header(getattr(exc, "headers", None), "Retry-After"))
        return _Failure(retryable=status in _RETRYABLE_STATUS, status=status,
                        retry_after=float(retry_after) if retry_after is not None else None)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & set(_TRANSPORT_ERRORS) or isinstance(exc, (ConnectionError, TimeoutError)):
        return _Failure(retryable=True)
    return _Failure(retryable=False)


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


@dataclass
class _Retrier:
    """Bounded exponential backoff with full jitter, honouring Retry-After."""

    reporter: _Reporter
    attempts: int = 8
    base: float = 0.25
    cap: float = 20.0
    max_retry_after: float = 300.0
    rng: random.Random = field(default_factory=random.Random)

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        for attempt in range(1, self.attempts + 1):
            self.reporter.check_cancel()
            try:
                return fn()
            except (SpruceError, KeyboardInterrupt):
                raise
            except Exception as exc:
                f = classify(exc)
                if not f.retryable:
                    if f.status == 404:
                        raise NotFound(f"{what}: {describe_error(exc)}") from exc
                    raise RemoteError(f"{what}: {describe_error(exc)}") from exc
                if attempt == self.attempts:
                    raise RemoteError(f"{what}: still failing after {attempt} attempts: "
                                      f"{describe_error(exc)}") from exc
                if f.retry_after is not None:
                    # the server said when: wait that long, plus a little jitter so workers spread
                    ra = min(f.retry_after, self.max_retry_after)
                    delay = ra + self.rng.uniform(0, 0.1 * ra + 0.05)
                else:
                    delay = self.rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
                self.reporter.retried(f.status)
                self.reporter.sleep(delay)
        raise AssertionError("unreachable")


# -- the SDK, whatever its version -----------------------------------------------------------


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        if isinstance(obj, Mapping):
            if name in obj:
                return obj[name]
            continue
        try:
            value = getattr(obj, name)
        except Exception:  # 7.3's OpenAPI models raise their own AttributeError subclasses
            continue
        if value is not None:
            return value
    return None


def _to_dict(model: Any) -> dict[str, Any]:
    if isinstance(model, Mapping):
        return dict(model)
    to_dict = getattr(model, "to_dict", None)
    if to_dict is not None:
        try:
            return dict(to_dict())
        except Exception:
            pass
    return {k: getattr(model, k) for k in dir(model) if not k.startswith("_")
            and not callable(getattr(model, k, None))}


def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


@dataclass
class IndexInfo:
    name: str
    host: str
    dimension: int | None
    metric: str
    vector_type: str
    spec: dict[str, Any]
    tags: dict[str, str]
    integrated: bool  # integrated embedding: upserts of text take at most 96 records
    ready: bool


class _Sdk:
    """The few calls the connector makes, on SDK 7.3, 9.x or 10.x."""

    def __init__(self, api_key: str, host: str | None) -> None:
        try:
            import pinecone
        except ImportError as exc:  # pragma: no cover - the SDK is a test dependency
            raise InvalidArgument("this needs the official Pinecone SDK: pip install pinecone") from exc
        if not api_key:
            raise InvalidArgument(f"no API key: set {API_KEY_ENV}")
        self.module = pinecone
        self.version = str(getattr(pinecone, "__version__", "unknown"))
        self.major = _major(self.version)
        kwargs: dict[str, Any] = {"api_key": api_key}
        if host:
            kwargs["host"] = host
        try:
            self.pc = pinecone.Pinecone(**kwargs)
        except Exception as exc:
            raise InvalidArgument(f"cannot set up the Pinecone client: {describe_error(exc)}") from exc
        self.host = host or DEFAULT_CONTROL_HOST
        self._raw_fetch = True  # until the SDK turns out not to offer raw responses (see fetch_raw)
        self._bound_sdk_retries()

    def _bound_sdk_retries(self) -> None:
        """7.3's urllib3 sleeps out any Retry-After on 429/503 inside the call: uncapped and not
        cancellable. Give it a short policy for transport errors and 5xx only, without honouring
        Retry-After and answering (not raising) once spent, so _Retrier sees the status and the
        header and waits, capped and cancellable. (9.x/10.x retry 3 times, Retry-After capped at
        60 s, then raise with the status: left as they are.)"""
        cfg = getattr(self.pc, "_openapi_config", None)
        if self.major >= 8 or cfg is None or not hasattr(cfg, "retries"):
            return
        try:
            from urllib3.util.retry import Retry

            cfg.retries = Retry(total=3, backoff_factor=0.25, status_forcelist=(500, 502, 503, 504),
                                allowed_methods=None, respect_retry_after_header=False, raise_on_status=False)
        except Exception:  # an urllib3 without these options: keep the SDK's own policy
            pass

    # control plane
    def describe(self, name: str) -> IndexInfo:
        d = _to_dict(self.pc.describe_index(name))
        spec = d.get("spec")
        if not spec and isinstance(d.get("deployment"), Mapping):
            dep = d["deployment"]
            if dep.get("deployment_type") == "pod":
                spec = {"pod": {k: v for k, v in dep.items() if k != "deployment_type"}}
            else:
                spec = {"serverless": {"cloud": dep.get("cloud"), "region": dep.get("region")}}
        spec = {k: {kk: vv for kk, vv in _drop_none(v).items() if kk not in ("read_capacity", "schema")}
                for k, v in _drop_none(spec or {}).items() if isinstance(v, Mapping)}
        schema = d.get("schema") if isinstance(d.get("schema"), Mapping) else {}
        fields = schema.get("fields") if isinstance(schema.get("fields"), Mapping) else {}
        integrated = bool(d.get("embed")) or any(
            isinstance(f, Mapping) and (f.get("embed") or f.get("type") == "semantic_text")
            for f in fields.values())
        dimension, metric, vector_type = d.get("dimension"), d.get("metric"), d.get("vector_type")
        if dimension is None and metric is None:  # a 2026-07 shape without the legacy keys
            for f in fields.values():
                if isinstance(f, Mapping) and f.get("type") == "dense_vector":
                    dimension, metric, vector_type = f.get("dimension"), f.get("metric"), "dense"
            if vector_type is None and any(isinstance(f, Mapping) and f.get("type") == "sparse_vector"
                                           for f in fields.values()):
                metric, vector_type = "dotproduct", "sparse"
        status = d.get("status") or {}
        ready = bool(_get(status, "ready")) if status else True
        host = str(d.get("host") or "")
        if host and "://" not in host:
            host = f"https://{host}"
        tags = {str(k): str(v) for k, v in (d.get("tags") or {}).items()}
        return IndexInfo(name=name, host=host, dimension=dimension, metric=str(metric or "cosine"),
                         vector_type=str(vector_type or "dense"), spec=spec, tags=tags,
                         integrated=integrated, ready=ready)

    def create(self, name: str, *, dimension: int | None, metric: str, vector_type: str, cloud: str,
               region: str, tags: Mapping[str, str] | None) -> None:
        try:
            spec: Any = self.module.ServerlessSpec(cloud=cloud, region=region)
        except Exception:
            spec = {"serverless": {"cloud": cloud, "region": region}}
        kwargs: dict[str, Any] = {"name": name, "spec": spec, "metric": metric, "timeout": -1}
        if dimension is not None:
            kwargs["dimension"] = dimension
        if vector_type != "dense":
            kwargs["vector_type"] = vector_type
        if tags:
            kwargs["tags"] = dict(tags)
        self.pc.create_index(**kwargs)

    def delete(self, name: str) -> None:
        self.pc.delete_index(name=name, timeout=-1)

    def index(self, host: str) -> Any:
        return self.pc.Index(host=host)

    # data plane
    @staticmethod
    def stats(idx: Any) -> dict[str, int]:
        s = idx.describe_index_stats()
        nss = _get(s, "namespaces") or {}
        items = nss.items() if hasattr(nss, "items") else []
        return {normalize_namespace(str(name)): int(_get(summary, "vector_count", "vectorCount") or 0)
                for name, summary in items}

    @staticmethod
    def has_namespace_listing(idx: Any) -> bool:
        return callable(getattr(idx, "list_namespaces_paginated", None))

    @staticmethod
    def namespace_page(idx: Any, token: str | None) -> tuple[list[str], str | None]:
        kwargs: dict[str, Any] = {"limit": NAMESPACE_PAGE}
        if token:
            kwargs["pagination_token"] = token
        r = idx.list_namespaces_paginated(**kwargs)
        names = [normalize_namespace(str(_get(ns, "name") or "")) for ns in (_get(r, "namespaces") or [])]
        return names, _next_token(r)

    def list_page(self, idx: Any, namespace: str, token: str | None) -> tuple[list[str], str | None]:
        http = getattr(idx, "_http", None)
        if self.major >= 8 and self._raw_fetch and http is not None and callable(getattr(http, "get", None)):
            # 9.x/10.x: the SDK's own GET, as its list_paginated sends it, without building models
            params: dict[str, Any] = {"namespace": namespace, "limit": LIST_PAGE}
            if token:
                params["paginationToken"] = token
            try:
                content = http.get("/vectors/list", params=params).content
            except (TypeError, AttributeError):
                self._raw_fetch = False
            else:
                doc = orjson.loads(content)
                pagination = doc.get("pagination") or {}
                token = pagination.get("next") if isinstance(pagination, dict) else None
                return [str(v["id"]) for v in doc.get("vectors") or []], str(token) if token else None
        kwargs: dict[str, Any] = {"namespace": namespace, "limit": LIST_PAGE}
        if token:
            kwargs["pagination_token"] = token
        r = idx.list_paginated(**kwargs)
        return [str(_get(v, "id")) for v in (_get(r, "vectors") or [])], _next_token(r)

    def fetch_raw(self, idx: Any, namespace: str, ids: list[str]) -> bytes | None:
        """The fetch response's JSON body as the server sent it, or None when this SDK has no way
        to hand it over (then ``fetch`` goes through the SDK's models).

        Always through the SDK's own HTTP layer, so host, auth and API-version headers, TLS,
        proxy and the SDK's retries are its own; what it skips is decoding the body into
        models and lists of Python floats. 9.x/10.x: ``Index._http`` (httpx), the client its
        own ``fetch`` calls; 7.3: the generated endpoint with ``_preload_content=False``.
        Non-2xx answers raise the SDK's usual exceptions either way.
        """
        if not self._raw_fetch:
            return None
        try:
            http = getattr(idx, "_http", None)
            if self.major >= 8 and http is not None and callable(getattr(http, "get", None)):
                base = getattr(http, "_base_url_str", None)  # its host, as it joins paths to it
                if isinstance(base, str) and "://" in base:
                    # the whole URL, query encoded here: httpx checks a query handed over as params
                    # (or after a relative path) one character at a time, in Python
                    response = http.get(f"{base.rstrip('/')}/vectors/fetch?{_fetch_query(ids, namespace)}")
                else:
                    params: dict[str, Any] = {"ids": ids}
                    if namespace:
                        params["namespace"] = namespace
                    response = http.get("/vectors/fetch", params=params)
                content = response.content
                return content if isinstance(content, bytes) else bytes(content)
            api = getattr(idx, "_vector_api", None)
            if api is not None and callable(getattr(api, "fetch_vectors", None)):
                raw = api.fetch_vectors(ids=ids, namespace=namespace, _preload_content=False)
                data = getattr(raw, "data", raw)
                if isinstance(data, (bytes, bytearray, memoryview)):
                    return bytes(data)
        except (TypeError, AttributeError):  # internals not shaped as expected: the SDK's models
            pass
        self._raw_fetch = False
        return None

    def fetch(self, idx: Any, namespace: str, ids: list[str]) -> Mapping[str, Any]:
        """id -> record (an SDK Vector, or a plain dict) for the ids that exist."""
        raw = self.fetch_raw(idx, namespace, ids)
        if raw is not None:
            # (also spares 7.3 turning integer metadata into floats while it builds its models)
            return _fetched_map(raw)
        r = idx.fetch(ids=ids, namespace=namespace)
        return _get(r, "vectors") or {}

    def can_upsert_raw(self, idx: Any) -> bool:
        """Whether ``upsert_raw`` can send a JSON body as it is (9.x/10.x; 7.3's client re-encodes
        every JSON body with json.dumps, so it gets records through ``upsert``)."""
        http = getattr(idx, "_http", None)
        return self.major >= 8 and http is not None and callable(getattr(http, "post", None))

    @staticmethod
    def upsert_raw(idx: Any, body: bytes, records: int) -> int:
        """POST /vectors/upsert with ``body`` (JSON text) through the SDK's own HTTP client (9.x/10.x
        ``Index._http``: host, auth and API-version headers, TLS, proxy and retries are its own)."""
        r = idx._http.post("/vectors/upsert", content=body, headers={"Content-Type": "application/json"})
        try:
            count = orjson.loads(r.content).get("upsertedCount")
        except (orjson.JSONDecodeError, AttributeError):
            count = None
        return int(count) if isinstance(count, int) else records

    @staticmethod
    def upsert(idx: Any, namespace: str, vectors: list[dict[str, Any]]) -> int:
        r = idx.upsert(vectors=vectors, namespace=namespace)
        count = _get(r, "upserted_count", "upsertedCount")
        return int(count) if count is not None else len(vectors)

    @staticmethod
    def start_import(idx: Any, uri: str, integration_id: str | None) -> str:
        r = idx.start_import(uri=uri, integration_id=integration_id, error_mode="abort")
        return str(_get(r, "id"))

    @staticmethod
    def describe_import(idx: Any, import_id: str) -> dict[str, Any]:
        r = idx.describe_import(id=import_id)
        return {"status": str(_get(r, "status") or ""), "percent": _get(r, "percent_complete", "percentComplete"),
                "records": _get(r, "records_imported", "recordsImported"), "error": _get(r, "error")}

    @staticmethod
    def cancel_import(idx: Any, import_id: str) -> None:
        idx.cancel_import(id=import_id)


def _fetch_query(ids: list[str], namespace: str) -> str:
    """``ids=a&ids=b...[&namespace=ns]``, percent-encoded (all at once when every id is URL-safe)."""
    if _URL_SAFE.fullmatch("".join(ids)):
        query = "ids=" + "&ids=".join(ids)
    else:
        query = "&".join("ids=" + quote(rid, safe="") for rid in ids)
    return f"{query}&namespace={quote(namespace, safe='')}" if namespace else query


class _Unparsable(ValueError):
    """simdjson refused a response's JSON (integers beyond 64 bits, escaped lone surrogates...)."""


def _fetched_map(raw: bytes, *, exact: bool = False) -> dict[str, Any]:
    """A fetch response's ``vectors`` map, decoded the general way: orjson, or the standard library
    for what orjson refuses (escaped lone surrogates) and, when ``exact``, for all of it (orjson
    reads integers beyond 64 bits as floats; the standard library keeps them, so validation can
    name them)."""
    try:
        if exact:
            raise ValueError("exact")
        doc = orjson.loads(raw)
    except ValueError:  # orjson.JSONDecodeError included
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise RemoteError(f"the fetch response is not JSON ({exc})") from None
    vectors = doc.get("vectors") if isinstance(doc, dict) else None
    if vectors is None:
        return {}
    if not isinstance(vectors, dict):
        raise RemoteError(f"the fetch response's 'vectors' is a {type(vectors).__name__}, not an object")
    return vectors


def _fast_batch(raw: bytes, ids: list[str], dim: int | None) -> RecordBatch | None:
    """The records of a fetch response, in ``ids`` order, straight from its JSON bytes: dense values
    parsed by simdjson into float64 buffers and cast once to a float32 matrix (exact: the values
    were written as float32 text), metadata and sparse values as Python objects.

    ``dim`` is the dense dimension (None: a sparse index, no dense values). None when anything
    is not as expected (an id missing or repeated, a field of another type or length): the
    caller then decodes the same bytes the general way, which either accepts them or names the
    record and field at fault. Raises _Unparsable for JSON simdjson refuses.
    """
    if simdjson is None:
        return None
    parser = simdjson.Parser()  # one per call: a parser is not reusable while its proxies live
    try:
        try:
            doc = parser.parse(raw)
        except ValueError as exc:  # NUMBER_ERROR (beyond 64 bits), STRING_ERROR (lone surrogates)...
            raise _Unparsable(str(exc)) from None
        vecs = doc.get("vectors") if isinstance(doc, simdjson.Object) else None
        if not isinstance(vecs, simdjson.Object):
            return None
        n = len(ids)
        where = {rid: i for i, rid in enumerate(ids)}
        keys = list(vecs.keys())  # (items() and values() would build dicts of lists of floats)
        if len(where) != n or len(keys) != n or len(set(keys)) != n:
            return None  # an id missing or repeated: the general way sorts it out
        order: list[int] = []
        bufs: list[bytes] = []
        sparse: list[Any] = [None] * n
        metas: list[Any] = [None] * n
        any_sparse = False
        for rid in keys:
            i = where.get(rid, -1)
            v = vecs[rid]
            if i < 0 or not isinstance(v, simdjson.Object):
                return None
            order.append(i)
            fields = list(v.keys())  # (looking up a key that is absent costs ten times more)
            if dim:
                values = v["values"] if "values" in fields else None
                if not isinstance(values, simdjson.Array) or len(values) != dim:
                    return None
                bufs.append(values.as_buffer(of_type="d"))
            sv = v["sparseValues"] if "sparseValues" in fields else (
                v["sparse_values"] if "sparse_values" in fields else None)
            if sv is not None:
                if not isinstance(sv, simdjson.Object):
                    return None
                si, sx = sv.get("indices"), sv.get("values")
                if not isinstance(si, simdjson.Array) or not isinstance(sx, simdjson.Array):
                    return None
                if len(si) or not dim:
                    sparse[i] = {"indices": si.as_list(), "values": sx.as_list()}
                    any_sparse = True
            md = v["metadata"] if "metadata" in fields else None
            if md is not None:
                if not isinstance(md, simdjson.Object):
                    return None
                metas[i] = md.as_dict()
        matrix = None
        if dim:
            flat = np.frombuffer(b"".join(bufs), dtype=np.float64).reshape(n, dim)
            if order == list(range(n)):
                matrix = flat.astype(np.float32)
            else:
                matrix = np.empty((n, dim), dtype=np.float32)
                matrix[np.asarray(order)] = flat
        return RecordBatch(ids=list(ids), values=matrix, sparse=sparse if any_sparse else None, metadata=metas)
    except _Unparsable:
        raise
    except (ValueError, TypeError, KeyError, RuntimeError, OverflowError):
        return None  # e.g. as_buffer on an array holding something other than numbers
    finally:
        doc = vecs = v = values = sv = si = sx = md = None  # the parser's proxies go before it does


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 99


def _next_token(r: Any) -> str | None:
    pagination = _get(r, "pagination")
    token = _get(pagination, "next") if pagination is not None else None
    return str(token) if token else None


# -- export ----------------------------------------------------------------------------------


_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")
_END = object()


def _fetch_cost(rid: str) -> int:
    """Bytes an id adds to a fetch URL: "&ids=" and the id, escaped."""
    return len(rid) + 5 if _URL_SAFE.fullmatch(rid) else len(quote(rid, safe="")) + 5


class _Exporter:
    def __init__(self, sdk: _Sdk, info: IndexInfo, idx: Any, reporter: _Reporter, *, parallelism: int,
                 retrier: _Retrier) -> None:
        self.sdk, self.info, self.idx, self.r = sdk, info, idx, reporter
        self.parallelism = parallelism
        self.retrier = retrier
        self.dim = info.dimension or 0
        self._avg_extra = 256.0  # bytes per record beyond the dense values (ids, sparse, metadata)
        self._est_lock = threading.Lock()

    # -- listing

    def namespaces(self, stats: Mapping[str, int]) -> list[str]:
        names: list[str] = []
        if self.sdk.has_namespace_listing(self.idx):
            token: str | None = None
            try:
                while True:
                    page, token = self.retrier.call(
                        "list namespaces", lambda t=token: self.sdk.namespace_page(self.idx, t))
                    names.extend(page)
                    if not token:
                        break
            except (RemoteError, NotFound, AttributeError, TypeError, NotImplementedError) as exc:
                self.r.note(f"list_namespaces unavailable ({exc}); namespaces taken from describe_index_stats")
                names = []
        seen = dict.fromkeys(names)
        for ns in stats:  # stats also count namespaces a listing might have missed
            seen.setdefault(ns, None)
        return list(seen)

    def list_ids(self, namespace: str) -> Iterator[list[str]]:
        token: str | None = None
        while True:
            ids, token = self.retrier.call(
                f"list ids of namespace {namespace or '__default__'!r}",
                lambda t=token: self.sdk.list_page(self.idx, namespace, t))
            if ids:
                yield ids
            if not token:
                return

    # -- fetching

    def batch_limit(self) -> int:
        with self._est_lock:
            per_record = 20 * self.dim + self._avg_extra + 64
        return max(1, min(MAX_FETCH_IDS, int(FETCH_RESPONSE_BUDGET // per_record)))

    def fetch(self, namespace: str, ids: list[str]) -> RecordBatch:
        what = f"fetch {len(ids)} ids from namespace {namespace or '__default__'!r}"
        raw = self.retrier.call(what, lambda: self.sdk.fetch_raw(self.idx, namespace, ids))
        if raw is not None:
            dense = self.info.vector_type != "sparse"
            try:
                fast = _fast_batch(raw, ids, self.dim if dense else None)
                exact = False
            except _Unparsable:
                fast, exact = None, True
            if fast is not None:
                if ids:
                    # what a record took beyond 16 bytes a value: batch_limit's 20 a value then
                    # keeps the next response's estimate above this one's size per record
                    with self._est_lock:
                        self._avg_extra = max(64.0, len(raw) / len(ids) - (16 * self.dim if dense else 0))
                return self._validated(namespace, fast)
            got = dict(_fetched_map(raw, exact=exact))  # the general way, which names whatever is wrong
        else:
            got = dict(self.retrier.call(what, lambda: self.sdk.fetch(self.idx, namespace, ids)))
        missing = [rid for rid in ids if rid not in got]
        if missing:
            # a record being deleted right now, or a lagging replica: ask once more, then give up
            self.r.sleep(0.2)
            again = self.retrier.call(what, lambda: self.sdk.fetch(self.idx, namespace, missing))
            got.update(again)
            missing = [rid for rid in ids if rid not in got]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise IncompleteExport(
                f"namespace {namespace or '__default__'!r}: id {missing[0]!r}{more} was listed but could not "
                "be fetched; the export is incomplete and was not committed")
        return self._batch(namespace, ids, got)

    def _batch(self, namespace: str, ids: list[str], got: Mapping[str, Any]) -> RecordBatch:
        rows: list[Any] = []
        sparse: list[Any] = []
        metas: list[Any] = []
        extra = 0
        dense = self.info.vector_type != "sparse"
        for rid in ids:
            v = got[rid]
            values = _get(v, "values")
            sv = _get(v, "sparse_values", "sparseValues")
            md = _get(v, "metadata")
            if dense:
                if values is None or len(values) != self.dim:
                    raise ValidationError(
                        f"has {0 if values is None else len(values)} dimensions, the index has {self.dim}",
                        field="values", record_id=rid)
                rows.append(values)
            if sv is not None:
                idx_ = _get(sv, "indices")
                val_ = _get(sv, "values")
                sv = {"indices": list(idx_ or []), "values": list(val_ or [])}
                if not sv["indices"] and dense:
                    sv = None
                else:
                    extra += 24 * len(sv["indices"])
            sparse.append(sv)
            if md is not None:
                md = dict(md)
                extra += 32 * len(md)
            metas.append(md)
            extra += len(rid)
        if ids:
            with self._est_lock:
                self._avg_extra = max(64.0, extra / len(ids))
        values = None
        if dense and rows:
            try:
                values = np.asarray(rows, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"values are not numbers ({exc})", field="values") from None
            if values.ndim != 2:
                raise ValidationError("values are not a matrix", field="values")
        batch = RecordBatch(ids=list(ids), values=values,
                            sparse=sparse if any(s is not None for s in sparse) else None, metadata=metas)
        return self._validated(namespace, batch)

    def _validated(self, namespace: str, batch: RecordBatch) -> RecordBatch:
        try:
            return validate_batch(batch, dimension=self.info.dimension, vector_type=self.info.vector_type)
        except ValidationError as exc:
            raise ValidationError(f"namespace {namespace or '__default__'!r}: {exc.reason}", field=exc.field,
                                  record_id=exc.record_id) from None

    # -- one namespace, pipelined: a lister thread pages through ids, the pool fetches,
    #    this thread writes the batches in list order

    def export_namespace(self, namespace: str, writer: ArchiveWriter, pool: ThreadPoolExecutor,
                         keep_ids: set[str] | None) -> int:
        # The id chain is sequential (each page's token comes from the last), and a list call
        # queues behind fetches on a busy server: let the lister run far ahead (ids are small),
        # and start fetching once it has a head start or is done.
        pages: queue.Queue[Any] = queue.Queue(maxsize=LIST_AHEAD_PAGES)
        halt = threading.Event()

        def hand_over(item: Any) -> bool:
            while not (halt.is_set() or self.r.stop.is_set()):
                try:
                    pages.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def lister() -> None:
            try:
                for page in self.list_ids(namespace):
                    if not hand_over(page):
                        return
                hand_over(_END)
            except BaseException as exc:  # raised on the writing thread
                hand_over(exc)

        pending: deque[Future[RecordBatch]] = deque()
        written = 0
        window = 2 * self.parallelism

        def submit(chunk: list[str]) -> None:
            nonlocal written
            pending.append(pool.submit(self.fetch, namespace, chunk))
            while len(pending) > window:
                written += self._write(writer, namespace, pending.popleft())

        writer.write(namespace, RecordBatch(ids=[]))  # listed in the manifest even when empty
        t = threading.Thread(target=lister, name="spruce-list", daemon=True)
        t.start()
        try:
            head_start = time.monotonic() + LIST_HEAD_START_SECONDS
            while t.is_alive() and pages.qsize() < LIST_AHEAD_PAGES // 2 and time.monotonic() < head_start:
                self.r.sleep(0.02)
            chunk: list[str] = []
            cost = 0
            limit = self.batch_limit()
            while (page := _take(pages, self.r)) is not _END:
                if isinstance(page, BaseException):
                    raise page
                if keep_ids is not None:
                    keep_ids.update(page)
                for rid in page:
                    c = _fetch_cost(rid)
                    if chunk and (len(chunk) >= limit or cost + c > FETCH_URL_BUDGET):
                        submit(chunk)
                        chunk, cost, limit = [], 0, self.batch_limit()
                    chunk.append(rid)
                    cost += c
            if chunk:
                submit(chunk)
            while pending:
                written += self._write(writer, namespace, pending.popleft())
        except BaseException:
            self.r.stop.set()
            for f in pending:
                f.cancel()
            raise
        finally:
            halt.set()
            t.join(timeout=10)
        return written

    def _write(self, writer: ArchiveWriter, namespace: str, fut: Future[RecordBatch]) -> int:
        batch = fut.result()
        self.r.check_cancel()
        writer.write(namespace, batch)
        return len(batch.ids)

    def recount(self, exported: Mapping[str, set[str]]) -> list[str]:
        problems = []
        for ns, ids in exported.items():
            self.r.phase("recount", ns)
            now: set[str] = set()
            for page in self.list_ids(ns):
                now.update(page)
            added, removed = sorted(now - ids), sorted(ids - now)
            label = ns or "__default__"
            if added:
                problems.append(f"namespace {label!r}: {len(added)} id(s) listed now were not exported "
                                f"(e.g. {', '.join(map(repr, added[:3]))})")
            if removed:
                problems.append(f"namespace {label!r}: {len(removed)} exported id(s) are no longer listed "
                                f"(e.g. {', '.join(map(repr, removed[:3]))})")
        return problems


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _export(sdk: _Sdk, index_name: str, store: Any, reporter: _Reporter, *, namespaces: Sequence[str] | None,
            format: str, verify_after: bool, parallelism: int, overwrite: bool,
            export_id: str | None = None) -> Manifest:
    retrier = _Retrier(reporter)
    if store.exists(MANIFEST_NAME) and not overwrite:
        if export_id is not None:
            with contextlib.suppress(Exception):
                from spruce.archive import ArchiveReader

                m = ArchiveReader(store).manifest
                if m.export_id == export_id:  # a resumed job whose commit already happened
                    return m
        raise AlreadyExists(f"{store.uri} already holds a complete archive; export to a new path "
                            "or pass overwrite=True (--overwrite)")
    reporter.phase("listing")
    info = retrier.call(f"describe index {index_name!r}", lambda: sdk.describe(index_name))
    if not info.host:
        raise RemoteError(f"index {index_name!r} has no host yet (is it still initializing?)")
    idx = sdk.index(info.host)
    ex = _Exporter(sdk, info, idx, reporter, parallelism=parallelism, retrier=retrier)
    stats = retrier.call("describe_index_stats", lambda: sdk.stats(idx))
    all_ns = ex.namespaces(stats)
    wanted: list[str] | None = None
    if namespaces is not None:
        wanted = list(dict.fromkeys(normalize_namespace(n) for n in namespaces))
        missing = [n or "__default__" for n in wanted if n not in all_ns]
        if missing:
            raise NotFound(f"namespace(s) {', '.join(map(repr, missing))} not found in index {index_name!r}")
        selected = wanted
    else:
        selected = all_ns
    reporter.total(sum(stats.get(ns, 0) for ns in selected))
    taken_at = _now()

    writer = ArchiveWriter(store, format=format, on_progress=reporter.advance)
    writer.begin()
    counts: dict[str, int] = {}
    kept: dict[str, set[str]] | None = {} if verify_after else None
    try:
        with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="spruce-fetch") as pool:
            for ns in selected:
                reporter.phase("exporting", ns)
                keep = kept.setdefault(ns, set()) if kept is not None else None
                counts[ns] = ex.export_namespace(ns, writer, pool, keep)
        reporter.phase("checking")
        for settle in STATS_SETTLE_SECONDS:  # Pinecone's stats can lag the last writes by a moment
            after = retrier.call("describe_index_stats", lambda: sdk.stats(idx))
            problems = []
            for ns in selected:
                if counts[ns] != after.get(ns, 0):
                    problems.append(f"namespace {ns or '__default__'!r}: exported {counts[ns]:,} records but "
                                    f"describe_index_stats reports {after.get(ns, 0):,}")
            if wanted is None:
                for ns, n in after.items():
                    if ns not in counts and n:
                        problems.append(f"namespace {ns or '__default__'!r} ({n:,} records) appeared during "
                                        "the export and was not exported")
            if not problems or settle is None:
                break
            reporter.sleep(settle)
        if problems:
            raise IncompleteExport("the export is incomplete and was not committed: " + "; ".join(problems))
        if kept is not None:
            diffs = ex.recount(kept)
            if diffs:
                raise IncompleteExport("recount after export (--verify-after) found differences, so the archive "
                                       "was not committed: " + "; ".join(diffs))
            reporter.note(f"recount: all {sum(len(v) for v in kept.values()):,} ids in {len(kept)} namespace(s) "
                          "were listed again and match the archive")
        reporter.check_cancel()
        source = {"kind": "pinecone", "index": info.name, "dimension": info.dimension, "metric": info.metric,
                  "vector_type": info.vector_type, "spec": info.spec or {}, "host": info.host}
        if info.tags:
            source["tags"] = info.tags
        manifest = writer.commit(
            source=source, consistency="live", snapshot={"point": None, "taken_at": taken_at},
            selection={"namespaces": wanted, "filter": None}, export_id=export_id)
    except BaseException:
        reporter.stop.set()
        writer.abort()
        raise
    reporter.note(f"exported {manifest.totals['records']:,} records from {len(selected)} namespace(s); "
                  f"every count matches describe_index_stats (SDK {sdk.version}; {reporter.p.retries} "
                  f"retries, {reporter.p.throttled} throttled)")
    reporter.phase("done")
    return manifest


# -- restore ---------------------------------------------------------------------------------


@dataclass
class RestoreSummary:
    index: str
    method: str  # "upsert" or "bulk_import"
    records: int
    namespaces: dict[str, int]
    created_index: bool
    seconds: float
    counts_after: dict[str, int] = field(default_factory=dict)
    verified: bool = False
    import_id: str | None = None
    retries: int = 0
    throttled: int = 0
    sdk_version: str = ""
    notes: list[str] = field(default_factory=list)


def _request_size(line: bytes) -> int:
    # The SDK re-serializes each record: 7.3 (json.dumps) adds a space after every ',' and ':'.
    return len(line) + line.count(b",") + line.count(b":") + 2


def upsert_chunks(batch: RecordBatch, *, max_records: int = MAX_UPSERT_RECORDS,
                  max_bytes: int = MAX_UPSERT_BYTES) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """(records as upsert dicts, request bytes) chunks within Pinecone's per-request limits.

    Records are the archive's JSON (float32 in its shortest exact decimal form, so the
    server's float32 parse gives back the same bits), measured as the SDK will send them.
    """
    return line_chunks(encode_lines(batch), max_records=max_records, max_bytes=max_bytes)


def line_chunks(lines: Iterable[bytes], *, max_records: int = MAX_UPSERT_RECORDS,
                max_bytes: int = MAX_UPSERT_BYTES) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Chunks of upsert records from JSON lines in the archive's record shape."""
    budget = max_bytes - _UPSERT_ENVELOPE
    out: list[dict[str, Any]] = []
    size = 0
    for line in lines:
        n = _request_size(line)
        if out and (len(out) >= max_records or size + n > budget):
            yield out, size
            out, size = [], 0
        rec = _loads(line)
        if n > budget:
            raise ValidationError(f"is about {n:,} bytes as JSON, more than one upsert request may carry "
                                  f"({max_bytes:,})", record_id=rec.get("id"))
        out.append(rec)
        size += n
    if out:
        yield out, size


def raw_line_chunks(lines: Iterable[bytes], *, max_records: int = MAX_UPSERT_RECORDS,
                    max_bytes: int = MAX_UPSERT_BYTES) -> Iterator[tuple[list[bytes], int]]:
    """Chunks of upsert records as JSON texts, for a request body built around them as they are.

    Lines in the archive's record shape already are upsert records, dense values in their
    shortest float32 text; only ``sparse_values`` is renamed to the API's ``sparseValues``
    (re-encoding that line). The size is the body's, exactly.
    """
    budget = max_bytes - _UPSERT_ENVELOPE
    out: list[bytes] = []
    size = 0
    for line in lines:
        line = line.strip()
        if b'"sparse_values"' in line:
            rec = _loads(line)
            if "sparse_values" in rec:
                rec["sparseValues"] = rec.pop("sparse_values")
                line = orjson.dumps(rec)
        n = len(line) + 1
        if out and (len(out) >= max_records or size + n > budget):
            yield out, size
            out, size = [], 0
        if n > budget:
            raise ValidationError(f"is about {n:,} bytes as JSON, more than one upsert request may carry "
                                  f"({max_bytes:,})", record_id=_loads(line).get("id"))
        out.append(line)
        size += n
    if out:
        yield out, size


def _upsert_body(namespace: str, lines: list[bytes]) -> bytes:
    body = b'{"vectors":[' + b",".join(lines) + b"]"
    if namespace:
        body += b',"namespace":' + orjson.dumps(namespace)
    return body + b"}"


def _loads(line: bytes) -> dict[str, Any]:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:  # integers beyond 64 bits, escaped lone surrogates
        return json.loads(line)


def _verified_lines(store: Any, f: Any) -> list[bytes] | None:
    """A JSON Lines archive part as its lines, after checking its size, sha256 and record count
    against the manifest (None for parts this does not apply to: Parquet, plain files).

    Its lines already are upsert records; sending them as they are spares decoding every
    float into a matrix only to encode it again.
    """
    if f.sha256 is None or f.records is None or f.format not in ("jsonl.gz", "jsonl"):
        return None
    where = f"{store.uri.rstrip('/')}/{f.path}"
    try:
        data = store.get_bytes(f.path)
    except FileNotFoundError:
        raise MissingFile(f"{where}: listed in the manifest but missing") from None
    if len(data) != f.bytes or hashlib.sha256(data).hexdigest() != f.sha256:
        raise ChecksumMismatch(f"{where}: {len(data):,} bytes with a sha256 different from the manifest's "
                               f"({f.bytes:,} bytes, {f.sha256})")
    if f.format == "jsonl.gz":
        try:
            data = igzip.decompress(data)
        except Exception as exc:
            raise ChecksumMismatch(f"{where}: not a gzip stream ({exc})") from None
    lines = [line for line in data.split(b"\n") if line.strip()]
    if len(lines) != f.records:
        raise RecordCountMismatch(f"{where}: holds {len(lines):,} records, the manifest says {f.records:,}")
    return lines


def _import_uri(store: Any) -> str:
    uri = str(store.uri).rstrip("/")
    scheme = uri.split("://", 1)[0].lower()
    if scheme not in ("s3", "gs", "az", "https"):
        raise InvalidArgument(f"bulk import reads from s3://, gs:// or Azure storage; {uri} is not there")
    if scheme == "az":
        account = getattr(getattr(store, "location", None), "account", None) or os.environ.get(
            "AZURE_STORAGE_ACCOUNT_NAME")
        if account:
            uri = f"https://{account}.blob.core.windows.net/{uri.split('://', 1)[1]}"
    return uri + "/"


def _restore(sdk: _Sdk, src_store: Any, index_name: str, reporter: _Reporter, *, cloud: str, region: str,
             bulk_import: bool, integration_id: str | None, parallelism: int, skip_files: int = 0,
             on_file_done: Callable[[int], None] | None = None,
             on_import_started: Callable[[str], None] | None = None,
             import_id: str | None = None) -> RestoreSummary:
    t0 = time.perf_counter()
    retrier = _Retrier(reporter)
    source = open_source(src_store)
    dimension, vector_type = source.infer()
    manifest = source.manifest
    metric = (manifest.source.get("metric") if manifest else None) or (
        "dotproduct" if vector_type == "sparse" else "cosine")
    if bulk_import:
        if manifest is None or manifest.file_format != "parquet":
            raise InvalidArgument("bulk import (start_import) reads Parquet: restore a Parquet archive "
                                  "(spruce export --format parquet), or restore without --bulk-import")
        uri = _import_uri(src_store)

    reporter.phase("restoring")
    created = False
    try:
        info = sdk.describe(index_name)
    except Exception as exc:
        if classify(exc).status != 404:
            info = retrier.call(f"describe index {index_name!r}", lambda: sdk.describe(index_name))
        else:
            info = None
    if info is None:
        def create() -> None:
            try:
                sdk.create(index_name, dimension=dimension, metric=metric, vector_type=vector_type, cloud=cloud,
                           region=region, tags=manifest.source.get("tags") if manifest else None)
            except Exception as exc:
                if classify(exc).status != 409:  # 409: an earlier attempt did create it
                    raise

        retrier.call(f"create index {index_name!r}", create)
        created = True
        info = _wait_ready(sdk, index_name, retrier, reporter)
    else:
        if vector_type != info.vector_type or (dimension is not None and info.dimension not in (None, dimension)):
            raise InvalidArgument(
                f"index {index_name!r} is {info.vector_type} with dimension {info.dimension}, but the data is "
                f"{vector_type} with dimension {dimension}")
        if not info.ready:
            info = _wait_ready(sdk, index_name, retrier, reporter)
    idx = sdk.index(info.host)
    before = {} if created else retrier.call("describe_index_stats", lambda: sdk.stats(idx))
    total = source.total_records
    reporter.total(total)
    per_ns: dict[str, int] = {}
    summary = RestoreSummary(index=index_name, method="bulk_import" if bulk_import else "upsert", records=0,
                             namespaces=per_ns, created_index=created, seconds=0.0, sdk_version=sdk.version)

    if bulk_import:
        assert manifest is not None
        if import_id is None:
            reporter.phase("importing")
            import_id = retrier.call("start_import", lambda: sdk.start_import(idx, uri, integration_id))
            if on_import_started is not None:
                on_import_started(import_id)
        summary.import_id = import_id
        _follow_import(sdk, idx, import_id, reporter, retrier)
        for ns in manifest.namespaces:
            per_ns[ns.name] = ns.record_count
        summary.records = manifest.totals["records"]
    else:
        max_records = MAX_UPSERT_RECORDS_TEXT if info.integrated else MAX_UPSERT_RECORDS
        try:
            _upsert_all(sdk, idx, source, reporter, retrier, max_records=max_records, parallelism=parallelism,
                        per_ns=per_ns, skip_files=skip_files, on_file_done=on_file_done)
        except BaseException:
            if created and not any(per_ns.values()) and not skip_files:
                # nothing landed in the index this run created (e.g. a damaged first file): remove it
                with contextlib.suppress(Exception):
                    sdk.delete(index_name)
            raise
        summary.records = sum(per_ns.values())

    # the proof: the target's counts. Pinecone's stats can lag writes, so poll a little.
    reporter.phase("checking")
    expected = {ns.name: ns.record_count for ns in manifest.namespaces} if manifest is not None else dict(per_ns)
    fresh = created or not any(before.values())
    after: dict[str, int] = {}
    def short(counts: Mapping[str, int]) -> list[str]:
        # a fresh index must hold exactly the archive; one that held records may hold more
        return [f"namespace {ns or '__default__'!r}: restored {n:,}, the index reports {counts.get(ns, 0):,}"
                for ns, n in expected.items() if n and (counts.get(ns, 0) != n if fresh else counts.get(ns, 0) < n)]

    after: dict[str, int] = {}
    for attempt in range(12):
        after = retrier.call("describe_index_stats", lambda: sdk.stats(idx))
        if not short(after):
            break
        reporter.sleep(min(4.0, 0.25 * 2 ** attempt))
    summary.counts_after = {ns: after.get(ns, 0) for ns in expected}
    bad = short(after)
    if bad:
        raise IncompleteRestore("after the restore, counts differ: " + "; ".join(bad))
    summary.verified = fresh
    if not fresh:
        summary.notes.append("the index held records before the restore: each namespace holds at least the "
                             "archive's count, which is all that can be checked")
    summary.retries, summary.throttled = reporter.p.retries, reporter.p.throttled
    summary.seconds = time.perf_counter() - t0
    reporter.phase("done")
    return summary


def _wait_ready(sdk: _Sdk, name: str, retrier: _Retrier, reporter: _Reporter, timeout: float = 900.0) -> IndexInfo:
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        info = retrier.call(f"describe index {name!r}", lambda: sdk.describe(name))
        if info.ready and info.host:
            return info
        if time.monotonic() > deadline:
            raise RemoteError(f"index {name!r} was not ready after {timeout:.0f}s")
        reporter.sleep(delay)
        delay = min(5.0, delay * 2)


def _follow_import(sdk: _Sdk, idx: Any, import_id: str, reporter: _Reporter, retrier: _Retrier) -> None:
    delay = 0.2
    last = 0
    while True:
        try:
            d = retrier.call(f"describe_import {import_id}", lambda: sdk.describe_import(idx, import_id))
        except JobCancelled:
            with contextlib.suppress(Exception):
                sdk.cancel_import(idx, import_id)
            raise
        records = int(d["records"] or 0)
        if records > last:
            reporter.advance(records - last, 0)
            last = records
        status = d["status"].replace("_", "").lower()
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise RemoteError(f"bulk import {import_id} {d['status']}: {d['error'] or 'no error given'}")
        try:
            reporter.sleep(delay)
        except JobCancelled:
            with contextlib.suppress(Exception):
                sdk.cancel_import(idx, import_id)
            raise
        delay = min(5.0, delay * 1.5)


def _upsert_all(sdk: _Sdk, idx: Any, source: Any, reporter: _Reporter, retrier: _Retrier, *, max_records: int,
                parallelism: int, per_ns: dict[str, int], skip_files: int,
                on_file_done: Callable[[int], None] | None) -> None:
    """Stage one file at a time, read whole, so its checksum is checked before any of it is sent
    (JSON Lines parts of an archive go as their own lines; Parquet and plain files are decoded
    and validated), reading the next file while this one's chunks are upserted in parallel."""
    files = list(source.files)
    staged: queue.Queue[Any] = queue.Queue(maxsize=1)
    done = threading.Event()

    def reader() -> None:
        try:
            for i, f in enumerate(files):
                if i < skip_files:
                    continue
                lines = _verified_lines(source.store, f) if source.kind == "archive" else None
                if not hand_over((i, f, lines if lines is not None else list(source.read(f)))):
                    return
            hand_over(None)
        except BaseException as exc:  # handed to the main thread, which raises it
            hand_over(exc)

    def hand_over(item: Any) -> bool:
        while not (done.is_set() or reporter.stop.is_set()):
            try:
                staged.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    for f in files[:skip_files]:
        ns = normalize_namespace(f.namespace)
        per_ns[ns] = per_ns.get(ns, 0) + (f.records or 0)
        reporter.advance(f.records or 0, 0)
    t = threading.Thread(target=reader, name="spruce-restore-reader", daemon=True)
    t.start()

    raw = sdk.can_upsert_raw(idx)

    def send(ns: str, vectors: list[Any]) -> int:
        label = ns or "__default__"
        what = f"upsert {len(vectors)} records into namespace {label!r}"
        if raw:
            body = _upsert_body(ns, vectors)
            return retrier.call(what, lambda: sdk.upsert_raw(idx, body, len(vectors)))
        return retrier.call(what, lambda: sdk.upsert(idx, ns, vectors))

    try:
        with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="spruce-upsert") as pool:
            while True:
                item = _take(staged, reporter)
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                i, f, content = item
                ns = normalize_namespace(f.namespace)
                pending: deque[tuple[Future[int], int, int]] = deque()
                if content and isinstance(content[0], bytes):
                    chunker: Callable[..., Iterator[Any]] = raw_line_chunks if raw else line_chunks
                    chunks: Iterable[Any] = chunker(content, max_records=max_records)
                elif raw:
                    chunks = (c for batch in content
                              for c in raw_line_chunks(encode_lines(batch), max_records=max_records))
                else:
                    chunks = (c for batch in content for c in upsert_chunks(batch, max_records=max_records))
                try:
                    for vectors, size in chunks:
                        reporter.check_cancel()
                        pending.append((pool.submit(send, ns, vectors), len(vectors), size))
                        while len(pending) > 2 * parallelism:
                            _finish(pending.popleft(), reporter, per_ns, ns)
                    while pending:
                        _finish(pending.popleft(), reporter, per_ns, ns)
                except BaseException:
                    reporter.stop.set()  # in-flight upserts stop retrying
                    for fut, _n, _size in pending:
                        fut.cancel()
                    raise
                if on_file_done is not None:
                    on_file_done(i + 1)
    finally:
        done.set()
        t.join(timeout=10)


def _take(q: queue.Queue[Any], reporter: _Reporter) -> Any:
    while True:
        reporter.check_cancel()
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def _finish(item: tuple[Future[int], int, int], reporter: _Reporter, per_ns: dict[str, int], ns: str) -> None:
    fut, n, size = item
    fut.result()
    per_ns[ns] = per_ns.get(ns, 0) + n
    reporter.advance(n, size)


# -- the Python API --------------------------------------------------------------------------


def _check_common(api_key: str | None, host: str | None, parallelism: int) -> str:
    key = api_key or ""
    if not key:
        raise InvalidArgument(f"no Pinecone API key: pass api_key or set {API_KEY_ENV}")
    if host:
        if "://" not in host:
            raise InvalidArgument(f"the Pinecone host must be a URL such as {DEFAULT_CONTROL_HOST}, got {host!r}")
        check_no_credentials(host, what="the Pinecone host")
    if isinstance(parallelism, bool) or not isinstance(parallelism, int) or not 1 <= parallelism <= 64:
        raise InvalidArgument(f"parallelism must be an integer from 1 to 64, got {parallelism!r}")
    return key


def export(index_name: str, dest_uri: str, *, api_key: str | None, host: str | None = None,
           namespaces: Sequence[str] | None = None, format: str = "jsonl.gz",
           storage_options: Mapping[str, Any] | None = None, verify_after: bool = False, parallelism: int = 4,
           on_progress: Callable[[Progress], None] | None = None, overwrite: bool = False) -> Manifest:
    """Export ``index_name`` from the Pinecone API at ``host`` (default: Pinecone's own) to ``dest_uri``.

    Returns the committed manifest (``consistency: "live"``). Raises IncompleteExport when a
    namespace's count differs from describe_index_stats, when a listed id cannot be fetched,
    or (``verify_after``) when a second listing differs from the archive; RemoteError when
    the API keeps failing. In all those cases no manifest is written.
    """
    key = _check_common(api_key, host, parallelism)
    validate_index_name(index_name)
    if format not in FORMATS:
        raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if isinstance(namespaces, str):
        raise InvalidArgument("namespaces must be a list of namespace names")
    store = open_store(dest_uri, **dict(storage_options or {}))
    sdk = _Sdk(key, host)
    return _export(sdk, index_name, store, _Reporter(on_progress), namespaces=namespaces, format=format,
                   verify_after=verify_after, parallelism=parallelism, overwrite=overwrite)


def restore(src_uri: str, index_name: str, *, api_key: str | None, host: str | None = None, cloud: str = "aws",
            region: str = "us-east-1", bulk_import: bool = False, integration_id: str | None = None,
            storage_options: Mapping[str, Any] | None = None, parallelism: int = 4,
            on_progress: Callable[[Progress], None] | None = None) -> RestoreSummary:
    """Restore an archive (or plain JSONL/Parquet files) at ``src_uri`` into ``index_name`` behind the
    Pinecone API, creating the index when missing. ``bulk_import`` hands a Parquet archive in
    s3/gs/az storage to the target's ``start_import`` instead of upserting, and follows it to the end."""
    key = _check_common(api_key, host, parallelism)
    validate_index_name(index_name)
    store = open_store(src_uri, **dict(storage_options or {}))
    if bulk_import:
        _import_uri(store)  # refuse local paths now
    sdk = _Sdk(key, host)
    return _restore(sdk, store, index_name, _Reporter(on_progress), cloud=cloud, region=region,
                    bulk_import=bulk_import, integration_id=integration_id, parallelism=parallelism)


# -- as jobs (``spruce jobs list`` shows them; progress and cancellation as for local jobs) ----------


class _JobReporter(_Reporter):
    def __init__(self, ctx: Any) -> None:
        super().__init__(None)
        self.ctx = ctx

    def total(self, n: int | None) -> None:
        super().total(n)
        self.ctx.state.records_total = n
        self.ctx.save()

    def advance(self, records: int, nbytes: int) -> None:
        super().advance(records, nbytes)
        self.ctx.progress(records=records, bytes=nbytes)

    def note(self, text: str) -> None:
        super().note(text)
        self.ctx.state.notes.append(f"{_now()}: {text}")

    def check_cancel(self) -> None:
        try:
            self.ctx.check_cancel()
        except JobCancelled:
            self.stop.set()
            raise
        super().check_cancel()

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + max(0.0, seconds)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            if self.stop.wait(min(left, 0.2)):
                raise JobCancelled("cancelled")
            self.check_cancel()


def _job_key(ctx: Any) -> str:
    key = ctx.manager.secrets.get(ctx.state.id, {}).get("pinecone_api_key") or os.environ.get(API_KEY_ENV)
    if not key:
        raise InvalidArgument(f"no Pinecone API key for job {ctx.state.id}: set {API_KEY_ENV} (keys are never "
                              "stored with a job)")
    return key


def _job_storage(ctx: Any) -> dict[str, Any]:
    return {k: v for k, v in ctx.storage_options().items() if k != "pinecone_api_key"}


def run_remote_export(ctx: Any) -> None:
    """JobManager runner for kind "remote-export". A re-run starts over (like local exports)."""
    s = ctx.state
    o = s.options
    s.records_done = s.bytes_done = s.files_done = 0
    s.percent_complete = 0.0
    ctx.save()
    reporter = _JobReporter(ctx)
    sdk = _Sdk(_job_key(ctx), o.get("pinecone_host"))
    store = open_store(s.uri, **_job_storage(ctx))
    try:
        manifest = _export(sdk, s.index, store, reporter, namespaces=o.get("namespaces"),
                           format=o.get("format", "jsonl.gz"), verify_after=bool(o.get("verify_after")),
                           parallelism=int(o.get("parallelism") or 4), overwrite=bool(o.get("overwrite")),
                           export_id=s.id)
    finally:
        reporter.stop.set()
    s.records_done = manifest.totals["records"]
    s.bytes_done = manifest.totals["bytes"]
    s.files_done = s.files_total = manifest.totals["files"]
    local = store.local_path(MANIFEST_NAME)
    s.download_url = f"file://{local}" if local else f"{store.uri.rstrip('/')}/{MANIFEST_NAME}"
    ctx.save()


def run_remote_import(ctx: Any) -> None:
    """JobManager runner for kind "remote-import". A resumed job skips the files it finished
    (upserts are idempotent anyway) or keeps following the bulk import it started."""
    s = ctx.state
    o = s.options
    reporter = _JobReporter(ctx)
    sdk = _Sdk(_job_key(ctx), o.get("pinecone_host"))
    store = open_store(s.uri, **_job_storage(ctx))
    skip = int(s.files_done or 0) if s.attempts > 1 else 0
    s.records_done = 0
    ctx.save()

    def file_done(n: int) -> None:
        s.files_done = n
        ctx.save()

    def import_started(import_id: str) -> None:
        o["import_id"] = import_id
        s.notes.append(f"{_now()}: bulk import {import_id} started on the target")
        ctx.save()

    try:
        summary = _restore(sdk, store, s.index, reporter, cloud=o.get("cloud") or "aws",
                           region=o.get("region") or "us-east-1", bulk_import=bool(o.get("bulk_import")),
                           integration_id=o.get("integration_id"), parallelism=int(o.get("parallelism") or 4),
                           skip_files=skip, on_file_done=file_done, on_import_started=import_started,
                           import_id=o.get("import_id"))
    finally:
        reporter.stop.set()
    s.records_done = summary.records
    s.notes.append(f"{_now()}: restored {summary.records:,} records by {summary.method} (SDK {summary.sdk_version}; "
                   f"{summary.retries} retries, {summary.throttled} throttled); counts "
                   f"{'equal the archive' if summary.verified else 'at least the archive'}'s: {summary.counts_after}")
    ctx.save()


def start_remote_export(manager: Any, index_name: str, dest_uri: str, *, api_key: str | None,
                        host: str | None = None, namespaces: Sequence[str] | None = None,
                        format: str = "jsonl.gz", storage_options: Mapping[str, Any] | None = None,
                        verify_after: bool = False, parallelism: int = 4, overwrite: bool = False,
                        sync: bool = False, run: bool = True) -> Any:
    """Start a "remote-export" job in ``manager`` (a JobManager). The key stays in memory only."""
    from spruce.jobs.state import JobState, new_job_id

    key = _check_common(api_key, host, parallelism)
    validate_index_name(index_name)
    if format not in FORMATS:
        raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if isinstance(namespaces, str):
        raise InvalidArgument("namespaces must be a list of namespace names")
    nss = None if namespaces is None else list(dict.fromkeys(normalize_namespace(n) for n in namespaces))
    store = open_store(dest_uri, **dict(storage_options or {}))
    storage, secrets = split_storage_options(storage_options)
    state = JobState(
        id=new_job_id("export"), kind="remote-export", index=index_name, uri=store.uri,
        options={"source": "pinecone", "pinecone_host": host, "namespaces": nss, "format": format,
                 "verify_after": verify_after, "parallelism": parallelism, "overwrite": overwrite,
                 "storage": storage},
    )
    return manager.submit(state, sync=sync, run=run, secrets={**secrets, "pinecone_api_key": key})


def start_remote_import(manager: Any, src_uri: str, index_name: str, *, api_key: str | None,
                        host: str | None = None, cloud: str = "aws", region: str = "us-east-1",
                        bulk_import: bool = False, integration_id: str | None = None,
                        storage_options: Mapping[str, Any] | None = None, parallelism: int = 4,
                        sync: bool = False, run: bool = True) -> Any:
    """Start a "remote-import" job in ``manager`` (a JobManager). The key stays in memory only."""
    from spruce.jobs.state import JobState, new_job_id

    key = _check_common(api_key, host, parallelism)
    validate_index_name(index_name)
    store = open_store(src_uri, **dict(storage_options or {}))
    if bulk_import:
        _import_uri(store)
    storage, secrets = split_storage_options(storage_options)
    state = JobState(
        id=new_job_id("import"), kind="remote-import", index=index_name, uri=store.uri,
        options={"target": "pinecone", "pinecone_host": host, "cloud": cloud, "region": region,
                 "bulk_import": bulk_import, "integration_id": integration_id, "parallelism": parallelism,
                 "storage": storage},
    )
    return manager.submit(state, sync=sync, run=run, secrets={**secrets, "pinecone_api_key": key})


register_runner("remote-export", run_remote_export)
register_runner("remote-import", run_remote_import)
