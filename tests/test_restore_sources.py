"""Restoring from a user's own files (no manifest): single JSONL / JSONL.gz / Parquet files and
Pinecone-layout folders, through ``Index.upsert_from_file``."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import spruce
from spruce.errors import ArchiveIncomplete, InvalidArgument, ValidationError

DIM = 5


@pytest.fixture
def client(tmp_path: Path):
    c = spruce.Client(tmp_path / "data")
    try:
        yield c
    finally:
        c.jobs.shutdown()
        c.engine.close()


def records(n: int, *, prefix: str = "r", dim: int = DIM, seed: int = 0, sparse: bool = False) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rec: dict[str, Any] = {"id": f"{prefix}{i}"}
        if dim:
            v = rng.standard_normal(dim).astype(np.float32)
            v[0] = [-0.0, 1e-45, 3.4028235e38][i % 3]
            rec["values"] = [float(x) for x in v]  # exactly the float32 values, as doubles
        if sparse:
            rec["sparse_values"] = {"indices": [i, 1000 + i], "values": [0.5, float(np.float32(0.1 * i))]}
        if i % 4:
            rec["metadata"] = {"i": i, "name": f"ü-{i}", "tags": ["a", "b"], "f": 0.5, "ok": i % 2 == 0}
        out.append(rec)
    return out


def expected(recs: list[dict]) -> dict[str, tuple]:
    def key(r: dict) -> tuple:
        sv = r.get("sparse_values") or r.get("sparseValues")
        return (
            np.array(r["values"], dtype=np.float32).tobytes() if r.get("values") else None,
            None if sv is None else (np.array(sv["indices"], "<u4").tobytes(), np.array(sv["values"], "<f4").tobytes()),
            json.dumps(r["metadata"], sort_keys=True) if r.get("metadata") is not None else None,
        )
    return {r["id"]: key(r) for r in recs}


def stored(idx: Any) -> dict[str, dict[str, tuple]]:
    out: dict[str, dict[str, tuple]] = {}
    with idx._index.snapshot() as snap:
        for ns in snap.namespaces():
            for batch in snap.iter_batches(ns):
                for r in batch.records():
                    sv = r.sparse_values
                    out.setdefault(ns, {})[r.id] = (
                        None if r.values is None else np.asarray(r.values, "<f4").tobytes(),
                        None if sv is None else (sv.indices.astype("<u4").tobytes(), sv.values.astype("<f4").tobytes()),
                        None if r.metadata is None else json.dumps(r.metadata, sort_keys=True),
                    )
    return out


def write_jsonl(path: Path, recs: list[dict], *, messy: bool = False) -> Path:
    lines = []
    for k, r in enumerate(recs):
        if messy and k % 3 == 1:  # any key order, spacing, camelCase sparse, CRLF, blank lines
            r = dict(reversed(list(r.items())))
            if "sparse_values" in r:
                r["sparseValues"] = r.pop("sparse_values")
            lines.append(json.dumps(r, indent=None, separators=(" , ", " : ")) + "\r")
            lines.append("")
        else:
            lines.append(json.dumps(r))
    text = ("\n".join(lines) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text) if path.name.endswith(".gz") else text)
    return path


def write_parquet(path: Path, recs: list[dict], *, float64: bool = False, extra: bool = False) -> Path:
    cols: dict[str, Any] = {"id": [r["id"] for r in recs]}
    if any("values" in r for r in recs):
        cols["values"] = pa.array([r.get("values", []) for r in recs],
                                  type=pa.list_(pa.float64() if float64 else pa.float32()))
    if any("sparse_values" in r for r in recs):
        cols["sparse_values"] = pa.array(
            [r.get("sparse_values") for r in recs],
            type=pa.struct([("indices", pa.list_(pa.uint32())), ("values", pa.list_(pa.float32()))]))
    cols["metadata"] = pa.array([json.dumps(r["metadata"]) if "metadata" in r else None for r in recs], pa.string())
    if extra:
        cols["note"] = pa.array(["ignored"] * len(recs))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return path


@pytest.mark.parametrize("name", ["data.jsonl", "data.jsonl.gz", "data.ndjson"])
def test_single_jsonl_file_with_inferred_dimension(client, tmp_path: Path, name: str) -> None:
    recs = records(40, sparse=True)
    path = write_jsonl(tmp_path / "in" / name, recs, messy=True)
    d = client.Index("t").upsert_from_file(str(path), namespace="ns1")
    assert d.status == "Completed" and d.records_imported == 40 and d.records_rejected == 0
    assert d.bytes_read == path.stat().st_size
    cfg = client.describe_index("t")
    assert (cfg.dimension, cfg.vector_type) == (DIM, "dense")
    assert stored(client.Index("t")) == {"ns1": expected(recs)}


def test_single_jsonl_gz_with_given_dimension_and_metric(client, tmp_path: Path) -> None:
    recs = records(12)
    path = write_jsonl(tmp_path / "x.jsonl.gz", recs)
    client.Index("t").upsert_from_file(str(path), dimension=DIM, metric="euclidean")
    cfg = client.describe_index("t")
    assert (cfg.dimension, cfg.metric) == (DIM, "euclidean")
    assert stored(client.Index("t")) == {"": expected(recs)}
    # given a dimension the file contradicts: refused up front, naming both; no index is left behind
    with pytest.raises(InvalidArgument, match=rf"--dimension {DIM + 1} does not match .* dimension {DIM}"):
        client.Index("t2").upsert_from_file(str(path), dimension=DIM + 1)
    assert not client.has_index("t2")


@pytest.mark.parametrize("float64", [False, True])
def test_single_parquet_file(client, tmp_path: Path, float64: bool) -> None:
    recs = records(30, sparse=True)
    path = write_parquet(tmp_path / "f.parquet", recs, float64=float64, extra=True)
    d = client.Index("t").upsert_from_file(str(path))
    assert d.status == "Completed" and d.records_imported == 30
    assert client.describe_index("t").dimension == DIM
    assert stored(client.Index("t")) == {"": expected(recs)}


def test_sparse_only_file_creates_a_sparse_index(client, tmp_path: Path) -> None:
    recs = records(10, dim=0, sparse=True)
    path = write_jsonl(tmp_path / "sp.jsonl", recs)
    client.Index("sp").upsert_from_file(str(path))
    cfg = client.describe_index("sp")
    assert (cfg.vector_type, cfg.metric, cfg.dimension) == ("sparse", "dotproduct", None)
    assert stored(client.Index("sp")) == {"": expected(recs)}


def test_pinecone_layout_folder(client, tmp_path: Path) -> None:
    root = tmp_path / "bulk"
    a, b, c, top = records(7, prefix="a"), records(5, prefix="b", seed=1), records(4, prefix="c", seed=2), \
        records(3, prefix="t", seed=3)
    write_parquet(root / "__default__" / "part-1.parquet", a)
    write_parquet(root / "ns1" / "file-2.parquet", b[:2])
    write_parquet(root / "ns1" / "file-10.parquet", b[2:])
    write_parquet(root / "ns1" / "deeper" / "x.parquet", c)
    write_jsonl(root / "top.jsonl", top)  # directly in the folder: the caller's namespace
    (root / "README.md").write_text("not data")
    (root / "ns1" / "notes.csv").write_text("id,values\n")
    write_parquet(root / ".hidden" / "h.parquet", records(2, prefix="hidden"))
    write_parquet(root / "ns1" / ".h.parquet", records(2, prefix="hidden2"))
    d = client.Index("t").upsert_from_file(str(root), namespace="top-ns")
    assert d.status == "Completed"
    assert (d.files_total, d.records_imported) == (5, 19)
    assert stored(client.Index("t")) == {"": expected(a), "ns1": expected(b + c), "top-ns": expected(top)}


def test_bad_line_aborts_with_file_line_and_field_and_applies_nothing(client, tmp_path: Path) -> None:
    recs = records(10)
    recs[6]["values"] = recs[6]["values"][:-1]  # line 7: wrong dimension
    path = write_jsonl(tmp_path / "bad.jsonl", recs)
    with pytest.raises(ValidationError) as info:
        client.Index("new").upsert_from_file(str(path))
    err = info.value
    assert (err.line, err.field, err.record_id) == (7, "values", "r6")
    assert "bad.jsonl" in str(err) and "line 7" in str(err) and "'values'" in str(err)
    assert not client.has_index("new")  # the index the restore created is gone again

    client.create_index("old", dimension=DIM)
    client.Index("old").upsert(records(3, prefix="keep"))
    before = stored(client.Index("old"))
    with pytest.raises(ValidationError, match="line 7"):
        client.Index("old").upsert_from_file(str(path))
    assert stored(client.Index("old")) == before
    assert client.list_imports()[-1].status == "Failed"


def test_bad_lines_skipped_and_reported_in_continue_mode(client, tmp_path: Path) -> None:
    recs = records(10)
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps(r) for r in recs]
    lines[2] = "{not json"
    lines[4] = json.dumps({**recs[4], "values": recs[4]["values"][:2]})
    lines[8] = json.dumps({**recs[8], "metadata": {"nested": {"no": 1}}})
    path.write_text("\n".join(lines) + "\n")
    d = client.Index("t").upsert_from_file(str(path), error_mode="continue")
    assert d.status == "Completed"
    assert (d.records_imported, d.records_rejected) == (7, 3)
    rejects = [json.loads(x) for x in Path(d.rejects_path).read_text().splitlines()]
    assert [r["line"] for r in rejects] == [3, 5, 9]
    assert all("mixed.jsonl" in r["file"] for r in rejects)
    assert [r["field"] for r in rejects[1:]] == ["values", "metadata.nested"]
    assert all(r["reason"] for r in rejects)
    good = [r for k, r in enumerate(recs) if k not in (2, 4, 8)]
    assert stored(client.Index("t")) == {"": expected(good)}


def test_uncommitted_export_folder_is_refused(client, tmp_path: Path) -> None:
    root = tmp_path / "half"
    write_jsonl(root / "__default__" / "part-00000.jsonl.gz", records(3))
    with pytest.raises(ArchiveIncomplete, match="manifest"):
        client.Index("t").upsert_from_file(str(root))
    assert not client.has_index("t")


def test_nothing_to_restore(client, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(InvalidArgument, match=r"no manifest\.json"):
        client.Index("t").upsert_from_file(str(tmp_path / "empty"))
    with pytest.raises(InvalidArgument):
        client.Index("t").upsert_from_file(str(tmp_path / "empty"), error_mode="sometimes")
    assert not client.has_index("t")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_an_id_repeated_anywhere_in_a_file_is_refused_not_silently_replaced(client, tmp_path: Path,
                                                                            fmt: str) -> None:
    recs = records(1500)
    recs[1400] = {**recs[3], "metadata": {"second": True}}  # same id as record 3, another batch
    path = (write_jsonl(tmp_path / "dup.jsonl", recs) if fmt == "jsonl"
            else write_parquet(tmp_path / "dup.parquet", recs))
    with pytest.raises(ValidationError) as info:
        client.Index("dup").upsert_from_file(str(path))
    err = info.value
    where = ("line", 1401, 4) if fmt == "jsonl" else ("record", 1400, 3)
    assert (err.field, err.record_id) == ("id", "r3")
    assert (err.line if fmt == "jsonl" else err.record) == where[1]
    assert f"first at {where[0]} {where[2]}" in str(err) and path.name in str(err)
    assert not client.has_index("dup")

    d = client.Index("dup").upsert_from_file(str(path), error_mode="continue")
    assert (d.records_imported, d.records_rejected) == (1499, 1)
    [reject] = [json.loads(x) for x in Path(d.rejects_path).read_text().splitlines()]
    assert (reject["id"], reject["field"]) == ("r3", "id")
    assert stored(client.Index("dup")) == {"": expected(recs[:1400] + recs[1401:])}  # the first one stays


def test_lines_the_fast_parser_cannot_take_are_decided_by_the_general_one(client, tmp_path: Path) -> None:
    """simdjson parses most lines; what it refuses or could read differently (a repeated key,
    an integer beyond 64 bits, a lone surrogate escape, integer-valued numbers) goes through
    orjson and the standard library, with the same results and errors as before."""
    good = records(1200)
    lines = [json.dumps(r) for r in good]
    lines[5] = lines[5].replace('{"id": "r5"', '{"id": "r-first", "id": "r5"', 1)  # the last key wins
    lines[7] = json.dumps({**good[7], "values": [1, 0, -2, 3, 4]})  # integers are numbers too
    good[7]["values"] = [1.0, 0.0, -2.0, 3.0, 4.0]
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join(lines) + "\n")
    d = client.Index("odd").upsert_from_file(str(path))
    assert d.status == "Completed" and d.records_imported == 1200
    assert stored(client.Index("odd")) == {"": expected(good)}

    for k, (bad, field) in enumerate([('"metadata": {"n": 123456789012345678901234567890}', "metadata.n"),
                                      ('"metadata": {"n": -9223372036854775809}', "metadata.n"),
                                      ('"metadata": {"t": "\\ud800"}', "metadata.t")]):
        lines2 = list(lines)
        lines2[1100] = '{"id": "bad", "values": [0.5, 0.5, 0.5, 0.5, 0.5], ' + bad + "}"
        p = tmp_path / f"bad{k}.jsonl"
        p.write_text("\n".join(lines2) + "\n")
        with pytest.raises(ValidationError) as info:
            client.Index(f"bad{k}").upsert_from_file(str(p))
        assert (info.value.line, info.value.field, info.value.record_id) == (1101, field, "bad")


def test_parquet_metadata_numbers_are_read_exactly(client, tmp_path: Path) -> None:
    """Parquet metadata is JSON text: integers at the 64-bit edges and large floats keep their
    exact value and type, and an integer orjson could only round (beyond 2**64 - 1, below
    -2**63) is refused by name instead of stored as a float."""
    good = records(30)
    good[3]["metadata"] = {"u": 2**64 - 1, "s": -(2**63), "f": 1e300, "g": -1.5e19, "h": 9.3e18}
    path = write_parquet(tmp_path / "ok.parquet", good)
    assert client.Index("exact").upsert_from_file(str(path)).records_imported == 30
    assert stored(client.Index("exact")) == {"": expected(good)}
    got = client.Index("exact").fetch(["r3"]).vectors["r3"].metadata
    assert [type(got[k]) for k in "usfgh"] == [int, int, float, float, float]
    for k, big in enumerate([2**64, -(2**63) - 1, 123456789012345678901234567890]):
        recs = records(30)
        recs[20]["metadata"] = {"ok": 1, "n": big}
        p = write_parquet(tmp_path / f"big{k}.parquet", recs)
        with pytest.raises(ValidationError) as info:
            client.Index(f"big{k}").upsert_from_file(str(p))
        assert (info.value.field, info.value.record_id) == ("metadata.n", "r20")
        assert not client.has_index(f"big{k}")
