"""Jobs over REST, end to end: bulk imports (official SDK), bulk exports and signed downloads (httpx),
backups and restore jobs (official SDK), storage roots and authentication.

Runs unchanged under pinecone 7.3, 9.x and 10.x (``make test-compat``): only SDK calls that all
three have are used; spruce's own extensions (``/bulk/exports``, ``/downloads``) are driven with httpx.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from pinecone import Pinecone, ServerlessSpec
from pinecone import exceptions as pexc

from serverutil import RunningServer, start_server

API_KEY = "jobs-key-" + uuid.uuid4().hex[:8]
SDK_MAJOR = int(importlib.metadata.version("pinecone").split(".")[0])
DIM = 6
TERMINAL = ("Completed", "Failed", "Cancelled")


def _get(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name)
    except (AttributeError, KeyError):
        return obj[name]


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None) or getattr(exc, "status_code", None)


def _wait(fn: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _records(n: int, seed: int, prefix: str = "r") -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    vals = rng.standard_normal((n, DIM)).astype(np.float32)
    out = []
    for i in range(n):
        md: dict[str, Any] = {"n": i, "half": i % 2 == 0, "tag": f"t{i % 5}", "w": float(i) / 7}
        if i % 3 == 0:
            md["list"] = ["a", f"b{i}"]
        out.append({"id": f"{prefix}{i:05d}", "values": vals[i].astype(np.float64).tolist(), "metadata": md})
    return out


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("jobs") / "data", api_key=API_KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def data_dir(server: RunningServer) -> Path:
    assert server.engine is not None
    return Path(server.engine.data_dir)


@pytest.fixture(scope="module")
def exports_root(data_dir: Path) -> Path:
    return (data_dir / "exports").resolve()


@pytest.fixture(scope="module")
def pc(server: RunningServer) -> Pinecone:
    return Pinecone(api_key=API_KEY, host=server.url)


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Api-Key": API_KEY}, timeout=60) as client:
        yield client


def _make_index(pc: Pinecone, name: str, records: list[dict[str, Any]], namespace: str = "") -> Any:
    pc.create_index(name=name, dimension=DIM, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"),
                    tags={"team": "jobs"})
    idx = pc.Index(name=name)
    for start in range(0, len(records), 500):
        idx.upsert(vectors=records[start:start + 500], namespace=namespace)
    return idx


@pytest.fixture(scope="module")
def source(pc: Pinecone) -> Any:
    """Index 'src': 1200 records in namespace 'docs' and 300 in the default namespace."""
    idx = _make_index(pc, "src", _records(1200, seed=1), namespace="docs")
    idx.upsert(vectors=_records(300, seed=2, prefix="d"), namespace="")
    return idx


def _export(http: httpx.Client, index: str, body: dict[str, Any]) -> dict[str, Any]:
    r = http.post(f"/index/{index}/bulk/exports", json=body)
    assert r.status_code == 200, r.text
    export_id = r.json()["id"]
    return _wait(lambda: http.get(f"/index/{index}/bulk/exports/{export_id}").json(),
                 lambda d: d["status"] in TERMINAL)


@pytest.fixture(scope="module")
def parquet_archive(http: httpx.Client, source: Any, exports_root: Path) -> Path:
    """A spruce archive of 'src' in Pinecone's Parquet layout, inside the storage root."""
    d = _export(http, "src", {"uri": "src-parquet", "format": "parquet", "partMaxRecords": 250})
    assert d["status"] == "Completed", d
    return exports_root / "src-parquet"


def _all_records(pc: Pinecone, name: str, namespace: str) -> dict[str, tuple[np.ndarray, Any]]:
    idx = pc.Index(name=name)
    ids: list[str] = []
    token = None
    while True:
        page = idx.list_paginated(namespace=namespace, limit=100, pagination_token=token)
        ids.extend(v.id for v in page.vectors)
        token = page.pagination.next if page.pagination else None
        if not token:
            break
    out: dict[str, tuple[np.ndarray, Any]] = {}
    for start in range(0, len(ids), 100):
        fetched = idx.fetch(ids=ids[start:start + 100], namespace=namespace).vectors
        for rid, v in fetched.items():
            md = v.metadata
            md = md.to_dict() if hasattr(md, "to_dict") else dict(md or {})
            out[rid] = (np.asarray(list(v.values), dtype=np.float32), md)
    return out


def _assert_same_index(pc: Pinecone, a: str, b: str, namespaces: tuple[str, ...]) -> None:
    for ns in namespaces:
        left, right = _all_records(pc, a, ns), _all_records(pc, b, ns)
        assert left.keys() == right.keys() and left, ns
        for rid, (vals, md) in left.items():
            assert np.array_equal(vals.view(np.uint32), right[rid][0].view(np.uint32)), rid  # bit-exact
            assert md == right[rid][1], rid


# -- bulk imports (official SDK) ------------------------------------------------------


def test_sdk_start_import_of_a_spruce_parquet_archive(pc: Pinecone, parquet_archive: Path) -> None:
    pc.create_index(name="imported", dimension=DIM, spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    idx = pc.Index(name="imported")
    started = idx.start_import(uri=str(parquet_archive), error_mode="abort")
    import_id = _get(started, "id")
    assert import_id
    final = _wait(lambda: idx.describe_import(import_id), lambda m: _get(m, "status") in TERMINAL)
    assert _get(final, "status") == "Completed", final
    assert _get(final, "records_imported") == 1500
    assert float(_get(final, "percent_complete")) == 100.0
    assert _get(final, "uri") == parquet_archive.as_uri()
    stats = idx.describe_index_stats()
    assert stats.total_vector_count == 1500
    assert stats.namespaces["docs"].vector_count == 1200
    _assert_same_index(pc, "src", "imported", ("docs", ""))
    listed = [m for m in idx.list_imports()]
    assert import_id in [_get(m, "id") for m in listed]


def test_sdk_import_relative_uri_and_file_uri(pc: Pinecone, parquet_archive: Path) -> None:
    pc.create_index(name="imported-rel", dimension=DIM, spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    idx = pc.Index(name="imported-rel")
    for uri in ("src-parquet", parquet_archive.as_uri()):
        import_id = _get(idx.start_import(uri=uri, error_mode="continue"), "id")
        final = _wait(lambda i=import_id: idx.describe_import(i), lambda m: _get(m, "status") in TERMINAL)
        assert _get(final, "status") == "Completed", final
    assert idx.describe_index_stats().total_vector_count == 1500  # the second import merged onto the first


def test_sdk_cancel_and_list_imports(pc: Pinecone, http: httpx.Client, source: Any) -> None:
    d = _export(http, "src", {"uri": "src-many-parts", "format": "jsonl.gz", "partMaxRecords": 20})
    assert d["status"] == "Completed"
    pc.create_index(name="cancelled", dimension=DIM, spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    idx = pc.Index(name="cancelled")
    import_id = _get(idx.start_import(uri="src-many-parts"), "id")
    idx.cancel_import(import_id)
    final = _wait(lambda: idx.describe_import(import_id), lambda m: _get(m, "status") in TERMINAL)
    assert _get(final, "status") in ("Cancelled", "Completed")  # it may have finished first
    if _get(final, "status") == "Cancelled":
        assert (_get(final, "records_imported") or 0) < 1500
    idx.cancel_import(import_id)  # no effect on a finished import, and no error
    ids = [_get(m, "id") for m in idx.list_imports()]
    assert ids == [import_id]
    # another index's imports are not listed here, and cannot be described through this index
    with pytest.raises(pexc.NotFoundException):
        pc.Index(name="src").describe_import(import_id)


def test_import_failure_is_reported(pc: Pinecone, http: httpx.Client, exports_root: Path, source: Any) -> None:
    empty = exports_root / "empty-folder"
    empty.mkdir(exist_ok=True)
    pc.create_index(name="import-fails", dimension=DIM, spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    idx = pc.Index(name="import-fails")
    with pytest.raises(pexc.PineconeApiException) as err:  # nothing to import: refused before any job
        idx.start_import(uri=str(empty))
    assert _status(err.value) == 400 and "no manifest.json" in str(err.value)
    # a damaged archive fails as a job, checked file by file
    d = _export(http, "src", {"uri": "damaged", "format": "jsonl.gz", "partMaxRecords": 500})
    assert d["status"] == "Completed"
    part = next((exports_root / "damaged").rglob("part-*"))
    part.write_bytes(part.read_bytes()[:-1] + bytes([part.read_bytes()[-1] ^ 1]))
    import_id = _get(idx.start_import(uri="damaged", error_mode="abort"), "id")
    final = _wait(lambda: idx.describe_import(import_id), lambda m: _get(m, "status") in TERMINAL)
    assert _get(final, "status") == "Failed"
    assert "sha256" in _get(final, "error") or "checksum" in _get(final, "error").lower()
    idx.cancel_import(import_id)  # as Pinecone's own SDK tests expect: Cancelled after cancel
    assert _get(idx.describe_import(import_id), "status") == "Cancelled"
    # "continue" (7.3's default) skips the damaged file whole, completes, and says so
    import_id = _get(idx.start_import(uri="damaged", error_mode="continue"), "id")
    final = _wait(lambda: idx.describe_import(import_id), lambda m: _get(m, "status") in TERMINAL)
    body = http.get(f"/index/import-fails/bulk/imports/{import_id}").json()
    assert body["status"] == "Completed", body
    assert body["recordsRejected"] > 0 and body["recordsRejected"] + body["recordsImported"] == 1500, body
    assert any(part.name in n and "skipped" in n for n in body["notes"]), body


def test_an_index_a_restore_is_filling_is_initializing(pc: Pinecone, http: httpx.Client,
                                                       server: RunningServer) -> None:
    assert server.engine is not None
    server.engine.create_index("filling", dimension=DIM, initializing_job="imp-20261203000000-0000abcd")
    model = pc.describe_index("filling")  # every SDK line parses the extension field
    assert _get(model.status, "state") == "Initializing" and not _get(model.status, "ready")
    assert "filling" in pc.list_indexes().names()
    body = http.get("/indexes/filling").json()
    assert body["status"] == {"ready": False, "state": "Initializing", "spruceJob": "imp-20261203000000-0000abcd"}
    server.engine.index("filling").mark_ready("imp-20261203000000-0000abcd")
    assert _get(pc.describe_index("filling").status, "state") == "Ready"
    assert http.get("/indexes/filling").json()["status"] == {"ready": True, "state": "Ready"}


def test_import_wire_shape(http: httpx.Client, parquet_archive: Path) -> None:
    assert http.post("/indexes", json={"name": "shape", "dimension": DIM, "spec": {
        "serverless": {"cloud": "aws", "region": "us-east-1"}}}).status_code == 201
    r = http.post("/index/shape/bulk/imports", json={"uri": "src-parquet", "integrationId": "ignored",
                                                     "errorMode": {"onError": "continue"}})
    assert r.status_code == 200 and set(r.json()) == {"id"}
    d = _wait(lambda: http.get(f"/index/shape/bulk/imports/{r.json()['id']}").json(),
              lambda m: m["status"] in TERMINAL)
    assert {"id", "uri", "status", "createdAt", "finishedAt", "percentComplete", "recordsImported"} <= set(d)
    assert "error" not in d  # Pinecone's optional fields are omitted, never null
    page = http.get("/index/shape/bulk/imports", params={"limit": 1}).json()
    assert [m["id"] for m in page["data"]] == [r.json()["id"]] and "pagination" not in page
    bad = http.post("/index/shape/bulk/imports", json={"uri": "src-parquet", "errorMode": {"onError": "ignore"}})
    assert bad.status_code == 400 and bad.json()["code"] == 3
    missing = http.post("/index/no-such-index/bulk/imports", json={"uri": "src-parquet"})
    assert missing.status_code == 404 and missing.json()["code"] == 5


# -- bulk exports and signed downloads --------------------------------------------------


def test_export_download_without_api_key(http: httpx.Client, source: Any, tmp_path: Path) -> None:
    d = _export(http, "src", {"uri": "src-jsonl", "format": "jsonl.gz", "namespaces": ["docs"]})
    assert d["status"] == "Completed", d
    assert d["recordsExported"] == 1200 and d["bytesWritten"] > 0 and d["snapshotPoint"] >= 1
    url, urls = d["downloadUrl"], d["downloadUrls"]
    assert url.startswith(http.base_url.scheme + "://") and "/downloads/" in url and "sig=" in url
    assert urls["manifest.json"] == url and len(urls) > 1

    manifest_resp = httpx.get(url)  # plain httpx, no API key
    assert manifest_resp.status_code == 200
    manifest = orjson.loads(manifest_resp.content)
    files = {f["path"]: f for ns in manifest["namespaces"] for f in ns["files"]}
    assert set(urls) == {"manifest.json", *files}
    for path, entry in files.items():
        body = httpx.get(urls[path]).content
        assert len(body) == entry["bytes"]
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]

    # and the same, verified record by record, with spruce's own downloader
    from spruce.archive.download import download_archive

    report = download_archive(url, tmp_path / "copy", links=urls)
    assert report.records == 1200 and report.verify.ok


def test_download_links_refuse_tampering_and_expiry(http: httpx.Client, source: Any) -> None:
    # long enough to outlast a slow machine's job polling (1 s was flaky), short enough to wait out
    d = _export(http, "src", {"uri": "src-short-links", "linkExpirySeconds": 5})
    url = d["downloadUrl"]
    assert httpx.get(url).status_code == 200
    base, query = url.split("?", 1)
    params = dict(p.split("=", 1) for p in query.split("&"))
    sig = params["sig"]
    tampered = [
        f"{base}?expires={params['expires']}&sig={sig[:-1]}{'0' if sig[-1] != '0' else '1'}",
        f"{base}?expires={int(params['expires']) + 3600}&sig={sig}",
        f"{base.replace('manifest.json', 'docs/part-00000.jsonl.gz')}?{query}",
        f"{base}?expires={params['expires']}",
        base,
    ]
    for bad in tampered:
        r = httpx.get(bad)
        assert r.status_code == 403, bad
        assert r.json()["error"]["code"] == "FORBIDDEN"
    time.sleep(max(0.0, int(params["expires"]) - time.time()) + 1.2)
    expired = httpx.get(url)
    assert expired.status_code == 403 and "expired" in expired.text


def test_links_of_an_overwritten_archive_stop_working(http: httpx.Client, source: Any) -> None:
    first = _export(http, "src", {"uri": "src-overwritten", "namespaces": ["docs"]})
    assert httpx.get(first["downloadUrl"]).status_code == 200
    refused = http.post("/index/src/bulk/exports", json={"uri": "src-overwritten"})
    final = _wait(lambda: http.get(f"/index/src/bulk/exports/{refused.json()['id']}").json(),
                  lambda d: d["status"] in TERMINAL)
    assert final["status"] == "Failed" and "overwrite" in final["error"]
    second = _export(http, "src", {"uri": "src-overwritten", "overwrite": True})
    assert second["status"] == "Completed"
    assert httpx.get(second["downloadUrl"]).status_code == 200
    assert httpx.get(first["downloadUrl"]).status_code == 404


def test_export_list_describe_cancel_shapes(http: httpx.Client, source: Any) -> None:
    r = http.post("/index/src/bulk/exports", json={"uri": "src-cancel", "partMaxRecords": 10})
    export_id = r.json()["id"]
    assert http.delete(f"/index/src/bulk/exports/{export_id}").status_code == 200
    final = _wait(lambda: http.get(f"/index/src/bulk/exports/{export_id}").json(),
                  lambda d: d["status"] in TERMINAL)
    assert final["status"] in ("Cancelled", "Completed")
    listed = http.get("/index/src/bulk/exports").json()["data"]
    assert export_id in [d["id"] for d in listed]
    assert all(d["status"] in (*TERMINAL, "Pending", "InProgress") for d in listed)
    bad = http.post("/index/src/bulk/exports", json={"uri": "x", "format": "csv"})
    assert bad.status_code == 400 and "format" in bad.json()["message"]
    other = http.get(f"/index/imported/bulk/exports/{export_id}")
    assert other.status_code == 404


def test_object_store_export_and_import(s3_server: Any, monkeypatch: pytest.MonkeyPatch, http: httpx.Client,
                                        pc: Pinecone, source: Any, data_dir: Path) -> None:
    """An export to s3:// hands out the store's own pre-signed URLs; start_import reads it back.
    The server uses its environment's credentials, which never show in job status."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    s3_server.create_bucket("server-jobs")
    uri = "s3://server-jobs/exports/src"
    d = _export(http, "src", {"uri": uri, "format": "parquet"})
    assert d["status"] == "Completed", d
    assert d["downloadUrl"].startswith(s3_server.endpoint_url) and "/downloads/" not in d["downloadUrl"]
    assert httpx.get(d["downloadUrl"]).status_code == 200
    pc.create_index(name="from-s3", dimension=DIM, spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    idx = pc.Index(name="from-s3")
    import_id = _get(idx.start_import(uri=uri), "id")
    final = _wait(lambda: idx.describe_import(import_id), lambda m: _get(m, "status") in TERMINAL)
    assert _get(final, "status") == "Completed", final
    assert _get(final, "records_imported") == 1500
    status = orjson.dumps(http.get(f"/jobs/{d['id']}").json()).decode()
    assert s3_server.secret_key not in status  # (a pre-signed URL names the key id, never the secret)
    for f in (data_dir / "jobs").glob("*.json"):
        assert s3_server.secret_key not in f.read_text()


# -- backups and restore jobs (official SDK) ---------------------------------------------


def test_backup_restore_roundtrip(pc: Pinecone, source: Any, data_dir: Path) -> None:
    backup = pc.create_backup(index_name="src", backup_name="nightly", description="before the migration")
    backup_id = _get(backup, "backup_id")
    assert _get(backup, "source_index_name") == "src"
    backup = _wait(lambda: pc.describe_backup(backup_id=backup_id), lambda b: _get(b, "status") != "Initializing")
    assert _get(backup, "status") == "Ready"
    assert _get(backup, "name") == "nightly" and _get(backup, "description") == "before the migration"
    assert _get(backup, "record_count") == 1500 and _get(backup, "namespace_count") == 2
    assert (_get(backup, "cloud"), _get(backup, "region")) == ("aws", "us-east-1")
    if SDK_MAJOR < 10:
        assert (_get(backup, "dimension"), _get(backup, "metric")) == (DIM, "cosine")
    assert (data_dir / "backups" / backup_id / "manifest.json").is_file()

    assert backup_id in [_get(b, "backup_id") for b in pc.list_backups(index_name="src")]
    assert backup_id in [_get(b, "backup_id") for b in pc.list_backups()]

    restored = pc.create_index_from_backup(name="src-restored", backup_id=backup_id)
    assert _get(restored, "name") == "src-restored" if hasattr(restored, "name") else True
    jobs = [j for j in pc.list_restore_jobs() if _get(j, "target_index_name") == "src-restored"]
    assert len(jobs) == 1
    job_id = _get(jobs[0], "restore_job_id")
    job = _wait(lambda: pc.describe_restore_job(job_id=job_id), lambda j: _get(j, "status") in TERMINAL)
    assert _get(job, "status") == "Completed"
    assert _get(job, "backup_id") == backup_id
    assert float(_get(job, "percent_complete")) == 100.0

    desc = pc.describe_index("src-restored")
    assert desc.dimension == DIM and desc.metric == "cosine"
    tags = _get(desc, "tags")
    assert dict(tags.to_dict() if hasattr(tags, "to_dict") else tags) == {"team": "jobs"}
    assert pc.Index(name="src-restored").describe_index_stats().total_vector_count == 1500
    _assert_same_index(pc, "src", "src-restored", ("docs", ""))

    with pytest.raises(pexc.PineconeApiException) as err:  # the name is taken now
        pc.create_index_from_backup(name="src-restored", backup_id=backup_id)
    assert _status(err.value) == 409

    pc.delete_backup(backup_id=backup_id)
    with pytest.raises(pexc.NotFoundException):
        pc.describe_backup(backup_id=backup_id)
    assert backup_id not in [_get(b, "backup_id") for b in pc.list_backups()]
    assert not (data_dir / "backups" / backup_id).exists()


def test_backup_wire_shapes(http: httpx.Client, source: Any) -> None:
    r = http.post("/indexes/src/backups", json={"name": "shape"}, headers={"X-Pinecone-API-Version": "2025-04"})
    assert r.status_code == 201, r.text
    b = r.json()
    assert {"backup_id", "source_index_name", "source_index_id", "status", "cloud", "region"} <= set(b)
    assert b["dimension"] == DIM and "schema" not in b and "description" not in b
    new = http.get(f"/backups/{b['backup_id']}", headers={"X-Pinecone-API-Version": "2026-07"}).json()
    assert "dimension" not in new
    assert new["schema"]["fields"]["_values"] == {"type": "dense_vector", "dimension": DIM, "metric": "cosine"}
    assert http.get("/indexes/absent/backups").status_code == 404
    assert http.post("/indexes/absent/backups", json={}).status_code == 404
    assert http.get("/backups/nope").json()["error"]["code"] == "NOT_FOUND"
    assert http.get("/restore-jobs/nope").status_code == 404
    page = http.get("/backups", params={"limit": 1}).json()
    assert len(page["data"]) == 1
    assert http.delete(f"/backups/{b['backup_id']}").status_code == 202


# -- storage roots and authentication ------------------------------------------------------


def test_storage_uris_outside_the_roots_are_refused(pc: Pinecone, http: httpx.Client, source: Any,
                                                   exports_root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    link = exports_root / f"escape-{uuid.uuid4().hex[:6]}"
    os.symlink(outside, link)
    bad_uris = ["/etc", "../../x", "file:///etc/passwd", str(outside), str(link), f"{link}/inner",
                f"{exports_root}/../../escape", "~/x"]
    idx = pc.Index(name="src")
    for uri in bad_uris:
        with pytest.raises(pexc.PineconeApiException) as err:
            idx.start_import(uri=uri)
        assert _status(err.value) == 403, uri
        r = http.post("/index/src/bulk/exports", json={"uri": uri})
        assert r.status_code == 403, (uri, r.text)
        assert "storage roots" in r.json()["message"]
    assert not any(outside.iterdir())  # nothing was written through the link
    bad = http.post("/index/src/bulk/imports", json={"uri": "s3://user:Zq9sEcReT@bucket/x"})
    assert bad.status_code == 400 and "Zq9sEcReT" not in bad.text


def test_bad_api_key_on_the_new_endpoints(server: RunningServer, source: Any) -> None:
    bad = Pinecone(api_key="wrong-key", host=server.url)
    with pytest.raises(pexc.UnauthorizedException):
        bad.list_backups()
    with pytest.raises(pexc.UnauthorizedException):
        bad.list_restore_jobs()
    with pytest.raises(pexc.UnauthorizedException):
        list(bad.Index(host=server.index_host("src")).list_imports())
    for method, path in (("GET", "/index/src/bulk/imports"), ("POST", "/index/src/bulk/imports"),
                         ("GET", "/index/src/bulk/exports"), ("POST", "/index/src/bulk/exports"),
                         ("GET", "/backups"), ("POST", "/indexes/src/backups"), ("GET", "/restore-jobs"),
                         ("GET", "/jobs")):
        for headers in ({}, {"Api-Key": "wrong"}):
            r = httpx.request(method, server.url + path, headers=headers, json={"uri": "x"})
            assert r.status_code == 401, (method, path)
            assert API_KEY not in r.text


def test_job_status_holds_no_secrets(http: httpx.Client, server: RunningServer, source: Any,
                                     data_dir: Path) -> None:
    for d in http.get("/jobs").json()["data"]:
        text = orjson.dumps(d).decode()
        assert API_KEY not in text
    for f in (data_dir / "jobs").glob("*.json"):
        assert API_KEY not in f.read_text()
    secret = data_dir / ".server-secret"
    assert secret.is_file() and (secret.stat().st_mode & 0o777) == 0o600


def test_server_start_resumes_unfinished_jobs(tmp_path: Path) -> None:
    """A job left Pending by a process that stopped runs when a server opens the folder."""
    from spruce import jobs
    from spruce.engine import Engine

    data = tmp_path / "data"
    engine = Engine(data)
    engine.create_index("left", dimension=DIM).upsert(_records(40, seed=9), namespace="n")
    manager = jobs.jobs_for(engine, auto_resume=False)
    jobs.start_export(engine, "left", str(data / "exports" / "left"), sync=True, manager=manager)
    pending = jobs.start_import(engine, "left-copy", str(data / "exports" / "left"), sync=False, run=False,
                                manager=manager)
    engine.close()
    with start_server(data, api_key=API_KEY) as srv:
        d = _wait(lambda: httpx.get(f"{srv.url}/index/left-copy/bulk/imports/{pending.id}",
                                    headers={"Api-Key": API_KEY}).json(),
                  lambda m: m.get("status") in TERMINAL)
        assert d["status"] == "Completed" and d["recordsImported"] == 40, d
