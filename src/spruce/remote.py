"""The Python API over HTTP: ``spruce.Client(host="http://127.0.0.1:5080", api_key=...)``.

The same surface as the embedded client (``spruce.client``), the same result objects
(``spruce.models``) and the same exceptions (``spruce.errors``), against a running
``spruce serve``::

    c = spruce.Client(host="http://127.0.0.1:5080", api_key=os.environ["SPRUCE_API_KEY"])
    job = c.Index("my-embeddings").export_index(storage_path="my-embeddings-2025", sync=False)
    while (d := c.describe_export(job.export_id)).status not in ("COMPLETED", "FAILED", "CANCELLED"):
        time.sleep(1)
    print(d.download_url)                      # a signed link anyone can fetch until it expires
    c.Index("new-index-name").upsert_from_file("my-embeddings-2025")   # creates it, then merges

``api_key`` defaults to ``$SPRUCE_API_KEY``. Storage paths are the server's: a relative path
lands in the server's first storage root (``<data>/exports`` by default); object-store URIs are
read and written with the server's credentials. Storage options and credentials are never sent
over HTTP.

Values travel as JSON numbers; float32 arrays are sent through float64, whose shortest
decimal form parses back to exactly the same float32, so a round trip is bit-exact.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson

from spruce import models
from spruce.errors import (
    AlreadyExists,
    FailedPrecondition,
    Forbidden,
    IntegrityError,
    InvalidArgument,
    NotFound,
    SpruceError,
    StorageError,
    Unauthorized,
)
from spruce.jobs.state import TERMINAL, JobState, JobStatus
from spruce.records import validate_index_name

__all__ = ["RemoteClient", "RemoteIndex", "ServerUnavailable"]

API_VERSION = "2025-10"
MAX_UPSERT_BATCH = 1000
_FETCH_CHUNK = 200
_POLL = 0.2


class ServerUnavailable(SpruceError):
    """The spruce server could not be reached."""

    status = 503
    code = "UNAVAILABLE"


_BY_STATUS: dict[int, type[SpruceError]] = {
    400: InvalidArgument, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: AlreadyExists,
    412: FailedPrecondition, 413: InvalidArgument, 415: InvalidArgument, 422: IntegrityError,
    502: StorageError,
}


def _error(resp: httpx.Response) -> SpruceError:
    """The spruce exception for an error answer (either plane's shape)."""
    message = resp.reason_phrase or f"HTTP {resp.status_code}"
    code = None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            message, code = err.get("message") or message, err.get("code")
        elif isinstance(body.get("message"), str):
            message = body["message"]
    cls = _BY_STATUS.get(resp.status_code)
    if resp.status_code == 403 and "deletion protection" in str(message).lower():
        cls = FailedPrecondition  # what the embedded client raises for the same refusal
    if cls is None:
        exc = SpruceError(message)
        exc.status = resp.status_code
        if code:
            exc.code = code
        return exc
    return cls(message)


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _floats(values: Any) -> Any:
    """Dense or sparse values as JSON numbers that parse back to the same float32."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64) if values.dtype != np.float64 else values
    return values


def _sparse_json(sv: Any) -> dict[str, Any] | None:
    if sv is None:
        return None
    if isinstance(sv, Mapping):
        indices, values = sv.get("indices"), sv.get("values")
    else:
        indices, values = getattr(sv, "indices", None), getattr(sv, "values", None)
    if isinstance(indices, np.ndarray):
        indices = indices.astype(np.int64)
    return {"indices": indices, "values": _floats(values)}


def _vector_json(obj: Any) -> dict[str, Any]:
    """One record in the wire shape: dicts, (id, values[, metadata]) tuples, or objects with attributes."""
    if isinstance(obj, Mapping):
        rid, values, md = obj.get("id"), obj.get("values"), obj.get("metadata")
        sv = obj.get("sparse_values", obj.get("sparseValues"))
        unknown = set(obj) - {"id", "values", "metadata", "sparse_values", "sparseValues"}
        if unknown:
            raise InvalidArgument(f"record {rid!r}: unknown field {sorted(unknown)[0]!r}")
    elif isinstance(obj, tuple):
        if len(obj) not in (2, 3):
            raise InvalidArgument("a record tuple is (id, values) or (id, values, metadata)")
        rid, values, md, sv = obj[0], obj[1], obj[2] if len(obj) == 3 else None, None
    else:
        rid, values = getattr(obj, "id", None), getattr(obj, "values", None)
        md, sv = getattr(obj, "metadata", None), getattr(obj, "sparse_values", None)
    out: dict[str, Any] = {"id": rid, "values": [] if values is None else _floats(values)}
    if sv is not None:
        out["sparseValues"] = _sparse_json(sv)
    if md is not None:
        out["metadata"] = md
    return out


def _sparse_model(d: Any) -> models.SparseVector | None:
    if not d:
        return None
    return models.SparseVector(indices=list(d.get("indices") or []), values=list(d.get("values") or []))


def _usage(d: Any) -> models.Usage:
    return models.Usage(read_units=int((d or {}).get("readUnits", 0)))


def _pagination(d: Any) -> models.Pagination | None:
    nxt = (d or {}).get("next")
    return models.Pagination(next=nxt) if nxt else None


def _index_model(d: dict[str, Any]) -> models.IndexModel:
    status = d.get("status") or {}
    return models.IndexModel(
        name=d["name"], dimension=d.get("dimension"), metric=d.get("metric", "cosine"), host=d.get("host", ""),
        spec=d.get("spec") or {}, status=models.IndexStatus(ready=bool(status.get("ready", True)),
                                                            state=status.get("state", "Ready"),
                                                            spruce_job=status.get("spruceJob")),
        vector_type=d.get("vector_type", "dense"), deletion_protection=d.get("deletion_protection", "disabled"),
        tags=d.get("tags") or None)


def _spec_dict(spec: Any) -> dict[str, Any] | None:
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return dict(spec)
    if hasattr(spec, "to_dict"):
        d = spec.to_dict()
        if "serverless" in d or "pod" in d or "byoc" in d:
            return d
        if "cloud" in d:
            return {"serverless": {"cloud": str(d["cloud"]), "region": str(d.get("region"))}}
        return d
    cloud, region = getattr(spec, "cloud", None), getattr(spec, "region", None)
    if cloud is not None:
        return {"serverless": {"cloud": str(getattr(cloud, "value", cloud)), "region": str(region)}}
    return None


# -- job descriptions ---------------------------------------------------------------


def job_state(d: dict[str, Any]) -> JobState:
    """A JobState from the server's ``/jobs`` shape (``JobState.public()``)."""
    export = d.get("kind") == "export"
    return JobState(
        id=d["id"], kind=d.get("kind", "export"), index=d.get("index", ""), uri=d.get("uri", ""),
        status=d.get("status", "Pending"), options=d.get("options") or {}, created_at=d.get("createdAt") or "",
        started_at=d.get("startedAt"), finished_at=d.get("finishedAt"),
        percent_complete=float(d.get("percentComplete") or 0.0), records_total=d.get("recordsTotal"),
        records_done=int(d.get("recordsExported" if export else "recordsImported") or 0),
        records_rejected=int(d.get("recordsRejected") or 0),
        bytes_done=int(d.get("bytesWritten" if export else "bytesRead") or 0),
        files_done=int(d.get("filesDone") or 0), files_total=d.get("filesTotal"), error=d.get("error"),
        download_url=d.get("downloadUrl"), download_urls=d.get("downloadUrls"),
        download_expires_at=d.get("downloadExpiresAt"), snapshot_point=d.get("snapshotPoint"),
        rejects_path=d.get("rejectsPath"), notes=list(d.get("notes") or []),
        attempts=int(d.get("attempts") or 0), resumed_at=list(d.get("resumedAt") or []), reason=d.get("reason"),
        records_skipped=int(d.get("recordsSkipped") or 0), records_kept_newer=int(d.get("recordsKeptNewer") or 0),
        records_skipped_by_selection=int(d.get("recordsSkippedBySelection") or 0),
        dry_run_report=d.get("dryRunReport"),
    )


def _export_description(s: JobState) -> models.ExportDescription:
    from spruce.jobs import export_description

    return export_description(s)


def _import_description(s: JobState) -> models.ImportDescription:
    from spruce.jobs import import_description

    return import_description(s)


# -- the client -----------------------------------------------------------------------


class RemoteClient:
    """A spruce server over HTTP, with the embedded client's methods and results."""

    remote = True

    def __init__(self, host: str, api_key: str | None = None, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None, **_ignored: Any) -> None:
        if not isinstance(host, str) or not host.strip():
            raise InvalidArgument("host must be the server's URL, e.g. http://127.0.0.1:5080")
        host = host.strip()
        if "://" not in host:
            host = "http://" + host
        self.host = host.rstrip("/")
        headers = {"X-Pinecone-API-Version": API_VERSION, "User-Agent": "spruce-client"}
        if api_key is None:
            api_key = os.environ.get("SPRUCE_API_KEY") or None
        if api_key:
            headers["Api-Key"] = api_key
        self._http = httpx.Client(base_url=self.host, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0),
                                  transport=transport)
        self._jobs = _RemoteJobs(self)
        self._closed = False

    def __repr__(self) -> str:
        return f"spruce.Client(host={self.host!r})"

    # -- plumbing -------------------------------------------------------------

    def _request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        if self._closed:
            raise FailedPrecondition("this spruce.Client is closed; open a new one")
        content = None if json is None else _dumps(json)
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            resp = self._http.request(method, path, content=content, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"cannot reach the spruce server at {self.host}: "
                                    f"{type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            raise _error(resp)
        if not resp.content:
            return {}
        return orjson.loads(resp.content)

    def close(self) -> None:
        """Close the connection; the server's jobs keep running (the server owns them)."""
        self._closed = True
        self._http.close()

    def resume_job(self, job_id: str, sync: bool = False) -> JobState:
        """Ask the server to resume an Interrupted job (refused, and Superseded, over newer writes)."""
        return self._jobs.resume(job_id, sync=sync)

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- indexes --------------------------------------------------------------

    def create_index(self, name: str, dimension: int | None = None, metric: str | None = None,
                     spec: Mapping[str, Any] | Any = None, vector_type: str | None = None,
                     deletion_protection: str | None = None, tags: Mapping[str, str] | None = None,
                     **_ignored: Any) -> models.IndexModel:
        body: dict[str, Any] = {"name": name, "dimension": dimension, "metric": metric,
                                "spec": _spec_dict(spec) or {"serverless": {"cloud": "local", "region": "local"}},
                                "vector_type": vector_type, "deletion_protection": deletion_protection,
                                "tags": dict(tags) if tags else None}
        return _index_model(self._request("POST", "/indexes", json={k: v for k, v in body.items() if v is not None}))

    def describe_index(self, name: str) -> models.IndexModel:
        return _index_model(self._request("GET", f"/indexes/{quote(name, safe='')}"))

    def list_indexes(self) -> models.IndexList:
        return models.IndexList(_index_model(d) for d in self._request("GET", "/indexes").get("indexes", []))

    def has_index(self, name: str) -> bool:
        try:
            self.describe_index(name)
        except NotFound:
            return False
        return True

    def delete_index(self, name: str, timeout: int | None = None) -> None:
        self._request("DELETE", f"/indexes/{quote(name, safe='')}")

    def configure_index(self, name: str, deletion_protection: str | None = None,
                        tags: Mapping[str, str] | None = None, **_ignored: Any) -> models.IndexModel:
        body = {k: v for k, v in (("deletion_protection", deletion_protection),
                                  ("tags", dict(tags) if tags else None)) if v is not None}
        return _index_model(self._request("PATCH", f"/indexes/{quote(name, safe='')}", json=body))

    def Index(self, name: str | None = None, host: str | None = None) -> RemoteIndex:
        """A handle on an index; it may not exist yet (``upsert_from_file`` creates it)."""
        if name is None and host:
            name = host.rstrip("/").rsplit("/index/", 1)[-1] if "/index/" in host else None
        if not name:
            raise TypeError("Index() needs a name")
        validate_index_name(name)
        return RemoteIndex(self, name)

    # -- jobs -----------------------------------------------------------------

    @property
    def jobs(self) -> _RemoteJobs:
        """The server's job manager, as far as a client can drive it (the CLI's ``jobs`` commands)."""
        return self._jobs

    def _job(self, job_id: str, kind: str) -> JobState:
        try:
            state = job_state(self._request("GET", f"/jobs/{quote(job_id, safe='')}"))
        except NotFound:
            raise NotFound(f"{kind} {job_id!r} not found") from None
        if state.kind != kind:
            raise NotFound(f"{kind} {job_id!r} not found")
        return state

    def verify_archive(self, uri: str, **_ignored: Any) -> dict[str, Any]:
        """The server re-reads every byte of the archive at ``uri`` (a path in its storage roots
        or an object-store URI it can reach); the report as ``Client.verify_archive`` gives it."""
        return self._request("POST", "/archives/verify", json={"uri": uri})

    def inspect_archive(self, uri: str, **_ignored: Any) -> dict[str, Any]:
        """The manifest of the archive at ``uri`` on the server's storage."""
        return self._request("POST", "/archives/inspect", json={"uri": uri})

    def copy(self, src: str, dst: str, **_options: Any) -> Any:
        """Copies run in the process that owns the data folder (they read and write other engines
        with that machine's credentials): use ``spruce.Client(data_dir=...)`` or ``spruce copy``."""
        raise FailedPrecondition("copy runs where the data folder is: use spruce.Client(data_dir=...).copy() or "
                                 "`spruce copy` on the server's machine")

    def describe_export(self, export_id: str) -> models.ExportDescription:
        return _export_description(self._job(export_id, "export"))

    describe_export_status = describe_export  # the seed's spelling

    def list_exports(self) -> list[models.ExportDescription]:
        return [_export_description(s) for s in self._jobs.list("export")]

    def cancel_export(self, export_id: str) -> models.ExportDescription:
        self._job(export_id, "export")
        return _export_description(self._jobs.cancel(export_id))

    def wait_export(self, export_id: str, timeout: float | None = None) -> models.ExportDescription:
        return _export_description(self._wait(export_id, "export", timeout))

    def describe_import(self, import_id: str) -> models.ImportDescription:
        return _import_description(self._job(import_id, "import"))

    def list_imports(self) -> list[models.ImportDescription]:
        return [_import_description(s) for s in self._jobs.list("import")]

    def cancel_import(self, import_id: str) -> models.ImportDescription:
        self._job(import_id, "import")
        return _import_description(self._jobs.cancel(import_id))

    def wait_import(self, import_id: str, timeout: float | None = None) -> models.ImportDescription:
        return _import_description(self._wait(import_id, "import", timeout))

    def _wait(self, job_id: str, kind: str, timeout: float | None) -> JobState:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            s = self._job(job_id, kind)
            if s.status in TERMINAL or (deadline is not None and time.monotonic() > deadline):
                return s
            time.sleep(_POLL)


class RemoteIndex:
    """One index's data operations over HTTP (``/index/NAME/...``)."""

    def __init__(self, client: RemoteClient, name: str) -> None:
        self._client = client
        self.name = name
        self._base = f"/index/{quote(name, safe='')}"

    def __repr__(self) -> str:
        return f"Index({self.name!r} at {self._client.host})"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._client._request(method, self._base + path, **kwargs)

    # -- jobs -----------------------------------------------------------------

    def export_index(self, storage_path: str, format: str = "jsonl.gz", namespaces: Sequence[str] | None = None,
                     filter: Mapping[str, Any] | None = None, sync: bool = False, *,
                     compression_level: int | None = None, part_max_bytes: int | None = None,
                     part_max_records: int | None = None, overwrite: bool = False,
                     storage_options: Mapping[str, Any] | None = None,
                     link_expiry_seconds: int | None = None, **_ignored: Any) -> models.ExportResponse:
        """Export one exact snapshot of this index to ``storage_path`` on the server's side."""
        _no_storage_options(storage_options)
        if isinstance(namespaces, str):
            raise InvalidArgument("namespaces must be a list of namespace names")
        body = {"uri": storage_path, "format": format, "namespaces": list(namespaces) if namespaces else None,
                "filter": filter, "compressionLevel": compression_level, "partMaxBytes": part_max_bytes,
                "partMaxRecords": part_max_records, "overwrite": overwrite or None,
                "linkExpirySeconds": link_expiry_seconds}
        job_id = self._request("POST", "/bulk/exports", json={k: v for k, v in body.items() if v is not None})["id"]
        if not sync:
            return models.ExportResponse(export_id=job_id, status=JobStatus("Pending"), sync=False)
        d = self._client.wait_export(job_id)
        if d.status != "Completed":
            raise SpruceError(f"export {job_id} {str(d.status).lower()}: {d.error or 'no error recorded'}")
        return models.ExportResponse(export_id=job_id, status=d.status, sync=True)

    def upsert_from_file(self, uri: str, sync: bool = True, *, on_conflict: str = "overwrite",
                         namespace_map: Mapping[str, str] | None = None, error_mode: str = "abort",
                         namespace: str | None = None, dimension: int | None = None, metric: str | None = None,
                         vector_type: str | None = None, storage_options: Mapping[str, Any] | None = None,
                         supersede: bool = False, allow_metric_change: bool = False,
                         namespaces: Sequence[str] | None = None, ids: Iterable[str] | None = None,
                         filter: Mapping[str, Any] | None = None, allow_empty: bool = False,
                         dry_run: bool = False) -> models.ImportDescription:
        """Restore an archive or plain files (a server-side path, an object-store URI, or this server's
        download link of a completed export) into this index, creating it when missing. The selection
        (``namespaces``, ``ids``, ``filter``, ``allow_empty``) and ``dry_run`` are as in the embedded
        ``Index.upsert_from_file``; ``ids`` travel in the request, whose body the server caps (2 MB)."""
        _no_storage_options(storage_options)
        if isinstance(namespaces, str) or isinstance(ids, (str, bytes)):
            raise InvalidArgument("namespaces and ids must be lists, not one string")
        body = {"uri": uri, "errorMode": {"onError": error_mode}, "onConflict": on_conflict,
                "namespaceMap": dict(namespace_map) if namespace_map else None, "namespace": namespace,
                "dimension": dimension, "metric": metric, "vectorType": vector_type, "createIndex": True,
                "supersede": supersede or None, "allowMetricChange": allow_metric_change or None,
                "namespaces": list(namespaces) if namespaces is not None else None,
                "ids": list(ids) if ids is not None else None, "filter": filter,
                "allowEmpty": allow_empty or None, "dryRun": dry_run or None}
        job_id = self._request("POST", "/bulk/imports", json={k: v for k, v in body.items() if v is not None})["id"]
        if not sync:
            return self._client.describe_import(job_id)
        d = self._client.wait_import(job_id)
        if d.status != "Completed":
            raise SpruceError(f"import {job_id} {str(d.status).lower()}: {d.error or 'no error recorded'}")
        return d

    # -- data -----------------------------------------------------------------

    def upsert(self, vectors: Iterable[Any], namespace: str | None = None, batch_size: int | None = None,
               show_progress: bool = False, **_ignored: Any) -> models.UpsertResponse:
        """Upsert records; each request of at most ``batch_size`` (and 1000) records is atomic."""
        items = [_vector_json(v) for v in vectors]
        size = min(batch_size or MAX_UPSERT_BATCH, MAX_UPSERT_BATCH)
        total = 0
        for start in range(0, len(items), size):
            body: dict[str, Any] = {"vectors": items[start:start + size]}
            if namespace is not None:
                body["namespace"] = namespace
            total += int(self._request("POST", "/vectors/upsert", json=body).get("upsertedCount", 0))
        return models.UpsertResponse(upserted_count=total)

    def query(self, *, top_k: int = 10, vector: Sequence[float] | None = None, id: str | None = None,
              namespace: str | None = None, filter: Mapping[str, Any] | None = None,
              include_values: bool = False, include_metadata: bool = False,
              sparse_vector: Any = None, exact: bool = False, **_ignored: Any) -> models.QueryResponse:
        body: dict[str, Any] = {"topK": top_k, "includeValues": include_values, "includeMetadata": include_metadata}
        if exact:
            body["exact"] = True  # a spruce extension: a real Pinecone host would refuse it
        if vector is not None:
            body["vector"] = _floats(vector)
        if id is not None:
            body["id"] = id
        if namespace is not None:
            body["namespace"] = namespace
        if filter is not None:
            body["filter"] = filter
        if sparse_vector is not None:
            body["sparseVector"] = _sparse_json(sparse_vector)
        d = self._request("POST", "/query", json=body)
        matches = [models.ScoredVector(id=m["id"], score=m.get("score", 0.0), values=m.get("values") or [],
                                       sparse_values=_sparse_model(m.get("sparseValues")),
                                       metadata=m.get("metadata")) for m in d.get("matches", [])]
        return models.QueryResponse(matches=matches, namespace=d.get("namespace", ""), usage=_usage(d.get("usage")))

    def fetch(self, ids: Sequence[str], namespace: str | None = None, **_ignored: Any) -> models.FetchResponse:
        if isinstance(ids, str):
            raise InvalidArgument("ids must be a list of ids")
        ids = list(ids)
        vectors: dict[str, models.Vector] = {}
        d: dict[str, Any] = {}
        for start in range(0, max(len(ids), 1), _FETCH_CHUNK):
            params: list[tuple[str, str]] = [("ids", i) for i in ids[start:start + _FETCH_CHUNK]]
            if namespace is not None:
                params.append(("namespace", namespace))
            d = self._request("GET", "/vectors/fetch", params=params)
            for rid, v in d.get("vectors", {}).items():
                vectors[rid] = models.Vector(id=v.get("id", rid), values=v.get("values") or [],
                                             sparse_values=_sparse_model(v.get("sparseValues")),
                                             metadata=v.get("metadata"))
        return models.FetchResponse(vectors=vectors, namespace=d.get("namespace", ""), usage=_usage(d.get("usage")))

    def update(self, id: str, values: Sequence[float] | None = None,
               set_metadata: Mapping[str, Any] | None = None, namespace: str | None = None,
               sparse_values: Any = None, **_ignored: Any) -> models.UpdateResponse:
        body: dict[str, Any] = {"id": id}
        if values is not None:
            body["values"] = _floats(values)
        if set_metadata is not None:
            body["setMetadata"] = set_metadata
        if namespace is not None:
            body["namespace"] = namespace
        if sparse_values is not None:
            body["sparseValues"] = _sparse_json(sparse_values)
        d = self._request("POST", "/vectors/update", json=body)
        return models.UpdateResponse(matched_records=d.get("matchedRecords"))

    def delete(self, ids: Sequence[str] | None = None, delete_all: bool | None = None,
               namespace: str | None = None, filter: Mapping[str, Any] | None = None,
               **_ignored: Any) -> dict[str, Any]:
        base: dict[str, Any] = {}
        if namespace is not None:
            base["namespace"] = namespace
        if delete_all:
            base["deleteAll"] = True
        if filter is not None:
            base["filter"] = filter
        if ids is None:
            return self._request("POST", "/vectors/delete", json=base)
        ids = list(ids)
        for start in range(0, max(len(ids), 1), 1000):
            self._request("POST", "/vectors/delete", json={**base, "ids": ids[start:start + 1000]})
        return {}

    def list_paginated(self, prefix: str | None = None, limit: int | None = None,
                       pagination_token: str | None = None, namespace: str | None = None,
                       **_ignored: Any) -> models.ListResponse:
        params = {k: v for k, v in (("prefix", prefix), ("limit", limit), ("paginationToken", pagination_token),
                                    ("namespace", namespace)) if v is not None}
        d = self._request("GET", "/vectors/list", params=params)
        return models.ListResponse(vectors=[models.ListItem(id=v["id"]) for v in d.get("vectors", [])],
                                   pagination=_pagination(d.get("pagination")), namespace=d.get("namespace", ""),
                                   usage=_usage(d.get("usage")))

    def list(self, prefix: str | None = None, limit: int | None = None,
             pagination_token: str | None = None, namespace: str | None = None,
             **_ignored: Any) -> Iterator[list[str]]:
        return models.iter_id_pages(self.list_paginated, prefix=prefix, limit=limit,
                                    pagination_token=pagination_token, namespace=namespace)

    def describe_index_stats(self, filter: Mapping[str, Any] | None = None,
                             **_ignored: Any) -> models.DescribeIndexStatsResponse:
        d = self._request("POST", "/describe_index_stats", json={"filter": filter} if filter is not None else {})
        return models.DescribeIndexStatsResponse(
            namespaces={ns: models.NamespaceSummary(vector_count=int(v.get("vectorCount", 0)))
                        for ns, v in d.get("namespaces", {}).items()},
            dimension=d.get("dimension"), index_fullness=float(d.get("indexFullness", 0.0)),
            total_vector_count=int(d.get("totalVectorCount", 0)), metric=d.get("metric", ""),
            vector_type=d.get("vectorType", "dense"))

    def search_status(self) -> dict[str, dict[str, Any]]:
        """Per namespace, how the server answers queries: {"mode": "exact" | "building" | "ann"}."""
        d = self._request("POST", "/describe_index_stats", json={})
        return {ns: {"mode": v["searchMode"]} for ns, v in d.get("namespaces", {}).items() if "searchMode" in v}

    def wait_for_index(self, timeout: float = 600.0) -> bool:
        """Wait until the server's background graph builds are done (queries never need to)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s["mode"] != "building" for s in self.search_status().values()):
                return True
            time.sleep(0.2)
        return False

    def list_namespaces_paginated(self, prefix: str | None = None, limit: int | None = None,
                                  pagination_token: str | None = None) -> models.ListNamespacesResponse:
        params = {k: v for k, v in (("prefix", prefix), ("limit", limit), ("paginationToken", pagination_token))
                  if v is not None}
        d = self._request("GET", "/namespaces", params=params)
        return models.ListNamespacesResponse(
            namespaces=[models.NamespaceDescription.from_json(n) for n in d.get("namespaces", [])],
            pagination=_pagination(d.get("pagination")), total_count=int(d.get("total_count", 0)))

    def list_namespaces(self, prefix: str | None = None,
                        limit: int | None = None) -> Iterator[models.NamespaceDescription]:
        token = None
        while True:
            page = self.list_namespaces_paginated(prefix=prefix, limit=limit, pagination_token=token)
            yield from page.namespaces
            if page.pagination is None:
                return
            token = page.pagination.next

    def create_namespace(self, name: str, schema: Mapping[str, Any] | None = None) -> models.NamespaceDescription:
        """Create an empty namespace, optionally with a metadata schema, as the SDK's
        ``create_namespace`` (AlreadyExists if the name is taken)."""
        body: dict[str, Any] = {"name": name}
        if schema is not None:
            body["schema"] = schema.to_dict() if isinstance(schema, models.NamespaceSchema) else schema
        return models.NamespaceDescription.from_json(self._request("POST", "/namespaces", json=body))

    def describe_namespace(self, namespace: str | None = None, *,
                           name: str | None = None) -> models.NamespaceDescription:
        """Record count (and schema) of a namespace; ``name=`` as SDK 9+ spells it."""
        ns = _namespace_arg(namespace, name)
        return models.NamespaceDescription.from_json(self._request("GET", f"/namespaces/{quote(ns, safe='')}"))

    def delete_namespace(self, namespace: str | None = None, *, name: str | None = None) -> dict[str, Any]:
        self._request("DELETE", f"/namespaces/{quote(_namespace_arg(namespace, name), safe='')}")
        return {}


def _namespace_arg(namespace: str | None, name: str | None) -> str:
    """SDKs up to 7 pass ``namespace=``, 9 and later ``name=``: take either, not both. An empty
    name would address the listing, not a namespace: it is the default namespace's alias then."""
    if namespace is not None and name is not None:
        raise InvalidArgument("pass either name= or namespace=, not both")
    return (name if name is not None else namespace) or "__default__"


def _no_storage_options(options: Mapping[str, Any] | None) -> None:
    if options:
        raise InvalidArgument("storage_options are not sent to a server: it reads and writes storage with its "
                              "own credentials and settings (its environment, e.g. AWS_ENDPOINT_URL)")


# -- what the CLI drives through ``--host`` ---------------------------------------------


class _RemoteJobs:
    """A JobManager look-alike over ``/jobs``: the server runs every job, this only asks it."""

    def __init__(self, client: RemoteClient) -> None:
        self._client = client

    def describe(self, job_id: str) -> JobState:
        return job_state(self._client._request("GET", f"/jobs/{quote(job_id, safe='')}"))

    def list(self, kind: str | None = None) -> list[JobState]:
        params = {"kind": kind} if kind else None
        return [job_state(d) for d in self._client._request("GET", "/jobs", params=params).get("data", [])]

    def cancel(self, job_id: str) -> JobState:
        return job_state(self._client._request("DELETE", f"/jobs/{quote(job_id, safe='')}"))

    def is_active(self, job_id: str) -> bool:
        """The server resumes interrupted jobs itself, so an unfinished job there is running."""
        return True

    def resume(self, job_id: str, *, sync: bool = True) -> JobState:
        state = self.describe(job_id)
        if state.terminal:
            raise FailedPrecondition(f"job {job_id} is {state.status}; only interrupted jobs can be resumed")
        state = job_state(self._client._request("POST", f"/jobs/{quote(job_id, safe='')}/resume"))
        return self.wait(job_id) if sync else state

    def wait(self, job_id: str, timeout: float | None = None, poll: float = _POLL) -> JobState:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            s = self.describe(job_id)
            if s.terminal or (deadline is not None and time.monotonic() > deadline):
                return s
            time.sleep(poll)
