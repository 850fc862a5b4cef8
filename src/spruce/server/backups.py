"""Pinecone's backup and restore-job API on the control plane, backed by spruce archives.

A backup is an export job (one exact snapshot, checksummed, manifest last) into
``<backup location>/<backup_id>/``; its description (name, description, the source
index's configuration) is ``<backup location>/_backups/<backup_id>.json``. The
backup location is the server's ``--backup-dir`` (a folder, default
``<data>/backups``, or an object-store URI). Restoring creates the index with the
source's configuration and runs an import job of the archive into it, every file
checked against the manifest; the import job's id is the restore job's id.

Routes and shapes follow Pinecone's spec (``db_control_*.oas.yaml``), so the SDKs'
``create_backup``, ``list_backups``, ``describe_backup``, ``delete_backup``,
``create_index_from_backup``, ``list_restore_jobs`` and ``describe_restore_job``
work. A backup is ``Initializing`` while its export runs, then ``Ready`` (or
``Failed``); a create call waits a moment, so a small index's backup is usually
``Ready`` in the answer already. Index ids are index names here.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from spruce import jobs
from spruce.archive import ArchiveReader
from spruce.errors import (
    AlreadyExists,
    ArchiveIncomplete,
    FailedPrecondition,
    IntegrityError,
    InvalidArgument,
    NotFound,
    SpruceError,
)
from spruce.jobs.manager import JobManager
from spruce.jobs.state import CANCELLED, COMPLETED, FAILED, IN_PROGRESS, PENDING, JobState, now
from spruce.records import IndexConfig
from spruce.server import versions
from spruce.server.bulk import drop_none, listing, page
from spruce.server.control import _schema_out
from spruce.server.responses import empty, json_response
from spruce.storage import Store, open_store

__all__ = ["BackupCatalog", "router"]

router = APIRouter(tags=["Backups"])

_META = "_backups/"
#: What a catalog entry must hold to be listed.
_REQUIRED_META = ("backup_id", "export_id", "created_at")
_LOGGED: set[tuple[str, str]] = set()
_BACKUP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_RESTORE_SUFFIX = ".restore"
CREATE_WAIT_SECONDS = 2.0


class CreateBackupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = None


class CreateIndexFromBackupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    tags: dict[str, str] | None = None
    deletion_protection: str | None = None
    read_capacity: dict[str, Any] | None = None


class BackupCatalog:
    """The backups in one location, and the restore jobs made from them."""

    def __init__(self, uri: str, manager: JobManager) -> None:
        self.skipped: list[tuple[str, str]] = []
        self.store: Store = open_store(uri)
        self.uri = self.store.uri
        self.manager = manager
        self._counts: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    # -- backups --------------------------------------------------------------

    def archive_uri(self, backup_id: str) -> str:
        return f"{self.uri.rstrip('/')}/{backup_id}"

    def create(self, index: str, name: str | None, description: str | None) -> dict[str, Any]:
        engine = self.manager.engine
        cfg = engine.index(index).config  # NotFound
        backup_id = str(uuid.uuid4())
        state = jobs.start_export(engine, index, self.archive_uri(backup_id), sync=False, manager=self.manager)
        meta = {"backup_id": backup_id, "name": name, "description": description, "source_index_name": index,
                "config": cfg.to_dict(), "created_at": now(), "export_id": state.id}
        try:
            self.store.put_bytes(f"{_META}{backup_id}.json", orjson.dumps(meta))
        except BaseException:
            self.manager.cancel(state.id)
            raise
        self.manager.wait(state.id, timeout=CREATE_WAIT_SECONDS)
        return meta

    def get(self, backup_id: str) -> dict[str, Any]:
        if not _BACKUP_ID.fullmatch(backup_id or ""):  # NUL, '/', '..', 300 characters: no such backup
            raise NotFound(f"backup {backup_id[:80]!r} not found")
        try:
            return orjson.loads(self.store.get_bytes(f"{_META}{backup_id}.json"))
        except FileNotFoundError:
            raise NotFound(f"backup {backup_id!r} not found") from None

    def all(self, index: str | None = None) -> list[dict[str, Any]]:
        """Every readable catalog entry. An unreadable or malformed one is skipped, logged once,
        and kept in ``self.skipped`` (path, reason): one bad file never fails the listing."""
        out = []
        self.skipped = []
        try:
            infos = list(self.store.list(_META))
        except (OSError, SpruceError) as exc:
            self._skip(_META, f"the catalog folder cannot be listed: {exc}")
            infos = []
        for info in infos:
            if not info.path.endswith(".json"):
                continue
            try:
                meta = orjson.loads(self.store.get_bytes(info.path))
            except FileNotFoundError:
                continue  # deleted while listing
            except (OSError, SpruceError, orjson.JSONDecodeError) as exc:
                self._skip(info.path, f"unreadable: {exc}")
                continue
            missing = [k for k in _REQUIRED_META if not isinstance(meta, dict) or not isinstance(meta.get(k), str)]
            if missing:
                self._skip(info.path, f"not a backup entry (missing {', '.join(missing)})")
                continue
            if index is None or meta.get("source_index_name") == index:
                out.append(meta)
        out.sort(key=lambda m: (m.get("created_at") or "", m["backup_id"]))
        return out

    def _skip(self, path: str, reason: str) -> None:
        self.skipped.append((path, reason))
        if (path, reason) not in _LOGGED:
            _LOGGED.add((path, reason))
            logging.getLogger("spruce.server").warning("backup catalog: skipped %s: %s", path, reason)

    def status(self, meta: dict[str, Any]) -> str:
        try:
            job = self.manager.describe(meta["export_id"])
        except NotFound:
            job = None
        if job is not None:
            if job.status in (PENDING, IN_PROGRESS):
                return "Initializing"
            return "Ready" if job.status == COMPLETED else "Failed"
        return "Ready" if self._manifest_counts(meta["backup_id"]) is not None else "Failed"

    def _manifest_counts(self, backup_id: str) -> dict[str, int] | None:
        with self._lock:
            cached = self._counts.get(backup_id)
        if cached is not None:
            return cached
        try:
            manifest = ArchiveReader(self.store.child(backup_id)).manifest
        except (ArchiveIncomplete, IntegrityError, FileNotFoundError, NotImplementedError):
            return None
        counts = {"record_count": int(manifest.totals["records"]), "size_bytes": int(manifest.totals["bytes"]),
                  "namespace_count": len(manifest.namespaces)}
        with self._lock:
            self._counts[backup_id] = counts
        return counts

    def model(self, meta: dict[str, Any], version: str) -> dict[str, Any]:
        cfg = IndexConfig.from_dict(meta["config"])
        status = self.status(meta)
        inner = next((v for v in (cfg.spec or {}).values() if isinstance(v, dict)), {})
        out: dict[str, Any] = {
            "backup_id": meta["backup_id"], "source_index_name": meta["source_index_name"],
            "source_index_id": meta["source_index_name"], "status": status,
            "cloud": str(inner.get("cloud") or "local"),
            "region": str(inner.get("region") or inner.get("environment") or "local"),
            "name": meta.get("name"), "description": meta.get("description"),
            "tags": dict(cfg.tags) if cfg.tags else None, "created_at": meta.get("created_at"),
        }
        if versions.uses_schema(version):
            out["schema"] = _schema_out(cfg)
        else:
            out["dimension"] = cfg.dimension
            out["metric"] = cfg.metric
        if status == "Ready":
            out.update(self._manifest_counts(meta["backup_id"]) or {})
        return drop_none(out)

    def delete(self, backup_id: str) -> None:
        meta = self.get(backup_id)
        pending = [s.id for s in self.restore_jobs() if self.restore_info(s).get("backup_id") == backup_id
                   and not s.terminal]
        if pending:
            raise FailedPrecondition(f"Unable to delete backup. There are pending restore jobs for this backup: "
                                     f"{pending}")
        try:
            job = self.manager.describe(meta["export_id"])
        except NotFound:
            job = None
        if job is not None and not job.terminal:
            self.manager.cancel(job.id)
            self.manager.wait(job.id, timeout=30)
        local = self.store.local_path(backup_id)
        if local is not None:
            shutil.rmtree(local, ignore_errors=True)
        else:
            self.store.delete_prefix(f"{backup_id}/")
        self.store.delete(f"{_META}{backup_id}.json")
        with self._lock:
            self._counts.pop(backup_id, None)

    # -- restore jobs ---------------------------------------------------------

    def restore(self, backup_id: str, body: CreateIndexFromBackupBody) -> JobState:
        meta = self.get(backup_id)
        status = self.status(meta)
        if status != "Ready":
            raise FailedPrecondition(f"backup {backup_id} is {status}: only a Ready backup can be restored")
        cfg = IndexConfig.from_dict(meta["config"])
        engine = self.manager.engine
        # omitted (or empty, as 7.x sends it): the backup's own tags, as Pinecone does
        tags = body.tags if body.tags else (dict(cfg.tags) if cfg.tags else None)
        if engine.has_index(body.name):
            raise AlreadyExists(f"index {body.name!r} already exists")
        # the job first, so the index can name it: Initializing until the restore completes, and
        # removed by the job if it fails or is cancelled
        state = jobs.start_import(engine, body.name, self.archive_uri(backup_id), on_conflict="overwrite",
                                  sync=False, manager=self.manager, run=False)
        try:
            engine.create_index(body.name, dimension=cfg.dimension, metric=cfg.metric,
                                vector_type=cfg.vector_type, spec=cfg.spec, tags=tags,
                                deletion_protection=body.deletion_protection or "disabled",
                                initializing_job=state.id)
        except BaseException:
            self.manager.cancel(state.id)
            raise
        state.options["created_index"] = True
        self.manager.store.save(state)
        self.manager.store.write_side_file(state.id, _RESTORE_SUFFIX,
                                           orjson.dumps({"backup_id": backup_id, "target_index_name": body.name}))
        return self.manager.resume(state.id, sync=False)

    def restore_info(self, state: JobState) -> dict[str, Any]:
        try:
            info = orjson.loads(self.manager.store.side_file(state.id, _RESTORE_SUFFIX).read_bytes())
        except (FileNotFoundError, NotFound, orjson.JSONDecodeError):
            return {}
        return info if isinstance(info, dict) else {}

    def restore_jobs(self) -> list[JobState]:
        return [s for s in self.manager.list("import") if self.restore_info(s)]

    def restore_job(self, job_id: str) -> JobState:
        try:
            state = self.manager.describe(job_id)
        except NotFound:
            state = None
        if state is None or state.kind != "import" or not self.restore_info(state):
            raise NotFound(f"Restore job {job_id} not found.")
        return state

    def restore_model(self, state: JobState, version: str) -> dict[str, Any]:
        info = self.restore_info(state)
        status = state.status
        if status == IN_PROGRESS and versions.uses_schema(version):
            status = PENDING  # 2026-07 has no in-progress value: a running restore is Pending
        return drop_none({
            "restore_job_id": state.id, "backup_id": info.get("backup_id", ""),
            "target_index_name": info.get("target_index_name", state.index),
            "target_index_id": info.get("target_index_name", state.index), "status": status,
            "created_at": state.created_at,
            "completed_at": state.finished_at if status in (COMPLETED, FAILED, CANCELLED) else None,
            "percent_complete": float(round(state.percent_complete, 2)),
        })


def _catalog(request: Request) -> BackupCatalog:
    return request.app.state.backups


IndexName = Path(description="The index to back up.")


# -- routes -----------------------------------------------------------------------


@router.post("/indexes/{index_name}/backups", summary="Create a backup of an index", status_code=201)
def create_backup(request: Request, body: CreateBackupBody, index_name: str = IndexName) -> Response:
    version = versions.requested(request)
    catalog = _catalog(request)
    meta = catalog.create(index_name, body.name, body.description)
    return json_response(catalog.model(meta, version), version, 201)


@router.get("/indexes/{index_name}/backups", summary="List the backups of an index")
def list_index_backups(request: Request, index_name: str = IndexName, limit: int | None = Query(None),
                       paginationToken: str | None = Query(None),
                       include_deleted: bool = Query(False)) -> Response:
    version = versions.requested(request)
    if not include_deleted and not request.app.state.engine.has_index(index_name):
        raise NotFound(f"Index {index_name} not found.")
    return _backup_list(request, index_name, limit, paginationToken, version)


@router.get("/backups", summary="List all backups")
def list_backups(request: Request, limit: int | None = Query(None),
                 paginationToken: str | None = Query(None)) -> Response:
    return _backup_list(request, None, limit, paginationToken, versions.requested(request))


def _backup_list(request: Request, index: str | None, limit: int | None, token: str | None,
                 version: str) -> Response:
    catalog = _catalog(request)
    chunk, nxt = page(catalog.all(index), limit, token, default=10)
    models = []
    for m in chunk:
        try:
            models.append(catalog.model(m, version))
        except Exception as exc:  # a malformed entry: skipped and reported, never a 500 for all
            catalog._skip(f"{_META}{m.get('backup_id')}.json", f"cannot be described: {type(exc).__name__}: {exc}")
    response = json_response(listing(models, nxt), version)
    if catalog.skipped:
        response.headers["X-Spruce-Skipped-Backups"] = str(len(catalog.skipped))
    return response


@router.get("/backups/{backup_id}", summary="Describe a backup")
def describe_backup(request: Request, backup_id: str) -> Response:
    version = versions.requested(request)
    catalog = _catalog(request)
    return json_response(catalog.model(catalog.get(backup_id), version), version)


@router.delete("/backups/{backup_id}", summary="Delete a backup", status_code=202)
def delete_backup(request: Request, backup_id: str) -> Response:
    version = versions.requested(request)
    _catalog(request).delete(backup_id)
    return empty(version, 202)


@router.post("/backups/{backup_id}/create-index", summary="Create an index from a backup", status_code=202)
def create_index_from_backup(request: Request, backup_id: str, body: CreateIndexFromBackupBody) -> Response:
    version = versions.requested(request)
    if body.deletion_protection not in (None, "enabled", "disabled"):
        raise InvalidArgument("deletion_protection must be enabled or disabled")
    state = _catalog(request).restore(backup_id, body)
    return json_response({"restore_job_id": state.id, "index_id": body.name}, version, 202)


@router.get("/restore-jobs", summary="List restore jobs")
def list_restore_jobs(request: Request, limit: int | None = Query(None),
                      paginationToken: str | None = Query(None)) -> Response:
    version = versions.requested(request)
    catalog = _catalog(request)
    chunk, nxt = page(catalog.restore_jobs(), limit, paginationToken, default=10)
    return json_response(listing([catalog.restore_model(s, version) for s in chunk], nxt), version)


@router.get("/restore-jobs/{job_id}", summary="Describe a restore job")
def describe_restore_job(request: Request, job_id: str) -> Response:
    version = versions.requested(request)
    catalog = _catalog(request)
    return json_response(catalog.restore_model(catalog.restore_job(job_id), version), version)
