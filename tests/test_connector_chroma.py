"""Chroma, the real engine (PersistentClient on a folder): the full circle spruce index → archive →
Chroma → archive → new index through the CLI, exact for what Chroma holds; sparse values and
metadata Chroma cannot hold are refused before anything is written, and converted by the
documented rule with --allow-lossy; Chroma's merging upsert never leaves stale keys."""

from __future__ import annotations

from pathlib import Path

import pytest

import spruce
from connector_data import DIM, NAMESPACES, assert_same, cli, fill
from spruce.sources.base import LossyCopy

chromadb = pytest.importorskip("chromadb", reason="pip install 'spruce[connectors]'")





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
