"""Start a real spruce server on a free loopback port, for tests and benchmarks.

    with start_server(tmp_path / "data", api_key="secret") as srv:
        pc = Pinecone(api_key="secret", host=srv.url)

mode="thread" runs uvicorn in a daemon thread of this process on an engine you
may also hold (handy for white-box checks); mode="subprocess" runs
``python -m spruce.server`` in its own process (its own GIL: what benchmarks
should measure) and needs a data folder, not an engine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from spruce.engine import Engine

__all__ = ["RunningServer", "free_port", "start_server"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    port: int
    api_key: str | None
    engine: Engine | None = None
    _stop: Any = field(default=None, repr=False)
    #: the server's process id (mode="subprocess"), for tests that kill it
    pid: int | None = None

    def headers(self, **extra: str) -> dict[str, str]:
        h = {"Api-Key": self.api_key} if self.api_key else {}
        h.update(extra)
        return h

    def index_host(self, name: str) -> str:
        return f"{self.url}/index/{name}"

    def stop(self) -> None:
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_healthy(url: str, deadline: float, alive: Any = lambda: True) -> bool:
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False


def start_server(engine_or_data_dir: Engine | str | os.PathLike[str], *, api_key: str | None = None,
                 mode: Literal["thread", "subprocess"] = "thread", public_url: str | None = None,
                 timeout: float = 30.0, auto_resume: bool = True) -> RunningServer:
    """Start a server and return once /health answers; stop it with ``.stop()`` or ``with``."""
    if mode == "thread":
        return _start_thread(engine_or_data_dir, api_key=api_key, public_url=public_url, timeout=timeout,
                             auto_resume=auto_resume)
    if isinstance(engine_or_data_dir, Engine):
        raise TypeError("mode='subprocess' needs a data folder: an engine cannot cross processes")
    return _start_subprocess(Path(engine_or_data_dir), api_key=api_key, public_url=public_url,
                             timeout=timeout, auto_resume=auto_resume)


def _start_thread(engine_or_data_dir: Engine | str | os.PathLike[str], *, api_key: str | None,
                  public_url: str | None, timeout: float, auto_resume: bool = True) -> RunningServer:
    import uvicorn

    from spruce.server import create_app

    owned = not isinstance(engine_or_data_dir, Engine)
    engine = Engine(engine_or_data_dir) if owned else engine_or_data_dir
    assert isinstance(engine, Engine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(engine, api_key=api_key, public_url=public_url, auto_resume=auto_resume)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, server_header=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"spruce-server-{port}",
                              daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        if owned:
            app.state.jobs.close(reason="the server stopped")
            engine.close()

    if not _wait_healthy(url, time.monotonic() + timeout, thread.is_alive):
        stop()
        raise RuntimeError(f"spruce server did not start on {url}")
    return RunningServer(url=url, port=port, api_key=api_key, engine=engine, _stop=stop)


def _start_subprocess(data_dir: Path, *, api_key: str | None, public_url: str | None,
                      timeout: float, auto_resume: bool) -> RunningServer:
    env = dict(os.environ)
    env.pop("SPRUCE_API_KEY", None)
    if api_key:
        env["SPRUCE_API_KEY"] = api_key
    for _attempt in range(3):  # a port picked free can be taken before the child binds it
        port = free_port()
        cmd = [sys.executable, "-m", "spruce.server", "--data", str(data_dir), "--port", str(port),
               "--log-level", "warning", "--no-access-log"]
        if public_url:
            cmd += ["--public-url", public_url]
        if not auto_resume:
            cmd.append("--no-resume")
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        if _wait_healthy(url, time.monotonic() + timeout, lambda p=proc: p.poll() is None):
            def stop(p: subprocess.Popen[bytes] = proc) -> None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            return RunningServer(url=url, port=port, api_key=api_key, _stop=stop, pid=proc.pid)
        proc.kill()
        proc.wait()
    raise RuntimeError("spruce server subprocess did not start")


#: job states a job never leaves
TERMINAL = ("Completed", "Failed", "Cancelled", "Superseded")


def wait_job(http: Any, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll ``GET /jobs/{id}`` (``http``: an httpx.Client on the server, with the key) until the
    job ends or ``timeout`` passes; returns its last state."""
    deadline = time.monotonic() + timeout
    while True:
        j = http.get(f"/jobs/{job_id}").json()
        if j["status"] in TERMINAL or time.monotonic() > deadline:
            return j
        time.sleep(0.05)
