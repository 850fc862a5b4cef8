"""Data plane: vectors, queries, stats and namespaces of one index (camelCase JSON).

Bodies are parsed with orjson (upsert bodies: their numbers in bulk, see ``upsert_json``) and handed
to the engine without a pydantic pass:
an upsert of 1000 x 768 floats would spend longer in validation than in the
write. Keys are accepted in camelCase or snake_case (as protobuf JSON is);
unknown keys are a 400, so a misspelt ``filter`` never silently matches everything.

Which index a request addresses: under ``/index/NAME/...`` (the host that
describe_index returns) the path says; at the root (``/query`` ...) the first
label of the ``Host`` header does (``NAME.anything:PORT``), for clients placed
behind a wildcard-DNS proxy. ``build_router`` makes one router per addressing
mode; later data-plane modules (bulk imports and exports) follow the same pattern.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from spruce import models
from spruce.engine import Index
from spruce.errors import InvalidArgument, NotFound, ValidationError
from spruce.records import Record, normalize_namespace
from spruce.server import versions
from spruce.server.errors import ApiError
from spruce.server.namespaces import create as _create_namespace
from spruce.server.namespaces import delete as _delete_namespace
from spruce.server.namespaces import describe as _describe_namespace
from spruce.server.namespaces import listing as _list_namespaces
from spruce.server.responses import json_response
from spruce.server.upsert_json import loads_upsert

__all__ = ["IndexResolver", "build_router", "index_from_host", "index_from_path"]

MAX_UPSERT_VECTORS = 1000
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")

IndexOpener = Callable[[], Index]
"""Opens the addressed index; called in the worker thread, since the first open of an
index loads it from disk and must not block the event loop."""

IndexResolver = Callable[..., Awaitable[IndexOpener]]


# -- which index ----------------------------------------------------------------


async def index_from_path(request: Request, index_name: str = Path(
        description="The index, as in the host that describe_index returns.")) -> IndexOpener:
    engine = request.app.state.engine
    return lambda: engine.index(index_name)


async def index_from_host(request: Request) -> IndexOpener:
    host = request.headers.get("host", "")
    label = host.rsplit(":", 1)[0].split(".", 1)[0] if not host.startswith("[") else ""
    engine = request.app.state.engine

    def open_index() -> Index:
        if label and _NAME_RE.match(label) and engine.has_index(label):
            return engine.index(label)
        raise ApiError(404, "NOT_FOUND",
                       "this request addresses no index: use the host that describe_index returns "
                       "(http://HOST:PORT/index/NAME), or a Host header whose first label is the index name")
    return open_index


async def _run(opener: IndexOpener, op: Callable[..., Response], *args: Any) -> Response:
    """Open the index and run ``op(index, *args)`` in a worker thread."""
    return await run_in_threadpool(lambda: op(opener(), *args))


# -- request parsing ------------------------------------------------------------


def _body(raw: bytes, loads: Callable[[bytes], Any] = orjson.loads) -> dict[str, Any]:
    if not raw:
        return {}
    obj = loads(raw)
    if not isinstance(obj, dict):
        raise InvalidArgument("the body must be a JSON object")
    return obj


class _Fields:
    """Read a body's keys in either case, rejecting unknown ones."""

    def __init__(self, body: dict[str, Any], known: Mapping[str, str]) -> None:
        # known maps every accepted spelling to its canonical camelCase name
        unknown = [k for k in body if k not in known]
        if unknown:
            names = sorted({v for v in known.values()})
            raise InvalidArgument(f"unknown field {unknown[0]!r}; this request takes {', '.join(names)}")
        self._values = {known[k]: v for k, v in body.items()}

    def get(self, name: str, kind: type | tuple[type, ...] | None = None, default: Any = None) -> Any:
        value = self._values.get(name)
        if value is None:
            return default
        if kind is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise InvalidArgument(f"{name} must be {_kind_name(kind)}, got {type(value).__name__}")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", dict: "an object", list: "a list",
             float: "a number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _spellings(*camel: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in camel:
        out[name] = name
        out[re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)] = name
    return out


_UPSERT = _spellings("vectors", "namespace")
_QUERY = _spellings("namespace", "topK", "filter", "includeValues", "includeMetadata", "queries", "vector",
                    "sparseVector", "id", "scanFactor", "maxCandidates", "exact")
_UPDATE = _spellings("id", "values", "sparseValues", "setMetadata", "namespace", "filter", "dryRun")
_DELETE = _spellings("ids", "deleteAll", "namespace", "filter")
_STATS = _spellings("filter")
_FETCH_BY_METADATA = _spellings("namespace", "filter", "limit", "paginationToken")


# -- response shapes ------------------------------------------------------------


def _f32(values: list[float]) -> Any:
    """Stored values are float32: as a float32 array, orjson writes each in the shortest text that
    reads back to the same float32 (as Pinecone does), about half the bytes of float64 text."""
    return np.asarray(values, dtype=np.float32) if values else values


def _sparse(sv: models.SparseVector | None) -> dict[str, Any] | None:
    return None if sv is None else {"indices": sv.indices, "values": _f32(sv.values)}


def _vector(v: models.Vector) -> dict[str, Any]:
    out: dict[str, Any] = {"id": v.id, "values": _f32(v.values)}
    if v.sparse_values is not None:
        out["sparseValues"] = _sparse(v.sparse_values)
    if v.metadata is not None:
        out["metadata"] = v.metadata
    return out


def _record(rec: Record) -> dict[str, Any]:
    """A stored record as the API shows it, values straight from its float32 array."""
    out: dict[str, Any] = {"id": rec.id, "values": [] if rec.values is None else rec.values}
    sv = rec.sparse_values
    if sv is not None:
        out["sparseValues"] = {"indices": sv.indices.tolist(), "values": sv.values}
    if rec.metadata is not None:
        out["metadata"] = rec.metadata
    return out


def _scored(m: models.ScoredVector) -> dict[str, Any]:
    out: dict[str, Any] = {"id": m.id, "score": m.score, "values": _f32(m.values)}
    if m.sparse_values is not None:
        out["sparseValues"] = _sparse(m.sparse_values)
    if m.metadata is not None:
        out["metadata"] = m.metadata
    return out


def _record(r: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"id": r.id, "values": [] if r.values is None else r.values}
    if r.sparse_values is not None:
        out["sparseValues"] = {"indices": r.sparse_values.indices, "values": r.sparse_values.values}
    if r.metadata is not None:
        out["metadata"] = r.metadata
    return out


def _usage(u: models.Usage | None) -> dict[str, int]:
    return {"readUnits": u.read_units if u is not None else 0}


def _token(last: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": last})).decode().rstrip("=")


def _after(token: str) -> str:
    try:
        after = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["after"]
        if isinstance(after, str):
            return after
    except Exception:
        pass
    raise InvalidArgument(f"invalid pagination token {token!r}")


# -- operations (run in a worker thread) ----------------------------------------


def _refuse_zero(index: Index, values: Any, *, field: str = "values", record: int | None = None,
                 record_id: Any = None) -> None:
    """Pinecone refuses an all-zero dense vector on a cosine index (it has no direction), in an
    upsert, an update and a query; so does spruce. Any other bad value is the engine's to judge."""
    if isinstance(values, np.ndarray):
        zero = values.size > 0 and values.dtype.kind in "iuf" and not values.any()
    else:
        zero = isinstance(values, list) and bool(values) and all(type(x) in (int, float) and x == 0 for x in values)
    if zero and index.config.metric == "cosine":
        raise ValidationError("must contain at least one non-zero value on a cosine index", field=field,
                              record=record, record_id=record_id if isinstance(record_id, str) else None)


def _upsert(index: Index, raw: bytes, version: str) -> Response:
    f = _Fields(_body(raw, loads_upsert), _UPSERT)  # values parsed in bulk, straight to numpy
    vectors = f.get("vectors", list)
    if vectors is None:
        raise InvalidArgument("vectors is required")
    if len(vectors) > MAX_UPSERT_VECTORS:
        raise InvalidArgument(f"upsert takes at most {MAX_UPSERT_VECTORS} vectors per request, "
                              f"got {len(vectors)}")
    namespace = normalize_namespace(f.get("namespace", str))  # checked even when vectors is empty
    for i, rec in enumerate(vectors):
        _refuse_zero(index, rec.get("values") if isinstance(rec, Mapping) else None, record=i,
                     record_id=rec.get("id") if isinstance(rec, Mapping) else None)
    count = index.upsert(vectors, namespace=namespace).upserted_count
    return json_response({"upsertedCount": count}, version)


def _query(index: Index, raw: bytes, version: str) -> Response:
    f = _Fields(_body(raw), _QUERY)
    if f.get("queries") is not None:
        raise InvalidArgument("'queries' (several queries in one request) is deprecated and not supported; "
                              "send one query per request")
    top_k = f.get("topK", int)
    if top_k is None:
        raise InvalidArgument("topK is required")
    vector = f.get("vector", list)
    _refuse_zero(index, vector, field="vector")
    result = index.query(
        top_k=top_k,
        vector=vector,
        id=f.get("id", str),
        sparse_vector=f.get("sparseVector", dict),
        namespace=f.get("namespace", str),
        filter=f.get("filter", dict),
        include_values=f.get("includeValues", bool, False),
        include_metadata=f.get("includeMetadata", bool, False),
        exact=f.get("exact", bool, False),
    )
    return json_response({"matches": [_scored(m) for m in result.matches], "namespace": result.namespace,
                          "usage": _usage(result.usage)}, version)


def _fetch(index: Index, ids: list[str], namespace: str | None, version: str) -> Response:
    if not ids:
        raise InvalidArgument("ids is required: pass one or more ids query parameters")
    records = index.fetch_records(ids, namespace=namespace)
    return json_response({"vectors": {rec.id: _record(rec) for rec in records},
                          "namespace": normalize_namespace(namespace), "usage": {"readUnits": 1}}, version)


def _matching_ids(index: Index, namespace: str | None, flt: dict[str, Any]) -> list[str]:
    """Ids of the namespace's records matching a filter, from an exact snapshot."""
    with index.snapshot() as snap:
        return [rid for batch in snap.iter_batches(normalize_namespace(namespace), filter=flt)
                for rid in batch.ids]


def _matching_page(index: Index, namespace: str | None, flt: dict[str, Any], after: str | None,
                   limit: int) -> list[Record]:
    """Up to limit + 1 matching records after id ``after``, in id order."""
    out: list[Record] = []
    with index.snapshot() as snap:
        for batch in snap.iter_batches(normalize_namespace(namespace), filter=flt):
            for rec in batch.records():
                if after is None or rec.id > after:
                    out.append(rec)
                    if len(out) > limit:
                        return out
    return out


def _update(index: Index, raw: bytes, version: str) -> Response:
    f = _Fields(_body(raw), _UPDATE)
    rid = f.get("id", str)
    namespace = f.get("namespace", str)
    values = f.get("values", list)
    sparse = f.get("sparseValues", dict)
    set_metadata = f.get("setMetadata", dict)
    flt = f.get("filter", dict)
    if rid is not None:
        if flt is not None:
            raise InvalidArgument("update takes either id or filter, not both")
        _refuse_zero(index, values, record_id=rid)
        index.update(rid, values=values, set_metadata=set_metadata, namespace=namespace, sparse_values=sparse)
        matched = 1
    else:
        if flt is None:
            raise InvalidArgument("update needs id, or filter with setMetadata")
        if values is not None or sparse is not None:
            raise InvalidArgument("updating by filter changes metadata only: pass setMetadata, not values")
        ids = _matching_ids(index, namespace, flt)
        matched = len(ids)
        if set_metadata and not f.get("dryRun", bool, False):
            matched = 0
            for target in ids:
                try:
                    index.update(target, set_metadata=set_metadata, namespace=namespace)
                    matched += 1
                except NotFound:  # deleted since the snapshot
                    continue
    body = {"matchedRecords": matched} if versions.at_least(version, versions.V2025_10) else {}
    return json_response(body, version)


def _delete(index: Index, raw: bytes, version: str) -> Response:
    f = _Fields(_body(raw), _DELETE)
    ids = f.get("ids", list)
    if ids is not None and len(ids) > 1000:
        raise InvalidArgument(f"delete takes at most 1000 ids per request, got {len(ids)}")
    index.delete(ids=ids, delete_all=f.get("deleteAll", bool, False), namespace=f.get("namespace", str),
                 filter=f.get("filter", dict))
    return json_response({}, version)


def _list(index: Index, namespace: str | None, prefix: str | None, limit: int | None, token: str | None,
          version: str) -> Response:
    result = index.list_paginated(prefix=prefix or None, limit=limit, pagination_token=token or None,
                                  namespace=namespace)
    out: dict[str, Any] = {"vectors": [{"id": item.id} for item in result.vectors]}
    if result.pagination is not None:
        out["pagination"] = {"next": result.pagination.next}
    out["namespace"] = result.namespace
    out["usage"] = _usage(result.usage)
    return json_response(out, version)


def _stats(index: Index, flt: dict[str, Any] | None, version: str) -> Response:
    s = index.describe_index_stats(filter=flt)
    modes = index.search_status() if flt is None else {}
    out: dict[str, Any] = {
        # searchMode (exact, building, ann) is a spruce extension; SDKs keep unknown fields
        "namespaces": {ns: {"vectorCount": n.vector_count, **({"searchMode": modes[ns]["mode"]} if ns in modes else {})}
                       for ns, n in s.namespaces.items()},
        "indexFullness": s.index_fullness,
        "totalVectorCount": s.total_vector_count,
        "metric": s.metric,
        "vectorType": s.vector_type,
    }
    if s.dimension is not None:
        out["dimension"] = s.dimension
    return json_response(out, version)


def _fetch_by_metadata(index: Index, raw: bytes, version: str) -> Response:
    f = _Fields(_body(raw), _FETCH_BY_METADATA)
    limit = f.get("limit", int, 100)
    if not 1 <= limit <= 10_000:
        raise InvalidArgument(f"limit must be from 1 to 10000, got {limit}")
    token = f.get("paginationToken", str)
    namespace = f.get("namespace", str)
    records = _matching_page(index, namespace, f.get("filter", dict) or {},
                             _after(token) if token else None, limit)
    out: dict[str, Any] = {
        "vectors": {r.id: _record(r) for r in records[:limit]},
        "namespace": normalize_namespace(namespace),
        "usage": {"readUnits": 1},
    }
    if len(records) > limit:
        out["pagination"] = {"next": _token(records[limit - 1].id)}
    return json_response(out, version)


# -- routes ---------------------------------------------------------------------


def _doc(example: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI for a raw-JSON body (parsed by hand for speed, so FastAPI cannot infer it)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object"}, "example": example}}}}


def build_router(resolve: IndexResolver, *, prefix: str = "", include_in_schema: bool = True) -> APIRouter:
    """The data-plane routes, with ``resolve`` choosing the index of each request."""
    router = APIRouter(prefix=prefix, tags=["Vectors"], include_in_schema=include_in_schema)
    IndexDep = Depends(resolve)

    @router.post("/vectors/upsert", summary="Upsert vectors",
                 openapi_extra=_doc({"vectors": [{"id": "a", "values": [0.1, 0.2],
                                                  "metadata": {"genre": "drama"}}], "namespace": "ns1"}))
    async def upsert(request: Request, index: IndexOpener = IndexDep) -> Response:
        return await _run(index, _upsert, await request.body(), versions.requested(request))

    @router.post("/query", summary="Query vectors",
                 openapi_extra=_doc({"vector": [0.1, 0.2], "topK": 3, "filter": {"genre": {"$eq": "drama"}},
                                     "includeMetadata": True, "namespace": "ns1"}))
    async def query(request: Request, index: IndexOpener = IndexDep) -> Response:
        return await _run(index, _query, await request.body(), versions.requested(request))

    @router.get("/vectors/fetch", summary="Fetch vectors by id")
    async def fetch(request: Request, index: IndexOpener = IndexDep, namespace: str | None = None,
                    ids: list[str] = Query(default=[], description="Repeat for each id.")) -> Response:
        return await _run(index, _fetch, ids, namespace, versions.requested(request))

    @router.post("/vectors/fetch_by_metadata", summary="Fetch vectors by metadata filter",
                 openapi_extra=_doc({"filter": {"genre": "drama"}, "limit": 100, "namespace": "ns1"}))
    async def fetch_by_metadata(request: Request, index: IndexOpener = IndexDep) -> Response:
        return await _run(index, _fetch_by_metadata, await request.body(),
                                       versions.requested(request))

    @router.post("/vectors/update", summary="Update a vector, or the metadata of vectors matching a filter",
                 openapi_extra=_doc({"id": "a", "setMetadata": {"genre": "comedy"}, "namespace": "ns1"}))
    async def update(request: Request, index: IndexOpener = IndexDep) -> Response:
        return await _run(index, _update, await request.body(), versions.requested(request))

    @router.post("/vectors/delete", summary="Delete vectors by id, by filter, or all",
                 openapi_extra=_doc({"ids": ["a", "b"], "namespace": "ns1"}))
    async def delete(request: Request, index: IndexOpener = IndexDep) -> Response:
        return await _run(index, _delete, await request.body(), versions.requested(request))

    @router.get("/vectors/list", summary="List vector ids")
    async def list_vectors(request: Request, index: IndexOpener = IndexDep, namespace: str | None = None,
                           prefix: str | None = None, limit: int | None = None,
                           paginationToken: str | None = None) -> Response:
        return await _run(index, _list, namespace, prefix, limit, paginationToken,
                                       versions.requested(request))

    @router.post("/describe_index_stats", summary="Index statistics (optionally of a filter)",
                 openapi_extra=_doc({"filter": {"genre": "drama"}}))
    async def stats_post(request: Request, index: IndexOpener = IndexDep) -> Response:
        raw = await request.body()
        version = versions.requested(request)

        def work(idx: Index) -> Response:
            return _stats(idx, _Fields(_body(raw), _STATS).get("filter", dict), version)
        return await _run(index, work)

    @router.get("/describe_index_stats", summary="Index statistics")
    async def stats_get(request: Request, index: IndexOpener = IndexDep) -> Response:
        return await _run(index, _stats, None, versions.requested(request))

    @router.get("/namespaces", summary="List namespaces", tags=["Namespaces"])
    async def list_namespaces(request: Request, index: IndexOpener = IndexDep, prefix: str | None = None,
                              limit: int | None = None,
                              paginationToken: str | None = None) -> Response:
        return await _run(index, _list_namespaces, prefix, limit, paginationToken,
                                       versions.requested(request))

    @router.post("/namespaces", summary="Create a namespace, optionally with a metadata schema",
                 tags=["Namespaces"],
                 openapi_extra=_doc({"name": "ns1", "schema": {"fields": {"genre": {"filterable": True}}}}))
    async def create_namespace(request: Request, index: IndexOpener = IndexDep) -> Response:
        return await _run(index, _create_namespace, await request.body(), versions.requested(request))

    @router.get("/namespaces/{namespace:path}", summary="Describe a namespace", tags=["Namespaces"])
    async def describe_namespace(request: Request, namespace: str, index: IndexOpener = IndexDep) -> Response:
        return await _run(index, _describe_namespace, namespace, versions.requested(request))

    @router.delete("/namespaces/{namespace:path}", summary="Delete a namespace and its records",
                   tags=["Namespaces"])
    async def delete_namespace(request: Request, namespace: str, index: IndexOpener = IndexDep) -> Response:
        return await _run(index, _delete_namespace, namespace, versions.requested(request))

    @router.api_route("/records/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
    async def records_api(index: IndexOpener = IndexDep) -> Response:
        raise ApiError(501, "UNIMPLEMENTED",
                       "the records API (integrated embedding) is not supported: upsert and query vectors")

    return router
