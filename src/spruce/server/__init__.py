"""``spruce serve``: Pinecone's REST API over the embedded engine (FastAPI + uvicorn)."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

from spruce.engine import Engine
from spruce.errors import SpruceError
from spruce.server.app import create_app

__all__ = ["UnsafeBind", "create_app", "is_loopback", "run_server"]


class UnsafeBind(SpruceError):
    """Refusing to serve an unauthenticated index beyond this machine."""

    status = 400
    code = "FAILED_PRECONDITION"


def bind_host(host: str) -> str:
    """The address to bind: ``[::1]`` (a URL's spelling of an IPv6 address) becomes ``::1``."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def open_listener(host: str, port: int) -> socket.socket:
    """Bind the listening socket now (IPv4 or IPv6, ``[::1]`` included), so a bad address or a
    port in use is one clear error before the server says it is serving."""
    addr = bind_host(host)
    infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_server(engine_or_data_dir: Engine | str | os.PathLike[str] | None, host: str = "127.0.0.1",
               port: int = 5080, api_key: str | None = None, *, allow_remote: bool = False,
               public_url: str | None = None, public_docs: bool = False, log_level: str = "info",
               access_log: bool = True, backup_uri: str | os.PathLike[str] | None = None,
               storage_roots: list[str] | None = None, signing_key: str | None = None,
               auto_resume: bool = True, sock: socket.socket | None = None,
               schedules: Sequence[Any] | None = None) -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM).

    Without ``api_key`` only a loopback host is allowed, unless ``allow_remote``.
    An engine opened here from a data folder is closed on the way out. ``backup_uri``,
    ``storage_roots``, ``signing_key`` and ``schedules`` are ``create_app``'s. The server owns its jobs: with
    ``auto_resume`` it resumes those a previous run left unfinished, one line on stderr each,
    and on the way out it stops running ones as Interrupted (resumed at the next start).
    """
    import uvicorn

    if not api_key and not is_loopback(host) and not allow_remote:
        raise UnsafeBind(
            f"refusing to serve on {host} without an API key: anyone who can reach it could read and "
            "delete every index. Set an API key, bind to 127.0.0.1, or pass allow_remote to accept the risk")
    owned = not isinstance(engine_or_data_dir, Engine)
    engine = Engine.open(engine_or_data_dir) if owned else engine_or_data_dir  # type: ignore[arg-type]
    assert isinstance(engine, Engine)
    try:
        app = create_app(engine, api_key=api_key, public_url=public_url, public_docs=public_docs,
                         backup_uri=backup_uri, storage_roots=storage_roots, signing_key=signing_key,
                         auto_resume=auto_resume, log=_stderr_line, schedules=schedules)
        config = uvicorn.Config(app, host=bind_host(host), port=port, log_level=log_level, access_log=access_log,
                                server_header=False)
        try:
            uvicorn.Server(config).run(sockets=[sock] if sock is not None else None)
        finally:
            app.state.jobs.close(reason="the server stopped")
    finally:
        if owned:
            engine.close()


def _stderr_line(message: str) -> None:
    print(f"spruce: {message}", file=sys.stderr, flush=True)
