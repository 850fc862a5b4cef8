"""LanceDB, the real engine on a folder: the full circle spruce index → archive → LanceDB →
archive → new index through the CLI, exact; the table as a LanceDB user sees it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import spruce
from connector_data import DIM, NAMESPACES, assert_same, fill
from spruce.errors import InvalidArgument

lancedb = pytest.importorskip("lancedb", reason="pip install 'spruce[connectors]'")

CLI = [sys.executable, "-c", "from spruce.cli import main; main()"]


def _cli(*args: str, data: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    return subprocess.run([*CLI, "--data", data, *args], capture_output=True, text=True, env=env, timeout=300)


def test_full_circle_is_exact_and_idiomatic(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    uri = f"lancedb://{tmp_path}/lance?table=films".replace("lancedb://", "lancedb:///", 1).replace("////", "///")
    with spruce.Client(data_dir=data) as c:
        fill(c, "src")
    for args in (("export", "src", str(tmp_path / "arc1")), ("restore", str(tmp_path / "arc1"), uri),
                 ("export", uri, str(tmp_path / "arc2")), ("restore", str(tmp_path / "arc2"), "back"),
                 ("verify", str(tmp_path / "arc2"))):
        p = _cli(*args, data=data)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    with spruce.Client(data_dir=data) as c:
        assert_same(c, "src", "back")
    table = lancedb.connect(str(tmp_path / "lance")).open_table("films")
    assert table.schema.field("vector").type.list_size == DIM
    assert table.count_rows() == 26 * len(NAMESPACES)
    assert table.count_rows(filter="namespace = 'films' AND id = '007'") == 1


def test_the_uri_names_a_table(tmp_path: Path) -> None:
    with spruce.Client(data_dir=str(tmp_path / "d")) as c:
        fill(c, "src")
        with pytest.raises(InvalidArgument, match="table"):
            c.copy("src", f"lancedb:///{tmp_path}/lance".replace("////", "///"))
        with pytest.raises(InvalidArgument, match=r"three slashes|absolute"):
            c.copy("src", "lancedb://relative/lance?table=t")
