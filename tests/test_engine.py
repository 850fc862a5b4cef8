"""Every data operation through ``spruce.Client(data_dir=...)`` and its ``Index``, checked
against numpy reference computations and against Pinecone's documented behaviour."""

from __future__ import annotations

import random
import string

import numpy as np
import pytest

import spruce
from spruce.engine import Index as EngineIndex
from spruce.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ValidationError
from spruce.records import RecordBatch, SparseValues

DIM = 16


@pytest.fixture
def client(tmp_path):
    c = spruce.Client(data_dir=tmp_path / "data")
    yield c
    c.engine.close()


def reopen(client, tmp_path):
    client.engine.close()
    return spruce.Client(data_dir=tmp_path / "data")


def make_records(n: int, dim: int = DIM, seed: int = 0, prefix: str = "id-"):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((n, dim)).astype(np.float32)
    genres = ["drama", "comedy", "action"]
    records = [
        {"id": f"{prefix}{i:04d}", "values": values[i],
         "metadata": {"genre": genres[i % 3], "year": 2000 + i % 25, "tags": [f"t{i % 4}", "all"],
                      "flag": i % 2 == 0}}
        for i in range(n)
    ]
    for i in range(0, n, 5):
        records[i]["metadata"]["rating"] = i % 7 + 0.5
    return records, values


def sparse_of(i: int, rng: np.random.Generator) -> dict:
    idx = rng.choice(1000, size=int(rng.integers(1, 20)), replace=False)
    return {"indices": idx.tolist(), "values": rng.standard_normal(idx.size).astype(np.float32).tolist()}


def sparse_dot(a: dict, b: dict) -> float:
    wa = dict(zip(a["indices"], a["values"], strict=True))
    return float(sum(np.float64(wa[i]) * v for i, v in zip(b["indices"], b["values"], strict=True) if i in wa))


# -- index management ---------------------------------------------------------------------------


def test_index_lifecycle(client, tmp_path):
    model = client.create_index("movies", dimension=DIM, metric="euclidean", tags={"team": "search"})
    assert (model.name, model.dimension, model.metric, model.vector_type) == ("movies", DIM, "euclidean", "dense")
    assert model.status.ready and model.deletion_protection == "disabled" and model.tags == {"team": "search"}
    client.create_index("books", dimension=3)
    assert client.list_indexes().names() == ["books", "movies"]
    assert client.has_index("movies") and not client.has_index("nope")
    assert client.describe_index("movies").metric == "euclidean"
    with pytest.raises(AlreadyExists):
        client.create_index("movies", dimension=DIM)
    with pytest.raises(InvalidArgument):
        client.create_index("Bad_Name", dimension=DIM)
    with pytest.raises(NotFound):
        client.describe_index("nope")
    with pytest.raises(NotFound):
        client.Index("nope").fetch(["a"])

    client.delete_index("books")
    assert not client.has_index("books") and client.list_indexes().names() == ["movies"]
    with pytest.raises(NotFound):
        client.delete_index("books")

    client = reopen(client, tmp_path)
    assert client.describe_index("movies").tags == {"team": "search"}
    client.engine.close()


def test_deletion_protection_and_tags(client, tmp_path):
    client.create_index("keep", dimension=DIM, deletion_protection="enabled", tags={"a": "1", "b": "2"})
    client.Index("keep").upsert([("x", [0.1] * DIM)])
    with pytest.raises(FailedPrecondition):
        client.delete_index("keep")
    assert client.has_index("keep") and len(client.Index("keep").fetch(["x"]).vectors) == 1

    model = client.configure_index("keep", tags={"b": "", "c": "3"})  # "" removes a tag, others merge
    assert model.tags == {"a": "1", "c": "3"}
    assert model.deletion_protection == "enabled"
    with pytest.raises(InvalidArgument):
        client.configure_index("keep", deletion_protection="sometimes")

    client = reopen(client, tmp_path)  # configuration is durable
    assert client.describe_index("keep").tags == {"a": "1", "c": "3"}
    with pytest.raises(FailedPrecondition):
        client.delete_index("keep")
    client.configure_index("keep", deletion_protection="disabled")
    client.delete_index("keep")
    assert not client.has_index("keep")
    client.engine.close()


def test_client_index_wraps_an_engine_index(client):
    client.create_index("x", dimension=DIM)
    idx = client.Index("x")
    assert isinstance(idx._index, EngineIndex) and idx.name == "x"
    assert client.Index(host="embedded://x")._index is idx._index


# -- upsert -------------------------------------------------------------------------------------


def test_upsert_shapes(client):
    from pinecone import SparseValues as PcSparse
    from pinecone import Vector as PcVector

    client.create_index("shapes", dimension=3, metric="dotproduct")
    idx = client.Index("shapes")

    class Obj:
        def __init__(self, id, values, metadata=None):
            self.id, self.values, self.metadata, self.sparse_values = id, values, metadata, None

    resp = idx.upsert([
        {"id": "dict", "values": [1, 2, 3], "metadata": {"k": "d"}},
        {"id": "dict-np", "values": np.array([1, 2, 3], dtype=np.float64)},
        {"id": "camel", "values": [1, 2, 3], "sparseValues": {"indices": [5], "values": [0.5]}},
        ("tuple2", [4, 5, 6]),
        ("tuple3", (7, 8, 9), {"k": "t"}),
        Obj("obj", [1.5, 2.5, 3.5], {"k": "o"}),
        PcVector(id="pc", values=[0.0, 1.0, 0.0], metadata={"k": "p"},
                 sparse_values=PcSparse(indices=[1, 2], values=[0.1, 0.2])),
    ])
    assert resp.upserted_count == 7
    got = idx.fetch(["dict", "dict-np", "camel", "tuple2", "tuple3", "obj", "pc"]).vectors
    assert got["dict"].values == [1, 2, 3] and got["dict"].metadata == {"k": "d"}
    assert got["dict-np"].values == [1, 2, 3] and got["dict-np"].metadata is None
    assert got["camel"].sparse_values.indices == [5] and got["camel"].sparse_values.values == [0.5]
    assert got["tuple2"].values == [4, 5, 6]
    assert got["tuple3"].metadata == {"k": "t"}
    assert got["obj"].values == [1.5, 2.5, 3.5] and got["obj"].metadata == {"k": "o"}
    assert got["pc"].sparse_values.indices == [1, 2]
    np.testing.assert_array_equal(np.float32(got["pc"].sparse_values.values), np.float32([0.1, 0.2]))
    # overwrite replaces the whole record (metadata is not merged on upsert)
    idx.upsert([{"id": "dict", "values": [3, 2, 1]}])
    again = idx.fetch(["dict"]).vectors["dict"]
    assert again.values == [3, 2, 1] and again.metadata is None
    assert idx.describe_index_stats().total_vector_count == 7


@pytest.mark.parametrize("bad_position", [0, 6, 9])
def test_upsert_batch_is_atomic(client, tmp_path, bad_position):
    client.create_index("atomic", dimension=DIM)
    idx = client.Index("atomic")
    records, _ = make_records(10)
    idx.upsert([{"id": "id-0003", "values": [0.25] * DIM, "metadata": {"old": True}}])
    records[bad_position] = {**records[bad_position], "values": [float("nan")] * DIM}
    with pytest.raises(ValidationError) as info:
        idx.upsert(records)
    assert info.value.record == bad_position and f"record {bad_position}" in str(info.value)
    assert info.value.field == "values"

    def check(i):
        assert i.describe_index_stats().total_vector_count == 1
        assert set(i.fetch([r["id"] for r in records]).vectors) == {"id-0003"}
        assert i.fetch(["id-0003"]).vectors["id-0003"].metadata == {"old": True}  # not overwritten
        assert [x for page in i.list() for x in page] == ["id-0003"]

    check(idx)
    client = reopen(client, tmp_path)  # nothing of the failed batch reached the disk either
    check(client.Index("atomic"))
    client.engine.close()


def test_upsert_batch_size_and_columnar_fast_path(client):
    client.create_index("cols", dimension=DIM)
    idx = client.Index("cols")
    records, values = make_records(250)
    assert idx.upsert(records, batch_size=100).upserted_count == 250
    batch = RecordBatch(ids=[f"c{i}" for i in range(5)], values=values[:5].astype(np.float64),
                        metadata=[{"n": i} for i in range(5)])
    assert idx._index.upsert_batch("colns", batch) == 5
    got = idx.fetch(["c0", "c4"], namespace="colns").vectors
    assert np.float32(got["c4"].values).tobytes() == values[4].tobytes() and got["c4"].metadata == {"n": 4}
    bad = RecordBatch(ids=["d0", "d1"], values=np.ones((2, DIM + 1), np.float32))
    with pytest.raises(ValidationError):
        idx._index.upsert_batch("colns", bad)
    assert idx.describe_index_stats().namespaces["colns"].vector_count == 5


def test_caller_mutation_cannot_change_stored_records(client):
    client.create_index("alias", dimension=3)
    idx = client.Index("alias")
    vals = np.array([1, 2, 3], dtype=np.float32)
    tags = ["a"]
    idx.upsert([{"id": "a", "values": vals, "metadata": {"tags": tags}}])
    vals[0] = 100
    tags.append("b")
    got = idx.fetch(["a"]).vectors["a"]
    assert got.values == [1, 2, 3] and got.metadata == {"tags": ["a"]}
    got.metadata["tags"].append("c")  # nor can editing a response
    got.metadata["x"] = 1
    q = idx.query(vector=[1, 2, 3], top_k=1, include_metadata=True).matches[0]
    assert q.metadata == {"tags": ["a"]}
    q.metadata["tags"].append("z")
    assert idx.fetch(["a"]).vectors["a"].metadata == {"tags": ["a"]}
    assert idx.query(vector=[1, 2, 3], top_k=1, filter={"tags": "c"}).matches == []


# -- fetch --------------------------------------------------------------------------------------


def test_fetch_limits_and_missing_ids(client):
    client.create_index("f", dimension=DIM)
    idx = client.Index("f")
    records, values = make_records(20)
    idx.upsert(records)
    resp = idx.fetch(["id-0001", "missing", "id-0019"])
    assert set(resp.vectors) == {"id-0001", "id-0019"}
    assert np.float32(resp.vectors["id-0019"].values).tobytes() == values[19].tobytes()
    assert resp.vectors["id-0001"].metadata == records[1]["metadata"]
    assert len(idx.fetch([f"x{i}" for i in range(1000)]).vectors) == 0
    with pytest.raises(InvalidArgument) as info:
        idx.fetch([f"x{i}" for i in range(1001)])
    assert "1000" in str(info.value)
    with pytest.raises(InvalidArgument):
        idx.fetch("id-0001")  # a bare string is not a list of ids
    assert idx.fetch(["id-0001"], namespace="other").vectors == {}


# -- query --------------------------------------------------------------------------------------


def reference_scores(values: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    v, q = values.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        return v @ q / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))
    if metric == "dotproduct":
        return v @ q
    return ((v - q) ** 2).sum(axis=1)  # squared euclidean distance


def check_ranking(matches, ref: np.ndarray, ids: list[str], ascending: bool, top_k: int, tol: float = 1e-4):
    pos = {rid: i for i, rid in enumerate(ids)}
    got = [m.id for m in matches]
    assert len(got) == min(top_k, len(ids)) and len(set(got)) == len(got)
    scores = np.array([m.score for m in matches])
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(scores, ref[[pos[g] for g in got]], rtol=0, atol=tol * scale)
    assert np.all(np.diff(scores) >= -tol * scale) if ascending else np.all(np.diff(scores) <= tol * scale)
    rest = np.setdiff1d(np.arange(len(ids)), [pos[g] for g in got])
    if rest.size:  # nothing left out is better than the worst match returned
        if ascending:
            assert ref[rest].min() >= scores.max() - tol * scale
        else:
            assert ref[rest].max() <= scores.min() + tol * scale


@pytest.mark.parametrize("metric", ["cosine", "dotproduct", "euclidean"])
def test_query_scores_match_numpy(client, metric):
    client.create_index("q", dimension=DIM, metric=metric)
    idx = client.Index("q")
    records, values = make_records(400)
    idx.upsert(records)
    ids = [r["id"] for r in records]
    rng = np.random.default_rng(1)
    for _ in range(5):
        q = rng.standard_normal(DIM).astype(np.float32)
        ref = reference_scores(values, q, metric)
        for top_k in (1, 17, 400, 10_000):
            resp = idx.query(vector=q.tolist(), top_k=top_k)
            check_ranking(resp.matches, ref, ids, metric == "euclidean", top_k)
    # euclidean is the SQUARED distance: a record's distance to itself is 0 and it ranks first
    if metric == "euclidean":
        m = idx.query(vector=values[7], top_k=2).matches
        assert m[0].id == "id-0007" and m[0].score == pytest.approx(0.0, abs=1e-4)
        d2 = float(((values[7].astype(np.float64) - values[int(m[1].id[3:])]) ** 2).sum())
        assert m[1].score == pytest.approx(d2, rel=1e-4)


def test_query_by_id_equals_query_by_vector(client):
    client.create_index("byid", dimension=DIM, metric="cosine")
    idx = client.Index("byid")
    records, values = make_records(100)
    idx.upsert(records)
    by_id = idx.query(id="id-0042", top_k=5)
    by_vec = idx.query(vector=values[42], top_k=5)
    assert [(m.id, m.score) for m in by_id.matches] == [(m.id, m.score) for m in by_vec.matches]
    assert by_id.matches[0].id == "id-0042" and by_id.matches[0].score == pytest.approx(1.0, abs=1e-5)
    assert idx.query(id="nope", top_k=5).matches == []
    with pytest.raises(InvalidArgument):
        idx.query(id="id-0001", vector=values[1], top_k=5)
    with pytest.raises(InvalidArgument):
        idx.query(top_k=5)
    with pytest.raises(ValidationError):
        idx.query(vector=[1.0] * (DIM + 1), top_k=5)


def test_top_k_bounds(client):
    client.create_index("k", dimension=DIM)
    idx = client.Index("k")
    records, values = make_records(30)
    idx.upsert(records)
    for bad in (0, -1, 10_001, 1.5, True, "3", None):
        with pytest.raises(InvalidArgument) as info:
            idx.query(vector=values[0], top_k=bad)
        assert "top_k" in str(info.value)
    assert len(idx.query(vector=values[0], top_k=10_000).matches) == 30
    assert len(idx.query(vector=values[0], top_k=1).matches) == 1
    assert idx.query(vector=values[0], top_k=5, namespace="empty").matches == []


def test_query_filter_values_and_metadata(client):
    client.create_index("fv", dimension=DIM, metric="dotproduct")
    idx = client.Index("fv")
    records, values = make_records(300)
    idx.upsert(records)
    q = np.random.default_rng(3).standard_normal(DIM).astype(np.float32)
    flt = {"$and": [{"genre": {"$in": ["drama", "action"]}}, {"year": {"$gte": 2010}}, {"tags": "t1"}]}
    keep = [i for i, r in enumerate(records) if r["metadata"]["genre"] in ("drama", "action")
            and r["metadata"]["year"] >= 2010 and "t1" in r["metadata"]["tags"]]
    assert 0 < len(keep) < 300
    ref = reference_scores(values[keep], q, "dotproduct")
    resp = idx.query(vector=q, top_k=1000, filter=flt, include_values=True, include_metadata=True)
    check_ranking(resp.matches, ref, [records[i]["id"] for i in keep], False, 1000)
    for m in resp.matches:
        i = int(m.id[3:])
        assert np.float32(m.values).tobytes() == values[i].tobytes()  # bit-exact float32
        assert m.metadata == records[i]["metadata"]
    plain = idx.query(vector=q, top_k=3)
    assert all(m.values == [] and m.metadata is None and m.sparse_values is None for m in plain.matches)
    assert idx.query(vector=q, top_k=3, filter={"genre": "horror"}).matches == []
    with pytest.raises(InvalidArgument):
        idx.query(vector=q, top_k=3, filter={"genre": {"$regex": "d.*"}})


def test_sparse_index_query(client):
    client.create_index("sp", vector_type="sparse")
    model = client.describe_index("sp")
    assert (model.vector_type, model.metric, model.dimension) == ("sparse", "dotproduct", None)
    idx = client.Index("sp")
    rng = np.random.default_rng(5)
    sparse = [sparse_of(i, rng) for i in range(200)]
    idx.upsert([{"id": f"s{i:03d}", "sparse_values": sv, "metadata": {"i": i}} for i, sv in enumerate(sparse)])
    with pytest.raises(ValidationError):
        idx.upsert([{"id": "dense", "values": [1.0, 2.0]}])
    q = {"indices": list(range(0, 1000, 3)), "values": rng.standard_normal(334).astype(np.float32).tolist()}
    ref = np.array([sparse_dot(sv, q) for sv in sparse])
    resp = idx.query(sparse_vector=q, top_k=15, include_values=True)
    check_ranking(resp.matches, ref, [f"s{i:03d}" for i in range(200)], False, 15)
    top = resp.matches[0]
    assert top.values == [] and top.sparse_values.indices == sparse[int(top.id[1:])]["indices"]
    # query by id uses the record's sparse vector
    by_id = idx.query(id="s007", top_k=1)
    self_score = sparse_dot(sparse[7], sparse[7])
    assert by_id.matches[0].score >= self_score - 1e-4 * max(1, self_score)
    with pytest.raises(InvalidArgument):
        idx.query(vector=[1.0, 2.0], top_k=3)
    filtered = idx.query(sparse_vector=q, top_k=200, filter={"i": {"$lt": 10}})
    assert sorted(m.id for m in filtered.matches) == [f"s{i:03d}" for i in range(10)]


def test_hybrid_query(client):
    client.create_index("hy", dimension=DIM, metric="dotproduct")
    idx = client.Index("hy")
    rng = np.random.default_rng(9)
    records, values = make_records(150)
    sparse = [sparse_of(i, rng) for i in range(150)]
    idx.upsert([{**r, "sparse_values": sv} for r, sv in zip(records, sparse, strict=True)])
    qd = rng.standard_normal(DIM).astype(np.float32)
    qs = {"indices": list(range(0, 1000, 2)), "values": rng.standard_normal(500).astype(np.float32).tolist()}
    ref = reference_scores(values, qd, "dotproduct") + np.array([sparse_dot(sv, qs) for sv in sparse])
    resp = idx.query(vector=qd, sparse_vector=qs, top_k=20)
    check_ranking(resp.matches, ref, [r["id"] for r in records], False, 20)
    # a sparse vector needs a dotproduct index
    client.create_index("cos", dimension=DIM)
    client.Index("cos").upsert(records[:3])
    with pytest.raises(InvalidArgument):
        client.Index("cos").query(vector=qd, sparse_vector=qs, top_k=2)


# -- update -------------------------------------------------------------------------------------


def test_update(client, tmp_path):
    client.create_index("up", dimension=3, metric="dotproduct")
    idx = client.Index("up")
    idx.upsert([{"id": "a", "values": [1, 2, 3], "metadata": {"genre": "drama", "year": 2000}},
                {"id": "b", "values": [1, 1, 1]}])
    assert idx.update(id="a", set_metadata={"year": 2020, "new": "x"}).matched_records == 1
    a = idx.fetch(["a"]).vectors["a"]
    assert a.metadata == {"genre": "drama", "year": 2020, "new": "x"} and a.values == [1, 2, 3]
    idx.update(id="a", values=[3, 2, 1])
    idx.update(id="a", sparse_values={"indices": [4], "values": [2.0]})
    a = idx.fetch(["a"]).vectors["a"]
    assert a.values == [3, 2, 1] and a.sparse_values.indices == [4]
    assert a.metadata == {"genre": "drama", "year": 2020, "new": "x"}
    idx.update(id="b", set_metadata={"k": "v"})  # a record without metadata gets some
    assert idx.fetch(["b"]).vectors["b"].metadata == {"k": "v"}
    # the search structures follow the update
    assert idx.query(vector=[1, 0, 0], top_k=1).matches[0].id == "a"
    assert [m.id for m in idx.query(vector=[1, 0, 0], top_k=2, filter={"year": 2020}).matches] == ["a"]
    with pytest.raises(NotFound):
        idx.update(id="missing", values=[1, 2, 3])
    with pytest.raises(NotFound):
        idx.update(id="a", values=[1, 2, 3], namespace="other")
    with pytest.raises(ValidationError):
        idx.update(id="a", values=[1, 2])
    with pytest.raises(ValidationError):
        idx.update(id="a", set_metadata={"bad": None})
    assert idx.fetch(["a"]).vectors["a"].values == [3, 2, 1]  # failed updates changed nothing
    client = reopen(client, tmp_path)
    a = client.Index("up").fetch(["a"]).vectors["a"]
    assert a.values == [3, 2, 1] and a.metadata == {"genre": "drama", "year": 2020, "new": "x"}
    client.engine.close()


# -- delete -------------------------------------------------------------------------------------


def test_delete(client, tmp_path):
    client.create_index("del", dimension=DIM)
    idx = client.Index("del")
    records, values = make_records(60)
    idx.upsert(records)
    idx.upsert(records[:10], namespace="ns2")
    idx.delete(ids=["id-0000", "id-0001", "not-there"])
    assert idx.describe_index_stats().namespaces[""].vector_count == 58
    assert idx.fetch(["id-0000", "id-0002"]).vectors.keys() == {"id-0002"}
    idx.delete(filter={"genre": "drama"})
    left = [x for page in idx.list() for x in page]
    assert left == sorted(r["id"] for r in records[2:] if r["metadata"]["genre"] != "drama")
    # the search matrix stays consistent after swap-deletes
    for rid in left[:5]:
        assert idx.query(vector=values[int(rid[3:])], top_k=1).matches[0].id == rid
    idx.delete(delete_all=True)
    stats = idx.describe_index_stats()
    assert "" not in stats.namespaces and stats.namespaces["ns2"].vector_count == 10
    for bad in ({}, {"ids": ["a"], "delete_all": True}, {"ids": ["a"], "filter": {"a": 1}}):
        with pytest.raises(InvalidArgument):
            idx.delete(**bad)
    client = reopen(client, tmp_path)
    assert client.Index("del").describe_index_stats().total_vector_count == 10
    client.engine.close()


# -- list ---------------------------------------------------------------------------------------


def test_list_pagination(client):
    client.create_index("ls", dimension=2)
    idx = client.Index("ls")
    rnd = random.Random(4)
    alphabet = string.ascii_letters + string.digits + "-_#é日本"
    ids = sorted({"".join(rnd.choices(alphabet, k=rnd.randint(1, 12))) for _ in range(700)}
                 | {"doc#1", "doc#2", "doc#10", "doc", "doc\U0001f600", "Doc#1"})
    shuffled = ids[:]
    rnd.shuffle(shuffled)
    for start in range(0, len(shuffled), 100):
        idx.upsert([(i, [1.0, 0.0]) for i in shuffled[start:start + 100]])

    pages = list(idx.list(limit=37))
    assert all(len(p) == 37 for p in pages[:-1]) and 0 < len(pages[-1]) <= 37
    flat = [x for p in pages for x in p]
    assert flat == sorted(ids) == ids  # code point order, each id exactly once
    assert [x for p in idx.list() for x in p] == ids  # default page size

    # list_paginated: the token resumes after the last id; writes between pages don't disturb it
    first = idx.list_paginated(limit=50)
    assert [v.id for v in first.vectors] == ids[:50] and first.pagination is not None
    idx.upsert([("\x01early", [1.0, 0.0])])  # sorts before the cursor: not repeated
    idx.delete(ids=[ids[60]])
    second = idx.list_paginated(limit=50, pagination_token=first.pagination.next)
    assert [v.id for v in second.vectors] == [i for i in ids[50:101] if i != ids[60]]

    # prefix
    doc = [x for p in idx.list(prefix="doc", limit=2) for x in p]
    assert doc == sorted(i for i in ids if i.startswith("doc"))
    assert "Doc#1" not in doc
    last = idx.list_paginated(prefix="doc#", limit=10)
    assert [v.id for v in last.vectors] == ["doc#1", "doc#10", "doc#2"] and last.pagination is None
    assert list(idx.list(prefix="zzzzzzzzzzzzz")) == []
    assert list(idx.list(namespace="empty")) == []

    for bad in (0, 1001, -3, True):
        with pytest.raises(InvalidArgument):
            idx.list_paginated(limit=bad)
    with pytest.raises(InvalidArgument):
        idx.list_paginated(pagination_token="not a token!")
    assert len(idx.list_paginated(limit=1000).vectors) == len(ids)  # one added, one deleted


# -- stats and namespaces --------------------------------------------------------------------------


def test_stats_and_namespaces(client):
    client.create_index("ns", dimension=DIM, metric="euclidean")
    idx = client.Index("ns")
    records, _ = make_records(30)
    idx.upsert(records[:10])  # default namespace, by None
    idx.upsert(records[10:15], namespace="__default__")  # ... and by its alias
    idx.upsert(records[:7], namespace="alpha")
    idx.upsert(records[:3], namespace="beta")
    stats = idx.describe_index_stats()
    assert {k: v.vector_count for k, v in stats.namespaces.items()} == {"": 15, "alpha": 7, "beta": 3}
    assert (stats.total_vector_count, stats.dimension, stats.metric) == (25, DIM, "euclidean")
    assert stats.vector_type == "dense"
    fstats = idx.describe_index_stats(filter={"genre": "drama"})
    assert {k: v.vector_count for k, v in fstats.namespaces.items()} == {"": 5, "alpha": 3, "beta": 1}
    assert fstats.total_vector_count == 9
    assert idx.fetch(["id-0012"], namespace="").vectors.keys() == {"id-0012"}
    assert idx.fetch(["id-0012"], namespace="__default__").vectors.keys() == {"id-0012"}
    assert idx.fetch(["id-0012"]).namespace == ""

    listed = {n.name: n.record_count for n in idx.list_namespaces()}
    assert listed == {"__default__": 15, "alpha": 7, "beta": 3}
    page = idx.list_namespaces_paginated(limit=2)
    assert [n.name for n in page.namespaces] == ["__default__", "alpha"] and page.pagination is not None
    page2 = idx.list_namespaces_paginated(limit=2, pagination_token=page.pagination.next)
    assert [n.name for n in page2.namespaces] == ["beta"] and page2.pagination is None
    assert [n.name for n in idx.list_namespaces(prefix="al")] == ["alpha"]
    assert idx.describe_namespace("alpha").record_count == 7
    assert idx.describe_namespace("").name == idx.describe_namespace("__default__").name == "__default__"
    assert idx.describe_namespace("").record_count == 15

    idx.delete_namespace("alpha")
    with pytest.raises(NotFound):
        idx.describe_namespace("alpha")
    with pytest.raises(NotFound):
        idx.delete_namespace("alpha")
    idx.delete_namespace("__default__")
    assert {k: v.vector_count for k, v in idx.describe_index_stats().namespaces.items()} == {"beta": 3}
    with pytest.raises(ValidationError):
        idx.upsert(records[:1], namespace="n" * 513)


@pytest.mark.parametrize(
    "flt",
    [
        {"genre": "drama"},
        {"year": {"$gte": 2010, "$lt": 2020}},
        {"tags": {"$in": ["t1", "t3"]}},
        {"tags": {"$nin": ["t1"]}},
        {"flag": True},
        {"$or": [{"genre": "comedy"}, {"year": {"$lte": 2003}}]},
        {"rating": {"$exists": False}},
        {"rating": {"$gt": 3}},
        {"genre": {"$ne": "action"}},
    ],
    ids=str,
)
def test_one_filter_semantics_for_stats_query_and_delete(client, flt):
    client.create_index("same", dimension=DIM)
    idx = client.Index("same")
    records, values = make_records(200)
    idx.upsert(records)
    counted = idx.describe_index_stats(filter=flt).total_vector_count
    found = {m.id for m in idx.query(vector=values[0], top_k=10_000, filter=flt).matches}
    idx.delete(filter=flt)
    remaining = {x for p in idx.list() for x in p}
    deleted = {r["id"] for r in records} - remaining
    assert 0 < counted < 200
    assert counted == len(found) == len(deleted) and found == deleted
    assert idx.describe_index_stats().total_vector_count == 200 - counted
    assert idx.describe_index_stats(filter=flt).total_vector_count == 0


def test_everything_survives_reopen(client, tmp_path):
    client.create_index("re", dimension=DIM, metric="dotproduct")
    idx = client.Index("re")
    records, values = make_records(120)
    idx.upsert(records, namespace="a")
    idx.upsert(records[:20])
    idx.delete(ids=["id-0005"], namespace="a")
    idx.update(id="id-0006", set_metadata={"genre": "noir"}, namespace="a")
    before = idx.fetch([r["id"] for r in records], namespace="a").to_dict()
    q = idx.query(vector=values[3], top_k=10, namespace="a").to_dict()
    client = reopen(client, tmp_path)
    idx = client.Index("re")
    assert idx.fetch([r["id"] for r in records], namespace="a").to_dict() == before
    assert idx.query(vector=values[3], top_k=10, namespace="a").to_dict() == q
    assert idx.describe_index_stats().namespaces[""].vector_count == 20
    client.engine.close()


def test_memory_loads_on_first_read_and_writes_before_it_land(client, tmp_path):
    """Opening an index does not load it; writes made before the first read (a restore's) are
    all visible once a read loads it, with skip semantics decided by SQLite meanwhile."""
    client.create_index("lazy", dimension=DIM, metric="cosine")
    records, values = make_records(50)
    client.Index("lazy").upsert(records[:30], namespace="a")
    client = reopen(client, tmp_path)
    eng = client.engine.index("lazy")
    assert eng._loaded is False
    batch = RecordBatch(ids=[r["id"] for r in records[20:50]], values=values[20:50],
                        sparse=None, metadata=[{"second": True}] * 30)
    assert eng.upsert_batch("a", batch, on_conflict="skip") == 20  # 20..29 exist already
    assert eng.existing_ids("a", ["id-0000", "id-0049", "nope"]) == ["id-0000", "id-0049"]
    with eng.transaction() as tx:
        tx.upsert("b", batch)
        assert tx.staged == []  # nothing held for memory that is not loaded
    assert eng._loaded is False
    idx = client.Index("lazy")
    got = idx.fetch(["id-0025", "id-0035"], namespace="a").vectors
    assert got["id-0025"].metadata == records[25]["metadata"]  # skipped: the first write stays
    assert got["id-0035"].metadata == {"second": True}
    assert eng._loaded is True
    stats = idx.describe_index_stats()
    assert stats.namespaces["a"].vector_count == 50 and stats.namespaces["b"].vector_count == 30
    top = idx.query(vector=values[40], top_k=1, namespace="b").matches[0]
    assert top.id == "id-0040"
    client.engine.close()


@pytest.mark.parametrize("on_conflict", ["overwrite", "skip"])
def test_one_statement_batch_write_keeps_row_order_and_nulls(client, tmp_path, on_conflict):
    """A batch is written by one SQL statement: an id repeated inside an unvalidated batch
    resolves as it would row by row (the last wins on overwrite, the first on skip), and absent
    metadata or sparse parts next to present ones come back absent, the rest bit for bit."""
    client.create_index("hy", dimension=DIM, metric="dotproduct")
    eng = client.engine.index("hy")
    rng = np.random.default_rng(7)
    values = rng.standard_normal((6, DIM)).astype(np.float32)
    sparse = [SparseValues(np.array([1, 9], np.uint32), np.array([0.5, -2], np.float32)), None,
              SparseValues(np.array([3], np.uint32), np.array([7], np.float32)), None, None,
              SparseValues(np.array([4, 5, 6], np.uint32), np.array([1, 2, 3], np.float32))]
    metadata = [{"n": 0}, None, {"s": "é\u2028\"x\\"}, None, {"n": 4}, {"n": 5}]
    ids = ["a", "b", "c", "d", "a", "e"]  # "a" twice
    n = eng.upsert_batch("ns", RecordBatch(ids=ids, values=values, sparse=sparse, metadata=metadata),
                         on_conflict=on_conflict, validate=False)
    assert n == (5 if on_conflict == "skip" else 6)
    client = reopen(client, tmp_path)  # read back from SQLite, not from memory
    got = client.Index("hy").fetch(["a", "b", "c", "d", "e"], namespace="ns").vectors
    first = 0 if on_conflict == "skip" else 4
    expect = {"a": first, "b": 1, "c": 2, "d": 3, "e": 5}
    for rid, i in expect.items():
        v = got[rid]
        assert np.array_equal(np.asarray(v.values, np.float32).view(np.uint32), values[i].view(np.uint32))
        assert (v.metadata or None) == metadata[i]
        if sparse[i] is None:
            assert v.sparse_values is None
        else:
            assert v.sparse_values.indices == sparse[i].indices.tolist()
            assert v.sparse_values.values == sparse[i].values.tolist()
    client.engine.close()
