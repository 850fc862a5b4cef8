"""`pinecone://INDEX` as an end of `spruce copy`, against a real `spruce serve` through the official
SDK: spruce index → Pinecone-API index → new spruce index, exact, with every namespace. Ids that
Pinecone refuses (not ASCII) are a loss: refused before anything is written, or with allow_lossy
skipped and listed."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import spruce
from connector_data import fill
from serverutil import RunningServer, start_server
from spruce.errors import InvalidArgument
from spruce.sources.base import LossyCopy

KEY = "pinecone-end-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("pc") / "data", api_key=KEY) as s:
        yield s


def test_copy_through_the_pinecone_api(server: RunningServer, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PINECONE_API_KEY", KEY)
    uri = f"pinecone://films?host={server.url}"
    with spruce.Client(data_dir=str(tmp_path / "data")) as c:
        data = fill(c, "src")
        with pytest.raises(LossyCopy, match="ASCII"):  # refused before anything is written
            c.copy("src", uri)
        assert server.engine is not None and not server.engine.has_index("films")
        out = c.copy("src", uri, allow_lossy=True)
        assert out.status == "Completed", out.error
        assert any("ASCII" in n for n in out.notes)
        assert out.records_done == sum(r["id"].isascii() for v in data.values() for r in v)
        back = c.copy(uri, "back")
        assert back.status == "Completed", back.error
        for ns, records in data.items():
            ids = [r["id"] for r in records if r["id"].isascii()]
            a = c.Index("src").fetch(ids, namespace=ns).vectors
            b = c.Index("back").fetch(ids, namespace=ns).vectors
            assert set(b) == set(ids)
            for rid in ids:
                assert np.asarray(a[rid].values, np.float32).tobytes() == np.asarray(b[rid].values, np.float32).tobytes()
                assert a[rid].metadata == b[rid].metadata and a[rid].sparse_values == b[rid].sparse_values
        arc = c.copy(uri, str(tmp_path / "arc"))  # straight into an archive
        assert arc.status == "Completed" and c.verify_archive(str(tmp_path / "arc"))["ok"]


def test_the_key_never_comes_from_the_uri(server: RunningServer, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    with spruce.Client(data_dir=str(tmp_path / "data")) as c:
        fill(c, "src")
        with pytest.raises(InvalidArgument, match="PINECONE_API_KEY"):
            c.copy("src", f"pinecone://films?host={server.url}")
        monkeypatch.setenv("PINECONE_API_KEY", KEY)
        with pytest.raises(InvalidArgument, match="password in the URI"):
            c.copy("src", f"pinecone://user:{KEY}@films")
