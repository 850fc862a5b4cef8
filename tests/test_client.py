"""The SDK-shaped surface: responses read like the pinecone SDK's (attributes, keys, to_dict)."""

from __future__ import annotations

import types

import numpy as np
import orjson
import pytest

import spruce
from spruce import models


@pytest.fixture
def idx(tmp_path):
    client = spruce.Client(data_dir=tmp_path / "data")
    client.create_index("sdk", dimension=3, metric="dotproduct")
    index = client.Index("sdk")
    index.upsert([{"id": f"v{i:02d}", "values": [i, 1, 0], "metadata": {"n": i, "kind": "even" if i % 2 == 0 else "odd"}}
                  for i in range(25)])
    yield index
    client.engine.close()


def test_client_is_exported_lazily():
    assert spruce.Client is spruce.client.Client
    with pytest.raises(AttributeError):
        spruce.NoSuchThing  # noqa: B018


def test_fetch_response_access(idx):
    resp = idx.fetch(ids=["v03", "v04", "missing"])
    assert isinstance(resp, models.FetchResponse)
    assert resp.vectors["v03"].values == [3.0, 1.0, 0.0]
    assert resp["vectors"]["v03"]["metadata"] == {"n": 3, "kind": "odd"}
    assert resp.vectors["v04"].id == "v04" and "missing" not in resp.vectors
    assert resp.namespace == resp["namespace"] == ""
    assert resp.get("usage").read_units >= 1 and resp.get("nope", 7) == 7
    assert "vectors" in resp and "nope" not in resp
    with pytest.raises(KeyError):
        resp["nope"]
    d = resp.to_dict()
    assert d["vectors"]["v03"] == {"id": "v03", "values": [3.0, 1.0, 0.0], "sparse_values": None,
                                   "metadata": {"n": 3, "kind": "odd"}}
    orjson.dumps(d)  # plain JSON types all the way down


def test_query_response_access(idx):
    resp = idx.query(vector=[1, 0, 0], top_k=3, include_metadata=True, filter={"kind": "even"})
    assert [m.id for m in resp.matches] == ["v24", "v22", "v20"]
    assert resp["matches"][0]["score"] == pytest.approx(24.0)
    assert resp.matches[0].metadata == {"n": 24, "kind": "even"}
    d = resp.to_dict()
    assert [m["id"] for m in d["matches"]] == ["v24", "v22", "v20"]
    assert d["namespace"] == "" and isinstance(d["matches"][0]["score"], float)
    orjson.dumps(d)


def test_other_responses(idx):
    assert idx.upsert([("new", [0, 0, 1])])["upserted_count"] == 1
    assert idx.update(id="new", set_metadata={"a": "b"}).to_dict() == {"matched_records": 1}
    stats = idx.describe_index_stats()
    assert stats["total_vector_count"] == 26 and stats.namespaces[""].vector_count == 26
    assert stats.to_dict()["namespaces"] == {"": {"vector_count": 26}}
    assert idx.delete(ids=["new"]) == {}


def test_list_is_a_generator_of_pages(idx):
    pages = idx.list(limit=10)
    assert isinstance(pages, types.GeneratorType)
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [x for p in idx.list(prefix="v1") for x in p] == [f"v1{i}" for i in range(10)]
    assert next(idx.list(limit=3)) == ["v00", "v01", "v02"]


def test_list_paginated(idx):
    page = idx.list_paginated(limit=10)
    assert isinstance(page, models.ListResponse)
    assert [v.id for v in page.vectors] == [f"v{i:02d}" for i in range(10)]
    assert page["vectors"][0]["id"] == "v00" and page.namespace == ""
    seen = [v.id for v in page.vectors]
    while page.pagination is not None:
        page = idx.list_paginated(limit=10, pagination_token=page.pagination.next)
        seen += [v.id for v in page.vectors]
    assert seen == [f"v{i:02d}" for i in range(25)]
    assert page.to_dict()["pagination"] is None
    assert idx.list_paginated(prefix="v2", limit=10).to_dict()["vectors"] == [
        {"id": f"v2{i}"} for i in range(5)]


def test_index_models(tmp_path):
    client = spruce.Client(data_dir=tmp_path / "data")
    try:
        model = client.create_index("m", dimension=4, spec={"serverless": {"cloud": "aws", "region": "us-east-1"}})
        assert model["dimension"] == 4 and model.host == "embedded://m"
        assert model.to_dict()["spec"] == {"serverless": {"cloud": "aws", "region": "us-east-1"}}
        assert model.status.ready and model.to_dict()["status"] == {"ready": True, "state": "Ready"}
        listed = client.list_indexes()
        assert listed.names() == ["m"] and listed.indexes[0].name == "m" and listed[0]["metric"] == "cosine"
        idx = client.Index(host=model.host)
        idx.upsert([("a", np.ones(4))])
        assert idx.fetch(["a"]).vectors["a"].values == [1.0] * 4
    finally:
        client.engine.close()


def test_same_folder_shares_one_engine(tmp_path):
    a = spruce.Client(data_dir=tmp_path / "data")
    b = spruce.Client(data_dir=str(tmp_path / "data"))
    try:
        assert a.engine is b.engine
        a.create_index("shared", dimension=2)
        a.Index("shared").upsert([("x", [1, 2])])
        assert b.Index("shared").fetch(["x"]).vectors["x"].values == [1.0, 2.0]
    finally:
        a.engine.close()
