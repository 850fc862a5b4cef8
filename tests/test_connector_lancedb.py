"""LanceDB, the real engine on a folder: the full circle spruce index → archive → LanceDB →
archive → new index through the CLI, exact; the table as a LanceDB user sees it; one table per
namespace; a kill -9 mid-copy (either way), then a resume from the row-address cursor; a resume
refused when the table changed; URIs that name no table or hold a password refused."""

from __future__ import annotations

import json
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
    kill_reading_then_resume,
)
from spruce.errors import InvalidArgument

lancedb = pytest.importorskip("lancedb", reason="pip install 'spruce[connectors]'")
pa = pytest.importorskip("pyarrow", reason="pip install 'spruce[connectors]'")


def _uri(path: Path, table: str) -> str:
    return f"lancedb://{path}?table={table}".replace("lancedb://", "lancedb:///", 1).replace("////", "///")


def test_full_circle_is_exact_and_idiomatic(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    uri = _uri(tmp_path / "lance", "films")
    with spruce.Client(data_dir=data) as c:
        fill(c, "src")
    for args in (("export", "src", str(tmp_path / "arc1")), ("restore", str(tmp_path / "arc1"), uri),
                 ("export", uri, str(tmp_path / "arc2")), ("restore", str(tmp_path / "arc2"), "back"),
                 ("verify", str(tmp_path / "arc2"))):
        p = cli(*args, data=data)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    with spruce.Client(data_dir=data) as c:
        assert_same(c, "src", "back")
        want = c.Index("src").fetch(["007"], namespace="films").vectors["007"]
    manifest = json.loads((tmp_path / "arc2" / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "lancedb" and {n["name"] for n in manifest["namespaces"]} == set(NAMESPACES)
    # what a LanceDB user sees: typed columns, the shape in the schema metadata, a searchable vector
    table = lancedb.connect(str(tmp_path / "lance")).open_table("films")
    schema = table.schema
    assert schema.field("vector").type == pa.list_(pa.float32(), DIM)
    assert schema.field("sparse").type == pa.struct([("indices", pa.list_(pa.uint32())),
                                                     ("values", pa.list_(pa.float32()))])
    assert schema.field("metadata").type == pa.string() and schema.field("namespace").type == pa.string()
    assert json.loads(schema.metadata[b"spruce"]) == {"dimension": DIM, "metric": "dotproduct",
                                                      "vector_type": "dense", "sparse": True}
    assert table.count_rows() == (len(IDS) + 20) * len(NAMESPACES)
    row = table.search().where("namespace = 'films' AND id = '007'").limit(None).to_list()[0]
    assert np.asarray(row["vector"], np.float32).tobytes() == np.asarray(want.values, np.float32).tobytes()
    assert json.loads(row["metadata"])["title"] == "record 007"
    hit = (table.search(np.asarray(want.values, np.float32)).metric("dot").where("namespace = 'films'", prefilter=True)
           .limit(1).to_list())
    assert hit[0]["id"] == "007"


def test_one_table_per_namespace(tmp_path: Path) -> None:
    uri = _uri(tmp_path / "lance", "per_{namespace}")
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        fill(c, "src", metric="euclidean", sparse=False)
        c.copy("src", uri)
        c.copy(uri, "back")
        assert_same(c, "src", "back")
    db = lancedb.connect(str(tmp_path / "lance"))
    names = sorted(db.list_tables().tables)
    assert names == ["per_-C3-96dd-20namespace-21", "per_default", "per_films"]  # the name holds what it can
    assert db.open_table("per_-C3-96dd-20namespace-21").search().where("namespace = 'Ödd namespace!'") \
        .limit(None).to_arrow().num_rows == len(IDS) + 20
    assert "sparse" not in db.open_table("per_films").schema.names  # a euclidean index holds no sparse values


def test_the_uri_names_a_table_and_holds_no_password(tmp_path: Path) -> None:
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        fill(c, "src")
        with pytest.raises(InvalidArgument, match="table"):
            c.copy("src", f"lancedb:///{tmp_path}/lance".replace("////", "///"))
        with pytest.raises(InvalidArgument, match=r"three slashes|absolute"):
            c.copy("src", "lancedb://relative/lance?table=t")
        with pytest.raises(InvalidArgument, match="password"):
            c.copy("src", f"lancedb://user:secret@/{tmp_path}/lance?table=t")
        with pytest.raises(InvalidArgument, match="table"):
            c.copy("src", _uri(tmp_path / "lance", "no spaces"))
        assert c.jobs.list() == []


def test_kill_midway_then_resume_is_exact(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    uri = _uri(tmp_path / "lance", "big")
    with spruce.Client(data_dir=data) as c:
        big(c, "src", 30_000)
    job = kill_midway(data, ["copy", "src", uri])
    p = cli("jobs", "resume", job, data=data)
    assert p.returncode == 0, p.stderr
    assert lancedb.connect(str(tmp_path / "lance")).open_table("big").count_rows() == 30_000
    # and the other way: a kill while reading the table (many fragments), then a resume after the
    # last row address read
    kill_reading_then_resume(data, uri, 30_000)


def test_resume_is_refused_when_the_target_changed(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    uri = _uri(tmp_path / "lance", "big")
    with spruce.Client(data_dir=data) as c:
        big(c, "src", 30_000)
    job = kill_midway(data, ["copy", "src", uri])
    table = lancedb.connect(str(tmp_path / "lance")).open_table("big")  # someone writes to the table meanwhile
    table.add(pa.Table.from_pylist([{"namespace": "", "id": "mine", "vector": [0.0] * DIM, "metadata": None}],
                                   schema=table.schema))
    assert_resume_refused(job, data)
