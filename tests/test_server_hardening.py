"""`spruce serve` under hostile or careless input, against a real uvicorn server: backups out of
reach of export URIs, bounds on every number (stored ones included), capped filters and bodies,
the same checks on both upsert decoders, clean 400/404 for odd path parameters, owner-only
files, an IPv6 bind, and Pinecone's rules on degenerate vectors. Where the issue saw a 500 that
dropped the connection, the test also checks the next request reuses the same connection.
(Secrets in job errors and the access log: tests/test_secret_scrub.py.)"""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

import spruce
from serverutil import RunningServer, free_port, start_server
from spruce.jobs import start_export
from spruce.server import bind_host
from spruce.storage import open_store

KEY = "hardening-key"
SPEC = {"serverless": {"cloud": "aws", "region": "us-east-1"}}
PAD = "x" * 40_000  # a record padded with this makes the body take the simdjson path (over 32 KB)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hardening") / "data"


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[RunningServer]:
    with start_server(data_dir, api_key=KEY) as s:
        yield s


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Api-Key": KEY}, timeout=60) as client:
        for name, metric in (("cos", "cosine"), ("euc", "euclidean")):
            r = client.post("/indexes", json={"name": name, "dimension": 4, "metric": metric, "spec": SPEC})
            assert r.status_code in (200, 201), r.text
        r = client.post("/index/cos/vectors/upsert", json={"vectors": [{"id": "a", "values": [1, 2, 3, 4]}]})
        assert r.status_code == 200, r.text
        yield client


def _port(r: httpx.Response) -> object:
    return r.extensions["network_stream"].get_extra_info("client_addr")


def _alive(http: httpx.Client, after: httpx.Response) -> None:
    """The connection that answered ``after`` still serves the next request (httpx would
    silently open a new one had the server closed it, as it does after an unhandled error)."""
    r = http.get("/indexes")
    assert r.status_code == 200
    assert _port(r) == _port(after), "the server closed the keep-alive connection"


def _status(r: httpx.Response, *codes: int) -> dict:
    assert r.status_code in codes, (r.status_code, r.text[:500])
    return r.json() if r.content else {}


def _wait(http: httpx.Client, path: str, field: str, done: tuple[str, ...], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = _status(http.get(path), 200)
        if body.get(field) in done or time.monotonic() > deadline:
            assert body.get(field) in done, body
            return body
        time.sleep(0.05)


def _backup(http: httpx.Client, name: str) -> str:
    backup = _status(http.post("/indexes/cos/backups", json={"name": name}), 200, 201)
    bid = backup["backup_id"]
    _wait(http, f"/backups/{bid}", "status", ("Ready",))
    return bid


# -- backups out of reach ---------------------------------------------------------------


def test_exports_and_imports_cannot_reach_the_backup_folder(http: httpx.Client, data_dir: Path) -> None:
    bid = _backup(http, "b1")
    before = _status(http.get(f"/backups/{bid}"), 200)
    (data_dir / "exports" / "sneaky").symlink_to(data_dir / "backups")
    for uri in (f"../backups/{bid}", "../backups/_backups", "../backups", "..", str(data_dir / "backups" / "x"),
                f"file://{data_dir}/backups/{bid}", f"sneaky/{bid}"):
        r = http.post("/index/euc/bulk/exports", json={"uri": uri, "overwrite": True})
        assert "backup" in json.dumps(_status(r, 403)), uri
        _status(http.post("/index/euc/bulk/imports", json={"uri": uri}), 403)
    assert _status(http.get(f"/backups/{bid}"), 200) == before
    _status(http.get("/backups"), 200)


def test_a_corrupt_catalog_entry_is_skipped_and_reported(http: httpx.Client, data_dir: Path) -> None:
    bid = _backup(http, "b2")
    catalog = data_dir / "backups" / "_backups"
    (catalog / "garbage.json").write_text("{not json")
    (catalog / "wrong.json").write_text('{"hello": 1}')
    (catalog / "list.json").write_text("[1, 2]")
    try:
        r = http.get("/backups", params={"limit": 100})
        body = _status(r, 200)
        assert r.headers.get("X-Spruce-Skipped-Backups") == "3"
        assert bid in [b["backup_id"] for b in body["data"]]  # the good entries are still listed
        _status(http.get("/indexes/cos/backups"), 200)
    finally:
        for name in ("garbage.json", "wrong.json", "list.json"):
            (catalog / name).unlink()
    assert "X-Spruce-Skipped-Backups" not in http.get("/backups").headers


# -- bounds on numbers --------------------------------------------------------------------


@pytest.mark.parametrize("value", [1_000_000_000_000, -5, 0, 604_801, "ten", True, 1.5])
def test_link_expiry_out_of_range_is_400_up_front(http: httpx.Client, value: object) -> None:
    before = len(_status(http.get("/jobs"), 200)["data"])
    r = http.post("/index/cos/bulk/exports", json={"uri": f"expiry-{value}", "linkExpirySeconds": value})
    _status(r, 400)
    assert len(_status(http.get("/jobs"), 200)["data"]) == before  # no job was created
    _status(http.get("/index/cos/bulk/exports"), 200)


def test_link_expiry_of_seven_days_is_accepted(http: httpx.Client) -> None:
    r = http.post("/index/cos/bulk/exports", json={"uri": "expiry-max", "linkExpirySeconds": 604_800})
    eid = _status(r, 200, 202)["id"]
    body = _wait(http, f"/index/cos/bulk/exports/{eid}", "status", ("Completed",))
    expires = datetime.fromisoformat(body["downloadExpiresAt"].replace("Z", "+00:00"))
    assert 604_700 < (expires - datetime.now(UTC)).total_seconds() <= 604_800


def test_stored_out_of_range_values_never_break_listings(tmp_path: Path) -> None:
    """A job file an older version wrote (expiry of 10^12 s), or one edited by hand, must not
    turn /jobs, the export listing or a describe into a 500, even after a restart."""
    data = tmp_path / "data"
    with spruce.Client(data_dir=str(data)) as c:
        c.create_index("cos", dimension=4, metric="cosine")
        c.Index("cos").upsert([("a", [1, 2, 3, 4])])
        good = start_export(c.engine, "cos", str(data / "exports" / "e1"), sync=True).id
    path = data / "jobs" / f"{good}.json"
    state = json.loads(path.read_text())
    state["options"]["link_expiry_seconds"] = 1_000_000_000_000
    path.write_text(json.dumps(state))
    bad = {"exp-20260101000000-aaaaaaaa": json.dumps({**state, "id": "exp-20260101000000-aaaaaaaa",
                                                      "created_at": None}),
           "exp-20260101000000-bbbbbbbb": json.dumps({**state, "id": "exp-20260101000000-bbbbbbbb", "options": []}),
           "exp-20260101000000-cccccccc": "[1, 2]",
           "exp-20260101000000-dddddddd": "{torn"}
    for job_id, text in bad.items():
        (data / "jobs" / f"{job_id}.json").write_text(text)
    with start_server(data) as s, httpx.Client(base_url=s.url, timeout=60) as h:
        assert [j["id"] for j in _status(h.get("/jobs"), 200)["data"]] == [good]
        assert [j["id"] for j in _status(h.get("/index/cos/bulk/exports"), 200)["data"]] == [good]
        r = h.get(f"/index/cos/bulk/exports/{good}")
        body = _status(r, 200)
        expires = datetime.fromisoformat(body["downloadExpiresAt"].replace("Z", "+00:00"))
        assert (expires - datetime.now(UTC)).total_seconds() <= 7 * 24 * 3600  # clamped to 7 days
        assert httpx.get(body["downloadUrl"]).status_code == 200
        _alive(h, r)
        for job_id in bad:
            r = h.get(f"/jobs/{job_id}")
            assert "unreadable" in r.json()["error"]["message"] or "not valid JSON" in r.json()["error"]["message"]
            _status(r, 422)
            _alive(h, r)


# -- filter width, body size ---------------------------------------------------------------


def test_filter_width_is_capped(http: httpx.Client) -> None:
    flt = {"$or": [{"n": {"$eq": i}} for i in range(20_000)]}
    r = http.post("/index/cos/query", json={"vector": [1, 0, 0, 0], "topK": 1, "filter": flt})
    assert "10,000" in _status(r, 400)["message"]
    _alive(http, r)
    wide_but_allowed = [{"$or": [{"n": {"$eq": i}} for i in range(4_000)]},
                        {"n": {"$in": list(range(10_000))}}]
    for flt in wide_but_allowed:
        _status(http.post("/index/cos/query", json={"vector": [1, 0, 0, 0], "topK": 1, "filter": flt}), 200)


def test_body_over_2mb_is_413_before_it_is_read(http: httpx.Client, server: RunningServer) -> None:
    big = json.dumps({"vectors": [{"id": str(i), "values": [0.1, 0.2, 0.3, 0.4], "metadata": {"pad": "p" * 1000}}
                                  for i in range(2_500)]}).encode()
    r = http.post("/index/cos/vectors/upsert", content=big, headers={"Content-Type": "application/json"})
    body = _status(r, 413)
    assert body["code"] == 11 and "2,000,000" in body["message"]  # Pinecone's data-plane error shape

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes are counted as they arrive
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    r = httpx.post(f"{server.url}/index/cos/vectors/upsert", content=chunks(), timeout=60,
                   headers={"Api-Key": KEY, "Content-Type": "application/json"})
    assert _status(r, 413)["code"] == 11
    r = httpx.post(f"{server.url}/indexes", content=b"{" + b" " * 2_100_000 + b"}", timeout=60,
                   headers={"Api-Key": KEY, "Content-Type": "application/json"})
    assert _status(r, 413)["error"]["code"] == "OUT_OF_RANGE"  # control plane: its own error shape
    assert _status(http.get("/index/cos/vectors/fetch", params={"ids": ["0", "2499"]}), 200)["vectors"] == {}


def test_body_cap_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRUCE_MAX_BODY_BYTES", "5000000")
    body = {"vectors": [{"id": str(i), "values": [1, 2, 3, 4], "metadata": {"pad": "p" * 1000}}
                        for i in range(1_000)]}  # ~1.1 MB, then ~3.3 MB with more padding
    with start_server(tmp_path / "data") as s, httpx.Client(base_url=s.url, timeout=60) as h:
        _status(h.post("/indexes", json={"name": "i", "dimension": 4, "metric": "cosine", "spec": SPEC}), 200, 201)
        for rec in body["vectors"]:
            rec["metadata"]["pad"] = "p" * 3000
        assert _status(h.post("/index/i/vectors/upsert", json=body), 200)["upsertedCount"] == 1000
        for rec in body["vectors"]:
            rec["metadata"]["pad"] = "p" * 6000
        _status(h.post("/index/i/vectors/upsert", json=body), 413)


# -- the two upsert decoders ----------------------------------------------------------------


@pytest.mark.parametrize("values", [[[1, 2], [3, 4]], [1, [2, [3]], 4], [[1], [2], [3], [4]], [[1, 2, 3, 4]],
                                    [True, 1, 2, 3], [1, 2, 3, False], [1, 2, 3, "4"], [1, 2, None, 4], [1, 2, 3],
                                    [1, 2, 3, 4, 5], [], [1e39, 1, 2, 3]])
@pytest.mark.parametrize("padded", [False, True], ids=["small", "over-32KB"])
def test_both_upsert_decoders_refuse_the_same_records(http: httpx.Client, values: list, padded: bool) -> None:
    ok, bad = f"ok-{uuid.uuid4().hex}", f"bad-{uuid.uuid4().hex}"  # one case's leftovers never meet another's
    record: dict = {"id": bad, "values": values}
    if padded:
        record["metadata"] = {"pad": PAD}
    body = {"vectors": [{"id": ok, "values": [1, 2, 3, 5]}, record]}
    assert "record 1" in _status(http.post("/index/cos/vectors/upsert", json=body), 400)["message"]
    fetched = _status(http.get("/index/cos/vectors/fetch", params={"ids": [bad, ok]}), 200)
    assert fetched["vectors"] == {}  # nothing of the request was applied


@pytest.mark.parametrize("padded", [False, True], ids=["small", "over-32KB"])
def test_both_upsert_decoders_store_good_records_alike(http: httpx.Client, padded: bool) -> None:
    meta = {"pad": PAD, "tags": ["a", "b"]} if padded else {"tags": ["a", "b"]}
    body = {"vectors": [{"id": f"good-{padded}", "values": [0.5, -1, 2, 1e-3], "metadata": meta}], "namespace": "g"}
    assert _status(http.post("/index/cos/vectors/upsert", json=body), 200)["upsertedCount"] == 1
    got = _status(http.get("/index/cos/vectors/fetch", params={"ids": [f"good-{padded}"], "namespace": "g"}),
                  200)["vectors"][f"good-{padded}"]
    assert got["values"] == pytest.approx([0.5, -1, 2, 1e-3]) and got["metadata"] == meta


# -- path parameters, storage URIs, namespaces --------------------------------------------------


@pytest.mark.parametrize("path", ["/jobs/a%00b", "/backups/a%00b", "/restore-jobs/a%00b",
                                  "/index/cos/bulk/exports/a%00b", "/index/cos/bulk/imports/a%00b",
                                  "/jobs/" + "x" * 300, "/backups/" + "y" * 300, "/restore-jobs/" + "z" * 300,
                                  "/index/cos/bulk/exports/" + "w" * 300, "/index/cos/bulk/imports/" + "v" * 300])
def test_odd_path_parameters_are_400_or_404(http: httpx.Client, path: str) -> None:
    r = http.get(path)
    _status(r, 400, 404)
    assert len(r.text) < 1000  # a 300-character id is not echoed whole
    _alive(http, r)


@pytest.mark.parametrize("uri", ["a\u0000b", "x" * 10_000, "s3://bucket/" + "k" * 5_000])
@pytest.mark.parametrize("kind", ["exports", "imports"])
def test_nul_and_overlong_uris_are_400_before_any_job(http: httpx.Client, uri: str, kind: str) -> None:
    before = len(_status(http.get("/jobs"), 200)["data"])
    r = http.post(f"/index/cos/bulk/{kind}", json={"uri": uri})
    _status(r, 400)
    _alive(http, r)
    assert len(_status(http.get("/jobs"), 200)["data"]) == before


def test_forbidden_message_names_no_absolute_root(http: httpx.Client, data_dir: Path) -> None:
    r = http.post("/index/cos/bulk/exports", json={"uri": "/etc/spruce-test"})
    message = json.dumps(_status(r, 403))
    assert str(data_dir) not in message and str(data_dir.resolve()) not in message
    assert "<data>/exports" in message


def test_namespaces_refuse_nul_and_overlong_names(http: httpx.Client) -> None:
    r = http.post("/index/cos/vectors/upsert", json={"vectors": [{"id": "n", "values": [1, 2, 3, 4]}],
                                                     "namespace": "a\u0000b"})
    assert "NUL" in _status(r, 400)["message"]
    _alive(http, r)
    _status(http.post("/index/cos/query", json={"vector": [1, 2, 3, 4], "topK": 1, "namespace": "a\u0000b"}), 400)
    r = http.post("/index/cos/vectors/upsert", json={"vectors": [], "namespace": "n" * 600})
    assert "512" in _status(r, 400)["message"]
    _status(http.post("/index/cos/vectors/upsert", json={"vectors": [], "namespace": "n" * 512}), 200)


# -- degenerate input ----------------------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True], ids=["small", "over-32KB"])
def test_zero_vectors_are_refused_on_cosine_only(http: httpx.Client, padded: bool) -> None:
    record: dict = {"id": "z", "values": [0, 0.0, -0.0, 0]}
    if padded:
        record["metadata"] = {"pad": PAD}
    body = {"vectors": [{"id": "fine", "values": [1, 0, 0, 0]}, record]}
    message = _status(http.post("/index/cos/vectors/upsert", json=body), 400)["message"]
    assert "non-zero" in message and "'z'" in message
    assert _status(http.get("/index/cos/vectors/fetch", params={"ids": ["z", "fine"]}), 200)["vectors"] == {}
    assert "non-zero" in _status(http.post("/index/cos/query", json={"vector": [0, 0, 0, 0], "topK": 1}),
                                 400)["message"]
    _status(http.post("/index/cos/vectors/update", json={"id": "a", "values": [0, 0, 0, 0]}), 400)
    # euclidean has no such rule: the same vectors are fine
    _status(http.post("/index/euc/vectors/upsert", json=body), 200)
    _status(http.post("/index/euc/query", json={"vector": [0, 0, 0, 0], "topK": 1}), 200)
    _status(http.post("/index/euc/vectors/update", json={"id": "fine", "values": [0, 0, 0, 0]}), 200)


def test_negative_pagination_offset_is_400(http: httpx.Client) -> None:
    token = base64.urlsafe_b64encode(json.dumps({"offset": -3}).encode()).decode().rstrip("=")
    for path in ("/index/cos/bulk/exports", "/index/cos/bulk/imports", "/backups", "/restore-jobs"):
        r = http.get(path, params={"paginationToken": token})
        _status(r, 400)
        _alive(http, r)


# -- files and bind address ------------------------------------------------------------------------


def test_data_folder_is_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with start_server(data) as s, httpx.Client(base_url=s.url, timeout=60) as h:
        _status(h.post("/indexes", json={"name": "cos", "dimension": 4, "metric": "cosine", "spec": SPEC}), 200, 201)
        _status(h.post("/index/cos/vectors/upsert", json={"vectors": [{"id": "a", "values": [1, 2, 3, 4]}],
                                                          "namespace": "n1"}), 200)
        eid = _status(h.post("/index/cos/bulk/exports", json={"uri": "e1/sub"}), 200, 202)["id"]
        _wait(h, f"/index/cos/bulk/exports/{eid}", "status", ("Completed",))
        bid = _backup(h, "b")
        rid = _status(h.post(f"/backups/{bid}/create-index", json={"name": "restored"}), 200, 202)["restore_job_id"]
        _wait(h, f"/restore-jobs/{rid}", "status", ("Completed",))
    seen = {"dirs": 0, "files": 0}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for root, dirs, files in os.walk(data):
        for name in dirs + files:
            path = Path(root) / name
            want = 0o700 if path.is_dir() else 0o600
            assert stat.S_IMODE(path.lstat().st_mode) == want, (path.relative_to(data), oct(path.lstat().st_mode))
            seen["dirs" if path.is_dir() else "files"] += 1
    names = {p.relative_to(data).parts[0] for p in data.rglob("*")}
    assert {"jobs", "indexes", "exports", "backups", ".lock", ".server-secret"} <= names and seen["files"] > 8


def test_archives_outside_a_private_folder_keep_the_default_modes(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    open_store(str(shared / "archive")).put_bytes("ns/part.jsonl", b"{}\n")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((shared / "archive" / "ns" / "part.jsonl").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((shared / "archive").stat().st_mode) == 0o777 & ~umask


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_bind_host_unwraps_bracketed_ipv6() -> None:
    assert bind_host("[::1]") == "::1"
    assert bind_host("::1") == "::1" and bind_host("127.0.0.1") == "127.0.0.1" and bind_host("localhost") == "localhost"


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize("entry", ["cli", "module"])
def test_bind_bracketed_ipv6_serves_on_ipv6_loopback(tmp_path: Path, entry: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    if entry == "cli":
        cmd = [sys.executable, "-c", "from spruce.cli import main; main()", "serve", "--data", str(tmp_path / "d"),
               "--bind", "[::1]", "--port", str(port)]
    else:
        cmd = [sys.executable, "-m", "spruce.server", "--data", str(tmp_path / "d"), "--host", "[::1]",
               "--port", str(port), "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                r = httpx.get(f"http://[::1]:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "not serving on [::1]"
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["status"] == "ok"  # answered on [::1], IPv6 loopback
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
