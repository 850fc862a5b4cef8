"""The official ``pinecone`` SDK, whatever its version (7.3, 9.x, 10.x): ``_Sdk`` wraps the few
calls the connector makes, with raw fast paths for list, fetch and upsert through the SDK's
own HTTP client, and describes an index as ``IndexInfo``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from spruce.errors import InvalidArgument
from spruce.records import normalize_namespace
from spruce.sources.pinecone.common import API_KEY_ENV, DEFAULT_CONTROL_HOST
from spruce.sources.pinecone.decode import _fetched_map
from spruce.sources.retry import describe_error

LIST_PAGE = 100  # the largest page list_paginated takes
NAMESPACE_PAGE = 100

_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")


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


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 99


def _next_token(r: Any) -> str | None:
    pagination = _get(r, "pagination")
    token = _get(pagination, "next") if pagination is not None else None
    return str(token) if token else None
