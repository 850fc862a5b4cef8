"""`spruce serve` checks its address, port and data folder before it says it is serving:
each failure is one line on stderr and exit code 1, and nothing claims to be serving."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

import spruce

CLI = [sys.executable, "-c", "from spruce.cli import main; main()"]


def _serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    return subprocess.run([*CLI, "serve", *args], capture_output=True, text=True, env=env, timeout=timeout)


def _one_line_failure(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "serving" not in p.stderr and "Traceback" not in p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        _one_line_failure(_serve("--data", str(tmp_path / "d"), "--port", str(port)), "already in use", str(port))


def test_bad_bind_address(tmp_path):
    _one_line_failure(_serve("--data", str(tmp_path / "d"), "--bind", "999.1.1.1", "--port", str(_free_port())),
                      "999.1.1.1")


def test_remote_bind_without_key(tmp_path):
    _one_line_failure(_serve("--data", str(tmp_path / "d"), "--bind", "0.0.0.0", "--port", str(_free_port())),
                      "API key")


def test_locked_data_folder(tmp_path):
    holder = spruce.Client(data_dir=str(tmp_path / "d"))
    try:
        _one_line_failure(_serve("--data", str(tmp_path / "d"), "--port", str(_free_port())), "in use")
    finally:
        holder.close()


def test_ipv6_loopback(tmp_path):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    proc = subprocess.Popen([*CLI, "serve", "--data", str(tmp_path / "d"), "--bind", "[::1]", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://[::1]:{port}/health", timeout=1)
                assert r.status_code == 200 and r.json()["status"] == "ok"
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.1)
        else:
            raise AssertionError("the server never answered on [::1]")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
