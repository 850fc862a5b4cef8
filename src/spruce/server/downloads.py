"""Signed download links for exports written to the server's own disk.

An export to an object store already has the store's pre-signed URLs. An export to a
local folder has only a ``file://`` path, useless to a remote client, so the server
hands out its own links instead::

    GET /downloads/{export_id}/{path}?expires=UNIX_SECONDS&sig=HEX

``sig`` is HMAC-SHA256 over (export id, path, expiry) with the server's secret: a
random 32-byte key generated on first start and kept in ``<data>/.server-secret``
(mode 0600), unless one is configured. A link names exactly one file of one export
until one moment; changing any part of it, or using it after that moment, is a 403.

These links are the one thing the API key does not guard: the signature is the
authorization, so ``curl`` and browsers can fetch them as they are. Anyone holding a
link can read that file until it expires, the same as an S3 pre-signed URL. The
query string (the signature) is dropped from the access log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response

from spruce.archive import ArchiveReader
from spruce.errors import SpruceError
from spruce.jobs.state import COMPLETED, JobState
from spruce.server.errors import ApiError
from spruce.storage import Store, open_store

__all__ = ["DOWNLOAD_PREFIX", "SECRET_FILE", "Signer", "install_log_filter", "load_secret", "router",
           "signed_links"]

log = logging.getLogger("spruce.server")

DOWNLOAD_PREFIX = "/downloads/"
SECRET_FILE = ".server-secret"
DEFAULT_EXPIRY = 3600

router = APIRouter(tags=["Downloads"])


def load_secret(data_dir: str | os.PathLike[str], given: str | bytes | None = None) -> bytes:
    """The signing key: ``given``, or the one in ``<data>/.server-secret`` (created 0600 on first use)."""
    if given:
        return given.encode() if isinstance(given, str) else bytes(given)
    path = Path(data_dir) / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("%s was readable by others (mode %o); restricted it to 0600", path, mode)
        key = path.read_text().strip()
        if len(key) < 32:
            raise SpruceError(f"{path} holds no usable key; delete it to have a new one generated") from None
        return key.encode()
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
        f.flush()
        os.fsync(f.fileno())
    return key.encode()


class Signer:
    """HMAC-SHA256 signatures over (export id, path, expiry)."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the signing key must not be empty")
        self._key = key

    def sign(self, export_id: str, path: str, expires: int) -> str:
        msg = f"spruce-download\n{export_id}\n{path}\n{int(expires)}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def verify(self, export_id: str, path: str, expires: str | int | None, sig: str | None) -> bool:
        try:
            when = int(expires)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        if not sig or when < time.time():
            return False
        return hmac.compare_digest(self.sign(export_id, path, when), sig)

    def link(self, base_url: str, export_id: str, path: str, expires: int) -> str:
        return (f"{base_url.rstrip('/')}{DOWNLOAD_PREFIX}{quote(export_id, safe='')}/{quote(path, safe='/')}"
                f"?expires={int(expires)}&sig={self.sign(export_id, path, expires)}")


def base_url(request: Request) -> str:
    return request.app.state.public_url or str(request.base_url).rstrip("/")


_paths_cache: dict[str, list[str]] = {}


def archive_store(state: JobState) -> Store:
    """Where a job's archive is: an export's folder, or a backup's snapshot in its repository."""
    store = open_store(state.uri)
    return store.child(f"snapshots/{state.options['snapshot_id']}") if state.kind == "backup" else store


def _archive_paths(state: JobState) -> list[str]:
    cached = _paths_cache.get(state.id)
    if cached is None:
        manifest = ArchiveReader(archive_store(state)).manifest
        cached = (["manifest.json"] + [f.path for ns in manifest.namespaces for f in ns.files]
                  + [t.path for t in manifest.tombstone_files])
        if len(_paths_cache) >= 1024:
            _paths_cache.clear()
        _paths_cache[state.id] = cached
    return cached


#: Local links follow S3's pre-signed URLs: at most 7 days.
MAX_LINK_EXPIRY_SECONDS = 7 * 24 * 3600


def signed_links(request: Request, state: JobState) -> tuple[str | None, dict[str, str] | None, str | None]:
    """(download_url, download_urls, expires_at) as a client should see them.

    A completed export to a local folder gets this server's signed links; any other
    export keeps what the job recorded (an object store's pre-signed URLs)."""
    if state.status != COMPLETED or not (state.download_url or "").startswith("file://"):
        return state.download_url, state.download_urls, state.download_expires_at
    signer: Signer = request.app.state.signer
    try:  # any stored value, even one an older version accepted, gives a link (clamped), never a 500
        seconds = int(state.options.get("link_expiry_seconds") or DEFAULT_EXPIRY)
    except (TypeError, ValueError, OverflowError):
        seconds = DEFAULT_EXPIRY
    expires = int(time.time()) + min(max(1, seconds), MAX_LINK_EXPIRY_SECONDS)
    try:
        paths = _archive_paths(state)
    except (SpruceError, OSError):
        return None, None, None  # the archive is gone (deleted by hand): no link to give
    base = base_url(request)
    urls = {p: signer.link(base, state.id, p, expires) for p in paths}
    at = datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    _remember(request, state, urls, at, seconds)
    return urls["manifest.json"], urls, at


def _remember(request: Request, state: JobState, urls: dict[str, str], expires_at: str, seconds: int) -> None:
    """Keep the links last handed out in the job's file too (``download_urls``), so the file works
    as ``spruce download --links JOBFILE`` until they expire. ``download_url`` stays the file://
    manifest, which is what later requests sign afresh from."""
    stored = state.download_expires_at
    try:
        left = datetime.fromisoformat(stored.replace("Z", "+00:00")).timestamp() - time.time() if stored else -1
    except ValueError:
        left = -1
    if state.download_urls and left > seconds / 2:
        return  # the file's links still have most of their life: no write on every poll
    state.download_urls, state.download_expires_at = urls, expires_at
    try:
        request.app.state.jobs.store.save(state)
    except (OSError, SpruceError):
        pass  # the answer does not depend on it


def _forbidden() -> ApiError:
    return ApiError(403, "FORBIDDEN", "this download link is invalid or has expired; ask for the export's "
                    "status again to get fresh links")


@router.get(DOWNLOAD_PREFIX + "{export_id}/{path:path}", summary="Download a file of a completed export "
            "(signed link; no API key needed)")
async def download(request: Request, export_id: str, path: str) -> Response:
    q = request.query_params
    signer: Signer = request.app.state.signer
    if not signer.verify(export_id, path, q.get("expires"), q.get("sig")):
        raise _forbidden()
    state = await run_in_threadpool(_describe, request, export_id)
    if state is None or state.kind not in ("export", "backup") or state.status != COMPLETED:
        raise ApiError(404, "NOT_FOUND", f"export {export_id!r} has no completed archive to download")
    target = await run_in_threadpool(_local_file, state, path)
    media = "application/json" if path.endswith(".json") else "application/octet-stream"
    return FileResponse(target, media_type=media, headers={"Cache-Control": "private, no-store"})


def _describe(request: Request, export_id: str) -> JobState | None:
    from spruce.errors import NotFound

    try:
        return request.app.state.jobs.describe(export_id)
    except NotFound:
        return None


def _local_file(state: JobState, path: str) -> str:
    store = archive_store(state)
    try:
        local = store.local_path(path)  # refuses paths that escape the archive's folder
    except ValueError:
        raise _forbidden() from None
    try:
        owner = ArchiveReader(store).manifest.export_id
    except (SpruceError, OSError):
        owner = None
    if owner != state.id:  # overwritten by a later export, or deleted: its links die with it
        raise ApiError(404, "NOT_FOUND", f"the archive of export {state.id} is no longer at {state.uri}")
    if local is None or not os.path.isfile(local):
        raise ApiError(404, "NOT_FOUND", f"{path}: not found in export {state.id}")
    return local


_SECRET_QUERY = re.compile(r"([?&](?:sig|signature|api_key|apikey|api-key|token|X-Amz-Signature|"
                           r"X-Amz-Credential|X-Amz-Security-Token)=)[^&#\s]*", re.IGNORECASE)


class _DropDownloadQueries(logging.Filter):
    """Access-log lines keep every path, but never a signature, token or API key in a query
    string, whatever the path (a download's whole query is replaced)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            target = args[2]
            if target.startswith(DOWNLOAD_PREFIX):
                target = target.split("?", 1)[0] + "?<signed>"
            else:
                target = _SECRET_QUERY.sub(r"\1***", target)
            record.args = (*args[:2], target, *args[3:])
        return True


_FILTER = _DropDownloadQueries()


def install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.access")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
