"""The namespace API of Pinecone API 2025-10: create (with a schema), describe, list, delete.

Through the embedded client, over HTTP (raw wire shapes with httpx, the official SDK, spruce's
remote client), and through export and restore, which keep empty namespaces and schemas.
"""

from __future__ import annotations

import importlib.metadata
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import spruce
from serverutil import RunningServer, start_server
from spruce.archive.manifest import ManifestInvalid, parse_manifest
from spruce.errors import AlreadyExists, InvalidArgument, NotFound

API_KEY = "ns-key-" + uuid.uuid4().hex[:8]
DIM = 4
GENRE = {"fields": {"genre": {"filterable": True}}}
TWO = {"fields": {"genre": {"filterable": True}, "year": {"filterable": True}}}
SDK_VERSION = importlib.metadata.version("pinecone")


def _vectors(n: int, prefix: str = "v") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "values": [1.0, float(i), 0.5, 0.25], "metadata": {"genre": "drama"}}
            for i in range(n)]


def _listed(idx: Any) -> dict[str, int]:
    return {n.name: n.record_count for n in idx.list_namespaces()}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    c = spruce.Client(tmp_path / "data")
    try:
        yield c
    finally:
        c.close()


# -- embedded -----------------------------------------------------------------------------


def test_created_namespace_exists_empty_and_counts_follow_upserts(client: Any) -> None:
    client.create_index("t", dimension=DIM)
    idx = client.Index("t")
    d = idx.create_namespace("films", schema=GENRE)
    assert (d.name, d.record_count) == ("films", 0)
    assert d.schema.fields["genre"].filterable is True and d.indexed_fields.fields == ["genre"]
    assert d.to_dict()["schema"] == GENRE
    assert _listed(idx) == {"films": 0}
    assert idx.describe_namespace("films").schema.to_dict() == GENRE
    # Pinecone's stats list namespaces that hold records; the namespace API shows empty ones
    assert idx.describe_index_stats().namespaces == {}

    idx.upsert(_vectors(3), namespace="films")
    assert idx.describe_namespace(name="films").record_count == 3
    idx.upsert(_vectors(5, "w"), namespace="films")
    idx.delete(ids=["w0"], namespace="films")
    assert idx.describe_namespace("films").record_count == 7
    assert idx.describe_index_stats().namespaces["films"].vector_count == 7

    # delete_all empties a namespace and keeps it (with its schema), as the SDK documents
    idx.delete(delete_all=True, namespace="films")
    d = idx.describe_namespace("films")
    assert (d.record_count, d.schema.to_dict()) == (0, GENRE)
    assert "films" not in idx.describe_index_stats().namespaces

    idx.delete_namespace(name="films")
    with pytest.raises(NotFound):
        idx.describe_namespace("films")
    with pytest.raises(NotFound):
        idx.delete_namespace("films")
    assert _listed(idx) == {}
    assert idx.create_namespace("films").schema is None  # the name is free again


def test_upsert_creates_a_namespace_and_duplicates_are_refused(client: Any) -> None:
    client.create_index("t", dimension=DIM)
    idx = client.Index("t")
    idx.upsert(_vectors(2), namespace="implicit")
    d = idx.describe_namespace("implicit")
    assert (d.record_count, d.schema, d.indexed_fields) == (2, None, None)
    with pytest.raises(AlreadyExists):
        idx.create_namespace("implicit")
    idx.create_namespace("explicit", TWO)
    with pytest.raises(AlreadyExists, match="explicit"):
        idx.create_namespace("explicit", GENRE)
    assert idx.describe_namespace("explicit").schema.to_dict() == TWO  # the first schema stays
    idx.delete(ids=["v0", "v1"], namespace="implicit")  # emptied record by record: still there
    assert _listed(idx) == {"explicit": 0, "implicit": 0}


def test_default_namespace_always_exists_and_cannot_be_created(client: Any) -> None:
    client.create_index("t", dimension=DIM)
    idx = client.Index("t")
    for name in ("", "__default__"):
        with pytest.raises(InvalidArgument, match="default namespace"):
            idx.create_namespace(name)
    assert idx.describe_namespace("__default__").record_count == 0
    assert idx.describe_namespace().name == "__default__"
    idx.delete_namespace("__default__")  # empty: nothing to delete, and not an error
    assert _listed(idx) == {}  # listed once written to
    idx.upsert(_vectors(2))
    assert _listed(idx) == {"__default__": 2}
    idx.delete_namespace("__default__")
    assert idx.describe_namespace("").record_count == 0 and _listed(idx) == {}


@pytest.mark.parametrize("name", ["a\x00b", "n" * 513, 7])
def test_bad_names_are_refused(client: Any, name: Any) -> None:
    client.create_index("t", dimension=DIM)
    idx = client.Index("t")
    with pytest.raises(InvalidArgument):
        idx.create_namespace(name)
    if isinstance(name, str):
        with pytest.raises(InvalidArgument):
            idx.describe_namespace(name)
        with pytest.raises(InvalidArgument):
            idx.delete_namespace(name)
    assert _listed(idx) == {}
    idx.create_namespace("n" * 512)  # the limit itself is fine
    assert idx.describe_namespace("n" * 512).record_count == 0
    with pytest.raises(InvalidArgument):
        idx.describe_namespace("a", name="b")


@pytest.mark.parametrize("schema", [
    {"fields": {"genre": {"filterable": False}}},
    {"fields": {"genre": {}}},
    {"fields": {"genre": True}},
    {"fields": {"genre": {"filterable": True, "type": "string"}}},
    {"fields": {"$genre": {"filterable": True}}},
    {"fields": {"": {"filterable": True}}},
    {"fields": ["genre"]},
    {"genre": {"filterable": True}},
    {"fields": {}, "extra": 1},
    "genre",
])
def test_bad_schemas_are_refused(client: Any, schema: Any) -> None:
    client.create_index("t", dimension=DIM)
    idx = client.Index("t")
    with pytest.raises(InvalidArgument):
        idx.create_namespace("x", schema)
    with pytest.raises(NotFound):
        idx.describe_namespace("x")


def test_namespaces_survive_reopen_and_list_in_pages(tmp_path: Path) -> None:
    with spruce.Client(tmp_path / "data") as c:
        c.create_index("t", dimension=DIM)
        idx = c.Index("t")
        for name in ("c", "a", "e"):
            idx.create_namespace(name, GENRE if name == "a" else None)
        for name in ("b", "d"):
            idx.upsert(_vectors(2), namespace=name)
        idx.query(vector=[1, 0, 0, 0], top_k=1, namespace="b")  # memory loaded: counts from memory
        assert _listed(idx) == {"a": 0, "b": 2, "c": 0, "d": 2, "e": 0}
    with spruce.Client(tmp_path / "data") as c:
        idx = c.Index("t")  # counts from SQLite: the index is not loaded
        page = idx.list_namespaces_paginated(limit=2)
        assert [n.name for n in page.namespaces] == ["a", "b"] and page.total_count == 5
        assert page.namespaces[0].schema.to_dict() == GENRE and page.namespaces[1].record_count == 2
        rest = idx.list_namespaces_paginated(limit=2, pagination_token=page.pagination.next)
        assert [n.name for n in rest.namespaces] == ["c", "d"]
        assert [n.name for n in idx.list_namespaces(prefix="d")] == ["d"]
        with pytest.raises(InvalidArgument):
            idx.list_namespaces_paginated(limit=-1)


def test_an_older_data_folder_gets_its_namespaces(tmp_path: Path) -> None:
    """An index written before the namespaces table: every namespace holding records gets a row,
    on first open, without counting as a write (a job would otherwise see someone else's)."""
    with spruce.Client(tmp_path / "data") as c:
        c.create_index("old", dimension=DIM)
        c.Index("old").upsert(_vectors(3), namespace="x")
        c.Index("old").upsert(_vectors(1))
        seq = c.Index("old")._index.seq
    db = sqlite3.connect(tmp_path / "data" / "indexes" / "old" / "index.db")
    db.execute("DROP TABLE namespaces")
    db.commit()
    db.close()
    with spruce.Client(tmp_path / "data") as c:
        idx = c.Index("old")
        assert _listed(idx) == {"__default__": 1, "x": 3}
        assert idx._index.seq == seq
        idx.create_namespace("new")
        assert _listed(idx) == {"__default__": 1, "new": 0, "x": 3}


# -- export and restore -------------------------------------------------------------------


def _populated(client: Any, name: str) -> Any:
    client.create_index(name, dimension=DIM)
    idx = client.Index(name)
    idx.create_namespace("empty", schema=TWO)
    idx.create_namespace("films", schema=GENRE)
    idx.upsert(_vectors(4), namespace="films")
    idx.upsert(_vectors(2))
    idx.create_namespace("plain-empty")
    return idx


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet"])
def test_export_and_restore_keep_empty_namespaces_and_schemas(client: Any, tmp_path: Path, fmt: str) -> None:
    src = _populated(client, "src")
    out = tmp_path / "arc"
    src.export_index(str(out), format=fmt, sync=True)
    doc = json.loads((out / "manifest.json").read_text("utf-8"))
    entries = {ns["name"]: ns for ns in doc["namespaces"]}
    assert list(entries) == ["", "empty", "films", "plain-empty"]  # name order, as exported
    assert entries["empty"] == {"name": "empty", "dir": "empty", "record_count": 0, "files": [], "schema": TWO}
    assert entries["plain-empty"] == {"name": "plain-empty", "dir": "plain-empty", "record_count": 0,
                                      "files": []}  # no schema: no key, as older archives
    assert entries["films"]["schema"] == GENRE and entries["films"]["record_count"] == 4
    assert "schema" not in entries[""]
    assert doc["totals"]["namespaces"] == 4 and doc["totals"]["records"] == 6
    assert not (out / "empty").exists()  # an empty namespace has no folder
    assert parse_manifest((out / "manifest.json").read_bytes()).namespace("empty").schema == TWO

    job = client.Index("copy").upsert_from_file(str(out))
    assert job.status == "Completed", job.error
    copy = client.Index("copy")
    assert _listed(copy) == {"__default__": 2, "empty": 0, "films": 4, "plain-empty": 0}
    assert copy.describe_namespace("empty").schema.to_dict() == TWO
    assert copy.describe_namespace("films").schema.to_dict() == GENRE
    assert copy.describe_namespace("plain-empty").schema is None
    # the namespace step is the job's own write, recorded: a resume or a check for others' writes
    # since the job started sees none
    marker = copy._index.get_marker(f"import:{job.import_id}:namespaces")
    assert marker is not None and marker["seq"] == copy._index.seq

    # the same archive again: nothing is missing, so nothing more is written
    seq = copy._index.seq
    again = copy.upsert_from_file(str(out))
    assert again.status == "Completed"
    assert copy._index.get_marker(f"import:{again.import_id}:namespaces") is None
    assert copy._index.seq - seq == 2  # one transaction per data file (two of them), and no more


def test_restore_maps_namespaces_and_keeps_a_target_schema(client: Any, tmp_path: Path) -> None:
    _populated(client, "src").export_index(str(tmp_path / "arc"), sync=True)
    client.create_index("dst", dimension=DIM)
    dst = client.Index("dst")
    dst.create_namespace("films", schema=TWO)  # the target's own choice differs from the archive's
    dst.upsert(_vectors(1, "own-"), namespace="plain-empty")  # exists, no schema
    job = dst.upsert_from_file(str(tmp_path / "arc"), namespace_map={"empty": "renamed"})
    assert job.status == "Completed", job.error
    assert _listed(dst) == {"__default__": 2, "films": 4, "plain-empty": 1, "renamed": 0}
    assert dst.describe_namespace("renamed").schema.to_dict() == TWO
    assert dst.describe_namespace("films").schema.to_dict() == TWO
    assert any("'films' kept its own metadata schema" in n for n in job.notes)


def test_a_filtered_or_partial_export_lists_the_selected_namespaces(client: Any, tmp_path: Path) -> None:
    src = _populated(client, "src")
    src.export_index(str(tmp_path / "sel"), namespaces=["empty", "__default__"], sync=True)
    doc = json.loads((tmp_path / "sel" / "manifest.json").read_text("utf-8"))
    assert [(n["name"], n["record_count"]) for n in doc["namespaces"]] == [("empty", 0), ("", 2)]  # as asked
    src.export_index(str(tmp_path / "flt"), filter={"genre": "comedy"}, sync=True)
    doc = json.loads((tmp_path / "flt" / "manifest.json").read_text("utf-8"))
    assert {n["name"]: n["record_count"] for n in doc["namespaces"]} == {
        "": 0, "empty": 0, "films": 0, "plain-empty": 0}


def test_manifest_schema_is_checked_and_old_manifests_still_read(client: Any, tmp_path: Path) -> None:
    _populated(client, "src").export_index(str(tmp_path / "arc"), sync=True)
    doc = json.loads((tmp_path / "arc" / "manifest.json").read_text("utf-8"))
    old = json.loads(json.dumps(doc))
    old["namespaces"] = [n for n in old["namespaces"] if n["record_count"]]
    for n in old["namespaces"]:
        n.pop("schema", None)
    old["totals"]["namespaces"] = len(old["namespaces"])
    assert [n.schema for n in parse_manifest(json.dumps(old).encode()).namespaces] == [None, None]
    for bad in ({"fields": {"genre": {"filterable": False}}}, {"fields": {"$x": {"filterable": True}}},
                {"genre": True}, None):
        broken = json.loads(json.dumps(doc))
        broken["namespaces"][1]["schema"] = bad
        with pytest.raises(ManifestInvalid, match="schema"):
            parse_manifest(json.dumps(broken).encode())


# -- over HTTP ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("ns-server") / "data", api_key=API_KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Api-Key": API_KEY}, timeout=30) as c:
        yield c


def _new_index(http: httpx.Client) -> str:
    name = "ns-" + uuid.uuid4().hex[:10]
    r = http.post("/indexes", json={"name": name, "dimension": DIM, "metric": "cosine",
                                    "spec": {"serverless": {"cloud": "aws", "region": "us-east-1"}}})
    assert r.status_code == 201, r.text
    return f"/index/{name}"


def _v(version: str) -> dict[str, str]:
    return {"X-Pinecone-API-Version": version}


def test_wire_shapes_by_api_version(http: httpx.Client) -> None:
    base = _new_index(http)
    r = http.post(f"{base}/namespaces", json={"name": "films", "schema": TWO}, headers=_v("2025-10"))
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "films", "record_count": 0, "schema": TWO,
                        "indexed_fields": {"fields": ["genre", "year"]}}
    r = http.post(f"{base}/namespaces", json={"name": "old"}, headers=_v("2025-04"))
    assert r.json() == {"name": "old", "record_count": 0}
    r = http.get(f"{base}/namespaces/films", headers=_v("2025-04"))
    assert r.json() == {"name": "films", "record_count": 0}  # 2025-04 had no schema
    assert http.get(f"{base}/namespaces/films", headers=_v("2026-04")).json()["schema"] == TWO

    up = http.post(f"{base}/vectors/upsert", json={"vectors": _vectors(3), "namespace": "films"})
    assert up.status_code == 200
    assert http.get(f"{base}/namespaces/films").json()["record_count"] == 3
    listed = http.get(f"{base}/namespaces", params={"limit": 1}, headers=_v("2025-10")).json()
    assert listed["namespaces"] == [{"name": "films", "record_count": 3, "schema": TWO,
                                     "indexed_fields": {"fields": ["genre", "year"]}}]
    assert listed["total_count"] == 2 and listed["pagination"]["next"]
    nxt = http.get(f"{base}/namespaces", params={"paginationToken": listed["pagination"]["next"]},
                   headers=_v("2025-04")).json()
    assert nxt == {"namespaces": [{"name": "old", "record_count": 0}]}  # no total_count in 2025-04

    assert http.delete(f"{base}/namespaces/films").json() == {}
    r = http.get(f"{base}/namespaces/films")
    assert r.status_code == 404 and r.json()["code"] == 5
    assert http.delete(f"{base}/namespaces/films").status_code == 404


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/namespaces", {"name": "__default__"}),
    ("POST", "/namespaces", {"name": ""}),
    ("POST", "/namespaces", {"name": "a\u0000b"}),
    ("POST", "/namespaces", {"name": "n" * 513}),
    ("POST", "/namespaces", {"name": 5}),
    ("POST", "/namespaces", {}),
    ("POST", "/namespaces", {"name": "x", "shema": GENRE}),
    ("POST", "/namespaces", {"name": "x", "schema": {"fields": {"g": {"filterable": False}}}}),
    ("POST", "/namespaces", {"name": "x", "schema": {"g": {"filterable": True}}}),
    ("POST", "/namespaces", [1]),
    ("GET", "/namespaces/a%00b", None),
    ("DELETE", "/namespaces/a%00b", None),
    ("GET", "/namespaces/" + "n" * 513, None),
    ("DELETE", "/namespaces/" + "n" * 513, None),
    ("GET", "/namespaces?limit=-3", None),
])
def test_bad_requests_are_400(http: httpx.Client, method: str, path: str, body: Any) -> None:
    base = _new_index(http)
    r = http.request(method, base + path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 3 and r.json()["message"] and r.json()["details"] == []
    assert http.get(f"{base}/namespaces").json()["namespaces"] == []


def test_duplicates_409_missing_404_and_raw_json_400(http: httpx.Client) -> None:
    base = _new_index(http)
    assert http.post(f"{base}/namespaces", json={"name": "a/b c"}).status_code == 200
    r = http.post(f"{base}/namespaces", json={"name": "a/b c"})
    assert r.status_code == 409 and r.json()["code"] == 6 and "already exists" in r.json()["message"]
    assert http.get(f"{base}/namespaces/a%2Fb%20c").json()["name"] == "a/b c"
    r = http.get(f"{base}/namespaces/missing")
    assert r.status_code == 404 and r.json() == {"code": 5, "message": r.json()["message"], "details": []}
    r = http.post(f"{base}/namespaces", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert http.get(f"{base}/namespaces/__default__").json() == {"name": "__default__", "record_count": 0}


def _plain(obj: Any) -> Any:
    """An SDK model as plain data, whichever SDK line made it (msgspec structs or OpenAPI models)."""
    obj = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return {k: _plain(v) for k, v in obj.items()} if isinstance(obj, dict) else obj


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None) or getattr(exc, "status_code", None)


def test_official_sdk(server: RunningServer, http: httpx.Client) -> None:
    """With the installed SDK's own calls (9.x and later have them; spelled as both 9 and 10 take them)."""
    from pinecone import Pinecone
    from pinecone import exceptions as pexc

    base = _new_index(http)
    idx = Pinecone(api_key=API_KEY, host=server.url).Index(host=server.url + base)
    if not hasattr(idx, "create_namespace"):
        pytest.skip(f"pinecone {SDK_VERSION} has no create_namespace (added in 9.x); httpx tests cover it")

    ns = idx.create_namespace(name="films", schema=GENRE)
    assert (ns.name, int(ns.record_count)) == ("films", 0)
    assert _plain(ns.schema)["fields"]["genre"]["filterable"] is True
    assert list(_plain(ns.indexed_fields)["fields"]) == ["genre"]
    with pytest.raises(pexc.PineconeApiException) as err:
        idx.create_namespace(name="films")
    assert _status(err.value) == 409
    idx.upsert(vectors=_vectors(3), namespace="films")
    assert int(idx.describe_namespace(namespace="films").record_count) == 3
    page = idx.list_namespaces_paginated()
    assert [(n.name, int(n.record_count)) for n in page.namespaces] == [("films", 3)]
    idx.delete(delete_all=True, namespace="films")
    assert int(idx.describe_namespace(namespace="films").record_count) == 0
    idx.delete_namespace(namespace="films")
    with pytest.raises(pexc.NotFoundException):
        idx.describe_namespace(namespace="films")


def test_remote_client_matches_the_embedded_one(server: RunningServer) -> None:
    with spruce.Client(host=server.url, api_key=API_KEY) as c:
        name = "ns-" + uuid.uuid4().hex[:10]
        c.create_index(name, dimension=DIM)
        idx = c.Index(name)
        d = idx.create_namespace("films", schema=GENRE)
        assert (d.name, d.record_count, d.schema.to_dict()) == ("films", 0, GENRE)
        with pytest.raises(AlreadyExists):
            idx.create_namespace("films")
        with pytest.raises(InvalidArgument):
            idx.create_namespace("__default__")
        idx.upsert(_vectors(2), namespace="films")
        assert idx.describe_namespace(name="films").record_count == 2
        assert idx.describe_namespace().record_count == 0  # the default namespace
        assert [(n.name, n.record_count, n.schema.to_dict()) for n in idx.list_namespaces()] == [
            ("films", 2, GENRE)]
        idx.delete_namespace(name="films")
        with pytest.raises(NotFound):
            idx.describe_namespace("films")
