"""Backup repositories over REST (spruce extensions, beside Pinecone's ``/backups``).

A repository is a storage prefix holding snapshots of indexes, full or incremental
(``spruce.archive.repository``). These routes let a client of the server do what ``spruce
backup``, ``snapshots``, ``restore --snapshot`` and ``check`` do locally:

* ``POST /repositories/{repo}/snapshots`` ``{index, full?, format?, tags?}``: start a backup
  job (incremental when the repository holds an exact parent, else full); 202 with the job's
  status (``JobState.public()``, as ``/jobs/{id}`` describes it).
* ``GET /repositories/{repo}/snapshots?index=I``: ``{"snapshots": [...]}``, oldest first.
* ``POST /repositories/{repo}/restore`` ``{target, snapshot?: "latest"|id, source_index?}``:
  start a restore of a snapshot's chain into ``target``, which must be new or empty (else 409);
  202 with the job's status.
* ``GET /repositories/{repo}/check?read_data=false``: the check report, always 200, with
  ``ok`` true or false (``read_data`` re-reads every file: sha256 and every record).

``{repo}`` is one path segment, URL-encoded (``/repositories/file%3A%2F%2F%2Fsrv%2Frepo/snapshots``):

* a plain name (a letter or digit, then letters, digits, ``_``, ``.``, ``-``; no scheme, no
  slash) is the server's own repository ``<backup location>/repositories/<name>``, the backup
  location being the one Pinecone's ``/backups`` use (``--backup-dir``, default
  ``<data>/backups``). Responses show such a repository by its name, not by its location.
* anything else is a storage URI and goes through the storage policy exactly as an export's
  ``uri`` does: a local path (``file://`` or plain; a relative one is taken inside the first
  storage root) must resolve inside the storage roots and outside the backup location (403
  otherwise, 400 when unusable); an object-store URI must lie under the object-store roots
  when some are configured. The server uses its own credentials.

The jobs are the server's (kind ``backup`` and ``restore``): ``GET /jobs`` lists them,
``GET /jobs/{id}`` describes, ``DELETE /jobs/{id}`` cancels them. The API key is checked on
every route, as everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from spruce.errors import ConflictError, InvalidArgument, ManifestInvalid, SpruceError
from spruce.server import versions
from spruce.server.bulk import job_public
from spruce.server.data import _body, _doc, _Fields, _spellings
from spruce.server.errors import ApiError
from spruce.server.responses import json_response

__all__ = ["REPOSITORIES", "router"]

router = APIRouter(tags=["Backup repositories (spruce extension)"])

#: Where named repositories live, inside the server's backup location.
REPOSITORIES = "repositories"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_BACKUP = _spellings("index", "full", "format", "tags")
_RESTORE = _spellings("snapshot", "target", "sourceIndex")
_PATH = "/repositories/{repo:path}"  # ':path': the server hands the segment over decoded, '/' included


@dataclass(frozen=True)
class _Repo:
    uri: str  # what the jobs open
    label: str  # how responses name it: the plain name, or the checked URI
    local: str | None = None  # a named repository's folder, also hidden behind its name

    def hide(self, obj: Any) -> Any:
        """``obj`` with the server-side location of a named repository replaced by its name."""
        if self.label == self.uri:
            return obj
        if isinstance(obj, str):
            obj = obj.replace(self.uri.rstrip("/"), self.label)
            return obj.replace(self.local, self.label) if self.local else obj
        if isinstance(obj, list):
            return [self.hide(x) for x in obj]
        if isinstance(obj, dict):
            return {k: self.hide(v) for k, v in obj.items()}
        return obj

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except SpruceError as exc:
            exc.message = self.hide(exc.message)
            raise


def _repository(request: Request, repo: str) -> _Repo:
    """A plain name: the server's own ``<backup location>/repositories/<name>``; anything else:
    a storage URI checked by the storage policy (roots, backup location out of reach)."""
    if _NAME.fullmatch(repo):
        store = request.app.state.backups.store.child(f"{REPOSITORIES}/{repo}")
        local = store.local_path("")
        return _Repo(store.uri, repo, str(local) if local else None)
    uri = request.app.state.storage.check(repo, what="repository")
    return _Repo(uri, uri)


def _open(repo: _Repo) -> Any:
    from spruce.archive.repository import Repository
    from spruce.storage import open_store

    return Repository.open(open_store(repo.uri))


def _job(request: Request, started: tuple[_Repo, Any]) -> Response:
    repo, state = started
    return json_response(repo.hide(job_public(request, state)), versions.requested(request), 202)


# -- work (in a worker thread) -------------------------------------------------------


def _start_backup(request: Request, name: str, raw: bytes) -> tuple[_Repo, Any]:
    from spruce.jobs.backup import start_backup

    repo = _repository(request, name)
    f = _Fields(_body(raw), _BACKUP)
    index = f.get("index", str)
    if not index:
        raise InvalidArgument("index is required: the index to back up")
    tags = f.get("tags", list, [])
    if not all(isinstance(t, str) for t in tags):
        raise InvalidArgument("tags must be a list of strings")
    with repo.errors():
        return repo, start_backup(request.app.state.engine, index, repo.uri, full=f.get("full", bool, False),
                                  format=f.get("format", str, "jsonl.gz"), tags=tags, sync=False,
                                  manager=request.app.state.jobs)


def _start_restore(request: Request, name: str, raw: bytes) -> tuple[_Repo, Any]:
    from spruce.jobs.chain import start_snapshot_restore

    repo = _repository(request, name)
    f = _Fields(_body(raw), _RESTORE)
    target = f.get("target", str)
    if not target:
        raise InvalidArgument("target is required: the (new or empty) index to restore into")
    snapshot = f.get("snapshot", str, "latest")
    if not snapshot:
        raise InvalidArgument('snapshot must be "latest" or a snapshot id')
    with repo.errors():
        try:
            return repo, start_snapshot_restore(request.app.state.engine, repo.uri, target, snapshot=snapshot,
                                                source_index=f.get("sourceIndex", str), sync=False,
                                                manager=request.app.state.jobs)
        except ConflictError as exc:  # the target holds records (412 elsewhere): a conflict here
            if exc.status == 409:
                raise
            raise ApiError(409, exc.code, repo.hide(exc.message)) from None


def _list(repo: _Repo, index: str | None) -> dict[str, Any]:
    with repo.errors():
        r = _open(repo)
        snaps = r.snapshots(index=index)
    out: dict[str, Any] = {"snapshots": [s.to_dict() for s in snaps]}
    if r.unreadable:  # damaged manifests: not snapshots, but never silently left out
        out["unreadable"] = dict(r.unreadable)
    return repo.hide(out)


def _check(repo: _Repo, read_data: bool) -> dict[str, Any]:
    from spruce.archive.repository import REPO_FILE, CheckReport, RepoProblem, check_repository

    with repo.errors():
        try:
            report = check_repository(_open(repo), read_data=read_data)
        except ManifestInvalid as exc:  # repository.json itself is damaged: a finding, not a failure
            report = CheckReport(uri=repo.uri, problems=[RepoProblem(None, REPO_FILE, "ManifestInvalid",
                                                                     exc.message)])
    return repo.hide(report.to_dict())


# -- routes ---------------------------------------------------------------------------


@router.post(_PATH + "/snapshots", status_code=202, summary="Back up an index into a repository (a snapshot)",
             openapi_extra=_doc({"index": "movies", "full": False, "format": "jsonl.gz", "tags": ["nightly"]}))
async def create_snapshot(request: Request, repo: str) -> Response:
    raw = await request.body()
    return _job(request, await run_in_threadpool(_start_backup, request, repo, raw))


@router.get(_PATH + "/snapshots", summary="List a repository's snapshots, oldest first")
def list_snapshots(request: Request, repo: str,
                   index: str | None = Query(None, description="Only the snapshots of this index.")) -> Response:
    return json_response(_list(_repository(request, repo), index), versions.requested(request))


@router.post(_PATH + "/restore", status_code=202, summary="Restore a snapshot into a new or empty index",
             openapi_extra=_doc({"snapshot": "latest", "target": "movies-restored", "source_index": "movies"}))
async def restore_snapshot(request: Request, repo: str) -> Response:
    raw = await request.body()
    return _job(request, await run_in_threadpool(_start_restore, request, repo, raw))


@router.get(_PATH + "/check", summary="Check a repository: chains, files, sizes (and with read_data, every byte)")
def check(request: Request, repo: str, read_data: bool = Query(False)) -> Response:
    return json_response(_check(_repository(request, repo), read_data), versions.requested(request))
