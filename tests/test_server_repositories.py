"""Backup repositories over REST (``/repositories/{repo}/...``) against a real server on loopback:
snapshots full then incremental, listing, restore of a chain into a new index compared record by
record, 409 on a non-empty target, the storage policy on ``{repo}``, named repositories in the
backup location, the API key on every route, and ``check`` finding a damaged file."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from pinecone import Pinecone, ServerlessSpec

from serverutil import RunningServer, start_server

API_KEY = "repo-key-" + uuid.uuid4().hex[:8]
DIM = 5
TERMINAL = ("Completed", "Failed", "Cancelled", "Interrupted", "Superseded")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("repos") / "data", api_key=API_KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def data_dir(server: RunningServer) -> Path:
    assert server.engine is not None
    return Path(server.engine.data_dir).resolve()


@pytest.fixture(scope="module")
def exports_root(data_dir: Path) -> Path:
    return data_dir / "exports"


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Api-Key": API_KEY}, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def pc(server: RunningServer) -> Pinecone:
    return Pinecone(api_key=API_KEY, host=server.url)


def _repo(uri: str) -> str:
    """``/repositories/<uri as one URL-encoded segment>``."""
    return "/repositories/" + quote(uri, safe="")


def _records(prefix: str, n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    vals = rng.standard_normal((n, DIM)).astype(np.float32)
    return [{"id": f"{prefix}{i:04d}", "values": vals[i].astype(np.float64).tolist(),
             "metadata": {"n": i, "tag": f"{prefix}{i % 3}", "seed": seed}} for i in range(n)]


def _make_index(pc: Pinecone, name: str) -> Any:
    pc.create_index(name=name, dimension=DIM, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    return pc.Index(name=name)


def _started(r: httpx.Response, kind: str) -> dict[str, Any]:
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == kind and job["id"] and job["status"] and "percentComplete" in job, job
    return job


def _wait_job(http: httpx.Client, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = http.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout}s"
        time.sleep(0.05)


def _backup(http: httpx.Client, repo: str, index: str, **extra: Any) -> dict[str, Any]:
    job = _started(http.post(f"{repo}/snapshots", json={"index": index, **extra}), "backup")
    done = _wait_job(http, job["id"])
    assert done["status"] == "Completed", done
    return done


def _snapshots(http: httpx.Client, repo: str, **params: str) -> list[dict[str, Any]]:
    r = http.get(f"{repo}/snapshots", params=params)
    assert r.status_code == 200, r.text
    return r.json()["snapshots"]


def _fetch_all(index: Any, ids: list[str], namespace: str) -> dict[str, tuple[list[float], dict[str, Any]]]:
    out = {}
    for start in range(0, len(ids), 100):
        got = index.fetch(ids=ids[start:start + 100], namespace=namespace).vectors
        for vid, v in got.items():
            out[vid] = (np.asarray(v.values, dtype=np.float32).tolist(), dict(v.metadata or {}))
    return out


def _counts(index: Any) -> dict[str, int]:
    stats = index.describe_index_stats()
    return {("" if ns == "__default__" else ns): s.vector_count for ns, s in stats.namespaces.items()
            if s.vector_count}


# -- tests ---------------------------------------------------------------------------


def test_backup_twice_then_restore_each_snapshot_over_http(http: httpx.Client, pc: Pinecone,
                                                           exports_root: Path) -> None:
    src = _make_index(pc, "src")
    docs, default = _records("d", 240, 1), _records("z", 60, 2)
    src.upsert(vectors=docs, namespace="docs")
    src.upsert(vectors=default, namespace="")
    repo = _repo((exports_root / "repo-main").as_uri())

    first = _backup(http, repo, "src")
    # what the second, incremental snapshot holds: 20 new records, 5 changed, 10 deleted, in "docs"
    src.upsert(vectors=_records("n", 20, 3), namespace="docs")
    src.upsert(vectors=_records("d", 5, 4), namespace="docs")  # d0000..d0004 get new values
    src.delete(ids=[f"d{i:04d}" for i in range(100, 110)], namespace="docs")
    second = _backup(http, repo, "src", tags=["second"])

    snaps = _snapshots(http, repo)
    assert [s["type"] for s in snaps] == ["full", "incremental"]
    full, inc = snaps
    assert (full["index"], full["parent"], full["records"], full["totalRecords"]) == ("src", None, 300, 300)
    assert inc["parent"] == full["id"] and inc["tags"] == ["second"]
    assert (inc["records"], inc["deleted"], inc["totalRecords"]) == (25, 10, 310)
    assert inc["format"] == "jsonl.gz" and full["time"] <= inc["time"]
    assert _snapshots(http, repo, index="src") == snaps
    assert _snapshots(http, repo, index="another") == []

    # the latest snapshot (the chain full + incremental) into a new index: the index as it is now
    job = _started(http.post(f"{repo}/restore", json={"target": "restored"}), "restore")
    done = _wait_job(http, job["id"])
    assert done["status"] == "Completed", done
    restored = pc.Index(name="restored")
    assert _counts(restored) == _counts(src) == {"docs": 250, "": 60}
    every_docs_id = sorted({r["id"] for r in docs} | {f"n{i:04d}" for i in range(20)})
    now_docs = _fetch_all(src, every_docs_id, "docs")
    assert len(now_docs) == 250 and "d0100" not in now_docs
    assert _fetch_all(restored, every_docs_id, "docs") == now_docs
    default_ids = [r["id"] for r in default]
    assert _fetch_all(restored, default_ids, "") == _fetch_all(src, default_ids, "")

    # the first snapshot by id (and its source index named): the index as it was then
    job = _started(http.post(f"{repo}/restore", json={"snapshot": full["id"], "target": "as-it-was",
                                                      "source_index": "src"}), "restore")
    assert _wait_job(http, job["id"])["status"] == "Completed"
    then = pc.Index(name="as-it-was")
    assert _counts(then) == {"docs": 240, "": 60}
    was = _fetch_all(then, every_docs_id, "docs")
    assert sorted(was) == sorted(r["id"] for r in docs)
    assert was["d0000"][0] == np.asarray(docs[0]["values"], dtype=np.float32).tolist()
    assert was["d0100"][1] == docs[100]["metadata"]

    # every job is the server's: in the job listing, with its kind
    listed = {j["id"]: j["kind"] for j in http.get("/jobs").json()["data"]}
    assert listed[first["id"]] == listed[second["id"]] == "backup"
    assert listed[job["id"]] == "restore"


def test_restore_into_a_non_empty_index_is_409_and_starts_nothing(http: httpx.Client, pc: Pinecone,
                                                                  exports_root: Path) -> None:
    busy = _make_index(pc, "busy")
    busy.upsert(vectors=_records("b", 30, 5))
    repo = _repo((exports_root / "repo-busy").as_uri())
    _backup(http, repo, "busy")
    busy.upsert(vectors=_records("x", 3, 6))
    jobs_before = len(http.get("/jobs").json()["data"])
    r = http.post(f"{repo}/restore", json={"target": "busy"})
    assert r.status_code == 409, r.text
    assert "already holds 33 record(s)" in r.json()["error"]["message"]
    assert len(http.get("/jobs").json()["data"]) == jobs_before
    assert _counts(busy) == {"": 33}
    # an unknown snapshot, or a path that is no repository: 404
    assert http.post(f"{repo}/restore", json={"target": "fresh", "snapshot": "nope"}).status_code == 404
    nothing = _repo((exports_root / "no-repo-here").as_uri())
    for r in (http.get(f"{nothing}/snapshots"), http.get(f"{nothing}/check"),
              http.post(f"{nothing}/restore", json={"target": "fresh"})):
        assert r.status_code == 404, r.text
        assert "not a spruce backup repository" in r.json()["error"]["message"]


def test_bodies_are_checked_unknown_keys_are_400(http: httpx.Client, pc: Pinecone, exports_root: Path) -> None:
    _make_index(pc, "bodies").upsert(vectors=_records("q", 3, 7))
    repo = _repo((exports_root / "repo-bodies").as_uri())
    for body in ({"index": "bodies", "bogus": 1}, {}, {"index": "bodies", "full": "yes"},
                 {"index": "bodies", "tags": "nightly"}, {"index": "bodies", "format": "csv"},
                 {"index": "bodies", "tags": ["no spaces"]}):
        r = http.post(f"{repo}/snapshots", json=body)
        assert r.status_code == 400, (body, r.text)
    for body in ({"target": "t1", "extra": True}, {}, {"target": 3}, {"target": "t1", "snapshot": ""}):
        r = http.post(f"{repo}/restore", json=body)
        assert r.status_code == 400, (body, r.text)
    assert http.post(f"{repo}/snapshots", json={"index": "missing"}).status_code == 404
    assert not (exports_root / "repo-bodies").exists()  # refused before the repository was created


def test_a_plain_name_is_a_repository_in_the_backup_location(http: httpx.Client, pc: Pinecone,
                                                            data_dir: Path) -> None:
    _make_index(pc, "named").upsert(vectors=_records("m", 12, 8))
    job = _started(http.post("/repositories/nightly/snapshots", json={"index": "named", "full": True}), "backup")
    assert job["uri"] == "nightly"  # the server's own location stays hidden behind the name
    assert _wait_job(http, job["id"])["status"] == "Completed"
    folder = data_dir / "backups" / "repositories" / "nightly"
    assert (folder / "repository.json").is_file()
    snaps = _snapshots(http, "/repositories/nightly")
    assert [(s["index"], s["type"], s["totalRecords"]) for s in snaps] == [("named", "full", 12)]
    assert any((folder / "snapshots" / snaps[0]["id"]).iterdir())
    check = http.get("/repositories/nightly/check", params={"read_data": "true"}).json()
    assert check["ok"] is True and check["snapshots"] == 1 and check["uri"] == "nightly"
    # the same folder by its path is refused: the backup location is out of the storage roots' reach
    r = http.get(f"{_repo(folder.as_uri())}/snapshots")
    assert r.status_code == 403, r.text


def test_repositories_outside_the_storage_roots_are_refused(http: httpx.Client, pc: Pinecone,
                                                            tmp_path: Path) -> None:
    _make_index(pc, "fenced").upsert(vectors=_records("f", 4, 9))
    outside = tmp_path / "outside-repo"
    for uri, code in ((outside.as_uri(), 403), (str(outside), 403), ("../../outside-repo", 403),
                      ("ftp://example.com/repo", 400)):
        repo = _repo(uri)
        for r in (http.post(f"{repo}/snapshots", json={"index": "fenced"}), http.get(f"{repo}/snapshots"),
                  http.post(f"{repo}/restore", json={"target": "fenced-copy"}), http.get(f"{repo}/check")):
            assert r.status_code == code, (uri, r.request.method, r.request.url, r.text)
    assert not outside.exists()
    assert not any(j["kind"] == "backup" and j["index"] == "fenced" for j in http.get("/jobs").json()["data"])


def test_every_route_needs_the_api_key(server: RunningServer, http: httpx.Client, pc: Pinecone) -> None:
    _make_index(pc, "keyed").upsert(vectors=_records("k", 5, 10))
    _backup(http, "/repositories/keyed-repo", "keyed")
    routes = [("POST", "/repositories/keyed-repo/snapshots", {"index": "keyed"}, 202),
              ("GET", "/repositories/keyed-repo/snapshots", None, 200),
              ("POST", "/repositories/keyed-repo/restore", {"target": "keyed-copy"}, 202),
              ("GET", "/repositories/keyed-repo/check", None, 200)]
    jobs_before = len(http.get("/jobs").json()["data"])
    for headers in ({}, {"Api-Key": "wrong-" + API_KEY}):
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as anon:
            for method, path, body, _ in routes:
                r = anon.request(method, path, json=body)
                assert r.status_code == 401, (method, path, r.text)
                assert r.json()["error"]["code"] == "UNAUTHENTICATED"
    assert len(http.get("/jobs").json()["data"]) == jobs_before  # nothing was started
    assert not pc.has_index("keyed-copy")
    # the same requests with the key: every route exists and answers
    for method, path, body, code in routes:
        r = http.request(method, path, json=body)
        assert r.status_code == code, (method, path, r.text)
        if code == 202:
            assert _wait_job(http, r.json()["id"])["status"] == "Completed"


def _data_file(snapshot_folder: Path) -> Path:
    files = [p for p in snapshot_folder.rglob("*") if p.is_file() and p.name != "manifest.json"]
    assert files, f"no data file in {snapshot_folder}"
    return max(files, key=lambda p: p.stat().st_size)


def test_check_reports_a_damaged_snapshot_file(http: httpx.Client, pc: Pinecone, exports_root: Path) -> None:
    ix = _make_index(pc, "damaged")
    ix.upsert(vectors=_records("c", 200, 11))
    folder = exports_root / "repo-damaged"
    repo = _repo(folder.as_uri())
    _backup(http, repo, "damaged")
    ix.upsert(vectors=_records("e", 10, 12))
    _backup(http, repo, "damaged")
    full, inc = _snapshots(http, repo)
    assert inc["parent"] == full["id"]

    def check(read_data: bool) -> dict[str, Any]:
        r = http.get(f"{repo}/check", params={"read_data": str(read_data).lower()})
        assert r.status_code == 200, r.text
        return r.json()

    assert check(False)["ok"] is True and check(True)["ok"] is True
    victim = _data_file(folder / "snapshots" / full["id"])
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    report = check(True)
    assert report["ok"] is False and report["snapshots"] == 2
    assert [(p["snapshot"], p["kind"]) for p in report["problems"]] == [(full["id"], "ChecksumMismatch")]
    assert victim.relative_to(folder).as_posix() in report["problems"][0]["path"]
    assert check(False)["ok"] is True  # without read_data only sizes are compared: the size is unchanged
    victim.write_bytes(bytes(data[:-7]))
    report = check(False)
    assert report["ok"] is False
    assert [(p["snapshot"], p["kind"]) for p in report["problems"]] == [(full["id"], "ChecksumMismatch")]
    # and a restore of the damaged chain fails, leaving no index behind
    job = _started(http.post(f"{repo}/restore", json={"target": "from-damaged"}), "restore")
    assert _wait_job(http, job["id"])["status"] == "Failed"
    assert not pc.has_index("from-damaged")
