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

from collections.abc import Callable

from fastapi import APIRouter, FastAPI

from spruce import __version__
from spruce.engine import Engine
from spruce.server import control, data
from spruce.server.auth import HEALTH_PATH, ApiKeyMiddleware
from spruce.server.errors import DATA_PREFIX, install_handlers
from spruce.server.versions import LATEST, SUPPORTED

__all__ = ["CONTROL_ROUTERS", "DATA_ROUTER_FACTORIES", "create_app"]

CONTROL_ROUTERS: list[APIRouter] = [control.router]
DATA_ROUTER_FACTORIES: list[Callable[..., APIRouter]] = [data.build_router]

_DESCRIPTION = f"""A self-hosted vector index that speaks Pinecone's REST API.

* Control plane at the root: `/indexes`.
* Data plane of index NAME under `{DATA_PREFIX}NAME/` (the `host` that describe_index returns).
* Authentication: the `Api-Key` header, when the server has a key.
* Versions: `X-Pinecone-API-Version` {", ".join(SUPPORTED)} select the response shape; without it, {LATEST}.
"""


def create_app(engine: Engine, *, api_key: str | None = None, public_url: str | None = None,
               public_docs: bool = False) -> FastAPI:
    """Build the app for ``engine``.

    api_key: required in the ``Api-Key`` header of every request but ``/health`` when set.
    public_url: the base URL clients reach this server at (behind a proxy), used in index
        hosts; by default the URL the client itself used.
    public_docs: serve ``/docs`` and ``/openapi.json`` without the key.
    """
    app = FastAPI(title="spruce", version=__version__, description=_DESCRIPTION,
                  docs_url="/docs", redoc_url=None)
    app.state.engine = engine
    app.state.public_url = public_url.rstrip("/") if public_url else None
    install_handlers(app)

    @app.get(HEALTH_PATH, tags=["Health"], summary="Liveness check (no API key needed)")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for router in CONTROL_ROUTERS:
        app.include_router(router)
    for factory in DATA_ROUTER_FACTORIES:
        app.include_router(factory(data.index_from_path, prefix=DATA_PREFIX + "{index_name}"))
        app.include_router(factory(data.index_from_host, include_in_schema=False))

    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key, public_docs=public_docs)
    return app
