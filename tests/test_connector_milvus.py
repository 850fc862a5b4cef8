"""Milvus, the real engine (Milvus Lite 2.5, the native one): the full circle spruce index →
archive → Milvus → archive → new index through the CLI, exact, sparse values included; the
collection as a pymilvus user sees it."""

from __future__ import annotations

from pathlib import Path

import pytest

import spruce
from connector_data import DIM, NAMESPACES, assert_same, cli, fill
from spruce.errors import InvalidArgument

pymilvus = pytest.importorskip("pymilvus", reason="pip install 'spruce[connectors]'")
pytest.importorskip("milvus_lite", reason="pip install 'spruce[connectors]'")





def test_full_circle_is_exact_and_idiomatic(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    db = tmp_path / "milvus.db"
    uri = f"milvus://{db}?collection=films".replace("milvus://", "milvus:///", 1).replace("////", "///")
    with spruce.Client(data_dir=data) as c:
        fill(c, "src")
    for args in (("export", "src", str(tmp_path / "arc1")), ("restore", str(tmp_path / "arc1"), uri),
                 ("export", uri, str(tmp_path / "arc2")), ("restore", str(tmp_path / "arc2"), "back"),
                 ("verify", str(tmp_path / "arc2"))):
        p = cli(*args, data=data)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    with spruce.Client(data_dir=data) as c:
        assert_same(c, "src", "back")
    client = pymilvus.MilvusClient(str(db))
    try:
        fields = {f["name"]: f for f in client.describe_collection("films")["fields"]}
        assert int(fields["vector"]["params"]["dim"]) == DIM and "sparse" in fields and "metadata" in fields
        rows = client.query("films", filter='id == "007"', output_fields=["namespace", "id"])
        assert sorted(r["namespace"] for r in rows) == sorted(ns or "__default__" for ns in NAMESPACES)
    finally:
        client.close()


def test_the_uri_names_a_collection(tmp_path: Path) -> None:
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        fill(c, "src")
        with pytest.raises(InvalidArgument, match="collection"):
            c.copy("src", f"milvus:///{tmp_path}/m.db".replace("////", "///"))
        with pytest.raises(InvalidArgument, match="MILVUS_TOKEN"):
            c.copy("src", "milvus://root:Milvus@127.0.0.1:19530/films")
