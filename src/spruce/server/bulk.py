"""Bulk imports on the data plane (Pinecone's ``/bulk/imports``), plus ``/jobs``.

``POST /bulk/imports`` ``{uri, integrationId?, errorMode: {onError: abort|continue}}``
starts a restore job on the server's job manager and answers ``{id}``; ``GET``
lists (``{data, pagination}``), ``GET /bulk/imports/{id}`` describes (Pinecone's
ImportModel: id, uri, status, createdAt, finishedAt, percentComplete,
recordsImported, error) and ``DELETE`` cancels. The official SDKs'
``start_import``, ``describe_import``, ``list_imports`` and ``cancel_import`` work
unchanged. The source is a spruce archive (every file checked against its manifest)
or a Pinecone-layout Parquet folder, at any storage URI the server may use (see
``storage_policy``); ``integrationId`` is accepted and ignored: the server reads
object stores with its own credentials.

spruce extensions to the request, all optional: ``onConflict`` (overwrite, skip,
fail), ``namespaceMap`` ({old: new}), ``targetNamespace`` (the namespace of a single
plain file; ``namespace`` is its older spelling), ``dimension``/``metric``/``vectorType``
and ``createIndex`` (create the index when missing, from the archive's manifest; without
it a missing index is a 404, as on Pinecone). A selective restore: ``namespaces`` (the
source's namespaces to restore), ``ids`` (a list of record ids), ``filter`` (a metadata
filter) and ``allowEmpty`` (a selection that matches nothing completes instead of failing);
``dryRun: true`` reads and verifies everything and writes nothing: the import's
``dryRunReport`` then says per namespace what the restore would do (spruce.jobs.dryrun),
and ``recordsSkippedBySelection`` counts what a selection left out. A ``uri`` may also be one of this server's own signed download links of
a completed export: it is mapped back to that export's archive.

``/jobs`` (control plane, an extension) lists, describes and cancels every export
and import job of the server whatever its index, in ``JobState.public()``'s
camelCase shape; the remote client and the CLI's ``--host`` mode use it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from spruce import jobs
from spruce.errors import InvalidArgument, NotFound
from spruce.jobs.state import CANCELLED, COMPLETED, FAILED, INTERRUPTED, PENDING, SUPERSEDED, JobState, now
from spruce.server import versions
from spruce.server.data import _body, _doc, _Fields, _spellings
from spruce.server.downloads import DOWNLOAD_PREFIX, signed_links
from spruce.server.errors import ApiError
from spruce.server.responses import json_response

__all__ = ["build_router", "import_model", "index_name", "job_public", "jobs_router", "page"]

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_START = _spellings("uri", "integrationId", "errorMode", "onConflict", "namespaceMap", "namespace", "dimension",
                    "metric", "vectorType", "createIndex", "supersede", "allowMetricChange", "targetNamespace",
                    "namespaces", "ids", "filter", "allowEmpty", "dryRun")
MAX_PAGE = 100


# -- shared by the job routers ----------------------------------------------------


def index_name(request: Request) -> str:
    """The index a data-plane request addresses: ``/index/NAME/...``, or the Host header's first label."""
    name = request.path_params.get("index_name")
    if name:
        return name
    host = request.headers.get("host", "")
    label = host.rsplit(":", 1)[0].split(".", 1)[0] if not host.startswith("[") else ""
    if label and _NAME_RE.match(label):
        return label
    raise ApiError(404, "NOT_FOUND", "this request addresses no index: use the host that describe_index returns "
                   "(http://HOST:PORT/index/NAME), or a Host header whose first label is the index name")


def require_index(request: Request, name: str) -> None:
    if not request.app.state.engine.has_index(name):
        raise NotFound(f"index {name!r} not found")


def page(items: Sequence[Any], limit: int | None, token: str | None, *, default: int = MAX_PAGE,
         maximum: int = MAX_PAGE) -> tuple[Sequence[Any], str | None]:
    """One page of ``items`` and the token of the next (an opaque offset)."""
    limit = default if limit is None else limit
    if not 1 <= limit <= maximum:
        raise InvalidArgument(f"limit must be from 1 to {maximum}, got {limit}")
    start = 0
    if token:
        try:
            start = int(orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["offset"])
        except Exception:
            raise InvalidArgument(f"invalid pagination token {token[:80]!r}") from None
        if start < 0:  # a negative offset would count from the end: never one of our tokens
            raise InvalidArgument(f"invalid pagination token {token[:80]!r}")
    end = start + limit
    nxt = None
    if end < len(items):
        nxt = base64.urlsafe_b64encode(orjson.dumps({"offset": end})).decode().rstrip("=")
    return items[start:end], nxt


def listing(data: list[dict[str, Any]], nxt: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"data": data}
    if nxt:
        out["pagination"] = {"next": nxt}
    return out


def drop_none(d: dict[str, Any]) -> dict[str, Any]:
    """Older SDKs' generated models refuse an explicit null for a field that is merely optional."""
    return {k: v for k, v in d.items() if v is not None}


def job_of(request: Request, job_id: str, kind: str, index: str | None = None) -> JobState:
    try:
        state = request.app.state.jobs.describe(job_id)
    except NotFound:
        state = None
    if state is None or state.kind != kind or (index is not None and state.index != index):
        where = f" for index {index!r}" if index is not None else ""
        raise NotFound(f"{kind} {job_id!r} not found{where}")
    return state


def import_model(state: JobState) -> dict[str, Any]:
    """Pinecone's ImportModel, plus spruce's extra progress fields.

    Pinecone's status enum has no Interrupted or Superseded (SDK 7.3 refuses values outside it):
    an interrupted import is reported Pending (it runs again when resumed), a superseded one
    Cancelled; ``spruceStatus`` always holds the real one."""
    status = {INTERRUPTED: PENDING, SUPERSEDED: CANCELLED}.get(state.status, state.status)
    return drop_none({
        "id": state.id, "uri": state.uri, "status": status, "createdAt": state.created_at,
        "finishedAt": state.finished_at, "percentComplete": float(round(state.percent_complete, 2)),
        "recordsImported": state.records_done, "error": state.error,
        # extensions
        "index": state.index, "startedAt": state.started_at, "recordsRejected": state.records_rejected,
        "recordsTotal": state.records_total, "bytesRead": state.bytes_done, "filesDone": state.files_done,
        "filesTotal": state.files_total, "spruceStatus": state.status, "reason": state.reason,
        "recordsSkipped": state.records_skipped, "recordsKeptNewer": state.records_kept_newer,
        "attempts": state.attempts, "resumedAt": state.resumed_at or None, "notes": state.notes or None,
        "recordsSkippedBySelection": state.records_skipped_by_selection, "dryRunReport": state.dry_run_report,
    })


def job_public(request: Request, state: JobState) -> dict[str, Any]:
    """``JobState.public()``, with a local export's file:// link replaced by signed http links."""
    out = state.public()
    out["notes"] = list(state.notes)
    if state.kind in ("export", "backup"):
        out["downloadUrl"], out["downloadUrls"], out["downloadExpiresAt"] = signed_links(request, state)
    return out


def resolve_source(request: Request, uri: Any) -> str:
    """The storage URI an import reads: checked against the storage roots, or mapped back from
    one of this server's own download links."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidArgument("uri is required")
    parts = urlsplit(uri.strip())
    if parts.scheme in ("http", "https") and parts.path.startswith(DOWNLOAD_PREFIX):
        rest = parts.path[len(DOWNLOAD_PREFIX):]
        export_id, _, path = rest.partition("/")
        export_id, path = unquote(export_id), unquote(path)
        q = parse_qs(parts.query)
        if not request.app.state.signer.verify(export_id, path, (q.get("expires") or [None])[0],
                                               (q.get("sig") or [None])[0]):
            raise ApiError(403, "FORBIDDEN", "the download link given as uri is invalid or has expired")
        state = job_of(request, export_id, "export")
        if state.status != COMPLETED:
            raise InvalidArgument(f"export {export_id} is {state.status}, not Completed")
        return request.app.state.storage.check(state.uri, what="uri")
    return request.app.state.storage.check(uri, what="uri")


# -- /bulk/imports ----------------------------------------------------------------


def _error_mode(value: Any) -> str:
    if value is None:
        return "abort"
    if not isinstance(value, dict):
        raise InvalidArgument('errorMode must be an object: {"onError": "abort"} or {"onError": "continue"}')
    on_error = value.get("onError", value.get("on_error"))
    if on_error is None:
        return "abort"
    if not isinstance(on_error, str) or on_error.lower() not in jobs.ERROR_MODES:
        raise InvalidArgument(f"errorMode.onError must be 'abort' or 'continue', got {on_error!r}")
    return on_error.lower()


def _start_import(request: Request, name: str, raw: bytes) -> str:
    f = _Fields(_body(raw), _START)
    uri = resolve_source(request, f.get("uri", str))
    f.get("integrationId", str)  # accepted; the server reads storage with its own credentials
    engine = request.app.state.engine
    if not engine.has_index(name) and not f.get("createIndex", bool, False):
        raise NotFound(f"index {name!r} not found (pass createIndex: true to create it from the source)")
    target, older = f.get("targetNamespace", str), f.get("namespace", str)
    if target is not None and older is not None and target != older:
        raise InvalidArgument("targetNamespace and namespace (its older spelling) disagree; pass targetNamespace")
    namespaces, ids = f.get("namespaces", list), f.get("ids", list)
    for field, values in (("namespaces", namespaces), ("ids", ids)):
        if values is not None and not all(isinstance(v, str) for v in values):
            raise InvalidArgument(f"{field} must be a list of strings")
    state = jobs.start_import(
        engine, name, uri, on_conflict=f.get("onConflict", str, "overwrite"),
        namespace_map=f.get("namespaceMap", dict), error_mode=_error_mode(f.get("errorMode", dict)),
        namespace=target if target is not None else older, dimension=f.get("dimension", int),
        metric=f.get("metric", str), vector_type=f.get("vectorType", str), supersede=f.get("supersede", bool, False),
        allow_metric_change=f.get("allowMetricChange", bool, False), namespaces=namespaces, ids=ids,
        filter=f.get("filter", dict), allow_empty=f.get("allowEmpty", bool, False),
        dry_run=f.get("dryRun", bool, False), sync=False,
        manager=request.app.state.jobs)
    return state.id


def _cancel_import(manager: Any, import_id: str) -> None:
    """Pinecone's cancel: the import ends Cancelled, even one that already failed (the official
    SDK's tests expect Cancelled after a cancel); its error stays recorded."""
    state = manager.cancel(import_id)
    if state.status == FAILED:
        state.status = CANCELLED
        state.notes.append(f"{now()}: cancelled by the user after it failed")
        manager.store.save(state)


def build_router(resolve: Callable[..., Any], *, prefix: str = "", include_in_schema: bool = True) -> APIRouter:
    """The ``/bulk/imports`` routes; the index comes from the path or the Host header, like ``data``."""
    router = APIRouter(prefix=prefix, tags=["Bulk import"], include_in_schema=include_in_schema)

    @router.post("/bulk/imports", summary="Start an import (an archive or Pinecone-layout Parquet folder)",
                 openapi_extra=_doc({"uri": "s3://bucket/exports/movies", "errorMode": {"onError": "abort"}}))
    async def start_import(request: Request) -> Response:
        name = index_name(request)
        raw = await request.body()
        job_id = await run_in_threadpool(_start_import, request, name, raw)
        return json_response({"id": job_id}, versions.requested(request))

    @router.get("/bulk/imports", summary="List imports")
    async def list_imports(request: Request, limit: int | None = Query(None),
                           paginationToken: str | None = Query(None)) -> Response:
        name = index_name(request)
        require_index(request, name)
        states = [s for s in request.app.state.jobs.list("import") if s.index == name]
        chunk, nxt = page(states, limit, paginationToken)
        return json_response(listing([import_model(s) for s in chunk], nxt), versions.requested(request))

    @router.get("/bulk/imports/{import_id}", summary="Describe an import")
    async def describe_import(request: Request, import_id: str) -> Response:
        state = job_of(request, import_id, "import", index_name(request))
        return json_response(import_model(state), versions.requested(request))

    @router.delete("/bulk/imports/{import_id}", summary="Cancel an import (no effect once it has finished)")
    async def cancel_import(request: Request, import_id: str) -> Response:
        job_of(request, import_id, "import", index_name(request))
        await run_in_threadpool(_cancel_import, request.app.state.jobs, import_id)
        return json_response({}, versions.requested(request))

    return router


# -- /jobs (control plane) ----------------------------------------------------------

jobs_router = APIRouter(tags=["Jobs"])
JOB_KINDS = ("export", "import", "backup", "restore", "copy", "copy-in", "remote-export", "remote-import")


@jobs_router.get("/jobs", summary="List export and import jobs (spruce extension)")
def list_jobs(request: Request, kind: str | None = Query(None, description="export, import, backup, restore "
                                                         "(from a repository), copy, copy-in, remote-export, "
                                                         "remote-import"),
              index: str | None = Query(None)) -> Response:
    if kind not in (None, *JOB_KINDS):
        raise InvalidArgument(f"kind must be one of {', '.join(JOB_KINDS)}, got {kind!r}")
    states = [s for s in request.app.state.jobs.list(kind) if index in (None, s.index)]
    return json_response({"data": [job_public(request, s) for s in states]}, versions.requested(request))


@jobs_router.get("/jobs/{job_id}", summary="Describe a job (spruce extension)")
def describe_job(request: Request, job_id: str) -> Response:
    state = request.app.state.jobs.describe(job_id)
    return json_response(job_public(request, state), versions.requested(request))


@jobs_router.delete("/jobs/{job_id}", summary="Cancel a job (spruce extension)")
def cancel_job(request: Request, job_id: str) -> Response:
    request.app.state.jobs.describe(job_id)  # NotFound first
    state = request.app.state.jobs.cancel(job_id)
    return json_response(job_public(request, state), versions.requested(request))


@jobs_router.post("/jobs/{job_id}/resume", summary="Resume an interrupted job (spruce extension)",
                  description="Runs an Interrupted job again. Refused with 409 (ABORTED) when its target index "
                              "was written after it stopped; the job is then Superseded.")
def resume_job(request: Request, job_id: str) -> Response:
    state = request.app.state.jobs.resume(job_id, sync=False)
    return json_response(job_public(request, state), versions.requested(request))
