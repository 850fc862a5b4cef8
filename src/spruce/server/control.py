"""Control plane: create, list, describe, configure and delete indexes (snake_case JSON).

Requests are accepted in every API version's shape: ``dimension``/``metric``/
``spec`` (2025-04 to 2026-04) or ``schema``/``deployment`` (2026-07). Responses
follow the version the request asked for (see ``versions``).

The engine stores the placement in the legacy ``spec`` form (``serverless``,
``pod`` or ``byoc``); a 2026-07 ``deployment`` is translated to it and back.
An index's ``host`` is this server's own address plus ``/index/NAME``, where
the data plane of that index answers.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from spruce.engine import Engine
from spruce.errors import InvalidArgument, NotFound
from spruce.records import IndexConfig
from spruce.server import versions
from spruce.server.errors import DATA_PREFIX, ApiError
from spruce.server.responses import empty, json_response

__all__ = ["ConfigureIndexBody", "CreateIndexBody", "data_host", "index_model", "router"]

router = APIRouter(tags=["Manage indexes"])

DENSE_FIELD = "_values"
SPARSE_FIELD = "_sparse_values"
DEFAULT_SPEC: dict[str, Any] = {"serverless": {"cloud": "local", "region": "local"}}
_SPEC_KINDS = ("serverless", "pod", "byoc")
_READY = {"ready": True, "state": "Ready"}

IndexName = Path(description="The name of the index.", examples=["movies"])


# -- request bodies -------------------------------------------------------------


class CreateIndexBody(BaseModel):
    """Create an index: the 2025 shape (``dimension``, ``metric``, ``spec``) or the
    2026-07 shape (``schema``, ``deployment``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(None, description="1-45 characters of a-z, 0-9 and '-'; "
                             "generated when omitted (2026-07 only).")
    dimension: int | None = Field(None, description="Dense vector width (2025 shape).")
    metric: str | None = Field(None, description="cosine, euclidean or dotproduct (2025 shape).")
    vector_type: str | None = Field(None, description="dense or sparse (2025 shape).")
    spec: dict[str, Any] | None = Field(None, description='{"serverless": {"cloud": ..., "region": ...}}, '
                                        "or pod / byoc (2025 shape).")
    index_schema: dict[str, Any] | None = Field(
        None, alias="schema",
        description='2026-07: {"fields": {"_values": {"type": "dense_vector", "dimension": 8, '
                    '"metric": "cosine"}}} and/or {"_sparse_values": {"type": "sparse_vector"}}.')
    deployment: dict[str, Any] | None = Field(None, description="2026-07: where the index runs.")
    read_capacity: dict[str, Any] | None = None
    deletion_protection: str | None = Field(None, description="enabled or disabled.")
    tags: dict[str, str] | None = None
    source_collection: str | None = None
    source_backup_id: str | None = None
    cmek_id: str | None = None


class ConfigureIndexBody(BaseModel):
    """Change deletion protection or tags (a tag set to "" is removed). Capacity
    settings (``spec``, ``deployment``, ``read_capacity``) are accepted and have no effect."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    deletion_protection: str | None = None
    tags: dict[str, str] | None = None
    spec: dict[str, Any] | None = None
    deployment: dict[str, Any] | None = None
    read_capacity: dict[str, Any] | None = None
    index_schema: dict[str, Any] | None = Field(None, alias="schema")
    embed: dict[str, Any] | None = None


# -- translation ----------------------------------------------------------------


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _legacy_spec(spec: dict[str, Any] | None) -> dict[str, Any]:
    """Validate a 2025-shape spec and return the copy the engine stores."""
    if spec is None:
        return {k: dict(v) for k, v in DEFAULT_SPEC.items()}
    present = [k for k in _SPEC_KINDS if spec.get(k) is not None]
    unknown = set(spec) - set(_SPEC_KINDS)
    if unknown or len(present) != 1:
        raise InvalidArgument("spec must have exactly one of 'serverless', 'pod' or 'byoc'")
    kind = present[0]
    inner = spec[kind]
    if not isinstance(inner, dict):
        raise InvalidArgument(f"spec.{kind} must be an object")
    inner = _drop_none(inner)
    required = ("cloud", "region") if kind == "serverless" else ("environment",)
    for key in required:
        if not isinstance(inner.get(key), str) or not inner[key]:
            raise InvalidArgument(f"spec.{kind}.{key} is required")
    if inner.get("source_collection"):
        raise InvalidArgument("creating an index from a collection is not supported")
    return {kind: inner}


def _deployment_spec(deployment: dict[str, Any] | None,
                     read_capacity: dict[str, Any] | None) -> dict[str, Any]:
    """Translate a 2026-07 deployment (plus top-level read_capacity) to the stored spec."""
    if deployment is None:
        spec = {k: dict(v) for k, v in DEFAULT_SPEC.items()}
    else:
        kind = deployment.get("deployment_type")
        if kind == "managed":
            spec = {"serverless": {"cloud": deployment.get("cloud"), "region": deployment.get("region")}}
        elif kind == "pod":
            replicas, shards = deployment.get("replicas") or 1, deployment.get("shards") or 1
            spec = {"pod": {"environment": deployment.get("environment"),
                            "pod_type": deployment.get("pod_type") or "p1.x1",
                            "replicas": replicas, "shards": shards, "pods": replicas * shards}}
        elif kind == "byoc":
            spec = {"byoc": {"environment": deployment.get("environment")}}
        else:
            raise InvalidArgument("deployment.deployment_type must be one of managed, pod, byoc")
        spec = _legacy_spec(spec)
    if read_capacity is not None and "pod" not in spec:
        next(iter(spec.values()))["read_capacity"] = read_capacity
    return spec


def _schema_vectors(schema: dict[str, Any]) -> tuple[int | None, str | None, str]:
    """(dimension, metric, vector_type) from a 2026-07 schema of vector fields."""
    fields = schema.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise InvalidArgument("schema.fields must be an object with at least one field")
    dense = sparse = None
    for name, f in fields.items():
        ftype = f.get("type") if isinstance(f, dict) else None
        if name == DENSE_FIELD and ftype == "dense_vector":
            dense = f
        elif name == SPARSE_FIELD and ftype == "sparse_vector":
            sparse = f
        else:
            raise InvalidArgument(
                f"schema field {name!r} ({ftype}) is not supported: spruce serves vector indexes, "
                f"declared as {DENSE_FIELD!r} (dense_vector) and/or {SPARSE_FIELD!r} (sparse_vector); "
                "document indexes and integrated embedding are not supported")
    if dense is None:
        return None, "dotproduct", "sparse"
    metric = dense.get("metric") or "cosine"
    metric = metric.lower() if isinstance(metric, str) else metric
    if sparse is not None and metric != "dotproduct":
        raise InvalidArgument("a hybrid index (dense and sparse fields) requires metric 'dotproduct'")
    return dense.get("dimension"), metric, "dense"


def _read_capacity(inner: dict[str, Any]) -> dict[str, Any]:
    rc = inner.get("read_capacity")
    dedicated = rc.get("dedicated") if isinstance(rc, dict) else None
    if isinstance(rc, dict) and rc.get("mode") == "Dedicated" and isinstance(dedicated, dict) \
            and "node_type" in dedicated and "scaling" in dedicated:
        return {"mode": "Dedicated", "dedicated": dedicated, "status": {"state": "Ready"}}
    return {"mode": "OnDemand", "status": {"state": "Ready"}}


def _spec_kind(cfg: IndexConfig) -> tuple[str, dict[str, Any]]:
    spec = cfg.spec or DEFAULT_SPEC
    for kind in _SPEC_KINDS:
        if isinstance(spec.get(kind), dict):
            return kind, spec[kind]
    return "serverless", DEFAULT_SPEC["serverless"]


def _legacy_spec_out(cfg: IndexConfig, version: str) -> dict[str, Any]:
    kind, inner = _spec_kind(cfg)
    if kind == "pod":
        replicas, shards = inner.get("replicas") or 1, inner.get("shards") or 1
        out = {"environment": inner.get("environment", "local"), "pod_type": inner.get("pod_type") or "p1.x1",
               "pods": inner.get("pods") or replicas * shards, "replicas": replicas, "shards": shards}
        if isinstance(inner.get("metadata_config"), dict):
            out["metadata_config"] = inner["metadata_config"]
        return {"pod": out}
    out = ({"cloud": inner.get("cloud", "local"), "region": inner.get("region", "local")}
           if kind == "serverless" else {"environment": inner.get("environment", "local")})
    if versions.at_least(version, versions.V2025_10):
        out["read_capacity"] = _read_capacity(inner)
        if isinstance(inner.get("schema"), dict):
            out["schema"] = inner["schema"]
    return {kind: out}


def _deployment_out(cfg: IndexConfig) -> dict[str, Any]:
    kind, inner = _spec_kind(cfg)
    if kind == "pod":
        return {"deployment_type": "pod", "environment": inner.get("environment", "local"),
                "pod_type": inner.get("pod_type") or "p1.x1", "replicas": inner.get("replicas") or 1,
                "shards": inner.get("shards") or 1}
    if kind == "byoc":
        return {"deployment_type": "byoc", "environment": inner.get("environment", "local")}
    return {"deployment_type": "managed", "cloud": inner.get("cloud", "local"),
            "region": inner.get("region", "local")}


def _schema_out(cfg: IndexConfig) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if cfg.vector_type == "dense":
        fields[DENSE_FIELD] = {"type": "dense_vector", "dimension": cfg.dimension, "metric": cfg.metric}
    if cfg.vector_type == "sparse" or cfg.metric == "dotproduct":
        # spruce accepts sparse values on any dotproduct index: say so, as a hybrid schema
        fields[SPARSE_FIELD] = {"type": "sparse_vector"}
    return {"fields": fields}


def _status(cfg: IndexConfig) -> dict[str, Any]:
    """Pinecone's status; an index a restore is still filling is ``Initializing``, with the
    job's id in spruce's extension field ``spruceJob``."""
    if cfg.initializing_job is None:
        return dict(_READY)
    return {"ready": False, "state": "Initializing", "spruceJob": cfg.initializing_job}


def index_model(cfg: IndexConfig, host: str, version: str) -> dict[str, Any]:
    """An IndexModel in the shape of ``version``."""
    if versions.uses_schema(version):
        out: dict[str, Any] = {
            "name": cfg.name, "host": host, "status": _status(cfg), "schema": _schema_out(cfg),
            "deployment": _deployment_out(cfg), "deletion_protection": cfg.deletion_protection,
        }
        kind, inner = _spec_kind(cfg)
        if kind != "pod":
            out["read_capacity"] = _read_capacity(inner)
    else:
        out = {"name": cfg.name, "metric": cfg.metric, "host": host,
               "deletion_protection": cfg.deletion_protection, "spec": _legacy_spec_out(cfg, version),
               "status": _status(cfg), "vector_type": cfg.vector_type}
        if cfg.dimension is not None:
            out["dimension"] = cfg.dimension
    if cfg.tags:
        out["tags"] = dict(cfg.tags)
    return out


def data_host(request: Request, name: str) -> str:
    """Where index ``name``'s data plane answers: this server, as the client reached it."""
    base = request.app.state.public_url or str(request.base_url)
    return f"{base.rstrip('/')}{DATA_PREFIX}{name}"


def _engine(request: Request) -> Engine:
    return request.app.state.engine


# -- routes ---------------------------------------------------------------------


@router.get("/indexes", summary="List indexes")
def list_indexes(request: Request) -> Response:
    version = versions.requested(request)
    configs = _engine(request).list_indexes()
    return json_response({"indexes": [index_model(c, data_host(request, c.name), version) for c in configs]},
                         version)


@router.post("/indexes", summary="Create an index", status_code=201)
def create_index(request: Request, body: CreateIndexBody) -> Response:
    version = versions.requested(request)
    if body.source_collection or body.cmek_id:
        raise InvalidArgument("source_collection and cmek_id are not supported")
    if body.source_backup_id:
        raise ApiError(501, "UNIMPLEMENTED", "creating an index from a backup is not supported yet")
    if body.index_schema is not None or body.deployment is not None:
        if body.dimension is not None or body.metric is not None or body.vector_type is not None \
                or body.spec is not None:
            raise InvalidArgument("use either schema/deployment (2026-07) or dimension/metric/spec, not both")
        if body.index_schema is None:
            raise InvalidArgument("schema is required")
        dimension, metric, vector_type = _schema_vectors(body.index_schema)
        spec = _deployment_spec(body.deployment, body.read_capacity)
        name = body.name or f"index-{uuid.uuid4().hex[:12]}"
    else:
        if not body.name:
            raise InvalidArgument("name is required")
        name, dimension, metric, vector_type = body.name, body.dimension, body.metric, body.vector_type
        spec = _legacy_spec(body.spec)
        if body.read_capacity is not None and "pod" not in spec:
            next(iter(spec.values()))["read_capacity"] = body.read_capacity
    index = _engine(request).create_index(
        name, dimension=dimension, metric=metric, vector_type=vector_type, spec=spec,
        tags=body.tags, deletion_protection=body.deletion_protection)
    return json_response(index_model(index.config, data_host(request, name), version), version, 201)


@router.post("/indexes/create-for-model", summary="Create an index with integrated embedding")
def create_index_for_model(request: Request) -> Response:
    raise ApiError(501, "UNIMPLEMENTED",
                   "integrated embedding is not supported: spruce hosts no embedding models")


@router.get("/indexes/{index_name}", summary="Describe an index")
def describe_index(request: Request, index_name: str = IndexName) -> Response:
    version = versions.requested(request)
    cfg = _engine(request).describe_index(index_name)
    return json_response(index_model(cfg, data_host(request, index_name), version), version)


@router.patch("/indexes/{index_name}", summary="Configure an index", status_code=202)
def configure_index(request: Request, body: ConfigureIndexBody, index_name: str = IndexName) -> Response:
    version = versions.requested(request)
    if body.embed is not None:
        raise InvalidArgument("embed is not supported: spruce hosts no embedding models")
    engine = _engine(request)
    if body.index_schema is not None:
        current = _schema_out(engine.describe_index(index_name))
        if _schema_vectors(body.index_schema) != _schema_vectors(current):
            raise InvalidArgument("the schema of an index cannot change")
    cfg = engine.configure_index(index_name, deletion_protection=body.deletion_protection, tags=body.tags)
    return json_response(index_model(cfg, data_host(request, index_name), version), version, 202)


@router.delete("/indexes/{index_name}", summary="Delete an index", status_code=202)
def delete_index(request: Request, index_name: str = IndexName) -> Response:
    version = versions.requested(request)
    engine = _engine(request)
    if not engine.has_index(index_name):
        raise NotFound(f"index {index_name!r} not found")
    if engine.describe_index(index_name).deletion_protection == "enabled":
        raise ApiError(403, "FORBIDDEN", f"Deletion protection is enabled for index {index_name!r}. "
                       "Disable deletion protection before retrying.")
    engine.delete_index(index_name)
    return empty(version, 202)
