"""spruce as the missing Pinecone export: a real ``spruce serve`` (uvicorn on loopback) as the
remote index, the official SDK inside the connector, archives checked record by record.

Server A holds 50,000 hybrid records (dense float32 + sparse + metadata) in 4 namespaces
(the default among them), so every namespace takes many list pages. Faults (429s, ids
left out of list pages or fetches) are switched on per test through A's FaultConfig.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from spruce.archive import ArchiveReader
from spruce.engine import Engine
from spruce.errors import AlreadyExists, ChecksumMismatch, InvalidArgument, JobCancelled
from spruce.jobs import JobManager
from spruce.records import Record
from spruce.server import create_app
from spruce.server.faults import FaultConfig, FaultMiddleware
from spruce.sources import pinecone as remote
from spruce.sources.pinecone import exporter as pc_exporter
from spruce.storage import open_store

pytest.importorskip("pinecone")

KEY = "test-key-0f9c"  # the servers' API key; PINECONE_API_KEY in the CLI tests
DIM = 32
NAMESPACES = {"": 20_000, "ns1": 15_000, "ns-two": 10_000, "ns three": 5_000}
ODD_IDS = ["a b", "x/y", "q?&=1", "#hash", "100%", "plus+sign"]  # exercise URL encoding of fetch


# -- servers -----------------------------------------------------------------------------------


class Served:
    def __init__(self, engine: Engine, url: str, faults: FaultConfig | None, stop: Any) -> None:
        self.engine, self.url, self.faults, self._stop = engine, url, faults, stop

    def stop(self) -> None:
        self._stop()


@contextlib.contextmanager
def serve(data_dir: Path, *, faults: FaultConfig | None = None) -> Iterator[Served]:
    """uvicorn in a thread on a free loopback port, like tests/serverutil.py, with ``faults``."""
    import uvicorn

    engine = Engine(data_dir)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(engine, api_key=KEY, faults=faults)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        engine.close()

    try:
        yield Served(engine, url, faults, stop)
    finally:
        stop()


def _records(ns_index: int, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    values = rng.standard_normal((n, DIM)).astype(np.float32)
    values[0, :3] = [-0.0, 1e-45, 3.4028235e38]  # sign of zero, a subnormal, the largest float32
    out = []
    for i in range(n):
        rid = ODD_IDS[i] + f"-{ns_index}" if i < len(ODD_IDS) else f"doc-{ns_index}-{i:06d}"
        rec: dict[str, Any] = {"id": rid, "values": values[i]}
        if i % 3:
            k = 1 + i % 9
            idx = rng.choice(2**32 - 1, size=k, replace=False).astype(np.uint32)
            rec["sparse_values"] = {"indices": idx.tolist(),
                                    "values": rng.standard_normal(k).astype(np.float32).tolist()}
        if i % 5:
            rec["metadata"] = {"genre": ["drama", "comedy", "news"][i % 3], "year": 1990 + i % 35,
                               "big": 2**53 + i, "score": i / 7, "flag": bool(i % 2), "tags": ["a", f"t{i % 4}"]}
        elif i % 10 == 0:
            rec["metadata"] = {}
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Server A: index "hybrid" (50k records over 4 namespaces) and index "small" (300 records)."""
    faults = FaultConfig()
    with serve(tmp_path_factory.mktemp("server-a"), faults=faults) as srv:
        rng = np.random.default_rng(1234)
        idx = srv.engine.create_index("hybrid", dimension=DIM, metric="dotproduct",
                                      spec={"serverless": {"cloud": "aws", "region": "us-east-1"}})
        for j, (ns, n) in enumerate(NAMESPACES.items()):
            recs = _records(j, n, rng)
            for a in range(0, n, 1000):
                idx.upsert(recs[a:a + 1000], namespace=ns)
        small = srv.engine.create_index("small", dimension=8, metric="cosine")
        small.upsert([{"id": f"s-{i:04d}", "values": rng.standard_normal(8).astype(np.float32),
                       "metadata": {"i": i}} for i in range(300)], namespace="only")
        yield srv


@pytest.fixture(autouse=True)
def _no_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "source" in request.fixturenames:
        request.getfixturevalue("source").faults.configure()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Served]:
    with serve(tmp_path / "server-b") as srv:
        yield srv


def _snapshot(engine: Engine, index: str, ns: str) -> list[Record]:
    with engine.index(index).snapshot() as snap:
        return [r for batch in snap.iter_batches(ns) for r in batch.records()]


def _same(a: list[Record], b: list[Record]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x == y, x.id  # bit-exact values and sparse values, equal metadata...
        assert orjson.dumps(x.metadata) == orjson.dumps(y.metadata), x.id  # ...of the same JSON types


def _archive_records(uri: str, ns: str) -> list[Record]:
    reader = ArchiveReader(open_store(uri))
    entry = reader.manifest.namespace(ns)
    return [r for batch in reader.iter_batches(entry) for r in batch.records()]


# -- the round trip ------------------------------------------------------------------------------


def test_export_then_restore_is_identical(source: Served, target: Served, tmp_path: Path) -> None:
    progress: list[remote.Progress] = []
    dest = str(tmp_path / "archive")
    manifest = remote.export("hybrid", dest, api_key=KEY, host=source.url, on_progress=progress.append)

    assert manifest.consistency == "live"
    assert manifest.snapshot["point"] is None and manifest.snapshot["taken_at"]
    assert manifest.source["kind"] == "pinecone" and manifest.source["metric"] == "dotproduct"
    assert manifest.source["dimension"] == DIM and manifest.source["vector_type"] == "dense"
    assert manifest.source["spec"] == {"serverless": {"cloud": "aws", "region": "us-east-1"}}
    assert {ns.name: ns.record_count for ns in manifest.namespaces} == NAMESPACES
    assert progress[-1].phase == "done" and progress[-1].records_done == sum(NAMESPACES.values())
    assert ArchiveReader(open_store(dest)).verify().ok
    assert KEY not in (Path(dest) / "manifest.json").read_text()

    summary = remote.restore(dest, "copy", api_key=KEY, host=target.url, cloud="aws", region="us-east-1")
    assert summary.created_index and summary.verified and summary.method == "upsert"
    assert summary.namespaces == NAMESPACES and summary.counts_after == NAMESPACES
    cfg = target.engine.describe_index("copy")
    assert (cfg.dimension, cfg.metric, cfg.vector_type) == (DIM, "dotproduct", "dense")
    assert cfg.spec["serverless"]["cloud"] == "aws"
    for ns in NAMESPACES:
        _same(_snapshot(source.engine, "hybrid", ns), _snapshot(target.engine, "copy", ns))


def test_parquet_archive_round_trips(source: Served, target: Served, tmp_path: Path) -> None:
    dest = str(tmp_path / "pq")
    manifest = remote.export("hybrid", dest, api_key=KEY, host=source.url, format="parquet",
                             namespaces=["ns three", "__default__"], parallelism=2)
    assert manifest.data["format"] == "parquet"
    assert manifest.selection["namespaces"] == ["ns three", ""]
    assert [ns.name for ns in manifest.namespaces] == ["ns three", ""]
    remote.restore(dest, "copy", api_key=KEY, host=target.url)
    for ns in ("ns three", ""):
        _same(_snapshot(source.engine, "hybrid", ns), _snapshot(target.engine, "copy", ns))
    assert target.engine.index("copy").describe_index_stats().total_vector_count == 25_000


def test_export_refuses_to_replace_an_archive(source: Served, tmp_path: Path) -> None:
    dest = str(tmp_path / "a")
    remote.export("small", dest, api_key=KEY, host=source.url)
    with pytest.raises(AlreadyExists):
        remote.export("small", dest, api_key=KEY, host=source.url)
    remote.export("small", dest, api_key=KEY, host=source.url, overwrite=True, format="parquet")


# -- throttling -----------------------------------------------------------------------------------


def test_export_completes_exactly_through_20_percent_429s(source: Served, tmp_path: Path) -> None:
    source.faults.configure(throttle_fraction=0.2, retry_after=0, seed=7)
    dest = str(tmp_path / "throttled")
    progress: list[remote.Progress] = []
    manifest = remote.export("hybrid", dest, api_key=KEY, host=source.url, on_progress=progress.append)
    assert source.faults.throttled > 50  # hundreds of requests, a fifth of them refused
    assert manifest.totals["records"] == sum(NAMESPACES.values())
    for ns in NAMESPACES:  # every record, exactly once, bit for bit
        _same(_snapshot(source.engine, "hybrid", ns), _archive_records(dest, ns))


def test_restore_completes_through_429s(source: Served, target: Served, tmp_path: Path) -> None:
    dest = str(tmp_path / "small")
    remote.export("small", dest, api_key=KEY, host=source.url)
    faults = FaultConfig(throttle_fraction=0.3, retry_after=0, seed=3)
    with serve(tmp_path / "throttled-target", faults=faults) as tgt:
        summary = remote.restore(dest, "small", api_key=KEY, host=tgt.url)
        assert summary.verified and summary.records == 300
        _same(_snapshot(source.engine, "small", "only"), _snapshot(tgt.engine, "small", "only"))


class _Throttled(Exception):
    """Shaped like the SDK's RateLimitError (10.x) or PineconeApiException (7.3)."""

    def __init__(self, status: int, retry_after: float | None = None, headers: dict[str, str] | None = None):
        super().__init__(f"HTTP {status}")
        if retry_after is not None:
            self.status_code, self.retry_after = status, retry_after
        else:
            self.status, self.headers = status, headers or {}


def _retrier(delays: list[float]) -> remote._Retrier:
    rep = remote._Reporter()
    rep.sleep = delays.append  # type: ignore[method-assign]
    return remote._Retrier(rep, attempts=4)


def test_retry_honours_retry_after_from_either_sdk_shape() -> None:
    delays: list[float] = []
    r = _retrier(delays)
    answers = iter([_Throttled(429, retry_after=1.5), _Throttled(503, headers={"Retry-After": "2"}), "ok"])

    def call() -> str:
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    assert r.call("fetch", call) == "ok"
    assert 1.5 <= delays[0] <= 1.5 * 1.1 + 0.05 and 2.0 <= delays[1] <= 2.0 * 1.1 + 0.05
    assert r.reporter.p.retries == 2 and r.reporter.p.throttled == 1


def test_retry_is_bounded_and_says_what_failed() -> None:
    delays: list[float] = []
    r = _retrier(delays)
    with pytest.raises(remote.RemoteError, match=r"fetch 3 ids: still failing after 4 attempts: HTTP 500"):
        r.call("fetch 3 ids", lambda: (_ for _ in ()).throw(_Throttled(500)))
    assert len(delays) == 3 and all(0 <= d <= 20 for d in delays)
    with pytest.raises(remote.RemoteError, match="HTTP 400"):  # not retryable: at once
        r.call("upsert", lambda: (_ for _ in ()).throw(_Throttled(400)))
    assert len(delays) == 3


def test_classify() -> None:
    c = remote.classify(_Throttled(429, headers={"retry-after": "0"}))
    assert (c.retryable, c.status, c.retry_after) == (True, 429, 0.0)
    assert remote.classify(_Throttled(404)).retryable is False
    assert remote.classify(ConnectionResetError()).retryable is True
    date = "Wed, 21 Oct 2015 07:28:00 GMT"  # in the past: no wait
    assert remote.classify(_Throttled(503, headers={"Retry-After": date})).retry_after == 0.0
    assert remote.classify(ValueError("bad")).retryable is False


# -- completeness -----------------------------------------------------------------------------------


def test_ids_missing_from_list_pages_fail_the_job(source: Served, tmp_path: Path) -> None:
    source.faults.configure(drop_list_every=997)
    engine = Engine(tmp_path / "local")
    try:
        manager = JobManager.for_engine(engine)
        dest = tmp_path / "dropped"
        state = remote.start_remote_export(manager, "hybrid", str(dest), api_key=KEY, host=source.url,
                                           namespaces=["ns-two"], sync=False)
        s = manager.wait(state.id, timeout=120)
        assert s.kind == "remote-export" and s.status == "Failed"
        assert "namespace 'ns-two'" in s.error and "describe_index_stats reports 10,000" in s.error
        assert f"exported {10_000 - len(source.faults.dropped):,} records" in s.error
        assert not (dest / "manifest.json").exists()
        saved = (tmp_path / "local" / "jobs" / f"{state.id}.json").read_text()
        assert KEY not in saved and json.loads(saved)["status"] == "Failed"
        assert [j.id for j in manager.list("remote-export")] == [state.id]
    finally:
        engine.close()


def test_listed_but_unfetchable_id_is_named(source: Served, tmp_path: Path) -> None:
    source.faults.configure(omit_fetch_ids={"doc-3-002222"})
    dest = tmp_path / "omitted"
    with pytest.raises(remote.IncompleteExport, match=r"namespace 'ns three': id 'doc-3-002222' was listed but "
                                                      r"could not be fetched"):
        remote.export("hybrid", str(dest), api_key=KEY, host=source.url, namespaces=["ns three"])
    assert not (dest / "manifest.json").exists()


def test_verify_after_recounts(source: Served, tmp_path: Path) -> None:
    m = remote.export("small", str(tmp_path / "ok"), api_key=KEY, host=source.url, verify_after=True)
    assert m.totals["records"] == 300
    small = source.engine.index("small")
    changed = threading.Event()

    def write_meanwhile(p: remote.Progress) -> None:
        # after the data is written, before the recount: one id replaced by another (same count)
        if p.phase == "checking" and not changed.is_set():
            changed.set()
            small.delete(ids=["s-0007"], namespace="only")
            small.upsert([{"id": "s-9999", "values": [0.5] * 8}], namespace="only")

    try:
        with pytest.raises(remote.IncompleteExport, match=r"recount.*1 id\(s\) listed now were not exported "
                                                          r"\(e.g. 's-9999'\).*1 exported id\(s\) are no longer "
                                                          r"listed \(e.g. 's-0007'\)"):
            remote.export("small", str(tmp_path / "moved"), api_key=KEY, host=source.url, verify_after=True,
                          on_progress=write_meanwhile)
        assert not (tmp_path / "moved" / "manifest.json").exists()
    finally:
        small.delete(ids=["s-9999"], namespace="only")
        small.upsert([{"id": "s-0007", "values": [0.5] * 8, "metadata": {"i": 7}}], namespace="only")


def test_cancelling_a_remote_export_job(source: Served, tmp_path: Path) -> None:
    # every request refused: the SDK's own retries (10.x: 3, Retry-After capped at 60 s) then ours
    source.faults.configure(throttle_fraction=1.0, retry_after=1)
    engine = Engine(tmp_path / "local")
    try:
        manager = JobManager.for_engine(engine)
        state = remote.start_remote_export(manager, "small", str(tmp_path / "c"), api_key=KEY, host=source.url)
        time.sleep(0.5)
        manager.cancel(state.id)
        s = manager.wait(state.id, timeout=30)
        assert s.status == "Cancelled"
    finally:
        engine.close()


# -- restore limits ---------------------------------------------------------------------------------


def test_upsert_batches_respect_pinecone_limits() -> None:
    from spruce.records import RecordBatch

    rng = np.random.default_rng(0)
    n = 2600
    batch = RecordBatch(ids=[f"id-{i}" for i in range(n)], values=rng.standard_normal((n, 768)).astype(np.float32),
                        metadata=[{"text": "x" * (i % 3000)} for i in range(n)])
    chunks = list(remote.upsert_chunks(batch))
    assert sum(len(c) for c, _ in chunks) == n
    for vectors, _size in chunks:
        assert len(vectors) <= 1000
        body = orjson.dumps({"vectors": vectors, "namespace": "some-namespace"})
        assert len(body) <= 2_000_000  # what SDK 10 (orjson) sends
        assert len(json.dumps({"vectors": vectors})) <= 2_000_000  # what SDK 7.3 (json.dumps) sends
    small = RecordBatch(ids=[f"id-{i}" for i in range(300)], values=np.ones((300, 4), np.float32))
    assert [len(c) for c, _ in remote.upsert_chunks(small, max_records=96)] == [96, 96, 96, 12]
    first = orjson.loads(orjson.dumps(chunks[0][0][0]["values"]))
    assert np.array_equal(np.asarray(first, dtype=np.float32), batch.values[0])  # short decimals, same bits


def test_raw_upsert_bodies_respect_pinecone_limits() -> None:
    """9.x/10.x: archive lines go out as they are, in bodies built around them."""
    from spruce.archive.jsonl import encode_lines
    from spruce.records import RecordBatch

    rng = np.random.default_rng(0)
    n = 2600
    batch = RecordBatch(ids=[f"id-{i}" for i in range(n)], values=rng.standard_normal((n, 768)).astype(np.float32),
                        metadata=[{"text": "x" * (i % 3000)} for i in range(n)])
    chunks = list(remote.raw_line_chunks(encode_lines(batch)))
    assert sum(len(c) for c, _ in chunks) == n
    for lines, size in chunks:
        body = remote._upsert_body("some-namespace", lines)
        assert len(lines) <= 1000 and len(body) <= 2_000_000
        assert len(body) <= size + remote._UPSERT_ENVELOPE
        doc = orjson.loads(body)
        assert doc["namespace"] == "some-namespace" and len(doc["vectors"]) == len(lines)
    first = orjson.loads(remote._upsert_body("", chunks[0][0]))
    assert "namespace" not in first
    assert np.array_equal(np.asarray(first["vectors"][0]["values"], dtype=np.float32), batch.values[0])
    small = encode_lines(RecordBatch(ids=[f"id-{i}" for i in range(300)], values=np.ones((300, 4), np.float32)))
    assert [len(c) for c, _ in remote.raw_line_chunks(small, max_records=96)] == [96, 96, 96, 12]
    with pytest.raises(remote.ValidationError, match="more than one upsert request") as err:
        list(remote.raw_line_chunks([b'{"id":"big","values":[1.0],"metadata":{"t":"' + b"y" * 3000 + b'"}}'],
                                    max_bytes=2000))
    assert err.value.record_id == "big"


def test_raw_upsert_lines_name_sparse_values_as_the_api_does() -> None:
    sparse = {"indices": [3, 9], "values": [0.1, 2.5]}
    lines = [orjson.dumps({"id": "a", "values": [0.5], "sparse_values": sparse,
                           "metadata": {"sparse_values": "kept"}}),
             orjson.dumps({"id": "b", "values": [0.25], "metadata": {"sparse_values": 1}}),
             b'{"id":"c","values":[0.1]}\r']
    [(out, size)] = list(remote.raw_line_chunks(lines))
    got = [orjson.loads(line) for line in out]
    assert got[0] == {"id": "a", "values": [0.5], "sparseValues": sparse, "metadata": {"sparse_values": "kept"}}
    assert np.float32(got[0]["sparseValues"]["values"][0]) == np.float32(0.1)
    assert out[1] == lines[1] and out[2] == b'{"id":"c","values":[0.1]}'
    assert size == sum(len(line) + 1 for line in out)


# -- bulk import from S3 ------------------------------------------------------------------------------


def test_restore_by_bulk_import_from_s3(source: Served, tmp_path: Path, s3_server: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = "pinecone-bulk"
    s3_server.create_bucket(bucket)
    uri = f"s3://{bucket}/exports/small"
    remote.export("small", uri, api_key=KEY, host=source.url, format="parquet",
                  storage_options=s3_server.options())
    for k, v in s3_server.env().items():  # the target server reads the bucket with its own credentials
        monkeypatch.setenv(k, v)
    with serve(tmp_path / "bulk-target") as tgt:
        from spruce.server import app as app_module

        if not any(getattr(f, "__module__", "") == "spruce.server.bulk" for f in app_module.DATA_ROUTER_FACTORIES):
            pytest.skip("this spruce server has no /bulk/imports endpoint yet (src/spruce/server/bulk.py)")
        summary = remote.restore(uri, "small-copy", api_key=KEY, host=tgt.url, bulk_import=True,
                                 storage_options=s3_server.options())
        assert summary.method == "bulk_import" and summary.import_id and summary.verified
        assert summary.counts_after == {"only": 300}
        _same(_snapshot(source.engine, "small", "only"), _snapshot(tgt.engine, "small-copy", "only"))


def test_a_damaged_archive_file_sends_nothing(source: Served, target: Served, tmp_path: Path) -> None:
    dest = tmp_path / "damaged"
    m = remote.export("small", str(dest), api_key=KEY, host=source.url)
    part = dest / m.namespaces[0].files[0].path
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    part.write_bytes(bytes(raw))
    with pytest.raises(ChecksumMismatch, match="sha256"):
        remote.restore(str(dest), "damaged", api_key=KEY, host=target.url)
    assert not target.engine.has_index("damaged")  # created for the restore, removed when nothing landed


def test_bulk_import_needs_parquet_in_object_storage(source: Served, tmp_path: Path) -> None:
    dest = str(tmp_path / "jsonl")
    remote.export("small", dest, api_key=KEY, host=source.url)
    with pytest.raises(InvalidArgument, match="s3://, gs:// or Azure"):
        remote.restore(dest, "x", api_key=KEY, host=source.url, bulk_import=True)


# -- the CLI ------------------------------------------------------------------------------------------


def _spruce(*args: str, data: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spruce", "--data", str(data), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_from_and_to_pinecone(source: Served, target: Served, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PINECONE_", "SPRUCE_"))}
    env["COLUMNS"] = "250"  # rich would truncate the jobs table in a narrow pipe
    data = tmp_path / "cli-data"
    dest = tmp_path / "cli-archive"

    r = _spruce("export", "small", str(dest), "--from", "pinecone", "--pinecone-host", source.url, data=data, env=env)
    assert r.returncode == 1 and "PINECONE_API_KEY" in r.stderr  # no key: refused, never asked as a flag

    env["PINECONE_API_KEY"] = KEY
    r = _spruce("export", "small", str(dest), "--from", "pinecone", "--pinecone-host", source.url,
                "--format", "parquet", "--verify-after", data=data, env=env)
    assert r.returncode == 0, r.stderr
    assert "exported 300 records" in r.stdout and "recount" in r.stdout
    assert json.loads((dest / "manifest.json").read_text())["consistency"] == "live"

    r = _spruce("restore", str(dest), "small-copy", "--to", "pinecone", "--pinecone-host", target.url,
                "--cloud", "aws", "--region", "eu-west-1", data=data, env=env)
    assert r.returncode == 0, r.stderr
    assert "restored 300 records into small-copy" in r.stdout
    assert target.engine.describe_index("small-copy").spec["serverless"]["region"] == "eu-west-1"
    _same(_snapshot(source.engine, "small", "only"), _snapshot(target.engine, "small-copy", "only"))

    r = _spruce("jobs", "list", data=data, env=env)
    assert r.returncode == 0 and "remote-export" in r.stdout and "remote-import" in r.stdout
    for f in (data / "jobs").glob("*"):
        assert KEY not in f.read_text(errors="replace")

    r = _spruce("export", "nope", str(tmp_path / "x"), "--from", "pinecone", "--pinecone-host", source.url,
                data=data, env=env)
    assert r.returncode == 1 and "nope" in r.stderr and "404" in r.stderr


def test_faults_are_off_unless_asked(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "d")
    try:
        assert not any(m.cls is FaultMiddleware for m in create_app(engine).user_middleware)
        assert any(m.cls is FaultMiddleware for m in create_app(engine, faults=FaultConfig()).user_middleware)
    finally:
        engine.close()


def test_job_cancel_exception_is_cancelled() -> None:
    rep = remote._Reporter()
    rep.stop.set()
    with pytest.raises(JobCancelled):
        rep.check_cancel()


# -- the fetch decoder: simdjson's fast path, and the general way it falls back to ----------------


def _fetch_response(records: list[dict[str, Any]]) -> bytes:
    """A fetch response as a server writes it: dense values in their shortest float32 text."""
    from spruce.archive.jsonl import encode_lines
    from spruce.records import RecordBatch

    if not records:
        return b'{"vectors":{},"namespace":"","usage":{"readUnits":1}}'
    batch = RecordBatch(ids=[r["id"] for r in records], values=np.stack([r["values"] for r in records]),
                        metadata=[r.get("metadata") for r in records])
    body = b",".join(orjson.dumps(rid) + b":" + line for rid, line in zip(batch.ids, encode_lines(batch), strict=True))
    return b'{"vectors":{' + body + b'},"namespace":"","usage":{"readUnits":1}}'


class _StubSdk:
    """Answers fetch_raw with canned bytes (one answer per call, the last one repeated)."""

    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)
        self.asked: list[list[str]] = []

    def fetch_raw(self, idx: Any, namespace: str, ids: list[str]) -> bytes:
        self.asked.append(list(ids))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def fetch(self, idx: Any, namespace: str, ids: list[str]) -> Any:
        return remote._fetched_map(self.fetch_raw(idx, namespace, ids))


def _exporter(sdk: Any, dim: int | None = 4, vector_type: str = "dense") -> remote._Exporter:
    info = remote.IndexInfo(name="x", host="http://h", dimension=dim, metric="cosine", vector_type=vector_type,
                            spec={}, tags={}, integrated=False, ready=True)
    reporter = remote._Reporter()
    return remote._Exporter(sdk, info, object(), reporter, parallelism=1, retrier=remote._Retrier(reporter))


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each _fast_batch call took the fast path (True) or handed over to the general way."""
    seen: list[bool] = []
    real = remote._fast_batch

    def spy(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        seen.append(out is not None)
        return out

    monkeypatch.setattr(pc_exporter, "_fast_batch", spy)  # where _Exporter.fetch looks it up
    return seen


def test_fast_path_is_bit_exact_for_float32() -> None:
    """Every float32 the server writes (shortest text) comes back with the same bits: random bit
    patterns over the whole range, subnormals, both zeros, the extremes."""
    pytest.importorskip("simdjson")
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, size=400_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    edges = np.array([0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, 1.1754944e-38, 3.4028235e38, -3.4028235e38,
                      0.1, 1.0, -1.0, 16777217.0], dtype=np.float32)
    dim = 100
    flat = np.concatenate([edges, values])[: (len(values) // dim) * dim].reshape(-1, dim)
    ids = [f"r{i}" for i in range(len(flat))]
    raw = _fetch_response([{"id": rid, "values": flat[i]} for i, rid in enumerate(ids)])
    batch = remote._fast_batch(raw, ids, dim)
    assert batch is not None and batch.values is not None and batch.values.dtype == np.float32
    assert np.array_equal(batch.values.view(np.uint32), flat.view(np.uint32))
    assert batch.metadata == [None] * len(ids) and batch.sparse is None


def test_fast_path_keeps_the_order_asked_for(fast_calls: list[bool]) -> None:
    rng = np.random.default_rng(3)
    recs = [{"id": f"id-{i}", "values": rng.standard_normal(4).astype(np.float32), "metadata": {"i": i}}
            for i in range(50)]
    ids = [r["id"] for r in recs]
    shuffled = [recs[i] for i in rng.permutation(len(recs))]
    ex = _exporter(_StubSdk(_fetch_response(shuffled)))
    batch = ex.fetch("", ids)
    assert fast_calls == [True]
    assert batch.ids == ids and [m["i"] for m in batch.metadata] == list(range(50))
    assert np.array_equal(batch.values.view(np.uint32), np.stack([r["values"] for r in recs]).view(np.uint32))


def test_export_takes_the_fast_path(source: Served, tmp_path: Path, fast_calls: list[bool]) -> None:
    pytest.importorskip("simdjson")
    m = remote.export("small", str(tmp_path / "a"), api_key=KEY, host=source.url)
    assert m.totals["records"] == 300
    assert fast_calls and all(fast_calls)
    _same(_snapshot(source.engine, "small", "only"), _archive_records(str(tmp_path / "a"), "only"))


def test_odd_json_falls_back_to_the_general_way(fast_calls: list[bool]) -> None:
    """Integer-valued floats, 64-bit extremes, integers beyond 64 bits, unicode ids, a repeated key:
    whatever the fast path does not take, the general decoder does, from the same bytes."""
    ids = ["é-1", "日本-2", "😀-3"]
    raw = ('{"vectors":{'
           '"é-1":{"id":"é-1","values":[1,2,0,-3],"metadata":{"u":18446744073709551615,"s":-9223372036854775808}},'
           '"日本-2":{"id":"日本-2","values":[0.5,-0.25,1e-45,3],"metadata":{"t":"\\ud83d\\ude00"}},'
           '"😀-3":{"id":"😀-3","values":[1.5,2.5,3.5,4.5],"sparseValues":{"indices":[7,4294967295],'
           '"values":[1,0.5]}}},"namespace":"","usage":{"readUnits":1}}').encode()
    want = np.array([[1, 2, 0, -3], [0.5, -0.25, 1e-45, 3], [1.5, 2.5, 3.5, 4.5]], dtype=np.float32)

    def check(batch: Any) -> None:
        assert batch.ids == ids
        assert np.array_equal(batch.values.view(np.uint32), want.view(np.uint32))
        assert batch.metadata[0] == {"u": 2**64 - 1, "s": -(2**63)} and batch.metadata[1] == {"t": "😀"}
        assert batch.metadata[2] is None and batch.sparse[:2] == [None, None]
        assert batch.sparse[2].indices.tolist() == [7, 2**32 - 1] and batch.sparse[2].values.tolist() == [1, 0.5]

    check(_exporter(_StubSdk(raw)).fetch("", ids))

    beyond = raw.replace(b"18446744073709551615", b"18446744073709551616")  # simdjson refuses it
    with pytest.raises(remote.ValidationError) as err:
        _exporter(_StubSdk(beyond)).fetch("", ids)
    assert err.value.record_id == "é-1" and err.value.field == "metadata.u" and "64 bits" in str(err.value)

    # a key repeated: JSON's last one wins, as with orjson
    repeated = raw.replace(b'"\xc3\xa9-1":{"id"', b'"\xc3\xa9-1":{"values":[9,9,9,9]},"\xc3\xa9-1":{"id"', 1)
    check(_exporter(_StubSdk(repeated)).fetch("", ids))
    # a lone surrogate escape: simdjson and orjson refuse it, the standard library reads it
    lone = raw.replace(b"\\ud83d\\ude00", b"\\ud800")
    with pytest.raises(remote._Unparsable):
        remote._fast_batch(lone, ids, 4)
    assert remote._fetched_map(lone)["日本-2"]["metadata"] == {"t": "\ud800"}
    assert fast_calls == [True, False]  # (the JSON texts simdjson refuses never get to return)


def test_a_bad_record_is_named_by_the_fast_paths_fallback() -> None:
    recs = [{"id": f"v{i}", "values": np.full(4, i, np.float32)} for i in range(5)]
    raw = _fetch_response(recs).replace(b'"v3","values":[3.0,3.0,3.0,3.0]', b'"v3","values":[3.0,3.0,3.0]')
    assert raw != _fetch_response(recs)
    with pytest.raises(remote.ValidationError, match="has 3 dimensions, the index has 4") as err:
        _exporter(_StubSdk(raw)).fetch("ns", [r["id"] for r in recs])
    assert err.value.record_id == "v3" and err.value.field == "values"
    raw = _fetch_response(recs).replace(b'"v1","values":[1.0,', b'"v1","values":[null,')
    with pytest.raises(remote.ValidationError, match="finite") as err:
        _exporter(_StubSdk(raw)).fetch("ns", [r["id"] for r in recs])
    assert err.value.record_id == "v1" and err.value.field == "values"


def test_an_id_listed_but_missing_from_both_fetches_is_named(fast_calls: list[bool]) -> None:
    recs = [{"id": f"v{i}", "values": np.full(4, i, np.float32)} for i in range(5)]
    sdk = _StubSdk(_fetch_response(recs[:2] + recs[3:]), _fetch_response([]))
    ex = _exporter(sdk)
    with pytest.raises(remote.IncompleteExport, match=r"namespace 'ns': id 'v2' was listed but could not be "
                                                      r"fetched"):
        ex.fetch("ns", [r["id"] for r in recs])
    assert sdk.asked == [[r["id"] for r in recs], ["v2"]]  # asked once more, for the missing id only
    # ...and found the second time: the batch is whole, in order
    sdk = _StubSdk(_fetch_response(recs[:2] + recs[3:]), _fetch_response(recs[2:3]))
    batch = _exporter(sdk).fetch("ns", [r["id"] for r in recs])
    assert batch.ids == [r["id"] for r in recs] and batch.values[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_sparse_index_through_the_fast_path(fast_calls: list[bool]) -> None:
    raw = (b'{"vectors":{"a":{"id":"a","sparseValues":{"indices":[1,5],"values":[0.5,0.25]}},'
           b'"b":{"id":"b","values":[],"sparseValues":{"indices":[2],"values":[1.5]},"metadata":{"k":"v"}}}}')
    batch = _exporter(_StubSdk(raw), dim=None, vector_type="sparse").fetch("", ["a", "b"])
    assert fast_calls == [True] and batch.values is None and batch.metadata == [None, {"k": "v"}]
    assert [s.indices.tolist() for s in batch.sparse] == [[1, 5], [2]]
    assert [s.values.tolist() for s in batch.sparse] == [[0.5, 0.25], [1.5]]


def test_without_a_raw_path_the_sdk_models_are_used() -> None:
    class Idx:
        def fetch(self, ids: list[str], namespace: str) -> Any:
            return {"vectors": {i: {"id": i, "values": [1.0, 2.0]} for i in ids}}

    sdk = remote._Sdk(KEY, "http://127.0.0.1:9")
    assert sdk.fetch_raw(Idx(), "", ["a"]) is None and not sdk._raw_fetch
    assert set(sdk.fetch(Idx(), "", ["a", "b"])) == {"a", "b"}


def test_restore_sends_archive_lines_as_they_are_on_sdk_8_and_later(
        source: Served, target: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = str(tmp_path / "a")
    remote.export("hybrid", dest, api_key=KEY, host=source.url, namespaces=["ns three"])
    calls = {"raw": 0, "models": 0}
    real_raw, real_models = remote._Sdk.upsert_raw, remote._Sdk.upsert

    def raw(*args: Any) -> int:
        calls["raw"] += 1
        return real_raw(*args)

    def models(*args: Any) -> int:
        calls["models"] += 1
        return real_models(*args)

    monkeypatch.setattr(remote._Sdk, "upsert_raw", staticmethod(raw))
    monkeypatch.setattr(remote._Sdk, "upsert", staticmethod(models))
    summary = remote.restore(dest, "copy", api_key=KEY, host=target.url)
    assert summary.verified and summary.records == NAMESPACES["ns three"]
    raw_path = remote._major(summary.sdk_version) >= 8
    assert (calls["raw"] > 0, calls["models"] > 0) == (raw_path, not raw_path)
    _same(_snapshot(source.engine, "hybrid", "ns three"), _snapshot(target.engine, "copy", "ns three"))


def test_cli_no_wait_runs_the_connector_in_a_detached_worker(source: Served, target: Served,
                                                             tmp_path: Path) -> None:
    """--no-wait prints the job id at once; a detached worker finishes the job with the key it
    inherits from the environment, and the key is written nowhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PINECONE_", "SPRUCE_"))}
    env["PINECONE_API_KEY"] = KEY
    data = tmp_path / "nw-data"
    dest = tmp_path / "nw-archive"

    def wait(job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                state = json.loads((data / "jobs" / f"{job_id}.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                state = {}
            if state.get("status") in ("Completed", "Failed", "Cancelled"):
                return state
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not finish")

    r = _spruce("export", "small", str(dest), "--from", "pinecone", "--pinecone-host", source.url, "--no-wait",
                data=data, env=env)
    assert r.returncode == 0, r.stderr
    export_id = r.stdout.strip().splitlines()[-1]
    assert wait(export_id)["status"] == "Completed"
    assert json.loads((dest / "manifest.json").read_text())["totals"]["records"] == 300

    r = _spruce("restore", str(dest), "small-nw", "--to", "pinecone", "--pinecone-host", target.url, "--no-wait",
                data=data, env=env)
    assert r.returncode == 0, r.stderr
    assert wait(r.stdout.strip().splitlines()[-1])["status"] == "Completed"
    _same(_snapshot(source.engine, "small", "only"), _snapshot(target.engine, "small-nw", "only"))
    for f in (data / "jobs").glob("*"):
        assert KEY not in f.read_text(errors="replace")
