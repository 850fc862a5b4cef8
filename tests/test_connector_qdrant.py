"""Qdrant, in the real engine's local mode (qdrant-client ``path=``): the full circle
spruce index → archive → Qdrant → archive → new index, exact; what a Qdrant user sees; the
cosine loss refused before anything is written; a kill -9 mid-copy, then a resume."""

from __future__ import annotations

import json

import pytest

import spruce
from connector_data import (
    DIM,
    IDS,
    NAMESPACES,
    assert_resume_refused,
    assert_same,
    big,
    cli,
    fill,
    kill_midway,
)
from spruce.errors import InvalidArgument
from spruce.sources.base import ConnectorError
from spruce.sources.copy import start_copy

qdrant_client = pytest.importorskip("qdrant_client", reason="pip install 'spruce[connectors]'")


def test_full_circle_is_exact_and_idiomatic(tmp_path):
    data = str(tmp_path / "data")
    qd = tmp_path / "qdrant"
    uri = f"qdrant://{qd}?collection=films".replace("qdrant://", "qdrant:///", 1).replace("qdrant:////", "qdrant:///")
    with spruce.Client(data_dir=data) as c:
        fill(c, "src")
    for args in (("export", "src", str(tmp_path / "arc1")), ("restore", str(tmp_path / "arc1"), uri),
                 ("export", uri, str(tmp_path / "arc2")), ("restore", str(tmp_path / "arc2"), "back"),
                 ("verify", str(tmp_path / "arc2"))):
        p = cli(*args, data=data)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    with spruce.Client(data_dir=data) as c:
        assert_same(c, "src", "back")
    manifest = json.loads((tmp_path / "arc2" / "manifest.json").read_text())
    assert manifest["consistency"] == "live" and {n["name"] for n in manifest["namespaces"]} == set(NAMESPACES)
    # what a Qdrant user sees: the original id in __id__, the namespace tag, an unnamed dense vector
    client = qdrant_client.QdrantClient(path=str(qd))
    try:
        points, _ = client.scroll("films", limit=1000, with_payload=True, with_vectors=True)
        assert len(points) == sum(len(IDS) + 20 for _ in NAMESPACES)
        by_key = {(p.payload.get("__namespace__", ""), p.payload["__id__"]): p for p in points}
        assert ("", "007") in by_key and ("films", "007") in by_key  # one id, two namespaces, no collision
        assert by_key[("", "007")].id != by_key[("films", "007")].id
        uuid_point = by_key[("", "6ba7b811-9dad-11d1-80b4-00c04fd430c8")]
        assert uuid_point.id == "6ba7b811-9dad-11d1-80b4-00c04fd430c8"  # a UUID id is kept as the point id
        assert len(by_key[("", "007")].vector[""]) == DIM and "sparse" in by_key[("", "ünïcødé ☃")].vector
        assert by_key[("", "007")].payload["title"] == "record 007"
    finally:
        client.close()


def test_cosine_loss_is_refused_before_anything_is_written(tmp_path):
    data = str(tmp_path / "data")
    uri = f"qdrant:///{tmp_path}/qd?collection=c".replace("////", "///")
    with spruce.Client(data_dir=data) as c:
        fill(c, "cos", metric="cosine", sparse=False)
        job = c.jobs.wait(start_copy(c.engine, "cos", uri, manager=c.jobs).id)
        assert job.status == "Failed" and "normalized" in job.error and "nothing was written" in job.error
    client = qdrant_client.QdrantClient(path=f"{tmp_path}/qd")
    try:
        assert not client.collection_exists("c")
    finally:
        client.close()
    with spruce.Client(data_dir=data) as c:
        job = start_copy(c.engine, "cos", uri, allow_lossy=True, sync=True, manager=c.jobs)
        assert job.status == "Completed", job.error
        assert any("normalized" in n for n in job.notes)


def test_a_password_in_the_uri_is_refused(tmp_path):
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        fill(c, "src")
        with pytest.raises(InvalidArgument, match="QDRANT_API_KEY"):
            start_copy(c.engine, "src", "qdrant://user:hunter2@127.0.0.1:6333/films", manager=c.jobs)
        with pytest.raises(ConnectorError, match=r"127\.0\.0\.1:9/films"):  # nothing listens there: refused up front
            start_copy(c.engine, "src", "qdrant://127.0.0.1:9/films", manager=c.jobs)
        with pytest.raises(InvalidArgument, match="collection"):
            start_copy(c.engine, "src", f"qdrant:///{tmp_path}/qd", manager=c.jobs)
        assert c.jobs.list() == []  # no job was created for any of them


def test_kill_midway_then_resume_is_exact(tmp_path):
    # 12k records: three of the local client's 4,096-record pages, so the kill lands mid-copy; local
    # mode stores points one by one in Python, so more would only slow the suite down
    data = str(tmp_path / "data")
    uri = f"qdrant:///{tmp_path}/qd?collection=big".replace("////", "///")
    with spruce.Client(data_dir=data) as c:
        big(c, "src", 12_000)
    job = kill_midway(data, ["copy", "src", uri])
    p = cli("jobs", "resume", job, data=data)
    assert p.returncode == 0, p.stderr
    p = cli("copy", uri, "back", data=data)
    assert p.returncode == 0, p.stderr
    with spruce.Client(data_dir=data) as c:
        assert c.Index("back").describe_index_stats().total_vector_count == 12_000
        assert_same(c, "src", "back")


def test_resume_is_refused_when_the_target_changed(tmp_path):
    data = str(tmp_path / "data")
    uri = f"qdrant:///{tmp_path}/qd?collection=big".replace("////", "///")
    with spruce.Client(data_dir=data) as c:
        big(c, "src", 12_000)
    job = kill_midway(data, ["copy", "src", uri])
    client = qdrant_client.QdrantClient(path=f"{tmp_path}/qd")  # someone writes to the target meanwhile
    try:
        from qdrant_client import models

        client.upsert("big", points=[models.PointStruct(id=1, vector=[0.0] * DIM, payload={"__id__": "mine"})])
    finally:
        client.close()
    assert_resume_refused(job, data)


def test_one_collection_per_namespace(tmp_path):
    uri = f"qdrant:///{tmp_path}/qd?collection=films_{{namespace}}".replace("////", "///")
    with spruce.Client(data_dir=str(tmp_path / "data")) as c:
        fill(c, "src")
        c.copy("src", uri)
        c.copy(uri, "back")
        assert_same(c, "src", "back")
        client = qdrant_client.QdrantClient(path=f"{tmp_path}/qd")
        try:
            names = sorted(col.name for col in client.get_collections().collections)
        finally:
            client.close()
        assert names == sorted(f"films_{ns or 'default'}" for ns in NAMESPACES)
        # a namespace literally named "default" would read back as the default one: refused first
        c.create_index("odd", dimension=DIM, metric="dotproduct")
        c.Index("odd").upsert([("a", [0.5] * DIM)], namespace="default")
        c.Index("odd").upsert([("b", [0.5] * DIM)])
        other = uri.replace("films_", "odd_")
        with pytest.raises(InvalidArgument, match="named 'default'"):
            c.copy("odd", other)
        assert [j.status for j in c.jobs.list()] == ["Completed", "Completed"]  # none for the refused copy
        client = qdrant_client.QdrantClient(path=f"{tmp_path}/qd")
        try:
            assert not [col.name for col in client.get_collections().collections if col.name.startswith("odd_")]
        finally:
            client.close()
