"""Bulk exports on the data plane (a spruce extension, shaped like Pinecone's bulk imports).

``POST /bulk/exports`` ``{uri, format?, namespaces?, filter?}`` starts an export of one
exact snapshot of the index into an archive at ``uri`` (a folder inside the server's
storage roots, or an object-store URI) and answers ``{id}``. ``GET /bulk/exports``
lists (``{data, pagination}``), ``GET /bulk/exports/{id}`` describes and ``DELETE``
cancels. The description is an ImportModel's fields plus ``recordsExported``,
``bytesWritten``, ``snapshotPoint`` and, once Completed, ``downloadUrl`` (the
manifest) and ``downloadUrls`` (archive path -> link for every file): an object
store's pre-signed URLs, or this server's signed ``/downloads/...`` links for a
local folder.

Optional extras: ``overwrite``, ``compressionLevel``, ``partMaxBytes``,
``partMaxRecords`` and ``linkExpirySeconds`` (how long download links stay valid).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from spruce import jobs
from spruce.errors import InvalidArgument
from spruce.jobs.state import JobState
from spruce.server import versions
from spruce.server.bulk import drop_none, index_name, job_of, listing, page, require_index
from spruce.server.data import _body, _doc, _Fields, _spellings
from spruce.server.downloads import signed_links
from spruce.server.responses import json_response

__all__ = ["build_router", "export_model"]

_START = _spellings("uri", "format", "namespaces", "filter", "overwrite", "compressionLevel", "partMaxBytes",
                    "partMaxRecords", "linkExpirySeconds", "integrationId")


def export_model(request: Request, state: JobState) -> dict[str, Any]:
    url, urls, expires_at = signed_links(request, state)
    opts = state.options
    return drop_none({
        "id": state.id, "uri": state.uri, "status": state.status, "createdAt": state.created_at,
        "finishedAt": state.finished_at, "percentComplete": float(round(state.percent_complete, 2)),
        "recordsExported": state.records_done, "error": state.error,
        "index": state.index, "startedAt": state.started_at, "recordsTotal": state.records_total,
        "bytesWritten": state.bytes_done, "filesDone": state.files_done, "snapshotPoint": state.snapshot_point,
        "format": opts.get("format"), "namespaces": opts.get("namespaces"), "filter": opts.get("filter"),
        "downloadUrl": url, "downloadUrls": urls, "downloadExpiresAt": expires_at,
    })


def _start_export(request: Request, name: str, raw: bytes) -> str:
    f = _Fields(_body(raw), _START)
    uri = f.get("uri", str)
    if not uri:
        raise InvalidArgument("uri is required: where to write the archive")
    uri = request.app.state.storage.check(uri, what="uri")
    namespaces = f.get("namespaces", list)
    if namespaces is not None and not all(isinstance(n, str) for n in namespaces):
        raise InvalidArgument("namespaces must be a list of namespace names")
    f.get("integrationId", str)  # accepted; the server writes with its own credentials
    state = jobs.start_export(
        request.app.state.engine, name, uri, format=f.get("format", str, "jsonl.gz"), namespaces=namespaces,
        filter=f.get("filter", dict), compression_level=f.get("compressionLevel", int),
        part_max_bytes=f.get("partMaxBytes", int), part_max_records=f.get("partMaxRecords", int),
        overwrite=f.get("overwrite", bool, False), link_expiry_seconds=f.get("linkExpirySeconds", int),
        sync=False, manager=request.app.state.jobs)
    return state.id


def build_router(resolve: Callable[..., Any], *, prefix: str = "", include_in_schema: bool = True) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["Bulk export"], include_in_schema=include_in_schema)

    @router.post("/bulk/exports", summary="Start an export of one exact snapshot (spruce extension)",
                 openapi_extra=_doc({"uri": "movies-2025-06", "format": "parquet", "namespaces": ["films"]}))
    async def start_export(request: Request) -> Response:
        name = index_name(request)
        raw = await request.body()
        job_id = await run_in_threadpool(_start_export, request, name, raw)
        return json_response({"id": job_id}, versions.requested(request))

    @router.get("/bulk/exports", summary="List exports (spruce extension)")
    async def list_exports(request: Request, limit: int | None = Query(None),
                           paginationToken: str | None = Query(None)) -> Response:
        name = index_name(request)
        require_index(request, name)
        states = [s for s in request.app.state.jobs.list("export") if s.index == name]
        chunk, nxt = page(states, limit, paginationToken)
        data = await run_in_threadpool(lambda: [export_model(request, s) for s in chunk])
        return json_response(listing(data, nxt), versions.requested(request))

    @router.get("/bulk/exports/{export_id}", summary="Describe an export, with download links once Completed")
    async def describe_export(request: Request, export_id: str) -> Response:
        state = job_of(request, export_id, "export", index_name(request))
        body = await run_in_threadpool(export_model, request, state)
        return json_response(body, versions.requested(request))

    @router.delete("/bulk/exports/{export_id}", summary="Cancel an export (it leaves no manifest)")
    async def cancel_export(request: Request, export_id: str) -> Response:
        job_of(request, export_id, "export", index_name(request))
        await run_in_threadpool(request.app.state.jobs.cancel, export_id)
        return json_response({}, versions.requested(request))

    return router
