"""`spruce serve` under hostile or careless input, against a real uvicorn server: backups out of
reach of export URIs, bounds on every number, capped filters and bodies, the same checks on
both upsert decoders, clean 400/404 for odd path parameters, owner-only files, and Pinecone's
rules on degenerate vectors. Each case also checks the keep-alive connection survives."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serverutil import RunningServer, start_server

KEY = "hardening-key"


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
        r = client.post("/indexes", json={"name": "cos", "dimension": 4, "metric": "cosine",
                                          "spec": {"serverless": {"cloud": "aws", "region": "us-east-1"}}})
        assert r.status_code in (200, 201), r.text
        r = client.post("/index/cos/vectors/upsert", json={"vectors": [{"id": "a", "values": [1, 2, 3, 4]}]})
        assert r.status_code == 200, r.text
        yield client


def _alive(http: httpx.Client) -> None:
    assert http.get("/indexes").status_code == 200  # the same keep-alive connection still answers


def _status(r: httpx.Response, *codes: int) -> dict:
    assert r.status_code in codes, (r.status_code, r.text[:500])
    return r.json() if r.content else {}


def test_exports_cannot_reach_the_backup_folder(http: httpx.Client, data_dir: Path) -> None:
    r = http.post("/indexes/cos/backups", json={"name": "b1"})
    backup = _status(r, 200, 201)
    bid = backup.get("backup_id") or backup.get("backupId")
    for uri in (f"../backups/{bid}", "../backups/_backups", "../backups", str(data_dir / "backups" / "x")):
        body = _status(http.post("/index/cos/bulk/exports", json={"uri": uri, "overwrite": True}), 403)
        assert "backup" in json.dumps(body)
        _status(http.post("/index/cos/bulk/imports", json={"uri": uri}), 403)
    assert _status(http.get(f"/backups/{bid}"), 200)
    _alive(http)


def test_a_corrupt_catalog_entry_is_skipped_not_a_500(http: httpx.Client, data_dir: Path) -> None:
    catalog = data_dir / "backups" / "_backups"
    catalog.mkdir(parents=True, exist_ok=True)
    (catalog / "garbage.json").write_text("{not json")
    (catalog / "wrong.json").write_text('{"hello": 1}')
    r = http.get("/backups")
    body = _status(r, 200)
    assert r.headers.get("X-Spruce-Skipped-Backups") == "2"
    assert all("backup_id" in b or "backupId" in b for b in body["data"])


@pytest.mark.parametrize("value", [1_000_000_000_000, -5, 0, 604_801, "ten", True])
def test_link_expiry_bounds_are_checked_up_front(http: httpx.Client, value: object) -> None:
    r = http.post("/index/cos/bulk/exports", json={"uri": f"expiry-{value}", "linkExpirySeconds": value})
    body = _status(r, 400)
    assert "604800" in json.dumps(body) or "linkExpirySeconds" in json.dumps(body) or "integer" in json.dumps(body)
    _status(http.get("/jobs"), 200)  # listings never break
    _status(http.get("/index/cos/bulk/exports"), 200)


def test_long_and_nul_uris_are_400(http: httpx.Client) -> None:
    for uri in ("a\u0000b", "x" * 10_000):
        _status(http.post("/index/cos/bulk/exports", json={"uri": uri}), 400)
        _status(http.post("/index/cos/bulk/imports", json={"uri": uri}), 400)
    _alive(http)


def test_forbidden_message_names_no_absolute_root(http: httpx.Client, data_dir: Path) -> None:
    body = _status(http.post("/index/cos/bulk/exports", json={"uri": "/etc/spruce-test"}), 403)
    text = json.dumps(body)
    assert str(data_dir) not in text and str(data_dir.resolve()) not in text and "<data>/exports" in text


def test_filter_width_is_capped(http: httpx.Client) -> None:
    flt = {"$or": [{"n": {"$eq": i}} for i in range(20_000)]}
    body = _status(http.post("/index/cos/query", json={"vector": [1, 0, 0, 0], "topK": 1, "filter": flt}), 400)
    assert "10,000" in json.dumps(body)
    _alive(http)


@pytest.mark.parametrize("values", [[[1, 2], [3, 4]], [1, [2, [3]], 4], [[1], [2], [3], [4]], [True, 1, 2, 3],
                                    [1, 2, 3, "4"], [1, 2, None, 4]])
@pytest.mark.parametrize("padded", [False, True], ids=["small", "over-32KB"])
def test_both_upsert_decoders_refuse_the_same_records(http: httpx.Client, values: list, padded: bool) -> None:
    record = {"id": "bad", "values": values}
    if padded:
        record["metadata"] = {"pad": "x" * 40_000}
    body = {"vectors": [record, {"id": "ok", "values": [1, 2, 3, 5]}]}
    _status(http.post("/index/cos/vectors/upsert", json=body), 400)
    fetched = _status(http.get("/index/cos/vectors/fetch", params={"ids": ["bad", "ok"]}), 200)
    assert fetched["vectors"] == {}  # nothing of the request was applied


@pytest.mark.parametrize("path", ["/jobs/a%00b", "/backups/a%00b", "/restore-jobs/a%00b",
                                  "/index/cos/bulk/exports/a%00b", "/index/cos/bulk/imports/a%00b",
                                  "/jobs/" + "x" * 300, "/backups/" + "y" * 300, "/restore-jobs/" + "z" * 300,
                                  "/index/cos/bulk/exports/" + "w" * 300])
def test_odd_path_parameters_are_400_or_404(http: httpx.Client, path: str) -> None:
    _status(http.get(path), 400, 404)
    _alive(http)


def test_body_over_2mb_is_413_before_it_is_read(http: httpx.Client, server: RunningServer) -> None:
    big = {"vectors": [{"id": str(i), "values": [0.1, 0.2, 0.3, 0.4], "metadata": {"pad": "p" * 1000}}
                       for i in range(2_500)]}
    r = http.post("/index/cos/vectors/upsert", content=json.dumps(big).encode(),
                  headers={"Content-Type": "application/json"})
    body = _status(r, 413)
    assert body["code"] == 11 and "2,000,000" in body["message"]  # Pinecone's data-plane error shape

    def chunks() -> Iterator[bytes]:
        raw = json.dumps(big).encode()
        for i in range(0, len(raw), 65536):
            yield raw[i:i + 65536]

    r = httpx.post(f"{server.url}/index/cos/vectors/upsert", content=chunks(), timeout=60,
                   headers={"Api-Key": KEY, "Content-Type": "application/json"})
    _status(r, 413)
    _alive(http)


def test_namespaces_refuse_nul_and_overlong_names(http: httpx.Client) -> None:
    _status(http.post("/index/cos/vectors/upsert", json={"vectors": [{"id": "n", "values": [1, 2, 3, 4]}],
                                                         "namespace": "a\u0000b"}), 400)
    _status(http.post("/index/cos/vectors/upsert", json={"vectors": [], "namespace": "n" * 600}), 400)
    _alive(http)


def test_zero_vectors_on_cosine_are_refused(http: httpx.Client) -> None:
    body = _status(http.post("/index/cos/vectors/upsert", json={"vectors": [{"id": "z", "values": [0, 0, 0, 0]}]}),
                   400)
    assert "non-zero" in body["message"]
    _status(http.post("/index/cos/query", json={"vector": [0, 0, 0, 0], "topK": 1}), 400)
    _status(http.post("/index/cos/vectors/update", json={"id": "a", "values": [0, 0, 0, 0]}), 400)


def test_negative_pagination_offset_is_400(http: httpx.Client) -> None:
    token = base64.urlsafe_b64encode(json.dumps({"offset": -3}).encode()).decode().rstrip("=")
    _status(http.get("/index/cos/bulk/exports", params={"paginationToken": token}), 400)
    _status(http.get("/index/cos/bulk/imports", params={"paginationToken": token}), 400)
    _status(http.get("/backups", params={"paginationToken": token}), 400)


def test_data_folder_is_owner_only(http: httpx.Client, data_dir: Path) -> None:
    _status(http.post("/index/cos/bulk/exports", json={"uri": "perm-check"}), 200)
    for path in [data_dir / "jobs", data_dir / "indexes", *(data_dir / "indexes").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    files = [*(data_dir / "jobs").glob("*.json"), *(data_dir / "indexes").glob("*/index.db"), data_dir / ".lock"]
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
