"""The namespace operations of the data plane (Pinecone API 2025-10: create, describe, list, delete).

Request and response shapes follow db_data_2025-10.oas.yaml (``CreateNamespaceRequest``,
``NamespaceDescription``, ``ListNamespacesResponse``); errors are the data plane's gRPC status
(``rpcStatus``): an existing name 409 ALREADY_EXISTS, a missing namespace 404 NOT_FOUND, a bad
name or schema 400 INVALID_ARGUMENT. The shape follows the request's API version: 2025-04 knew
neither ``schema``, ``indexed_fields`` nor ``total_count``, so it gets none of them (the create
call did not exist then either; it is served all the same, in that version's shape).

These run in a worker thread (see ``data._run``); the routes are in ``data.build_router``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from spruce import models
from spruce.engine import Index
from spruce.errors import InvalidArgument
from spruce.server import versions
from spruce.server.responses import json_response

__all__ = ["create", "delete", "describe", "description_json", "listing"]

#: Each accepted spelling of a create body's keys (both are one word, so camelCase is snake_case).
_CREATE_FIELDS = ("name", "schema")


def description_json(d: models.NamespaceDescription, version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": d.name, "record_count": d.record_count}
    if versions.at_least(version, versions.V2025_10):
        if d.schema is not None:
            out["schema"] = d.schema.to_dict()
        if d.indexed_fields is not None:
            out["indexed_fields"] = d.indexed_fields.to_dict()
    return out


def _create_body(raw: bytes) -> tuple[Any, Any]:
    """(name, schema) of a CreateNamespaceRequest; unknown keys are a 400, so that a misspelt
    ``schema`` is never silently dropped."""
    if not raw:
        raise InvalidArgument("the body must be a JSON object with name (and optionally schema)")
    body = orjson.loads(raw)
    if not isinstance(body, dict):
        raise InvalidArgument("the body must be a JSON object")
    unknown = [k for k in body if k not in _CREATE_FIELDS]
    if unknown:
        raise InvalidArgument(f"unknown field {unknown[0]!r}; this request takes name, schema")
    if body.get("name") is None:
        raise InvalidArgument("name is required")
    if not isinstance(body["name"], str):
        raise InvalidArgument(f"name must be a string, got {type(body['name']).__name__}")
    return body["name"], body.get("schema")


def create(index: Index, raw: bytes, version: str) -> Response:
    name, schema = _create_body(raw)
    return json_response(description_json(index.create_namespace(name, schema), version), version)


def describe(index: Index, namespace: str, version: str) -> Response:
    return json_response(description_json(index.describe_namespace(namespace), version), version)


def delete(index: Index, namespace: str, version: str) -> Response:
    index.delete_namespace(namespace)
    return json_response({}, version)


def listing(index: Index, prefix: str | None, limit: int | None, token: str | None, version: str) -> Response:
    result = index.list_namespaces(prefix=prefix or None, limit=limit, pagination_token=token or None)
    out: dict[str, Any] = {"namespaces": [description_json(n, version) for n in result.namespaces]}
    if result.pagination is not None:
        out["pagination"] = {"next": result.pagination.next}
    if versions.at_least(version, versions.V2025_10):
        out["total_count"] = result.total_count
    return json_response(out, version)
