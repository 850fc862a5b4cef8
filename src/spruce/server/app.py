"""The ASGI app: Pinecone's control and data planes over one engine, on one port.

Routing. The control plane is at the root (``/indexes``...). describe_index
returns ``host = http://<this server>/index/<name>``; every SDK (7.x, 9.x, 10.x)
keeps a path in the host and appends the data-plane path to it, so
``pc.Index(name=...)`` and ``pc.Index(host=...)`` both reach ``/index/<name>/query``.
The same data-plane routes are also mounted at the root, where the index is the
first label of the ``Host`` header (for a wildcard-DNS reverse proxy).

Later routers slot in here: a control-plane module (backups: ``/indexes/{name}/backups``,
``/backups``, ``/restore-jobs``) is appended to ``CONTROL_ROUTERS``; a data-plane
module (``/bulk/imports``, ``/bulk/exports``, ``/downloads/...``) exposes
``build_router(resolve, prefix=..., include_in_schema=...)`` like ``data`` and is
appended to ``DATA_ROUTER_FACTORIES``, which mounts it in both addressing modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI

import spruce.sources  # noqa: F401 - registers the connectors' job kinds
from spruce import __version__
from spruce.engine import Engine
from spruce.server import archives, backups, bulk, console, control, data, downloads, exports, repositories
from spruce.server.auth import HEALTH_PATH, ApiKeyMiddleware
from spruce.server.errors import DATA_PREFIX, install_handlers
from spruce.server.versions import LATEST, SUPPORTED

if TYPE_CHECKING:
    from spruce.server.faults import FaultConfig
    from spruce.server.schedules import Schedule

__all__ = ["CONTROL_ROUTERS", "DATA_ROUTER_FACTORIES", "create_app"]

CONTROL_ROUTERS: list[APIRouter] = [control.router, backups.router, bulk.jobs_router, downloads.router,
                                     archives.router, repositories.router]
DATA_ROUTER_FACTORIES: list[Callable[..., APIRouter]] = [data.build_router, bulk.build_router,
                                                         exports.build_router]

_DESCRIPTION = f"""A self-hosted vector index that speaks Pinecone's REST API.

* Control plane at the root: `/indexes`.
* Data plane of index NAME under `{DATA_PREFIX}NAME/` (the `host` that describe_index returns).
* Authentication: the `Api-Key` header, when the server has a key.
* Versions: `X-Pinecone-API-Version` {", ".join(SUPPORTED)} select the response shape; without it, {LATEST}.
"""


def create_app(engine: Engine, *, api_key: str | None = None, public_url: str | None = None,
               public_docs: bool = False, faults: FaultConfig | None = None,
               backup_uri: str | os.PathLike[str] | None = None,
               storage_roots: Sequence[str | os.PathLike[str]] | None = None,
               signing_key: str | bytes | None = None, auto_resume: bool = True,
               log: Callable[[str], None] | None = None, max_body: int | None = None,
               schedules: Sequence[Schedule] | None = None) -> FastAPI:
    """Build the app for ``engine``.

    api_key: required in the ``Api-Key`` header of every request but ``/health`` when set.
    public_url: the base URL clients reach this server at (behind a proxy), used in index
        hosts; by default the URL the client itself used.
    public_docs: serve ``/docs`` and ``/openapi.json`` without the key.
    faults: test-only fault injection on the data plane (``spruce.server.faults``); never on
        unless passed explicitly.
    backup_uri: where backups are kept (a folder or object-store URI); default ``<data>/backups``.
    storage_roots: the folders (or object-store prefixes) that server-side storage URIs of imports
        and exports must stay inside; default ``<data>/exports``. A local backup folder is always one.
    signing_key: the key of signed download links; default a random one kept in ``<data>/.server-secret``.
    auto_resume: resume the export and import jobs a previous run left unfinished (the server
        owns its jobs), except those whose index was written since (they become Superseded).
    log: where to say, one line per job, what was resumed (default: the ``spruce.jobs`` logger).
    max_body: the largest request body, in bytes (default 2 MB, Pinecone's limit, or
        $SPRUCE_MAX_BODY_BYTES); a larger one is answered 413 before it is read.
    schedules: scheduled backups (``spruce serve --config``, ``spruce.server.schedules``): their
        scheduler runs while the app does (its lifespan) and ``GET /schedules`` reports on them.
    """
    app = FastAPI(title="spruce", version=__version__, description=_DESCRIPTION,
                  docs_url="/docs", redoc_url=None, lifespan=_lifespan)
    app.state.engine = engine
    app.state.public_url = public_url.rstrip("/") if public_url else None
    _install_jobs(app, engine, backup_uri=backup_uri, storage_roots=storage_roots, signing_key=signing_key,
                  auto_resume=auto_resume, log=log or logging.getLogger("spruce.jobs").warning)
    from spruce.server.schedules import Scheduler

    app.state.scheduler = Scheduler(engine, schedules or (), manager=app.state.jobs)
    install_handlers(app)

    @app.get(HEALTH_PATH, tags=["Health"], summary="Liveness check (no API key needed)")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/schedules", tags=["Schedules"], summary="Scheduled backups and their last runs (spruce extension)")
    def schedules_status() -> list[dict[str, Any]]:
        return app.state.scheduler.status()  # type: ignore[no-any-return]

    for router in CONTROL_ROUTERS:
        app.include_router(router)
    for factory in DATA_ROUTER_FACTORIES:
        app.include_router(factory(data.index_from_path, prefix=DATA_PREFIX + "{index_name}"))
        app.include_router(factory(data.index_from_host, include_in_schema=False))

    if faults is not None:
        from spruce.server.faults import FaultMiddleware

        app.add_middleware(FaultMiddleware, config=faults)
    if api_key:
        app.add_middleware(_ApiKeyUnlessSigned, api_key=api_key, public_docs=public_docs)
    console.install(app)  # /console's assets (public) in front of the key check; /verifications behind it
    # outermost: a body over the cap is refused before anything (auth included) reads it
    from spruce.server.limits import BodyLimitMiddleware, max_body_from_env

    app.add_middleware(BodyLimitMiddleware, max_body=max_body if max_body is not None else max_body_from_env())
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The scheduled backups run while the server does."""
    app.state.scheduler.start()
    try:
        yield
    finally:
        await asyncio.to_thread(app.state.scheduler.stop)


def _install_jobs(app: FastAPI, engine: Engine, *, backup_uri: str | os.PathLike[str] | None,
                  storage_roots: Sequence[str | os.PathLike[str]] | None, signing_key: str | bytes | None,
                  auto_resume: bool, log: Callable[[str], None]) -> None:
    """Jobs, storage roots, backups and download signing: what the job routers find on app.state."""
    from spruce.jobs import jobs_for
    from spruce.server.storage_policy import StoragePolicy

    backup = os.fspath(backup_uri) if backup_uri else str(engine.data_dir / "backups")
    roots = [os.fspath(r) for r in storage_roots] if storage_roots else [str(engine.data_dir / "exports")]
    # the backup folder is not a storage root: backups are reached only through /backups
    app.state.storage = policy = StoragePolicy(roots, exclude=[backup], data_dir=engine.data_dir)
    policy.ensure_roots()
    app.state.jobs = manager = jobs_for(engine, auto_resume=auto_resume, log=log)
    app.state.signer = downloads.Signer(downloads.load_secret(engine.data_dir, signing_key))
    app.state.backups = backups.BackupCatalog(backup, manager)
    downloads.install_log_filter()


class _ApiKeyUnlessSigned(ApiKeyMiddleware):
    """The API key on every request, except signed download links, which carry their own
    authorization (an HMAC signature with an expiry) so that curl and browsers can use them."""

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and scope["path"].startswith(downloads.DOWNLOAD_PREFIX):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
