"""Milvus, the real engine (Milvus Lite 2.5, the native one): the full circle spruce index →
archive → Milvus → archive → new index through the CLI, exact, sparse values included; the
collection as a pymilvus user sees it; one collection per namespace, names encoded reversibly;
exact counts after upserts; a kill -9 mid-copy (either way), then a resume; a resume refused when
the collection changed; a file another process holds refused in one line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
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
    kill_reading_then_resume,
    records,
)
from spruce.errors import InvalidArgument
from spruce.records import RecordBatch
from spruce.sources.base import Shape

pymilvus = pytest.importorskip("pymilvus", reason="pip install 'spruce[connectors]'")
pytest.importorskip("milvus_lite", reason="pip install 'spruce[connectors]'")

from spruce.sources.milvus import (  # noqa: E402
    MilvusConnector,
    decode_namespace,
    encode_namespace,
    wait_for_servers,
)


def _uri(db: Path, collection: str) -> str:
    return f"milvus://{db}?collection={collection}".replace("milvus://", "milvus:///", 1).replace("////", "///")


@contextmanager
def _lite(db: Path) -> Iterator[Any]:
    """pymilvus's own client on the file, as a Milvus user opens it: once a killed copy's server
    has exited (else the new one finds the file locked); stopped after, so the next spruce process
    can open the file (Milvus Lite serves one process at a time)."""
    from milvus_lite.server_manager import server_manager_instance

    wait_for_servers(os.path.realpath(db))
    client = pymilvus.MilvusClient(str(db))
    try:
        yield client
    finally:
        client.close()
        server_manager_instance.release_server(str(db))


def _rows(client: Any, collection: str) -> int:
    return int(client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])


def test_full_circle_is_exact_and_idiomatic(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    db = tmp_path / "milvus.db"
    uri = _uri(db, "films")
    with spruce.Client(data_dir=data) as c:
        fill(c, "src")
    for args in (("export", "src", str(tmp_path / "arc1")), ("restore", str(tmp_path / "arc1"), uri),
                 ("export", uri, str(tmp_path / "arc2")), ("restore", str(tmp_path / "arc2"), "back"),
                 ("verify", str(tmp_path / "arc2"))):
        p = cli(*args, data=data)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    with spruce.Client(data_dir=data) as c:
        assert_same(c, "src", "back")
    with _lite(db) as client:
        fields = {f["name"]: f for f in client.describe_collection("films")["fields"]}
        assert int(fields["vector"]["params"]["dim"]) == DIM and "sparse" in fields and "metadata" in fields
        rows = client.query("films", filter='id == "007"', output_fields=["namespace", "id"])
        assert sorted(r["namespace"] for r in rows) == sorted(ns or "__default__" for ns in NAMESPACES)


def test_one_collection_per_namespace(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    uri = _uri(db, "per_{namespace}")
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        fill(c, "src")
        c.copy("src", uri)
        c.copy(uri, "back")
        assert_same(c, "src", "back")
        want = c.Index("src").fetch(["007"], namespace="Ödd namespace!").vectors["007"]
    with _lite(db) as client:  # the connectors closed: this process holds the file no more
        names = sorted(client.list_collections())
        assert names == ["per__xC3_x96dd_x20namespace_x21", "per_default", "per_films"]
        for name in names:
            assert _rows(client, name) == len(IDS) + 20
        row = client.get("per__xC3_x96dd_x20namespace_x21", ids=["007"], output_fields=["vector", "namespace"])[0]
        assert row["namespace"] == "Ödd namespace!"  # the primary key is the id itself here
        assert np.asarray(row["vector"], np.float32).tobytes() == np.asarray(want.values, np.float32).tobytes()


def test_namespace_names_reverse_exactly(tmp_path: Path) -> None:
    awkward = ["", "default", "_x64efault", "007", "a_b", "a_x5Fb", "_", "Ödd namespace!", "☃", "x" * 40]
    for leading in (False, True):
        names = [encode_namespace(ns, leading=leading) for ns in awkward]
        assert len(set(names)) == len(awkward)
        for ns, name in zip(awkward, names, strict=True):
            assert decode_namespace(name, leading=leading) == ns
            assert all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in name)
        assert not any(n[0].isdigit() for n in names) or not leading
    assert decode_namespace("a_b") is None and decode_namespace("_x41") is None  # written by someone else
    # on the engine: the names that collide naively, a leading digit with nothing before it
    nss = ["", "default", "_x64efault", "007"]
    db = tmp_path / "m.db"
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        c.create_index("src", dimension=DIM, metric="euclidean")
        for i, ns in enumerate(nss):
            c.Index("src").upsert(vectors=records(ns, sparse=False, n_extra=i), namespace=ns)
        c.copy("src", _uri(db, "{namespace}"))
        c.copy(_uri(db, "{namespace}"), "back")
        assert_same(c, "src", "back")
    with _lite(db) as client:
        assert sorted(client.list_collections()) == ["_x3007", "_x5Fx64efault", "_x64efault", "default"]


def test_a_namespace_too_long_for_a_collection_name_is_refused_before_writing(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        c.create_index("src", dimension=DIM, metric="euclidean")
        c.Index("src").upsert(vectors=records("", sparse=False), namespace="")
        c.Index("src").upsert(vectors=records("n" * 300, sparse=False), namespace="n" * 300)
        with pytest.raises(InvalidArgument, match=r"namespace 'n{20}.*255"):
            c.copy("src", _uri(db, "per_{namespace}"))
    with _lite(db) as client:
        assert client.list_collections() == []


def test_counts_are_exact_after_upserts(tmp_path: Path) -> None:
    """count, total and existing (the resume check's inputs) right after each write, upserts of
    ids already there included, on both layouts."""
    rng = np.random.default_rng(0)

    def batch(ids: list[str]) -> RecordBatch:
        return RecordBatch(ids=ids, values=rng.standard_normal((len(ids), DIM)).astype(np.float32),
                           metadata=[{"i": i} for i in range(len(ids))])

    for collection in ("one", "per_{namespace}"):
        with MilvusConnector(_uri(tmp_path / "m.db", collection)) as m:
            m.ensure(Shape(dimension=DIM, metric="euclidean"))
            assert (m.total(), m.count(""), m.namespaces()) == (0, 0, [])
            m.write("", batch([f"a{i}" for i in range(300)]))
            m.write("", batch([f"a{i}" for i in range(100, 400)]))  # 200 of them again
            m.write("films", batch([f"a{i}" for i in range(50)]))  # the same ids, another namespace
            m.write("films", batch([f"a{i}" for i in range(50)]))
            assert (m.count(""), m.count("films"), m.count("other"), m.total()) == (400, 50, 0, 450)
            assert m.namespaces() == ["", "films"]
            assert m.existing("", ["a0", "a399", "a400", "zz"]) == 2
            assert m.existing("films", ["a0", "a49", "a50"]) == 2 and m.existing("other", ["a0"]) == 0
        with _lite(tmp_path / "m.db") as client:  # what pymilvus counts agrees
            names = ["one"] if collection == "one" else ["per_default", "per_films"]
            assert sum(_rows(client, n) for n in names) == 450


def test_kill_midway_then_resume_is_exact(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    db = tmp_path / "m.db"
    uri = _uri(db, "big")
    with spruce.Client(data_dir=data) as c:
        big(c, "src", 30_000)
    job = kill_midway(data, ["copy", "src", uri])
    p = cli("jobs", "resume", job, data=data)  # at once: the killed process's server may still be exiting
    assert p.returncode == 0, p.stderr
    with _lite(db) as client:
        assert _rows(client, "big") == 30_000
        assert client.get_collection_stats("big")["row_count"] == 30_000
    # and the other way: a kill while reading the collection, then a resume after the last key read
    kill_reading_then_resume(data, uri, 30_000)


def test_resume_is_refused_when_the_target_changed(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    db = tmp_path / "m.db"
    with spruce.Client(data_dir=data) as c:
        big(c, "src", 30_000)
    job = kill_midway(data, ["copy", "src", _uri(db, "big")])
    with _lite(db) as client:  # someone writes to the collection meanwhile
        client.upsert("big", [{"pk": "mine", "namespace": "__default__", "id": "mine", "vector": [0.0] * DIM,
                               "metadata": {}}])
    assert_resume_refused(job, data)


def test_a_file_another_process_holds_is_refused(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    db = tmp_path / "m.db"
    with spruce.Client(data_dir=data) as c:
        fill(c, "src", sparse=False)
    with _lite(db):  # this test's process serves the file now
        p = cli("copy", "src", _uri(db, "films"), data=data)
    assert p.returncode != 0 and "open in another process" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and [ln for ln in p.stderr.splitlines() if "open in another" in ln] == \
        [f"error: {db} is open in another process, and Milvus Lite serves a file to one process at a time: close it "
         "there, or copy through a Milvus server"], p.stderr
    assert cli("copy", "src", _uri(db, "films"), data=data).returncode == 0  # and once it is closed, it opens


def test_the_uri_names_a_collection(tmp_path: Path) -> None:
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        fill(c, "src")
        with pytest.raises(InvalidArgument, match="collection"):
            c.copy("src", f"milvus:///{tmp_path}/m.db".replace("////", "///"))
        with pytest.raises(InvalidArgument, match="MILVUS_TOKEN"):
            c.copy("src", "milvus://root:Milvus@127.0.0.1:19530/films")
        for bad in ("no-dashes", "9lives", "two_{namespace}_{namespace}", "x" * 256, "x" * 255 + "{namespace}"):
            with pytest.raises(InvalidArgument, match="collection name"):
                c.copy("src", _uri(tmp_path / "m.db", bad))
        assert c.jobs.list() == []
    with MilvusConnector(_uri(tmp_path / "m.db", "x" * 255)) as m:  # Milvus's longest name
        m.ensure(Shape(dimension=DIM, metric="cosine"))
        assert m.shape() == Shape(dimension=DIM, metric="cosine")
