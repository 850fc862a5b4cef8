"""Chroma, the real engine: on a folder (PersistentClient) and behind a real ``chroma run`` server
(HttpClient). The full circle spruce index → archive → Chroma → archive → new index through the
CLI, exact for what Chroma holds, either way; sparse values and metadata Chroma cannot hold are
refused before anything is written, and converted by the documented rule with --allow-lossy;
Chroma's merging upsert never leaves stale keys; one collection per namespace, names encoded
reversibly or refused before anything is written; a kill -9 mid-copy (either way), then a resume
that neither skips nor repeats; a resume refused when the collection changed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

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
    records,
)
from spruce.errors import InvalidArgument
from spruce.sources.base import LossyCopy

chromadb = pytest.importorskip("chromadb", reason="pip install 'spruce[connectors]'")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server (``chroma run``) on a free port; yields ``HOST:PORT``."""
    exe = Path(sys.executable).parent / "chroma"
    if not exe.exists():
        pytest.skip(f"no chroma executable next to {sys.executable} (pip install 'spruce[connectors]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path_factory.mktemp("chroma-server")
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen([str(exe), "run", "--path", str(root / "db"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (root / "server.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "the Chroma server never answered its heartbeat"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _http(server: str) -> object:
    host, port = server.split(":")
    return chromadb.HttpClient(host=host, port=int(port))


def _uri(path: Path, name: str) -> str:
    return f"chroma://{path}?collection={name}".replace("chroma://", "chroma:///", 1).replace("////", "///")


def test_full_circle_is_exact_and_idiomatic(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    uri = _uri(tmp_path / "chroma", "films")
    with spruce.Client(data_dir=data) as c:
        fill(c, "src", sparse=False)
    for args in (("export", "src", str(tmp_path / "arc1")), ("restore", str(tmp_path / "arc1"), uri),
                 ("export", uri, str(tmp_path / "arc2")), ("restore", str(tmp_path / "arc2"), "back"),
                 ("verify", str(tmp_path / "arc2"))):
        p = cli(*args, data=data)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    with spruce.Client(data_dir=data) as c:
        assert_same(c, "src", "back")
    col = chromadb.PersistentClient(path=str(tmp_path / "chroma")).get_collection("films")
    assert col.count() == 26 * len(NAMESPACES) and col.metadata["hnsw:space"] == "ip"
    got = col.get(ids=["007"], include=["metadatas", "embeddings"])
    assert got["metadatas"][0]["__id__"] == "007" and "__namespace__" not in got["metadatas"][0]
    assert len(got["embeddings"][0]) == DIM


def test_losses_are_refused_then_converted(tmp_path: Path) -> None:
    uri = _uri(tmp_path / "chroma", "lossy")
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        fill(c, "src")  # sparse values: Chroma holds none
        c.create_index("md", dimension=2, metric="euclidean")
        c.Index("md").upsert([{"id": "a", "values": [1, 2], "metadata": {"tags": [], "ok": "x"}}])
        with pytest.raises(LossyCopy, match="sparse values dropped"):
            c.copy("src", uri)
        with pytest.raises(LossyCopy, match="JSON text"):
            c.copy("md", _uri(tmp_path / "chroma", "lossy-md"))
        names = [col.name for col in chromadb.PersistentClient(path=str(tmp_path / "chroma")).list_collections()]
        assert names == []  # nothing was written
        job = c.copy("md", _uri(tmp_path / "chroma", "lossy-md"), allow_lossy=True)
        assert job.status == "Completed" and any("JSON text" in n for n in job.notes)
        back = c.copy(_uri(tmp_path / "chroma", "lossy-md"), "md-back")
        assert back.status == "Completed"
        assert c.Index("md-back").fetch(["a"]).vectors["a"].metadata == {"tags": "[]", "ok": "x"}
        # a cosine collection: Chroma returns the values rounded, not bit for bit
        c.create_index("cos", dimension=DIM, metric="cosine")
        values = np.random.default_rng(5).standard_normal((200, DIM)).astype(np.float32)
        c.Index("cos").upsert([(f"v{i}", v.tolist()) for i, v in enumerate(values)])
        with pytest.raises(LossyCopy, match="cosine collection come back rounded"):
            c.copy("cos", _uri(tmp_path / "chroma", "cos"))
        assert c.copy("cos", _uri(tmp_path / "chroma", "cos"), allow_lossy=True).status == "Completed"
        assert c.copy(_uri(tmp_path / "chroma", "cos"), "cos-back").status == "Completed"
        got = c.Index("cos-back").fetch([f"v{i}" for i in range(200)]).vectors
        back = np.asarray([got[f"v{i}"].values for i in range(200)], np.float32)
        assert np.allclose(back, values, rtol=1e-6, atol=0) and back.tobytes() != values.tobytes()


def test_a_write_replaces_records_whole(tmp_path: Path) -> None:
    uri = _uri(tmp_path / "chroma", "replace")
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        c.create_index("v1", dimension=2, metric="euclidean")
        c.Index("v1").upsert([{"id": "a", "values": [1, 2], "metadata": {"old": 1, "keep": "x"}}])
        c.copy("v1", uri)
        c.create_index("v2", dimension=2, metric="euclidean")
        c.Index("v2").upsert([{"id": "a", "values": [3, 4], "metadata": {"keep": "y"}}])
        c.copy("v2", uri)  # Chroma's upsert would keep "old": spruce replaces the record
        c.copy(uri, "back")
        rec = c.Index("back").fetch(["a"]).vectors["a"]
        assert rec.metadata == {"keep": "y"} and list(rec.values) == [3.0, 4.0]


def test_full_circle_over_http_is_exact_and_idiomatic(tmp_path: Path, server: str) -> None:
    data = str(tmp_path / "data")
    uri = f"chroma://{server}/films"
    arc1, arc2 = str(tmp_path / "arc1"), str(tmp_path / "arc2")
    with spruce.Client(data_dir=data) as c:
        fill(c, "src")  # sparse values: Chroma holds none
        fill(c, "dense", sparse=False)  # the same records without them: what Chroma can hold
        want = c.Index("src").fetch(["007"], namespace="films").vectors["007"]
    assert cli("export", "src", arc1, data=data).returncode == 0
    p = cli("restore", arc1, uri, data=data)
    assert p.returncode != 0 and "sparse values dropped" in p.stderr, (p.stdout, p.stderr)
    assert "films" not in [col.name for col in _http(server).list_collections()]  # nothing was written
    for args in (("restore", arc1, uri, "--allow-lossy"), ("export", uri, arc2), ("restore", arc2, "back"),
                 ("verify", arc2)):
        p = cli(*args, data=data)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    with spruce.Client(data_dir=data) as c:
        assert_same(c, "dense", "back")
    manifest = json.loads((tmp_path / "arc2" / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "chroma" and {n["name"] for n in manifest["namespaces"]} == set(NAMESPACES)
    # what a Chroma user sees through the server: ids, __id__, embeddings, the metric, a query
    col = _http(server).get_collection("films")
    assert col.count() == (len(IDS) + 20) * len(NAMESPACES) and col.metadata["hnsw:space"] == "ip"
    got = col.get(ids=["007"], include=["metadatas", "embeddings"])
    assert got["metadatas"][0]["__id__"] == "007" and "__namespace__" not in got["metadatas"][0]
    assert len(got["embeddings"][0]) == DIM
    hit = col.query(query_embeddings=[list(want.values)], n_results=1, where={"__namespace__": "films"},
                    include=["metadatas", "embeddings"])
    assert hit["metadatas"][0][0]["__id__"] == "007" and hit["metadatas"][0][0]["title"] == "record 007"
    assert np.asarray(hit["embeddings"][0][0], np.float32).tobytes() == np.asarray(want.values, np.float32).tobytes()


def test_one_collection_per_namespace(tmp_path: Path) -> None:
    path = tmp_path / "chroma"
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        fill(c, "src", metric="euclidean", sparse=False)
        c.Index("src").upsert(vectors=records("default", sparse=False), namespace="default")  # not the default one
        assert c.copy("src", _uri(path, "per_{namespace}")).status == "Completed"
        assert c.copy(_uri(path, "per_{namespace}"), "back").status == "Completed"
        assert_same(c, "src", "back")
        assert c.Index("back").describe_index_stats().namespaces.keys() == {*NAMESPACES, "default"}
        # a namespace Chroma cannot name ("x_tv_" ends with "_"): refused before anything is written,
        # by the pass that finds losses and, with --allow-lossy, when the target's counts are taken
        c.create_index("odd", dimension=2, metric="euclidean")
        for ns in ("", "tv_"):
            c.Index("odd").upsert([{"id": "a", "values": [1, 2]}], namespace=ns)
        for lossy in (False, True):
            with pytest.raises(InvalidArgument, match=r"namespace 'tv_' would be the collection 'x_tv_'"):
                c.copy("odd", _uri(path, "x_{namespace}"), allow_lossy=lossy)
    client = chromadb.PersistentClient(path=str(path))
    names = sorted(col.name for col in client.list_collections())
    # the namespace as it can be written: letters, digits and _ as they are, every other byte -XX
    assert names == ["per_-64efault", "per_-C3-96dd-20namespace-21", "per_default", "per_films"]
    films = client.get_collection("per_films")
    assert films.count() == len(IDS) + 20 and films.metadata["hnsw:space"] == "l2"
    got = films.get(ids=["007"], include=["metadatas"])  # the original id, no namespace tag
    assert got["metadatas"][0]["__id__"] == "007" and "__namespace__" not in got["metadatas"][0]


def test_kill_midway_then_resume_is_exact(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    uri = _uri(tmp_path / "chroma", "big")
    with spruce.Client(data_dir=data) as c:
        big(c, "src", 30_000)
    job = kill_midway(data, ["copy", "src", uri])
    p = cli("jobs", "resume", job, data=data)
    assert p.returncode == 0, p.stderr
    assert chromadb.PersistentClient(path=str(tmp_path / "chroma")).get_collection("big").count() == 30_000
    # and the other way: a kill while paging the collection, then a resume from the stored
    # (offset, last id): it neither skips (the index ends exact) nor starts again (at most the
    # page in flight is read twice)
    job = kill_midway(data, ["copy", uri, "back"], after=5000)
    p = cli("jobs", "resume", job, data=data)
    assert p.returncode == 0, p.stderr
    state = json.loads(cli("jobs", "show", job, "--json", data=data).stdout)
    assert state["status"] == "Completed" and 30_000 <= state["recordsImported"] <= 31_000, state
    with spruce.Client(data_dir=data) as c:
        assert c.Index("back").describe_index_stats().total_vector_count == 30_000
        assert_same(c, "src", "back")


def test_resume_is_refused_when_the_target_changed(tmp_path: Path, server: str) -> None:
    data = str(tmp_path / "data")
    uri = f"chroma://{server}/changed"
    with spruce.Client(data_dir=data) as c:
        big(c, "src", 30_000)
    job = kill_midway(data, ["copy", "src", uri])
    # someone writes to the collection meanwhile
    _http(server).get_collection("changed").add(ids=["mine"], embeddings=[[0.0] * DIM], metadatas=[{"by": "me"}])
    assert_resume_refused(job, data)


def test_a_read_never_skips_when_the_collection_changes(tmp_path: Path) -> None:
    """The cursor is (offset, last id): updates in place and new records leave it valid; records
    deleted before it make the read start again (replays, never skips)."""
    from spruce.records import RecordBatch
    from spruce.sources.base import Shape
    from spruce.sources.chroma import ChromaConnector

    ids = [f"r{i:02d}" for i in range(30)]
    with ChromaConnector(_uri(tmp_path / "chroma", "paged")) as conn:
        conn.ensure(Shape(dimension=2, metric="euclidean"))
        conn.write("", RecordBatch(ids=ids, values=np.ones((30, 2), np.float32), metadata=[{"v": 1}] * 30))
        first = conn.read("", None, 10)
        assert first.batch.ids == ids[:10]
        col = chromadb.PersistentClient(path=str(tmp_path / "chroma")).get_collection("paged")
        col.update(ids=["r09"], metadatas=[{"v": 2, "__id__": "r09"}])  # in place: the cursor holds
        col.add(ids=["new"], embeddings=[[0.0, 0.0]], metadatas=[{"__id__": "new"}])  # appended
        second = conn.read("", first.cursor, 10)
        assert second.batch.ids == ids[10:20] and second.cursor["restarts"] == 0
        col.delete(ids=["r03", "r15"])  # before the cursor: r20 moved to offset 18
        third = conn.read("", second.cursor, 10)
        assert third.batch.ids[0] == "r00" and third.cursor["restarts"] == 1  # read again from the start
        seen = set(first.batch.ids + second.batch.ids)
        for page in conn.pages("", third.cursor):
            seen.update(page.batch.ids)
        seen.update(third.batch.ids)
        assert seen >= {*ids, "new"} - {"r03", "r15"}


def test_a_page_larger_than_the_servers_batch_limit(tmp_path: Path, server: str) -> None:
    from spruce.records import RecordBatch
    from spruce.sources.base import Shape
    from spruce.sources.chroma import ChromaConnector

    client = _http(server)
    n = client.get_max_batch_size() + 500
    ids = [f"r{i:05d}" for i in range(n)]
    values = np.random.default_rng(1).standard_normal((n, 2)).astype(np.float32)
    with ChromaConnector(f"chroma://{server}/wide") as conn:
        conn.ensure(Shape(dimension=2, metric="dotproduct"))
        conn.write("", RecordBatch(ids=ids, values=values, metadata=[None] * n))  # one call, split by the server's limit
        assert conn.total() == n and conn.existing("", ids) == n
        got = conn.read("", None, n)
    assert got.batch.ids == ids and got.batch.values.tobytes() == values.tobytes()


def test_a_collection_made_the_chroma_way_is_read(tmp_path: Path, server: str) -> None:
    """No spruce fields: the Chroma id is the id, everything is the default namespace, and the
    metric comes from the collection's configuration."""
    col = _http(server).create_collection("native", embedding_function=None, configuration={"hnsw": {"space": "cosine"}})
    values = np.random.default_rng(7).standard_normal((3, DIM)).astype(np.float32)
    col.add(ids=["a", "b", "c"], embeddings=values, metadatas=[{"genre": "noir", "year": 1946}, None, {"n": 1.5}])
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        assert c.copy(f"chroma://{server}/native", "native").status == "Completed"
        idx = c.Index("native")
        assert c.describe_index("native").metric == "cosine"
        assert idx.describe_index_stats().namespaces.keys() == {""}
        got = idx.fetch(["a", "b", "c"]).vectors
    assert got["a"].metadata == {"genre": "noir", "year": 1946} and not got["b"].metadata
    assert got["c"].metadata == {"n": 1.5}
    assert np.asarray([got[i].values for i in "abc"], np.float32).tobytes() == col.get(
        ids=["a", "b", "c"], include=["embeddings"])["embeddings"].astype(np.float32).tobytes()


def test_documents_travel_in_metadata_and_come_back(tmp_path: Path, server: str) -> None:
    """A Chroma document is read into metadata ``__document__`` (never dropped), written back as
    the document, and a record replaced without one loses its old document (no merge)."""
    col = _http(server).create_collection("docs", embedding_function=None, metadata={"hnsw:space": "ip"})
    col.add(ids=["a", "b"], embeddings=[[0.5] * DIM, [0.25] * DIM], documents=["the text of a", None],
            metadatas=[{"k": 1}, {"k": 2}])
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        c.copy(f"chroma://{server}/docs", "docs")
        got = c.Index("docs").fetch(["a", "b"]).vectors
        assert got["a"].metadata == {"k": 1, "__document__": "the text of a"} and got["b"].metadata == {"k": 2}
        c.copy("docs", f"chroma://{server}/docs-again")
        again = _http(server).get_collection("docs-again").get(include=["documents", "metadatas"])
        assert dict(zip(again["ids"], again["documents"], strict=True)) == {"a": "the text of a", "b": None}
        assert all("__document__" not in md for md in again["metadatas"])
        c.Index("docs").delete(ids=["a"])
        c.Index("docs").upsert([("a", [0.5] * DIM, {"k": 1})])  # a now has no document
        c.copy("docs", f"chroma://{server}/docs-again")
    again = _http(server).get_collection("docs-again").get(ids=["a"], include=["documents"])
    assert again["documents"] == [None]
