"""Restores refuse what is almost certainly a mistake, up front and with nothing written: a folder
of archives, a metric change, a namespace map naming a namespace the archive lacks, a dimension
the archive contradicts. Counts of imported and skipped records are reported apart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import spruce
from serverutil import start_server
from spruce.errors import InvalidArgument
from test_cli import failed, ok, run


@pytest.fixture(scope="module")
def backups(tmp_path_factory) -> Path:
    """``backups/`` holding three archives: a (cosine, 3-d, namespaces "" and "films"), b, c."""
    root = tmp_path_factory.mktemp("refusals")
    with spruce.Client(root / "data") as c:
        c.create_index("src", dimension=3, metric="cosine")
        c.Index("src").upsert([("d1", [1.0, 0.0, 0.0]), ("d2", [0.0, 1.0, 0.0])])
        c.Index("src").upsert([("f1", [0.0, 0.0, 1.0])], namespace="films")
        for name in ("a", "b", "c"):
            assert c.Index("src").export_index(str(root / "backups" / name), sync=True).status == "Completed"
    return root / "backups"


def test_a_folder_of_archives_is_refused_and_listed(tmp_path: Path, backups: Path) -> None:
    with spruce.Client(tmp_path / "data") as c:
        with pytest.raises(InvalidArgument) as err:
            c.Index("new").upsert_from_file(str(backups))
        msg = str(err.value)
        assert "holds 3 archive(s) but no manifest.json of its own" in msg and "a, b, c" in msg
        assert not c.has_index("new") and c.list_imports() == []  # nothing written, no job
    line = failed(run("--data", str(tmp_path / "data"), "restore", str(backups), "new"), "a, b, c")
    assert "restore one of them" in line


def test_a_metric_change_is_refused_unless_allowed(tmp_path: Path, backups: Path) -> None:
    data = tmp_path / "data"
    with spruce.Client(data) as c:
        c.create_index("dst", dimension=3, metric="euclidean")
        with pytest.raises(InvalidArgument, match="metric is cosine but index 'dst' uses euclidean"):
            c.Index("dst").upsert_from_file(str(backups / "a"))
        assert c.Index("dst").describe_index_stats().total_vector_count == 0
    line = failed(run("--data", str(data), "restore", str(backups / "a"), "dst"), "cosine", "euclidean")
    assert "--allow-metric-change" in line
    ok(run("--data", str(data), "restore", str(backups / "a"), "dst", "--allow-metric-change"))
    with spruce.Client(data) as c:
        assert c.Index("dst").describe_index_stats().total_vector_count == 3
        assert c.describe_index("dst").metric == "euclidean"


def test_a_namespace_map_key_the_archive_lacks_is_refused(tmp_path: Path, backups: Path) -> None:
    p = run("--data", str(tmp_path / "data"), "restore", str(backups / "a"), "new", "--namespace-map", "movies=x")
    line = failed(p, "'movies'")
    assert "'__default__', 'films'" in line
    ok(run("--data", str(tmp_path / "data"), "restore", str(backups / "a"), "new", "--namespace-map", "films=x"))
    with spruce.Client(tmp_path / "data") as c:
        assert c.Index("new").fetch(["f1"], namespace="x").vectors["f1"].values == [0.0, 0.0, 1.0]


def test_a_dimension_against_the_archive_names_both_and_does_not_call_it_corrupt(tmp_path: Path,
                                                                                 backups: Path) -> None:
    line = failed(run("--data", str(tmp_path / "data"), "restore", str(backups / "a"), "new", "--dimension", "8"))
    assert "--dimension 8" in line and "dimension 3" in line
    assert "corrupt" not in line and "checksum" not in line
    with spruce.Client(tmp_path / "data") as c:
        assert not c.has_index("new")
    plain = tmp_path / "mine.jsonl"
    plain.write_text('{"id": "p", "values": [1.0, 2.0]}\n')
    line = failed(run("--data", str(tmp_path / "data"), "restore", str(plain), "new", "--dimension", "3"))
    assert "--dimension 3" in line and "dimension 2" in line


def test_skip_counts_imported_and_skipped_apart_everywhere(tmp_path: Path, backups: Path) -> None:
    data = tmp_path / "data"
    with spruce.Client(data) as c:
        c.create_index("dst", dimension=3, metric="cosine")
        c.Index("dst").upsert([("d1", [9.0, 9.0, 9.0])])
        d = c.Index("dst").upsert_from_file(str(backups / "a"), on_conflict="skip")
        assert (d.records_imported, d.records_skipped) == (2, 1)
        assert c.Index("dst").fetch(["d1"]).vectors["d1"].values == [9.0, 9.0, 9.0]
    out = ok(run("--data", str(data), "restore", str(backups / "b"), "dst", "--on-conflict", "skip"))
    assert "restored 0 records" in out and "skipped 3 record(s)" in out
    shutil.copytree(backups / "c", data / "exports" / "c")  # inside the server's storage roots
    with start_server(data) as srv, spruce.Client(host=srv.url) as rc:
        d = rc.Index("dst").upsert_from_file("c", on_conflict="skip", allow_metric_change=True,
                                             supersede=True)
        assert (d.records_imported, d.records_skipped) == (0, 3)
