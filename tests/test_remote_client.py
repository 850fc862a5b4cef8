"""``spruce.Client(host=..., api_key=...)`` and ``spruce --host``: the embedded surface over HTTP,
against a real server on loopback, with spruce's own result objects and exceptions."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import spruce
from serverutil import RunningServer, free_port, start_server
from spruce import models
from spruce.client import Client as EmbeddedClient
from spruce.client import Index as EmbeddedIndex
from spruce.errors import (
    AlreadyExists,
    FailedPrecondition,
    Forbidden,
    InvalidArgument,
    NotFound,
    SpruceError,
    Unauthorized,
)
from spruce.remote import RemoteClient, RemoteIndex, ServerUnavailable

API_KEY = "remote-key-" + uuid.uuid4().hex[:8]
DIM = 5
CLI = [sys.executable, "-c", "from spruce.cli import main; main()"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("remote") / "data", api_key=API_KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Any]:
    c = spruce.Client(host=server.url, api_key=API_KEY)
    yield c
    c.close()


@pytest.fixture(scope="module")
def exports_root(server: RunningServer) -> Path:
    assert server.engine is not None
    return (Path(server.engine.data_dir) / "exports").resolve()


def _records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    vals = rng.standard_normal((n, DIM)).astype(np.float32)
    return [{"id": f"v{i:04d}", "values": vals[i], "metadata": {"i": i, "even": i % 2 == 0, "g": f"g{i % 3}",
                                                                 "f": i / 3, "tags": ["x", str(i)]}}
            for i in range(n)]


def _snapshot(c: Any, name: str) -> dict[tuple[str, str], tuple[bytes, Any]]:
    idx = c.Index(name)
    out = {}
    for ns in idx.describe_index_stats().namespaces:
        ids = [i for page in idx.list(namespace=ns, limit=100) for i in page]
        for rid, v in idx.fetch(ids, namespace=ns).vectors.items():
            out[(ns, rid)] = (np.asarray(v.values, dtype=np.float32).tobytes(), v.metadata)
    return out


# -- the surface --------------------------------------------------------------------------


def test_client_dispatches_on_host(server: RunningServer) -> None:
    c = spruce.Client(host=server.url, api_key=API_KEY)
    assert isinstance(c, RemoteClient) and isinstance(c.Index("anything"), RemoteIndex)
    c.close()
    with pytest.raises(TypeError):
        spruce.Client("some-folder", host=server.url)


def test_same_public_surface_as_the_embedded_client() -> None:
    def public(cls: type) -> set[str]:
        return {n for n, _ in inspect.getmembers(cls) if not n.startswith("_")}

    # ``engine`` is the embedded client's data folder itself: a server's client has none
    assert public(EmbeddedClient) - public(RemoteClient) == {"engine"}
    assert public(EmbeddedIndex) - public(RemoteIndex) == set()


def test_index_management(client: Any) -> None:
    m = client.create_index("mgmt", dimension=DIM, metric="euclidean",
                            spec={"serverless": {"cloud": "aws", "region": "us-east-1"}}, tags={"a": "1"})
    assert isinstance(m, models.IndexModel)
    assert (m.name, m.dimension, m.metric, m.vector_type, m.tags) == ("mgmt", DIM, "euclidean", "dense", {"a": "1"})
    assert m.host.endswith("/index/mgmt") and m.status.ready
    assert client.describe_index("mgmt").metric == "euclidean"
    assert "mgmt" in client.list_indexes().names()
    assert client.has_index("mgmt") and not client.has_index("absent")
    with pytest.raises(AlreadyExists):
        client.create_index("mgmt", dimension=DIM)
    m = client.configure_index("mgmt", deletion_protection="enabled", tags={"a": "", "b": "2"})
    assert m.deletion_protection == "enabled" and m.tags == {"b": "2"}
    with pytest.raises(FailedPrecondition):  # as the embedded client raises it
        client.delete_index("mgmt")
    client.configure_index("mgmt", deletion_protection="disabled")
    client.delete_index("mgmt")
    assert not client.has_index("mgmt")
    with pytest.raises(NotFound):
        client.describe_index("mgmt")


def test_data_operations(client: Any) -> None:
    client.create_index("data-ops", dimension=DIM)
    idx = client.Index("data-ops")
    recs = _records(30)
    assert idx.upsert(recs[:10], namespace="a").upserted_count == 10
    assert idx.upsert([(r["id"], r["values"].tolist(), r["metadata"]) for r in recs[10:20]],
                      namespace="a").upserted_count == 10
    assert idx.upsert([models.Vector(id=r["id"], values=r["values"].tolist(), metadata=r["metadata"])
                       for r in recs[20:]], namespace="a", batch_size=4).upserted_count == 10
    idx.upsert([{"id": "d1", "values": [1.0] * DIM}])

    stats = idx.describe_index_stats()
    assert isinstance(stats, models.DescribeIndexStatsResponse)
    assert stats.total_vector_count == 31 and stats.namespaces["a"].vector_count == 30 and stats.dimension == DIM
    assert idx.describe_index_stats(filter={"even": True}).total_vector_count == 15

    fetched = idx.fetch(["v0003", "absent"], namespace="a")
    assert set(fetched.vectors) == {"v0003"}
    v = fetched.vectors["v0003"]
    assert np.array_equal(np.asarray(v.values, dtype=np.float32), recs[3]["values"])
    assert v.metadata == recs[3]["metadata"]

    res = idx.query(vector=recs[7]["values"], top_k=3, namespace="a", include_metadata=True, include_values=True)
    assert isinstance(res, models.QueryResponse) and res.matches[0].id == "v0007"
    assert res.matches[0].metadata == recs[7]["metadata"] and len(res.matches[0].values) == DIM
    by_id = idx.query(id="v0007", top_k=30, namespace="a", filter={"g": {"$eq": "g1"}})
    assert {m.id for m in by_id.matches} == {r["id"] for r in recs if r["metadata"]["g"] == "g1"}

    idx.update("v0001", values=[0.5] * DIM, set_metadata={"g": "new"}, namespace="a")
    v = idx.fetch(["v0001"], namespace="a").vectors["v0001"]
    assert v.values == [0.5] * DIM and v.metadata["g"] == "new" and v.metadata["i"] == 1

    pages = list(idx.list(prefix="v00", limit=7, namespace="a"))
    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
    first = idx.list_paginated(limit=5, namespace="a")
    assert isinstance(first, models.ListResponse) and first.pagination is not None
    assert [x.id for x in first.vectors] == [f"v{i:04d}" for i in range(5)]

    idx.delete(ids=["v0000", "v0002"], namespace="a")
    idx.delete(filter={"g": {"$eq": "g2"}}, namespace="a")
    left = {i for p in idx.list(namespace="a") for i in p}
    assert "v0000" not in left and not any(r["metadata"]["g"] == "g2" and r["id"] in left for r in recs)

    spaces = {n.name: n.record_count for n in idx.list_namespaces()}
    assert spaces == {"a": len(left), "__default__": 1}
    page = idx.list_namespaces_paginated(limit=1)
    assert len(page.namespaces) == 1 and page.pagination is not None and page.total_count == 2
    assert idx.describe_namespace("a").record_count == len(left)
    idx.delete_namespace("a")
    with pytest.raises(NotFound):
        idx.describe_namespace("a")
    idx.delete(delete_all=True)
    assert idx.describe_index_stats().total_vector_count == 0


def test_sparse_index(client: Any) -> None:
    client.create_index("sparse-remote", vector_type="sparse", metric="dotproduct")
    idx = client.Index("sparse-remote")
    idx.upsert([{"id": "s1", "sparse_values": {"indices": [1, 7], "values": [0.5, 2.0]}},
                {"id": "s2", "sparse_values": models.SparseVector(indices=[7], values=[1.0])}])
    res = idx.query(sparse_vector={"indices": [7], "values": [1.0]}, top_k=2, include_values=True)
    assert [m.id for m in res.matches] == ["s1", "s2"]
    assert res.matches[0].sparse_values == models.SparseVector(indices=[1, 7], values=[0.5, 2.0])


def test_errors_map_to_spruce_exceptions(client: Any, server: RunningServer) -> None:
    client.create_index("errs", dimension=DIM)
    idx = client.Index("errs")
    with pytest.raises(InvalidArgument) as err:
        idx.upsert([{"id": "x", "values": [1.0, 2.0]}])
    assert "dimension" in str(err.value)
    with pytest.raises(InvalidArgument):
        idx.query(vector=[0.0] * DIM, top_k=1, filter={"a": {"$regex": "x"}})
    with pytest.raises(NotFound):
        client.Index("nope").describe_index_stats()
    with pytest.raises(NotFound):
        client.describe_export("exp-missing")
    with pytest.raises(Forbidden):
        idx.export_index(storage_path="/etc/spruce-export")
    with pytest.raises(InvalidArgument):
        idx.export_index(storage_path="x", storage_options={"secret_access_key": "s"})
    bad = spruce.Client(host=server.url, api_key="wrong")
    with pytest.raises(Unauthorized):
        bad.list_indexes()
    with pytest.raises(Unauthorized):
        bad.Index("errs").describe_index_stats()
    with pytest.raises(ServerUnavailable):
        spruce.Client(host=f"http://127.0.0.1:{free_port()}").list_indexes()


# -- the seed's flow over HTTP ------------------------------------------------------------


def test_seed_export_flow_and_bit_exact_restore(client: Any) -> None:
    client.create_index("my-embeddings", dimension=DIM, metric="dotproduct")
    src = client.Index("my-embeddings")
    recs = _records(2500, seed=7)
    src.upsert(recs[:2000], namespace="docs")
    src.upsert(recs[2000:], namespace="")

    job = src.export_index(storage_path="my-embeddings-2025", sync=False)
    assert isinstance(job, models.ExportResponse) and job.sync is False and job.export_id
    while True:
        d = client.describe_export(job.export_id)
        if d.status in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        time.sleep(0.1)
    assert d.status == "COMPLETED" and d.status == "Completed"  # JobStatus compares either way
    assert d.records_exported == 2500 and d.snapshot_point
    assert d.download_url.startswith("http://") and "sig=" in d.download_url
    assert httpx.get(d.download_url).status_code == 200  # no key needed

    out = client.Index("new-index-name").upsert_from_file(d.download_url)  # the server maps its own link back
    assert isinstance(out, models.ImportDescription) and out.status == "COMPLETED"
    assert out.records_imported == 2500
    again = client.Index("second-copy").upsert_from_file("my-embeddings-2025")  # a path in the storage root
    assert again.records_imported == 2500
    want = _snapshot(client, "my-embeddings")
    assert len(want) == 2500
    assert _snapshot(client, "new-index-name") == want
    assert _snapshot(client, "second-copy") == want
    assert client.describe_index("new-index-name").metric == "dotproduct"

    # merging into an existing index
    client.Index("new-index-name").upsert([{"id": "extra", "values": [1.0] * DIM}], namespace="docs")
    merged = client.Index("new-index-name").upsert_from_file("my-embeddings-2025", on_conflict="skip")
    assert merged.status == "Completed"
    assert client.Index("new-index-name").describe_index_stats().total_vector_count == 2501


def test_job_listing_waiting_and_cancelling(client: Any) -> None:
    client.create_index("jobs-remote", dimension=DIM)
    idx = client.Index("jobs-remote")
    idx.upsert(_records(400, seed=3))
    done = idx.export_index("jobs-remote-sync", format="parquet", sync=True)
    assert done.status == "Completed" and done.sync
    assert client.wait_export(done.export_id).records_exported == 400
    assert done.export_id in [e.export_id for e in client.list_exports()]

    slow = idx.export_index("jobs-remote-cancel", part_max_records=5)
    cancelled = client.cancel_export(slow.export_id)
    assert isinstance(cancelled, models.ExportDescription)
    assert client.wait_export(slow.export_id, timeout=30).status in ("Cancelled", "Completed")

    imp = client.Index("jobs-remote-copy").upsert_from_file("jobs-remote-sync", sync=False)
    assert isinstance(imp, models.ImportDescription)
    assert client.wait_import(imp.import_id, timeout=60).status == "Completed"
    assert client.describe_import(imp.import_id).records_imported == 400
    assert imp.import_id in [i.import_id for i in client.list_imports()]
    assert client.cancel_import(imp.import_id).status == "Completed"  # finished: no effect
    with pytest.raises(NotFound):
        client.describe_import(done.export_id)  # an export is not an import


# -- the CLI with --host ---------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    base.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    base.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=base, timeout=120)


def test_cli_against_the_server(server: RunningServer, client: Any, exports_root: Path) -> None:
    client.create_index("cli-src", dimension=DIM)
    client.Index("cli-src").upsert(_records(120, seed=5), namespace="n")
    conn = ["--host", server.url, "--api-key", API_KEY]

    p = _cli(*conn, "index", "list")
    assert p.returncode == 0, p.stderr
    assert "cli-src" in p.stdout
    p = _cli("stats", "cli-src", env={"SPRUCE_HOST": server.url, "SPRUCE_API_KEY": API_KEY})
    assert p.returncode == 0, p.stderr
    assert "120" in p.stdout
    dest = exports_root / "cli-export"
    p = _cli(*conn, "export", "cli-src", str(dest))
    assert p.returncode == 0, p.stderr
    assert "exported 120 records" in p.stdout and "/downloads/" in p.stdout
    assert (dest / "manifest.json").is_file()
    p = _cli(*conn, "restore", str(dest), "cli-copy")
    assert p.returncode == 0, p.stderr
    assert "restored 120 records" in p.stdout
    assert client.Index("cli-copy").describe_index_stats().namespaces["n"].vector_count == 120
    p = _cli(*conn, "jobs", "list")
    assert p.returncode == 0, p.stderr
    assert "cli-src" in p.stdout and "cli-copy" in p.stdout and "Completed" in p.stdout
    job_id = client.list_imports()[-1].import_id
    p = _cli(*conn, "jobs", "show", job_id)
    assert p.returncode == 0 and "recordsImported" in p.stdout

    p = _cli("--host", server.url, "--api-key", "wrong", "index", "list")
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr
    p = _cli(*conn, "export", "cli-src", "/etc/nope")
    assert p.returncode == 1 and "storage roots" in p.stderr
    p = _cli("--host", server.url, "serve")
    assert p.returncode == 2 and "--bind" in p.stderr


# -- spruce serve ------------------------------------------------------------------------------


def test_spruce_serve_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    data, backups, root = tmp_path / "data", tmp_path / "my-backups", tmp_path / "exports-here"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    env["SPRUCE_API_KEY"] = API_KEY
    proc = subprocess.Popen([*CLI, "serve", "--data", str(data), "--port", str(port), "--backup-dir", str(backups),
                             "--storage-root", str(root)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert httpx.get(f"{url}/indexes").status_code == 401
        c = spruce.Client(host=url, api_key=API_KEY)
        c.create_index("served", dimension=DIM)
        c.Index("served").upsert(_records(50))
        d = c.Index("served").export_index("first", sync=True)
        desc = c.describe_export(d.export_id)
        assert desc.uri == (root / "first").resolve().as_uri()
        assert httpx.get(desc.download_url).status_code == 200
        with pytest.raises(Forbidden):  # the default root is not a root when --storage-root is given
            c.Index("served").export_index(str(data / "exports" / "x"))
        backup = httpx.post(f"{url}/indexes/served/backups", json={"name": "b"}, headers={"Api-Key": API_KEY})
        assert backup.status_code == 201
        assert (backups / backup.json()["backup_id"]).is_dir()
        secret = data / ".server-secret"
        assert (secret.stat().st_mode & 0o777) == 0o600
        c.close()
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    log = out.decode(errors="replace")
    assert "GET /downloads/" in log and "?<signed>" in log  # the access log has the request...
    assert API_KEY not in log
    assert "sig=" not in log  # signed links never reach the access log


def test_serve_refuses_remote_bind_without_key(tmp_path: Path) -> None:
    p = _cli("serve", "--data", str(tmp_path / "d"), "--bind", "0.0.0.0", "--port", str(free_port()))
    assert p.returncode == 1 and "API key" in p.stderr
    assert not (tmp_path / "d").exists()


def test_spruce_error_is_the_base(client: Any) -> None:
    with pytest.raises(SpruceError):
        client.describe_index("still-absent")


# -- the server's bulk decoding of upsert bodies -----------------------------------------------


def test_upsert_json_decodes_like_orjson() -> None:
    import orjson

    from spruce.records import parse_batch
    from spruce.server.upsert_json import MIN_FAST_BYTES, loads_upsert

    rng = np.random.default_rng(11)
    n, dim = 400, 384
    vals = rng.standard_normal((n, dim)).astype(np.float32)
    recs: list[dict[str, Any]] = [
        {"id": f"r{i}", "values": vals[i].astype(np.float64).tolist(),
         "metadata": {"i": i, "values": ["not", "numbers"], "empty": [], "x": -1.5e-7}} for i in range(n)]
    recs[3]["sparseValues"] = {"indices": [2, 9], "values": [0.5, 1e-3]}
    recs[4] = {"sparse_values": {"values": [0.25, 3], "indices": [4, 9]}, "id": "r4", "values": recs[4]["values"]}
    body = orjson.dumps({"vectors": recs, "namespace": "ns"})
    assert len(body) > MIN_FAST_BYTES
    fast, plain = loads_upsert(body), orjson.loads(body)
    assert isinstance(fast["vectors"][0]["values"], np.ndarray)  # the bulk path was taken
    assert fast["namespace"] == "ns"
    for a, b in zip(plain["vectors"], fast["vectors"], strict=True):
        assert a["values"] == list(b["values"]) and a.get("metadata") == b.get("metadata")
        assert a.get("sparseValues") == b.get("sparseValues") and a.get("sparse_values") == b.get("sparse_values")
    x, y = parse_batch(plain["vectors"], dimension=dim), parse_batch(fast["vectors"], dimension=dim)
    assert x.ids == y.ids and x.metadata == y.metadata
    assert np.array_equal(x.values.view(np.uint32), y.values.view(np.uint32))

    def lists(body: Any) -> Any:
        for rec in body["vectors"]:
            if isinstance(rec.get("values"), np.ndarray):
                rec["values"] = rec["values"].tolist()
        return body

    pretty = orjson.dumps({"vectors": recs}, option=orjson.OPT_INDENT_2)
    assert lists(loads_upsert(pretty)) == orjson.loads(pretty)
    odd = orjson.dumps({"vectors": [{"id": "a", "values": [1.0] * dim, "metadata": {"values": [1, 2]}}] * n})
    assert lists(loads_upsert(odd)) == orjson.loads(odd)
    # what simdjson refuses or orjson reads differently takes the plain path, with orjson's own errors
    big = odd.replace(b'"values":[1,2]', b'"values":[1,2],"n":123456789012345678901234567890', 1)
    assert isinstance(loads_upsert(big)["vectors"][0]["values"], list)
    assert loads_upsert(big) == orjson.loads(big)
    twice = odd.replace(b'{"id":"a"', b'{"id":"b","id":"a"', 1)
    assert isinstance(loads_upsert(twice)["vectors"][0]["values"], list)
    assert loads_upsert(twice)["vectors"][0]["id"] == "a"
    with pytest.raises(orjson.JSONDecodeError):
        loads_upsert(body.replace(b"]", b",]", 1))
    with pytest.raises(orjson.JSONDecodeError):
        loads_upsert(body[:-1])
