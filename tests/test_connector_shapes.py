"""Every connector refuses to write into a collection or table of another dimension or metric,
before any job exists: the records would be unsearchable there, or refused a page in."""

from __future__ import annotations

from pathlib import Path

import pytest

import spruce
from connector_data import fill
from spruce.errors import InvalidArgument

pytest.importorskip("qdrant_client", reason="pip install 'spruce[connectors]'")
pytest.importorskip("lancedb", reason="pip install 'spruce[connectors]'")


def _uris(tmp: Path) -> dict[str, str]:
    return {"qdrant": f"qdrant:///{tmp}/qd?collection=films".replace("////", "///"),
            "lancedb": f"lancedb:///{tmp}/lance?table=films".replace("////", "///")}


@pytest.mark.parametrize("engine", ["qdrant", "lancedb"])
def test_another_dimension_or_metric_is_refused(engine: str, tmp_path: Path) -> None:
    uri = _uris(tmp_path)[engine]
    with spruce.Client(data_dir=str(tmp_path / "data")) as c:
        fill(c, "src", metric="euclidean", sparse=False)
        c.copy("src", uri)
        c.create_index("wide", dimension=16, metric="euclidean")
        c.Index("wide").upsert([("a", [1.0] * 16)])
        fill(c, "dot", metric="dotproduct", sparse=False)
        with pytest.raises(InvalidArgument, match="holds dimension 8 euclidean; the source is dimension 16"):
            c.copy("wide", uri)
        with pytest.raises(InvalidArgument, match="holds dimension 8 euclidean; the source is dimension 8 dot"):
            c.copy("dot", uri)
        assert [j.status for j in c.jobs.list()] == ["Completed"]  # no job for the refused ones
