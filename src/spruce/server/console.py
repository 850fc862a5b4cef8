"""The web console at ``/console``: static HTML, CSS and JS shipped in the package.

Why a middleware for the assets: they must load before the user has typed a key, and the API-key
middleware guards every route. ``ConsoleAssets`` sits in front of it and answers only the
console's own GET paths (the pages and their assets); every other request goes on untouched,
so every piece of data the console shows still comes from the REST API with the ``Api-Key``
header. The key never travels in a URL: the page reads it from a form or from a ``#api_key=``
fragment (never sent to a server) and keeps it in the browser's sessionStorage.

The router adds what the console needs and the API lacked, with the key checked as on every
route: ``POST /verifications`` ``{jobId}`` re-reads the archive a completed export or backup
job wrote (every file's size and sha256 against its manifest) and keeps the result beside the
job; ``GET /verifications`` lists those results, so the Backups page can say "verified or not".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from spruce.errors import FailedPrecondition, InvalidArgument, NotFound, SpruceError
from spruce.jobs.state import COMPLETED, now
from spruce.server import versions
from spruce.server.errors import error_response
from spruce.server.responses import json_response

__all__ = ["CONSOLE_PREFIX", "PAGES", "ConsoleAssets", "install", "router"]

CONSOLE_PREFIX = "/console"
#: The console's pages: each is the same HTML, whose script renders the page its path names.
PAGES = ("", "/", "/jobs", "/archives", "/start")
_ASSET_FILES = {"/console.css": ("console.css", "text/css; charset=utf-8"),
                "/console.js": ("console.js", "text/javascript; charset=utf-8"),
                "/views.js": ("views.js", "text/javascript; charset=utf-8"),
                "/start.js": ("start.js", "text/javascript; charset=utf-8")}
_PAGE = ("index.html", "text/html; charset=utf-8")
#: Nothing but this origin: no CDN, no external font, no inline script, no framing.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_VERIFIED = ".verified"  # the side file beside a job's state that holds its last verification
_ARCHIVE_KINDS = ("export", "backup")


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: bytes


_cache: dict[str, _Asset] = {}


def _asset(name: str, media_type: str) -> _Asset:
    """A file of the package's ``console/`` folder, read once (they never change while serving)."""
    cached = _cache.get(name)
    if cached is None:
        body = resources.files("spruce.server").joinpath("console", name).read_bytes()
        cached = _Asset(body, media_type, b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"')
        _cache[name] = cached
    return cached


def _lookup(path: str) -> _Asset | None:
    rest = path[len(CONSOLE_PREFIX):]
    if rest in PAGES or (rest.endswith("/") and rest[:-1] in PAGES):
        return _asset(*_PAGE)
    found = _ASSET_FILES.get(rest)
    return _asset(*found) if found else None


def is_console_path(path: str) -> bool:
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


class ConsoleAssets:
    """Pure ASGI: serves the console's files to anyone (they hold no data), ahead of the key check."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_console_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        asset = _lookup(path)
        if asset is None:
            response = error_response(path, 404, "NOT_FOUND", f"no such console page or file: {path}")
        elif method not in ("GET", "HEAD"):
            response = error_response(path, 405, "UNIMPLEMENTED", f"{method} is not allowed on {path}",
                                      headers={"Allow": "GET, HEAD"})
        else:
            response = _asset_response(asset, scope, head=method == "HEAD")
        await response(scope, receive, send)


def _asset_response(asset: _Asset, scope: Scope, *, head: bool) -> Response:
    headers = {"ETag": asset.etag.decode(), "Cache-Control": "no-cache", "Content-Security-Policy": _CSP,
               "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
    given = next((v for k, v in scope["headers"] if k == b"if-none-match"), None)
    if given is not None and asset.etag in [t.strip() for t in given.split(b",")]:
        return Response(status_code=304, headers=headers)
    response = Response(b"" if head else asset.body, media_type=asset.media_type, headers=headers)
    if head:
        response.headers["Content-Length"] = str(len(asset.body))
    return response


# -- /verifications (API key required, like every route) -------------------------------------

router = APIRouter(tags=["Console (spruce extension)"])


def _verification(request: Request, job_id: str) -> dict[str, Any]:
    """Check sizes and sha256 of every file of a completed export's or backup's archive (not every
    record: that is `spruce verify`), and keep the result beside the job."""
    from spruce.archive import verify_archive
    from spruce.server.downloads import archive_store

    manager = request.app.state.jobs
    state = manager.describe(job_id)  # NotFound
    if state.kind not in _ARCHIVE_KINDS:
        raise InvalidArgument(f"job {job_id} is of kind {state.kind}: only an export's or a backup's archive "
                              "can be verified")
    if state.status != COMPLETED:
        raise FailedPrecondition(f"job {job_id} is {state.status}: only a Completed job has an archive "
                                 "to verify")
    try:
        report = verify_archive(archive_store(state), read_data=False)
        result = {"ok": report.ok, "filesChecked": report.files_checked, "bytesChecked": report.bytes_checked,
                  "problems": [p.message if p.path in p.message else f"{p.path}: {p.message}"
                               for p in report.problems], "notes": list(report.notes)}
    except (SpruceError, OSError) as exc:  # the archive is gone or unreadable: a finding, not a 500
        result = {"ok": False, "filesChecked": 0, "bytesChecked": 0, "problems": [str(exc)], "notes": []}
    result = {"jobId": state.id, "uri": state.uri, "checkedAt": now(), **result}
    manager.store.write_side_file(state.id, _VERIFIED, orjson.dumps(result))
    return result


def _verifications(request: Request) -> list[dict[str, Any]]:
    manager = request.app.state.jobs
    out = []
    for state in manager.list(None):
        if state.kind not in _ARCHIVE_KINDS:
            continue
        try:
            out.append(orjson.loads(manager.store.side_file(state.id, _VERIFIED).read_bytes()))
        except (FileNotFoundError, NotFound, orjson.JSONDecodeError):
            continue
    return out


@router.get("/verifications", summary="The last checksum verification of each export and backup archive")
async def list_verifications(request: Request) -> Response:
    data = await run_in_threadpool(_verifications, request)
    return json_response({"data": data}, versions.requested(request))


@router.post("/verifications", summary="Verify the checksums of a completed export's or backup's archive")
async def verify(request: Request) -> Response:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"the body is not valid JSON: {exc}") from None
    job_id = body.get("jobId") if isinstance(body, dict) else None
    if not isinstance(job_id, str) or not job_id:
        raise InvalidArgument("jobId is required: the id of a completed export or backup job")
    result = await run_in_threadpool(_verification, request, job_id)
    return json_response(result, versions.requested(request))


def install(app: FastAPI) -> None:
    """Mount the console: call after the API-key middleware is added, so the assets are served in
    front of it (Starlette runs the middleware added last first)."""
    app.include_router(router)
    app.add_middleware(ConsoleAssets)
