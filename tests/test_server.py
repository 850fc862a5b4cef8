"""The REST server, end to end: a real uvicorn server on loopback, the official SDK as client.

Written to run unchanged under pinecone 7.3 (API 2025-04), 9.x (2025-10) and 10.x
(2026-07): only calls and exception names that all three have are used, and raw
wire shapes are checked with httpx.
"""

from __future__ import annotations

import importlib.metadata
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pinecone import Pinecone, ServerlessSpec
from pinecone import exceptions as pexc

from serverutil import RunningServer, free_port, start_server

API_KEY = "test-key-" + uuid.uuid4().hex[:8]
SDK_MAJOR = int(importlib.metadata.version("pinecone").split(".")[0])
DIM = 4

UnauthorizedException = pexc.UnauthorizedException
NotFoundException = pexc.NotFoundException
ForbiddenException = pexc.ForbiddenException
PineconeApiException = pexc.PineconeApiException


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None) or getattr(exc, "status_code", None)


def _get(obj: Any, name: str) -> Any:
    """Attribute access that also works on the dict-like models of older SDKs."""
    try:
        return getattr(obj, name)
    except (AttributeError, KeyError):
        return obj[name]


def _tags(desc: Any) -> dict[str, str]:
    tags = _get(desc, "tags")
    return dict(tags.to_dict() if hasattr(tags, "to_dict") else tags)


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("server") / "data", api_key=API_KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def pc(server: RunningServer) -> Pinecone:
    return Pinecone(api_key=API_KEY, host=server.url)


@pytest.fixture(scope="module")
def make_index(pc: Pinecone) -> Callable[..., Any]:
    """Create an index through the SDK and return its data-plane client (pc.Index(name=...))."""

    def make(name: str, **kwargs: Any) -> Any:
        kwargs.setdefault("spec", ServerlessSpec(cloud="aws", region="us-east-1"))
        if kwargs.get("vector_type") != "sparse":
            kwargs.setdefault("dimension", DIM)
        pc.create_index(name=name, **kwargs)
        return pc.Index(name=name)

    return make


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Api-Key": API_KEY}, timeout=30) as client:
        yield client


# -- data used by the filter tests ----------------------------------------------

GENRES = ["drama", "comedy", "action", "horror"]


def _records(n: int = 24) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        md: dict[str, Any] = {"genre": GENRES[i % 4], "year": 2000 + i, "rating": i / 4,
                              "tags": [f"t{i % 3}", f"u{i % 5}"], "flag": i % 2 == 0}
        if i % 6 == 0:
            md["opt"] = "here"
        out.append({"id": f"r{i:02d}", "values": [1.0 + i, 0.5, -0.25 * i, 2.0], "metadata": md})
    return out


RECORDS = _records()


def _ids(pred: Callable[[dict[str, Any]], bool]) -> set[str]:
    return {r["id"] for r in RECORDS if pred(r["metadata"])}


FILTER_CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("$eq", {"genre": {"$eq": "drama"}}, _ids(lambda m: m["genre"] == "drama")),
    ("$eq-bare", {"genre": "comedy"}, _ids(lambda m: m["genre"] == "comedy")),
    ("$ne", {"genre": {"$ne": "drama"}}, _ids(lambda m: m["genre"] != "drama")),
    ("$gt", {"year": {"$gt": 2015}}, _ids(lambda m: m["year"] > 2015)),
    ("$gte", {"year": {"$gte": 2015}}, _ids(lambda m: m["year"] >= 2015)),
    ("$lt", {"rating": {"$lt": 1.5}}, _ids(lambda m: m["rating"] < 1.5)),
    ("$lte", {"rating": {"$lte": 1.5}}, _ids(lambda m: m["rating"] <= 1.5)),
    ("$in", {"genre": {"$in": ["action", "horror"]}}, _ids(lambda m: m["genre"] in ("action", "horror"))),
    ("$in-list-field", {"tags": {"$in": ["t1"]}}, _ids(lambda m: "t1" in m["tags"])),
    ("$nin", {"genre": {"$nin": ["action", "horror"]}},
     _ids(lambda m: m["genre"] not in ("action", "horror"))),
    ("$exists-true", {"opt": {"$exists": True}}, _ids(lambda m: "opt" in m)),
    ("$exists-false", {"opt": {"$exists": False}}, _ids(lambda m: "opt" not in m)),
    ("$eq-bool", {"flag": {"$eq": True}}, _ids(lambda m: m["flag"] is True)),
    ("$and", {"$and": [{"genre": {"$eq": "drama"}}, {"year": {"$gte": 2008}}]},
     _ids(lambda m: m["genre"] == "drama" and m["year"] >= 2008)),
    ("$or", {"$or": [{"genre": {"$eq": "drama"}}, {"rating": {"$gt": 5}}]},
     _ids(lambda m: m["genre"] == "drama" or m["rating"] > 5)),
]


@pytest.fixture(scope="module")
def movies(make_index: Callable[..., Any]) -> Any:
    idx = make_index("movies")
    resp = idx.upsert(vectors=RECORDS, namespace="films")
    assert _get(resp, "upserted_count") == len(RECORDS)
    return idx


# -- control plane --------------------------------------------------------------


def test_create_describe_list(pc: Pinecone, server: RunningServer) -> None:
    pc.create_index(name="ctl-basic", dimension=8, metric="euclidean",
                    spec=ServerlessSpec(cloud="aws", region="us-east-1"), tags={"team": "search"})
    desc = pc.describe_index("ctl-basic")
    assert desc.name == "ctl-basic"
    assert desc.dimension == 8
    assert desc.metric == "euclidean"
    assert desc.host == f"{server.url}/index/ctl-basic"
    assert _get(_get(desc, "status"), "ready") is True
    assert _tags(desc) == {"team": "search"}
    assert "ctl-basic" in [i.name for i in pc.list_indexes()]
    assert pc.has_index("ctl-basic")
    assert not pc.has_index("ctl-absent")


def test_create_duplicate_is_conflict(pc: Pinecone) -> None:
    pc.create_index(name="ctl-dupe", dimension=2, spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    with pytest.raises(PineconeApiException) as err:
        pc.create_index(name="ctl-dupe", dimension=2, spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    assert _status(err.value) == 409


def test_configure_and_deletion_protection(pc: Pinecone) -> None:
    pc.create_index(name="ctl-protect", dimension=2, spec=ServerlessSpec(cloud="aws", region="us-east-1"),
                    deletion_protection="enabled", tags={"a": "1", "b": "2"})
    with pytest.raises(ForbiddenException):
        pc.delete_index("ctl-protect")
    pc.configure_index("ctl-protect", deletion_protection="disabled", tags={"a": "", "c": "3"})
    desc = pc.describe_index("ctl-protect")
    assert _get(desc, "deletion_protection") == "disabled"
    assert _tags(desc) == {"b": "2", "c": "3"}
    pc.delete_index("ctl-protect")
    assert "ctl-protect" not in [i.name for i in pc.list_indexes()]
    with pytest.raises(NotFoundException):
        pc.describe_index("ctl-protect")


@pytest.mark.skipif(SDK_MAJOR < 10, reason="schema/deployment is the 10.x (2026-07) surface")
def test_sdk10_schema_and_deployment(pc: Pinecone, server: RunningServer) -> None:
    model = pc.indexes.create(
        name="native",
        schema={"fields": {"_values": {"type": "dense_vector", "dimension": 3, "metric": "cosine"}}},
        deployment={"deployment_type": "managed", "cloud": "aws", "region": "us-west-2"})
    assert model.schema.fields["_values"].dimension == 3
    assert (model.deployment.cloud, model.deployment.region) == ("aws", "us-west-2")
    assert model.host == f"{server.url}/index/native"
    idx = pc.index("native")
    idx.upsert(vectors=[{"id": "n1", "values": [0.0, 1.0, 0.0]}, {"id": "n2", "values": [1.0, 0.0, 0.0]}])
    assert [m.id for m in idx.query(vector=[0.1, 0.9, 0.0], top_k=2).matches] == ["n1", "n2"]
    assert [i.name for i in pc.indexes.list()].count("native") == 1
    pc.indexes.delete("native")
    assert not pc.indexes.exists("native")


def test_missing_index_is_not_found(pc: Pinecone, server: RunningServer) -> None:
    with pytest.raises(NotFoundException):
        pc.describe_index("no-such-index")
    with pytest.raises(NotFoundException):
        pc.delete_index("no-such-index")
    with pytest.raises(NotFoundException):
        pc.Index(host=server.index_host("no-such-index")).query(vector=[0.0] * DIM, top_k=1)


def test_bad_api_key_is_unauthorized(server: RunningServer) -> None:
    bad = Pinecone(api_key="wrong-key", host=server.url)
    with pytest.raises(UnauthorizedException):
        bad.list_indexes()
    with pytest.raises(UnauthorizedException):
        bad.Index(host=server.index_host("movies")).describe_index_stats()


# -- data plane -----------------------------------------------------------------


def test_index_by_name_and_by_host_reach_the_same_data(pc: Pinecone, movies: Any) -> None:
    by_host = pc.Index(host=pc.describe_index("movies").host)
    by_name = pc.Index(name="movies")
    assert by_host.describe_index_stats().total_vector_count == len(RECORDS)
    assert by_name.describe_index_stats().total_vector_count == len(RECORDS)


@pytest.mark.parametrize(("op", "flt", "expected"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_query_filter_operators(movies: Any, op: str, flt: dict[str, Any], expected: set[str]) -> None:
    assert expected and len(expected) < len(RECORDS), f"{op}: the case must select a proper subset"
    res = movies.query(vector=[1.0, 0.5, 0.0, 2.0], top_k=100, namespace="films", filter=flt,
                       include_metadata=True)
    got = {m.id for m in res.matches}
    assert got == expected
    scores = [m.score for m in res.matches]
    assert scores == sorted(scores, reverse=True)


def test_query_returns_values_and_metadata(movies: Any) -> None:
    res = movies.query(vector=RECORDS[5]["values"], top_k=3, namespace="films", include_values=True,
                       include_metadata=True)
    assert len(res.matches) == 3
    assert all(len(m.values) == DIM for m in res.matches)
    assert all(m.metadata["genre"] in GENRES for m in res.matches)
    plain = movies.query(vector=RECORDS[5]["values"], top_k=3, namespace="films")
    assert [m.id for m in plain.matches] == [m.id for m in res.matches]
    assert not plain.matches[0].values
    assert not plain.matches[0].metadata


def test_query_by_id(movies: Any) -> None:
    res = movies.query(id="r07", top_k=1, namespace="films")
    assert [m.id for m in res.matches] == ["r07"]
    assert res.matches[0].score == pytest.approx(1.0, abs=1e-5)  # cosine with itself
    assert movies.query(id="absent", top_k=1, namespace="films").matches == []


def test_fetch(movies: Any) -> None:
    res = movies.fetch(ids=["r01", "r02", "absent"], namespace="films")
    assert set(res.vectors) == {"r01", "r02"}
    assert list(res.vectors["r01"].values) == RECORDS[1]["values"]
    assert res.vectors["r02"].metadata == RECORDS[2]["metadata"]


def test_describe_index_stats_with_and_without_filter(movies: Any) -> None:
    stats = movies.describe_index_stats()
    assert stats.total_vector_count == len(RECORDS)
    assert stats.dimension == DIM
    assert stats.namespaces["films"].vector_count == len(RECORDS)
    filtered = movies.describe_index_stats(filter={"genre": {"$eq": "drama"}})
    assert filtered.total_vector_count == len(_ids(lambda m: m["genre"] == "drama"))


def test_list_paginated_several_pages(make_index: Callable[..., Any]) -> None:
    idx = make_index("listing")
    ids = [f"doc#{i:03d}" for i in range(23)] + [f"other-{i}" for i in range(5)]
    idx.upsert(vectors=[{"id": i, "values": [0.1, 0.2, 0.3, 0.4]} for i in ids], namespace="p")
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = idx.list_paginated(prefix="doc#", limit=5, pagination_token=token, namespace="p")
        seen.extend(v.id for v in page.vectors)
        pages += 1
        token = page.pagination.next if page.pagination else None
        if not token:
            break
        assert pages < 20
    assert pages == 5
    assert seen == sorted(i for i in ids if i.startswith("doc#"))


def test_update_values_and_metadata(make_index: Callable[..., Any]) -> None:
    idx = make_index("updates")
    idx.upsert(vectors=[{"id": "u1", "values": [1.0, 0.0, 0.0, 0.0], "metadata": {"a": 1, "b": "x"}}])
    idx.update(id="u1", values=[0.0, 1.0, 0.0, 0.0])
    idx.update(id="u1", set_metadata={"b": "y", "c": True})
    v = idx.fetch(ids=["u1"]).vectors["u1"]
    assert list(v.values) == [0.0, 1.0, 0.0, 0.0]
    assert v.metadata == {"a": 1, "b": "y", "c": True}


def test_delete_by_ids_filter_and_all(make_index: Callable[..., Any]) -> None:
    idx = make_index("deletes")
    idx.upsert(vectors=RECORDS, namespace="d")
    idx.delete(ids=["r00", "r01"], namespace="d")
    assert idx.describe_index_stats().namespaces["d"].vector_count == len(RECORDS) - 2
    idx.delete(filter={"genre": {"$eq": "action"}}, namespace="d")
    left = {m.id for m in idx.query(vector=[1.0, 0, 0, 0], top_k=100, namespace="d").matches}
    assert left == {r["id"] for r in RECORDS[2:] if r["metadata"]["genre"] != "action"}
    idx.delete(delete_all=True, namespace="d")
    assert idx.describe_index_stats().total_vector_count == 0


def test_sparse_index(make_index: Callable[..., Any], pc: Pinecone) -> None:
    idx = make_index("sparse-idx", vector_type="sparse", metric="dotproduct")
    assert pc.describe_index("sparse-idx").vector_type == "sparse"
    idx.upsert(vectors=[
        {"id": "s1", "sparse_values": {"indices": [1, 5, 9], "values": [0.5, 1.0, 2.0]},
         "metadata": {"k": "a"}},
        {"id": "s2", "sparse_values": {"indices": [5, 7], "values": [3.0, 1.0]}, "metadata": {"k": "b"}},
        {"id": "s3", "sparse_values": {"indices": [100], "values": [9.0]}},
    ])
    res = idx.query(sparse_vector={"indices": [5, 9], "values": [1.0, 2.0]}, top_k=3, include_values=True)
    assert [m.id for m in res.matches][:2] == ["s1", "s2"]
    assert res.matches[0].score == pytest.approx(1.0 * 1.0 + 2.0 * 2.0)
    assert res.matches[1].score == pytest.approx(3.0)
    assert list(res.matches[0].sparse_values.indices) == [1, 5, 9]
    fetched = idx.fetch(ids=["s1"]).vectors["s1"]
    assert list(fetched.sparse_values.indices) == [1, 5, 9]
    assert fetched.metadata == {"k": "a"}
    filtered = idx.query(sparse_vector={"indices": [5], "values": [1.0]}, top_k=3, filter={"k": "a"})
    assert [m.id for m in filtered.matches] == ["s1"]


def test_hybrid_dense_and_sparse_with_metadata(make_index: Callable[..., Any]) -> None:
    idx = make_index("hybrid", metric="dotproduct")
    idx.upsert(vectors=[
        {"id": "h1", "values": [1.0, 0.0, 0.0, 0.0], "sparse_values": {"indices": [3], "values": [2.0]},
         "metadata": {"lang": "en"}},
        {"id": "h2", "values": [0.0, 1.0, 0.0, 0.0], "sparse_values": {"indices": [4], "values": [5.0]},
         "metadata": {"lang": "fr"}},
    ], namespace="hy")
    res = idx.query(vector=[1.0, 0.5, 0.0, 0.0], sparse_vector={"indices": [4], "values": [1.0]}, top_k=2,
                    namespace="hy", include_metadata=True)
    assert [m.id for m in res.matches] == ["h2", "h1"]
    assert res.matches[0].score == pytest.approx(0.5 + 5.0)
    assert res.matches[1].score == pytest.approx(1.0)
    assert res.matches[0].metadata == {"lang": "fr"}
    only_en = idx.query(vector=[1.0, 0.5, 0.0, 0.0], sparse_vector={"indices": [4], "values": [1.0]}, top_k=2,
                        namespace="hy", filter={"lang": {"$eq": "en"}})
    assert [m.id for m in only_en.matches] == ["h1"]


def test_namespaces_list_describe_delete(make_index: Callable[..., Any]) -> None:
    idx = make_index("spaces")
    for ns, n in (("alpha", 3), ("beta", 2), ("", 1)):
        idx.upsert(vectors=[{"id": f"{ns}{i}", "values": [0.1, 0.2, 0.3, float(i)]} for i in range(n)],
                   namespace=ns)
    listed = idx.list_namespaces_paginated()
    counts = {n.name: int(n.record_count) for n in listed.namespaces}
    assert counts == {"alpha": 3, "beta": 2, "__default__": 1}
    first = idx.list_namespaces_paginated(limit=2)
    assert len(first.namespaces) == 2 and first.pagination is not None
    rest = idx.list_namespaces_paginated(limit=2, pagination_token=first.pagination.next)
    assert {n.name for n in first.namespaces} | {n.name for n in rest.namespaces} == set(counts)
    assert int(idx.describe_namespace(namespace="alpha").record_count) == 3
    idx.delete_namespace(namespace="alpha")
    with pytest.raises(NotFoundException):
        idx.describe_namespace(namespace="alpha")
    assert "alpha" not in idx.describe_index_stats().namespaces


def test_bad_dimension_is_bad_request(movies: Any) -> None:
    with pytest.raises(PineconeApiException) as err:
        movies.upsert(vectors=[{"id": "bad", "values": [1.0, 2.0]}], namespace="films")
    assert _status(err.value) == 400
    assert "dimension" in str(err.value)
    with pytest.raises(PineconeApiException) as err:
        movies.query(vector=[1.0, 2.0, 3.0], top_k=1, namespace="films")
    assert _status(err.value) == 400


def test_concurrent_clients(make_index: Callable[..., Any], server: RunningServer) -> None:
    make_index("busy")
    host = server.index_host("busy")
    errors: list[BaseException] = []
    per_thread = 40

    def worker(t: int) -> None:
        try:
            client = Pinecone(api_key=API_KEY, host=server.url).Index(host=host)
            for i in range(per_thread):
                client.upsert(vectors=[{"id": f"t{t}-{i}-{j}", "values": [float(t), float(i), float(j), 1.0],
                                        "metadata": {"t": t}} for j in range(5)], namespace="c")
                res = client.query(vector=[float(t), 1.0, 1.0, 1.0], top_k=5, namespace="c",
                                   filter={"t": {"$eq": t}})
                assert res.matches and all(m.id.startswith(f"t{t}-") for m in res.matches)
                if i % 4 == 3:
                    client.delete(ids=[f"t{t}-{i}-0"], namespace="c")
                    assert f"t{t}-{i}-0" not in client.fetch(ids=[f"t{t}-{i}-0"], namespace="c").vectors
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors[:3]
    stats = Pinecone(api_key=API_KEY, host=server.url).Index(host=host).describe_index_stats()
    assert stats.total_vector_count == 4 * (per_thread * 5 - per_thread // 4)


# -- raw wire shapes (httpx) ----------------------------------------------------


@pytest.mark.parametrize("header",
                         ["X-Pinecone-API-Version", "x-pinecone-api-version", "X-PINECONE-API-VERSION"])
def test_version_header_is_case_insensitive(http: httpx.Client, movies: Any, header: str) -> None:
    old = http.get("/indexes/movies", headers={header: "2025-04"})
    assert old.status_code == 200
    assert old.headers["x-pinecone-api-version"] == "2025-04"
    body = old.json()
    assert body["dimension"] == DIM and body["metric"] == "cosine" and body["vector_type"] == "dense"
    assert body["spec"] == {"serverless": {"cloud": "aws", "region": "us-east-1"}}
    assert "schema" not in body and "deployment" not in body

    new = http.get("/indexes/movies", headers={header: "2026-07"}).json()
    assert new["schema"] == {
        "fields": {"_values": {"type": "dense_vector", "dimension": DIM, "metric": "cosine"}}}
    assert new["deployment"] == {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
    assert "dimension" not in new and "spec" not in new
    assert new["status"] == {"ready": True, "state": "Ready"}
    assert new["host"] == body["host"]


def test_version_shapes(http: httpx.Client, movies: Any) -> None:
    v10 = http.get("/indexes/movies", headers={"X-Pinecone-API-Version": "2025-10"}).json()
    assert v10["spec"]["serverless"]["read_capacity"]["mode"] == "OnDemand"
    newest = http.get("/indexes/movies")
    assert newest.headers["x-pinecone-api-version"] == "2026-07" and "schema" in newest.json()
    listed = http.get("/indexes", headers={"X-Pinecone-API-Version": "2025-04"}).json()
    assert all("spec" in i for i in listed["indexes"])
    bad = http.get("/indexes/movies", headers={"X-Pinecone-API-Version": "latest-please"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_ARGUMENT"
    # the data plane follows the version too: matchedRecords appeared in 2025-10
    upd = {"id": "r03", "setMetadata": {"seen": True}, "namespace": "films"}
    assert http.post("/index/movies/vectors/update", json=upd,
                     headers={"X-Pinecone-API-Version": "2025-04"}).json() == {}
    assert http.post("/index/movies/vectors/update", json=upd,
                     headers={"X-Pinecone-API-Version": "2025-10"}).json() == {"matchedRecords": 1}


def test_create_in_2026_07_shape(http: httpx.Client, server: RunningServer) -> None:
    body = {"name": "schema-made", "schema": {"fields": {
        "_values": {"type": "dense_vector", "dimension": 3, "metric": "dotproduct"},
        "_sparse_values": {"type": "sparse_vector"}}},
        "deployment": {"deployment_type": "managed", "cloud": "gcp", "region": "europe-west4"},
        "tags": {"env": "test"}}
    r = http.post("/indexes", json=body, headers={"X-Pinecone-API-Version": "2026-07"})
    assert r.status_code == 201, r.text
    assert r.json()["schema"] == body["schema"]
    old = http.get("/indexes/schema-made", headers={"X-Pinecone-API-Version": "2025-04"}).json()
    assert (old["dimension"], old["metric"], old["vector_type"]) == (3, "dotproduct", "dense")
    assert old["spec"]["serverless"] == {"cloud": "gcp", "region": "europe-west4"}
    bad = http.post("/indexes", json={"schema": {"fields": {"body": {"type": "string"}}}})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_ARGUMENT"


def test_error_shapes(http: httpx.Client, server: RunningServer, movies: Any) -> None:
    nf = http.get("/indexes/absent-index")
    assert nf.status_code == 404
    assert nf.json()["status"] == 404 and nf.json()["error"]["code"] == "NOT_FOUND"
    assert set(nf.json()) == {"error", "status"} and "absent-index" in nf.json()["error"]["message"]
    dnf = http.post("/index/absent-index/query", json={"topK": 1, "vector": [0.0] * DIM})
    assert dnf.status_code == 404
    assert dnf.json()["code"] == 5 and dnf.json()["details"] == []
    # request validation is a 400 in Pinecone's shapes, never FastAPI's 422
    inv = http.post("/indexes", json={"name": "x-y", "dimension": "wide", "spec": {}})
    assert inv.status_code == 400 and inv.json()["error"]["code"] == "INVALID_ARGUMENT"
    lim = http.get("/index/movies/vectors/list", params={"limit": "lots", "namespace": "films"})
    assert lim.status_code == 400 and lim.json()["code"] == 3
    typo = http.post("/index/movies/query", json={"topK": 1, "vector": [0.0] * DIM, "filters": {}})
    assert typo.status_code == 400 and "filters" in typo.json()["message"]
    junk = http.post("/index/movies/query", content=b"{not json",
                     headers={"Content-Type": "application/json"})
    assert junk.status_code == 400 and junk.json()["code"] == 3


def test_auth_raw(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/health").status_code == 200
    for path, data_plane in (("/indexes", False), ("/index/movies/describe_index_stats", True)):
        missing = httpx.get(f"{server.url}{path}")
        assert missing.status_code == 401
        body = missing.json()
        assert (body["code"] == 16) if data_plane else (body["error"]["code"] == "UNAUTHENTICATED")
        wrong = httpx.get(f"{server.url}{path}", headers={"api-key": API_KEY + "x"})
        assert wrong.status_code == 401
        assert API_KEY not in wrong.text
        ok = httpx.get(f"{server.url}{path}", headers={"API-KEY": API_KEY})
        assert ok.status_code == 200


def test_host_header_routing(server: RunningServer, movies: Any) -> None:
    headers = {"Api-Key": API_KEY, "Host": f"movies.localhost:{server.port}"}
    r = httpx.get(f"{server.url}/describe_index_stats", headers=headers)
    assert r.status_code == 200 and r.json()["totalVectorCount"] == len(RECORDS)
    r = httpx.get(f"{server.url}/describe_index_stats", headers={"Api-Key": API_KEY})
    assert r.status_code == 404 and r.json()["code"] == 5


def test_fetch_by_metadata_and_update_by_filter(http: httpx.Client, make_index: Callable[..., Any]) -> None:
    idx = make_index("by-meta")
    idx.upsert(vectors=RECORDS, namespace="m")
    expected = sorted(_ids(lambda m: m["genre"] in ("drama", "comedy")))
    got: list[str] = []
    token = None
    for _ in range(10):
        body: dict[str, Any] = {"namespace": "m", "filter": {"genre": {"$in": ["drama", "comedy"]}},
                                "limit": 5}
        if token:
            body["paginationToken"] = token
        page = http.post("/index/by-meta/vectors/fetch_by_metadata", json=body).json()
        got.extend(page["vectors"])
        token = page.get("pagination", {}).get("next")
        if not token:
            break
    assert sorted(got) == expected and len(got) == len(set(got))
    upd = http.post("/index/by-meta/vectors/update", json={
        "namespace": "m", "filter": {"genre": "horror"}, "setMetadata": {"scary": True}})
    assert upd.json() == {"matchedRecords": len(_ids(lambda m: m["genre"] == "horror"))}
    scary = idx.query(vector=[1.0, 0, 0, 0], top_k=100, namespace="m", filter={"scary": True})
    assert {m.id for m in scary.matches} == _ids(lambda m: m["genre"] == "horror")


def test_openapi_docs(server: RunningServer) -> None:
    spec = httpx.get(f"{server.url}/openapi.json", headers={"Api-Key": API_KEY}).json()
    assert "/indexes" in spec["paths"] and "/index/{index_name}/query" in spec["paths"]
    assert httpx.get(f"{server.url}/docs", headers={"Api-Key": API_KEY}).status_code == 200


def test_docs_need_the_key(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/openapi.json").status_code == 401
    assert httpx.get(f"{server.url}/docs").status_code == 401


def test_public_url_sets_index_hosts(tmp_path: Any) -> None:
    with start_server(tmp_path / "data", public_url="https://vectors.example.com/") as srv:
        r = httpx.post(f"{srv.url}/indexes", json={"name": "pub", "dimension": 2, "spec": {
            "serverless": {"cloud": "aws", "region": "us-east-1"}}})
        assert r.status_code == 201, r.text
        assert r.json()["host"] == "https://vectors.example.com/index/pub"
        # without a key configured, no header is needed
        assert httpx.get(f"{srv.url}/index/pub/describe_index_stats").json()["totalVectorCount"] == 0


def test_refuses_remote_bind_without_key(tmp_path: Any) -> None:
    from spruce.server import UnsafeBind, is_loopback, run_server

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("example.com")
    with pytest.raises(UnsafeBind):
        run_server(tmp_path / "data", host="0.0.0.0", port=free_port())
    assert not (tmp_path / "data").exists()  # refused before touching the data folder
