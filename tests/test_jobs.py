"""Export and import jobs end to end, through the client: fidelity, snapshot consistency,
status, cancellation, options, and what a corrupt archive may (not) leave behind."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import spruce
from spruce import jobs as spruce_jobs
from spruce.archive import ArchiveReader, open_source, verify_archive
from spruce.errors import (
    AlreadyExists,
    ArchiveIncomplete,
    ChecksumMismatch,
    ConflictError,
    CorruptRecord,
    IntegrityError,
    InvalidArgument,
    ManifestInvalid,
    MissingFile,
    NotFound,
    RecordCountMismatch,
)
from spruce.storage import open_store

FORMATS = ["jsonl.gz", "parquet"]
F32 = np.finfo(np.float32)
SPECIAL = np.array([-0.0, F32.smallest_subnormal, 1e-40, F32.max, -F32.max, F32.tiny, 0.1, -1.0000001],
                   dtype=np.float32)
NAMESPACES = ["", "a/b", "..", "with space", "ünï/cødé ✓", "__x", "é" * 200]


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path):
    c = spruce.Client(tmp_path / "data")
    try:
        yield c
    finally:
        c.jobs.shutdown()
        c.engine.close()


def _md_key(md: Any) -> str | None:
    # json keeps 1 and 1.0 apart (Python's == does not) and writes big ints exactly
    return None if md is None else json.dumps(md, sort_keys=True)


def dump(idx: Any) -> dict[str, dict[str, tuple]]:
    """Every record of every namespace as raw bytes, read from SQLite (the source of truth)."""
    out: dict[str, dict[str, tuple]] = {}
    with idx._index.snapshot() as snap:
        for ns in snap.namespaces():
            recs = out.setdefault(ns, {})
            for batch in snap.iter_batches(ns, batch_size=5000):
                for r in batch.records():
                    sv = r.sparse_values
                    recs[r.id] = (
                        None if r.values is None else np.asarray(r.values, "<f4").tobytes(),
                        None if sv is None else (sv.indices.astype("<u4").tobytes(), sv.values.astype("<f4").tobytes()),
                        _md_key(r.metadata),
                    )
    return out


def fetched(idx: Any, ns: str, ids: list[str]) -> dict[str, tuple]:
    """The same view through fetch (the in-memory side), float32 bits compared."""
    out = {}
    for start in range(0, len(ids), 1000):
        for rid, v in idx.fetch(ids[start:start + 1000], namespace=ns).vectors.items():
            sv = v.sparse_values
            out[rid] = (
                np.array(v.values, dtype=np.float32).tobytes() if v.values else None,
                None if sv is None else (np.array(sv.indices, "<u4").tobytes(), np.array(sv.values, "<f4").tobytes()),
                _md_key(v.metadata),
            )
    return out


def count(idx: Any) -> int:
    return sum(len(v) for v in dump(idx).values())


def metadata_for(i: int) -> dict[str, Any] | None:
    if i % 10 == 9:
        return None
    return {
        "s": f"str-{i}", "i": i - 50, "f": i / 7, "whole_float": 2.0, "b": i % 2 == 0, "t": True,
        "tags": ["a", f"t{i}", "ü"], "empty": [], "uni": "ünïcødé ✓ 🌲 中文 \u2028 \"q\" \\",
        "big": 2**63 - 1, "neg_big": -(2**63), "ubig": 2**64 - 1, "tiny": 5e-324, "huge": 1.7976931348623157e308,
    }


def make_records(kind: str, n: int, dim: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        rid = ["plain-", "ü/ñ ", "a b/c..", "🌲"][i % 4] + f"{seed}-{i}"
        if i == 0:
            rid = "x" * 512
        rec: dict[str, Any] = {"id": rid}
        if kind != "sparse":
            v = rng.standard_normal(dim).astype(np.float32)
            k = i % len(SPECIAL)
            v[: len(SPECIAL)] = np.roll(SPECIAL, k)[:dim]
            rec["values"] = v
        if kind == "sparse" or (kind == "hybrid" and i % 3):
            nnz = 1 + i % 6
            idx = rng.choice(10_000, size=nnz, replace=False).astype(np.int64)
            idx[0] = [0, 2**32 - 1, 7][i % 3]
            idx = np.unique(idx)
            vals = rng.standard_normal(idx.size).astype(np.float32)
            vals[0] = SPECIAL[i % len(SPECIAL)]
            rec["sparse_values"] = {"indices": idx.tolist(), "values": vals}
        md = metadata_for(i)
        if md is not None:
            rec["metadata"] = md
        recs.append(rec)
    return recs


def make_index(c: Any, name: str, kind: str, *, dim: int = 12, n: int = 30, namespaces=NAMESPACES) -> Any:
    if kind == "sparse":
        c.create_index(name, vector_type="sparse", metric="dotproduct")
    else:
        c.create_index(name, dimension=dim, metric="euclidean" if kind == "dense" else "dotproduct")
    idx = c.Index(name)
    for k, ns in enumerate(namespaces):
        idx.upsert(make_records(kind, n, dim, seed=k), namespace=ns)
    return idx


def simple_index(c: Any, name: str, counts: dict[str, int], *, dim: int = 8, seed: int = 0,
                 prefix: str = "id") -> Any:
    """A dense index with ``counts[ns]`` records per namespace: ids ``{prefix}-{ns}-{i:06d}``."""
    if not c.has_index(name):
        c.create_index(name, dimension=dim, metric="cosine")
    idx = c.Index(name)
    rng = np.random.default_rng(seed)
    for ns, n in counts.items():
        x = rng.standard_normal((n, dim)).astype(np.float32) + 0.01
        for start in range(0, n, 5000):
            idx.upsert([{"id": f"{prefix}-{ns}-{i:06d}", "values": x[i],
                         "metadata": {"genre": ["drama", "comedy", "news"][i % 3], "i": i, "ns": ns}}
                        for i in range(start, min(n, start + 5000))], namespace=ns)
    return idx


def read_manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "manifest.json").read_text("utf-8"))


def write_manifest(root: Path, doc: dict[str, Any]) -> None:
    (root / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n", "utf-8")


def manifest_files(root: Path) -> list[dict[str, Any]]:
    return [f for ns in read_manifest(root)["namespaces"] for f in ns["files"]]


def file_ids(root: Path) -> list[tuple[str, str, set[str]]]:
    """(namespace, path, ids) of every file of an intact archive, in manifest order."""
    reader = ArchiveReader(open_store(str(root)))
    out = []
    for ns in reader.manifest.namespaces:
        for f in ns.files:
            out.append((ns.name, f.path, {i for b in reader.iter_batches(f) for i in b.ids}))
    return out


def ids_by_ns(idx: Any) -> dict[str, set[str]]:
    return {ns: set(recs) for ns, recs in dump(idx).items()}


def replace_part(root: Path, path: str, data: bytes) -> None:
    """Replace a part and make the manifest agree with it (sha256, bytes), as a forger would."""
    (root / path).write_bytes(data)
    doc = read_manifest(root)
    for ns in doc["namespaces"]:
        for f in ns["files"]:
            if f["path"] == path:
                f["bytes"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    doc["totals"]["bytes"] = sum(f["bytes"] for ns in doc["namespaces"] for f in ns["files"])
    write_manifest(root, doc)


def wait_until(cond, timeout: float = 30.0, poll: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(poll)


# -- fidelity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "sparse", "hybrid"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_is_lossless(client, tmp_path: Path, fmt: str, kind: str) -> None:
    src = make_index(client, "src", kind)
    dest = tmp_path / "archive"
    r = src.export_index(str(dest), format=fmt, sync=True)
    assert r.status == "Completed" and r.sync is True
    total = len(NAMESPACES) * 30
    assert client.describe_export(r.export_id).records_exported == total
    assert verify_archive(open_store(str(dest))).ok

    d = client.Index("dst").upsert_from_file(str(dest))
    assert d.status == "Completed"
    assert (d.records_imported, d.records_rejected) == (total, 0)
    want, got = dump(src), dump(client.Index("dst"))
    assert sorted(want) == sorted(NAMESPACES)
    assert sum(len(v) for v in want.values()) == total
    assert got == want  # every record of every namespace, bit for bit
    # the in-memory copy the restore built agrees with the stored one, float32 bits included
    for ns, recs in want.items():
        assert fetched(client.Index("dst"), ns, list(recs)) == recs
    a, b = client.describe_index("src"), client.describe_index("dst")
    assert (a.dimension, a.metric, a.vector_type) == (b.dimension, b.metric, b.vector_type)
    # the specials really are in there
    if kind != "sparse":
        bits = {x.tobytes() for x in SPECIAL}
        stored = b"".join(v[0] for v in want[""].values())
        assert all(bt in stored for bt in bits)


def test_parquet_export_has_the_import_schema(client, tmp_path: Path) -> None:
    src = make_index(client, "src", "hybrid", namespaces=["", "ns1"], n=20)
    sp = make_index(client, "sp", "sparse", namespaces=[""], n=5)
    dest, dest_sp = tmp_path / "p", tmp_path / "psp"
    src.export_index(str(dest), format="parquet", sync=True)
    sp.export_index(str(dest_sp), format="parquet", sync=True)
    expected = [
        ("id", pa.string(), False),
        ("values", pa.list_(pa.float32()), False),
        ("sparse_values", pa.struct([("indices", pa.list_(pa.uint32())), ("values", pa.list_(pa.float32()))]),
         True),
        ("metadata", pa.string(), True),
    ]
    assert (dest / "__default__").is_dir() and (dest / "ns1").is_dir()
    files = sorted(dest.rglob("*.parquet"))
    assert [f.relative_to(dest).as_posix() for f in files] == ["__default__/part-00000.parquet",
                                                               "ns1/part-00000.parquet"]
    for f in [*files, *dest_sp.rglob("*.parquet")]:
        schema = pq.read_schema(f)
        assert [(fl.name, fl.type, fl.nullable) for fl in schema] == expected, schema
        # the 3-level list encoding Pinecone's import reads
        assert pq.ParquetFile(f).schema.column(1).path == "values.list.element"
    t = pq.read_table(dest / "__default__" / "part-00000.parquet").to_pylist()
    assert len(t) == 20
    no_sparse = [r for r in t if r["sparse_values"] is None]
    assert no_sparse and len(no_sparse) < 20  # null where a record has no sparse values
    assert any(r["metadata"] is None for r in t)
    for r in t:
        assert len(r["values"]) == 12
        if r["metadata"] is not None:
            assert isinstance(json.loads(r["metadata"]), dict)
    t_sp = pq.read_table(dest_sp / "__default__" / "part-00000.parquet").to_pylist()
    assert all(r["values"] == [] and r["sparse_values"]["indices"] for r in t_sp)


# -- consistency ------------------------------------------------------------------------------


def test_export_is_the_snapshot_at_job_start_while_writers_run(client, tmp_path: Path) -> None:
    src = simple_index(client, "src", {"": 12_000, "n2": 8_000}, dim=16)
    expected = dump(src)  # writers are gated until the job has its snapshot: this is its content
    go, stop = threading.Event(), threading.Event()
    overlapped = {"new": 0, "overwrite": 0, "delete": 0}
    errors: list[BaseException] = []
    export_id: list[str] = []

    def running() -> bool:
        return client.describe_export(export_id[0]).status == "InProgress"

    def writer(kind: str) -> None:
        try:
            go.wait()
            rng = np.random.default_rng(hash(kind) % 1000)
            k = 0
            while not stop.is_set() and k < 400:
                ns = ["", "n2"][k % 2]
                if kind == "new":
                    src.upsert([{"id": f"new-{k}-{j}", "values": rng.standard_normal(16)} for j in range(20)],
                               namespace=ns)
                elif kind == "overwrite":
                    src.upsert([{"id": f"id-{ns}-{(k * 37 + j) % 8000:06d}", "values": rng.standard_normal(16),
                                 "metadata": {"changed": True}} for j in range(20)], namespace=ns)
                else:
                    src.delete(ids=[f"id-{ns}-{(k * 53 + j) % 8000:06d}" for j in range(20)], namespace=ns)
                if running():  # committed above while the export was still reading
                    overlapped[kind] += 1
                k += 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in overlapped]
    for t in threads:
        t.start()
    try:
        r = src.export_index(str(tmp_path / "a"), format="jsonl.gz", part_max_records=50)
        export_id.append(r.export_id)
        wait_until(lambda: client.describe_export(r.export_id).snapshot_point is not None)
        go.set()
        d = client.wait_export(r.export_id, timeout=60)
    finally:
        go.set()
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert d.status == "Completed", d.error
    assert all(n >= 1 for n in overlapped.values()), overlapped  # the check below is not vacuous
    assert dump(src) != expected

    manifest = read_manifest(tmp_path / "a")
    assert manifest["consistency"] == "snapshot"
    assert manifest["snapshot"]["point"] == d.snapshot_point
    assert manifest["totals"]["records"] == 20_000 == d.records_exported
    client.Index("copy").upsert_from_file(str(tmp_path / "a"))
    assert dump(client.Index("copy")) == expected


# -- status -------------------------------------------------------------------------------------


def test_status_fields_and_transitions(client, tmp_path: Path) -> None:
    simple_index(client, "src", {"": 6000, "b": 2000})
    dest = tmp_path / "a"
    state = spruce_jobs.start_export(client.engine, "src", str(dest), part_max_records=50, manager=client.jobs,
                                     run=False)
    d0 = client.describe_export(state.id)
    assert d0.status == "Pending" and d0.percent_complete == 0 and d0.finished_at is None
    assert d0.status == "PENDING"

    client.jobs.resume(state.id, sync=False)
    seen, percents = [], []
    while True:
        d = client.describe_export(state.id)
        if not seen or seen[-1] != d.status:
            seen.append(str(d.status))
        percents.append(d.percent_complete)
        if d.status in ("Completed", "Failed", "Cancelled"):
            break
        time.sleep(0.001)
    assert seen[-2:] == ["InProgress", "Completed"], seen
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert any(0 < p < 100 for p in percents)
    d = client.wait_export(state.id)
    m = read_manifest(dest)
    assert d.status == "COMPLETED" and d.status == "Completed"  # the seed's spelling too
    assert d.records_exported == d.records_total == 8000
    assert d.bytes_written == m["totals"]["bytes"] == sum(p.stat().st_size for p in dest.rglob("part-*"))
    assert d.created_at <= d.started_at <= d.finished_at
    for ts in (d.created_at, d.started_at, d.finished_at):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ts)
    assert d.download_url == (dest / "manifest.json").as_uri() or d.download_url == f"file://{dest}/manifest.json"
    assert Path(d.download_url.removeprefix("file://")).is_file()
    assert d.snapshot_point == m["snapshot"]["point"] and d.error is None

    imp = client.Index("dst").upsert_from_file(str(dest))
    assert imp.status == "Completed" and imp.percent_complete == 100.0
    assert imp.records_imported == imp.records_total == 8000
    assert imp.files_done == imp.files_total == len(m["namespaces"][0]["files"]) + len(m["namespaces"][1]["files"])
    assert imp.bytes_read == m["totals"]["bytes"]
    assert [e.export_id for e in client.list_exports()] == [state.id]
    assert [i.import_id for i in client.list_imports()] == [imp.import_id]
    with pytest.raises(NotFound):
        client.describe_export("exp-nope")
    with pytest.raises(NotFound):
        client.describe_import("../etc/passwd")
    with pytest.raises(NotFound):
        client.describe_import(state.id)  # an export is not an import
    with pytest.raises(NotFound):
        client.cancel_export(imp.import_id)
    with pytest.raises(NotFound):
        client.Index("missing").export_index(str(tmp_path / "x"))


# -- cancellation -----------------------------------------------------------------------------


def test_cancel_running_export_leaves_no_manifest(client, tmp_path: Path) -> None:
    src = simple_index(client, "src", {"": 30_000}, dim=16)
    dest = tmp_path / "a"
    r = src.export_index(str(dest), part_max_records=100)
    wait_until(lambda: client.describe_export(r.export_id).records_exported > 0)
    assert client.cancel_export(r.export_id).status in ("InProgress", "Cancelled")
    d = client.wait_export(r.export_id, timeout=30)
    assert d.status == "Cancelled" and d.finished_at is not None
    assert d.records_exported < 30_000
    assert not (dest / "manifest.json").exists()
    assert not dest.exists() or not [p for p in dest.rglob("*") if p.is_file()]  # its parts were removed
    with pytest.raises(InvalidArgument, match=r"no manifest\.json"):
        open_source(open_store(str(dest)))
    # a new export to the same place works
    r2 = src.export_index(str(dest), part_max_records=10_000, sync=True)
    assert r2.status == "Completed"
    assert sorted(p.name for p in (dest / "__default__").iterdir()) == [f"part-0000{i}.jsonl.gz" for i in range(3)]
    assert verify_archive(open_store(str(dest))).ok


def test_cancel_requested_by_another_process(client, tmp_path: Path) -> None:
    src = simple_index(client, "src", {"": 30_000}, dim=16)
    r = src.export_index(str(tmp_path / "a"), part_max_records=100)
    wait_until(lambda: client.describe_export(r.export_id).records_exported > 0)
    client.jobs.store.request_cancel(r.export_id)  # what `spruce jobs cancel` does while we own the folder
    d = client.wait_export(r.export_id, timeout=30)
    assert d.status == "Cancelled" and d.records_exported < 30_000
    assert not (tmp_path / "a" / "manifest.json").exists()
    with pytest.raises(NotFound):
        client.jobs.store.request_cancel("exp-nope")


def test_cancel_running_import_keeps_only_whole_files(client, tmp_path: Path) -> None:
    src = simple_index(client, "src", {"": 20_000, "b": 10_000}, dim=16)
    dest = tmp_path / "a"
    src.export_index(str(dest), part_max_records=100, sync=True)
    files = file_ids(dest)
    client.create_index("dst", dimension=16, metric="cosine")  # one the restore did not create: it stays
    d = client.Index("dst").upsert_from_file(str(dest), sync=False)
    wait_until(lambda: client.describe_import(d.import_id).files_done >= 2)
    client.cancel_import(d.import_id)
    done = client.wait_import(d.import_id, timeout=30)
    assert done.status == "Cancelled"
    have = ids_by_ns(client.Index("dst"))
    whole = absent = 0
    for ns, path, ids in files:
        present = ids & have.get(ns, set())
        assert present in (set(), ids), f"{path} is partly applied: {len(present)} of {len(ids)}"
        whole += present == ids
        absent += not present
    assert whole >= 2 and absent >= 1
    assert done.files_done == whole and done.records_imported == sum(len(v) for v in have.values())


# -- export options ---------------------------------------------------------------------------


def test_export_namespaces_subset_and_filter(client, tmp_path: Path) -> None:
    src = simple_index(client, "src", {"": 30, "a": 20, "b": 10})
    r = src.export_index(str(tmp_path / "sub"), namespaces=["a", "__default__"], sync=True)
    m = read_manifest(tmp_path / "sub")
    assert sorted(ns["name"] for ns in m["namespaces"]) == ["", "a"]
    assert sorted(m["selection"]["namespaces"]) == ["", "a"]
    assert client.describe_export(r.export_id).records_exported == 50
    client.Index("sub").upsert_from_file(str(tmp_path / "sub"))
    want = dump(src)
    assert dump(client.Index("sub")) == {"": want[""], "a": want["a"]}

    flt = {"genre": {"$eq": "drama"}, "i": {"$gte": 3}}
    src.export_index(str(tmp_path / "flt"), filter=flt, format="parquet", sync=True)
    m = read_manifest(tmp_path / "flt")
    assert m["selection"]["filter"] == flt
    client.Index("flt").upsert_from_file(str(tmp_path / "flt"))
    got = dump(client.Index("flt"))
    expected = {ns: {i: v for i, v in recs.items() if json.loads(v[2])["genre"] == "drama"
                     and json.loads(v[2])["i"] >= 3} for ns, recs in want.items()}
    assert got == {ns: recs for ns, recs in expected.items() if recs}
    assert sum(ns["record_count"] for ns in m["namespaces"]) == sum(len(v) for v in got.values()) > 0

    with pytest.raises(NotFound, match="nope"):
        src.export_index(str(tmp_path / "x"), namespaces=["nope"], sync=True)
    with pytest.raises(InvalidArgument):
        src.export_index(str(tmp_path / "y"), filter={"genre": {"$regex": "x"}})
    with pytest.raises(InvalidArgument):
        src.export_index(str(tmp_path / "y"), format="csv")


@pytest.mark.parametrize("fmt", FORMATS)
def test_parts_roll_over_by_records(client, tmp_path: Path, fmt: str) -> None:
    src = simple_index(client, "src", {"": 50, "b": 7})
    src.export_index(str(tmp_path / "a"), format=fmt, part_max_records=7, sync=True)
    m = read_manifest(tmp_path / "a")
    ext = fmt
    default = m["namespaces"][[n["name"] for n in m["namespaces"]].index("")]
    assert [f["path"] for f in default["files"]] == [f"__default__/part-{i:05d}.{ext}" for i in range(8)]
    assert [f["records"] for f in default["files"]] == [7] * 7 + [1]
    b = m["namespaces"][[n["name"] for n in m["namespaces"]].index("b")]
    assert [f["records"] for f in b["files"]] == [7]
    # records are in id order across parts
    ids = [i for _, _, s in file_ids(tmp_path / "a")[:8] for i in sorted(s)]
    assert ids == sorted(ids) and len(ids) == 50


def test_compression_level(client, tmp_path: Path) -> None:
    src = simple_index(client, "src", {"": 2000}, dim=32)
    src.export_index(str(tmp_path / "l0"), compression_level=0, sync=True)
    src.export_index(str(tmp_path / "l3"), compression_level=3, sync=True)
    m0, m3 = read_manifest(tmp_path / "l0"), read_manifest(tmp_path / "l3")
    assert (m0["data"]["level"], m3["data"]["level"]) == (0, 3)
    assert m3["totals"]["bytes"] < m0["totals"]["bytes"]
    for p in ("l0", "l3"):
        with gzip.open(tmp_path / p / "__default__" / "part-00000.jsonl.gz", "rt") as f:
            assert sum(1 for _ in f) == 2000
    with pytest.raises(InvalidArgument, match="compression_level"):
        src.export_index(str(tmp_path / "l9"), compression_level=9)


def test_export_refuses_to_replace_an_archive_unless_overwrite(client, tmp_path: Path) -> None:
    src = simple_index(client, "src", {"": 20})
    first = src.export_index(str(tmp_path / "a"), sync=True)
    with pytest.raises(AlreadyExists, match="overwrite"):
        src.export_index(str(tmp_path / "a"), sync=True)
    assert read_manifest(tmp_path / "a")["export_id"] == first.export_id  # the old archive is untouched
    assert verify_archive(open_store(str(tmp_path / "a"))).ok
    failed = [e for e in client.list_exports() if e.export_id != first.export_id]
    assert len(failed) == 1 and failed[0].status == "Failed" and "overwrite" in failed[0].error
    src.upsert([{"id": "later", "values": [1] * 8}])
    second = src.export_index(str(tmp_path / "a"), sync=True, overwrite=True)
    assert read_manifest(tmp_path / "a")["export_id"] == second.export_id
    assert read_manifest(tmp_path / "a")["totals"]["records"] == 21


# -- import options -----------------------------------------------------------------------------


def _conflict_setup(client, tmp_path: Path) -> tuple[Any, Path]:
    src = simple_index(client, "src", {"": 15}, prefix="r", seed=1)
    src.export_index(str(tmp_path / "a"), part_max_records=4, sync=True)
    dst = simple_index(client, "dst", {"": 0})
    dst.upsert([{"id": f"r--{i:06d}", "values": [0.5] * 8, "metadata": {"old": True}} for i in range(12, 20)])
    dst.upsert([{"id": "other", "values": [1] * 8}], namespace="keep")
    return dst, tmp_path / "a"


@pytest.mark.parametrize("mode", ["overwrite", "skip"])
def test_on_conflict_overwrite_and_skip(client, tmp_path: Path, mode: str) -> None:
    dst, arch = _conflict_setup(client, tmp_path)
    before = dump(dst)
    d = dst.upsert_from_file(str(arch), on_conflict=mode)
    assert d.status == "Completed"
    got = dump(dst)
    src = dump(client.Index("src"))[""]
    assert got["keep"] == before["keep"]
    assert set(got[""]) == {f"r--{i:06d}" for i in range(20)}
    for i in range(20):
        rid = f"r--{i:06d}"
        if i < 12:
            assert got[""][rid] == src[rid]
        elif i < 15:
            assert got[""][rid] == (src[rid] if mode == "overwrite" else before[""][rid])
        else:
            assert got[""][rid] == before[""][rid]
    # the in-memory state follows the same rule
    assert fetched(dst, "", list(got[""])) == got[""]


def test_on_conflict_fail_applies_nothing(client, tmp_path: Path) -> None:
    dst, arch = _conflict_setup(client, tmp_path)
    before = dump(dst)
    with pytest.raises(ConflictError, match=r"3 record\(s\).*nothing was applied"):
        dst.upsert_from_file(str(arch), on_conflict="fail")
    assert dump(dst) == before
    # without conflicts, fail just imports
    client.Index("fresh").upsert_from_file(str(arch), on_conflict="fail")
    assert dump(client.Index("fresh")) == dump(client.Index("src"))


def test_namespace_map_and_merge(client, tmp_path: Path) -> None:
    src = simple_index(client, "src", {"": 10, "a": 5, "b": 3})
    src.export_index(str(tmp_path / "a"), sync=True)
    dst = simple_index(client, "dst", {"keep": 4, "x": 2}, prefix="k")
    before = dump(dst)
    d = dst.upsert_from_file(str(tmp_path / "a"), namespace_map={"__default__": "x", "a": "y"})
    assert d.status == "Completed"
    got, want = dump(dst), dump(src)
    assert got["keep"] == before["keep"]
    assert got["x"] == {**before["x"], **want[""]}
    assert got["y"] == want["a"] and got["b"] == want["b"]
    assert "" not in got and "a" not in got


def test_dimension_and_type_mismatch_against_an_existing_index(client, tmp_path: Path) -> None:
    src = simple_index(client, "src", {"": 5}, dim=4)
    src.export_index(str(tmp_path / "a"), sync=True)
    dst = simple_index(client, "dst", {"": 3}, dim=8)
    before = dump(dst)
    with pytest.raises(InvalidArgument, match=r"dimension 4 .*has 8"):
        dst.upsert_from_file(str(tmp_path / "a"))
    assert dump(dst) == before
    client.create_index("sp", vector_type="sparse")
    with pytest.raises(InvalidArgument, match="sparse"):
        client.Index("sp").upsert_from_file(str(tmp_path / "a"))
    assert client.list_imports() == []  # refused before any job existed


# -- corruption -----------------------------------------------------------------------------


@pytest.fixture(params=FORMATS)
def archive(request, client, tmp_path: Path) -> tuple[Path, list[tuple[str, str, set[str]]]]:
    src = simple_index(client, "src", {"": 30, "b": 30}, seed=3)
    root = tmp_path / f"arch-{request.param}"
    src.export_index(str(root), format=request.param, part_max_records=10, sync=True)
    files = file_ids(root)
    assert len(files) == 6
    return root, files


def _target(client) -> tuple[Any, dict]:
    dst = simple_index(client, "dst", {"mine": 5}, prefix="m")
    return dst, dump(dst)


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x20
    p.write_bytes(bytes(data))


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size * 2 // 3])


FILE_CORRUPTIONS = {
    "flip": (lambda root, f: _flip(root / f["path"]), ChecksumMismatch),
    "truncate": (lambda root, f: _truncate(root / f["path"]), ChecksumMismatch),
    "missing": (lambda root, f: (root / f["path"]).unlink(), MissingFile),
    "sha": (None, ChecksumMismatch),
    "count": (None, RecordCountMismatch),
}


def _edit_file_entry(root: Path, k: int, how: str) -> None:
    doc = read_manifest(root)
    flat = [(ns, f) for ns in doc["namespaces"] for f in ns["files"]]
    ns, f = flat[k]
    if how == "sha":
        f["sha256"] = hashlib.sha256(b"something else").hexdigest()
    else:  # a consistent edit: the sums still add up, only the file disagrees with its entry
        f["records"] += 1
        ns["record_count"] += 1
        doc["totals"]["records"] += 1
    write_manifest(root, doc)


@pytest.mark.parametrize("k", [0, 3])
@pytest.mark.parametrize("how", list(FILE_CORRUPTIONS))
def test_bad_file_aborts_and_contributes_nothing(client, archive, how: str, k: int) -> None:
    root, files = archive
    dst, before = _target(client)
    damage, exc = FILE_CORRUPTIONS[how]
    entry = manifest_files(root)[k]
    if damage is None:
        _edit_file_entry(root, k, how)
    else:
        damage(root, entry)
    with pytest.raises(exc, match=re.escape(entry["path"])) as info:
        dst.upsert_from_file(str(root))
    assert isinstance(info.value, IntegrityError)
    # the error names the bad file only, whichever file was being applied when it was found
    others = [f["path"] for j, f in enumerate(manifest_files(root)) if j != k]
    assert not [p for p in others if p in str(info.value)], str(info.value)
    assert str(info.value).count("nothing was applied") <= 1
    # the rule: every file's size and sha256 are checked before any is applied, so damaged bytes
    # apply nothing at all. A file whose bytes match but whose record count does not is found
    # while applying: files are applied in manifest order, each whole or not at all, and the
    # import stops at the bad one, so exactly the files before it are present.
    applied_first = k if how == "count" else 0
    got = ids_by_ns(dst)
    expected: dict[str, set[str]] = {"mine": set(before["mine"])}
    for ns, _, ids in files[:applied_first]:
        expected.setdefault(ns, set()).update(ids)
    assert got == expected
    assert dump(dst)["mine"] == before["mine"]
    d = client.list_imports()[-1]
    assert d.status == "Failed" and entry["path"] in d.error
    assert d.files_done == applied_first and d.records_imported == 10 * applied_first


@pytest.mark.parametrize("edit", [
    pytest.param(lambda root: (root / "manifest.json").write_text("{not json", "utf-8"), id="invalid-json"),
    pytest.param(lambda root: write_manifest(root, {k: v for k, v in read_manifest(root).items()
                                                    if k != "totals"}), id="removed-field"),
    pytest.param(lambda root: write_manifest(root, {**read_manifest(root), "version": 99}), id="newer-version"),
    pytest.param(lambda root: _edit_file_entry(root, 1, "count") or write_manifest(
        root, {**read_manifest(root), "totals": {**read_manifest(root)["totals"], "records": 1}}),
        id="count-inconsistent"),
])
def test_bad_manifest_applies_nothing(client, archive, edit) -> None:
    root, _ = archive
    dst, before = _target(client)
    edit(root)
    with pytest.raises(ManifestInvalid, match=r"manifest\.json"):
        dst.upsert_from_file(str(root))
    assert dump(dst) == before
    with pytest.raises(ManifestInvalid):
        client.Index("fresh").upsert_from_file(str(root))
    assert not client.has_index("fresh")


def test_missing_manifest_applies_nothing(client, archive) -> None:
    root, _ = archive
    dst, before = _target(client)
    (root / "manifest.json").unlink()
    with pytest.raises(ArchiveIncomplete, match="manifest"):
        dst.upsert_from_file(str(root))
    assert dump(dst) == before


def test_failed_restore_into_a_new_index_leaves_no_index(client, archive) -> None:
    root, _ = archive
    _flip(root / manifest_files(root)[0]["path"])
    with pytest.raises(ChecksumMismatch):
        client.Index("fresh").upsert_from_file(str(root))
    assert not client.has_index("fresh")
    assert "fresh" not in client.list_indexes().names()
    assert "nothing was applied" in client.list_imports()[-1].error


def test_failure_after_good_files_removes_the_index_it_created(client, archive) -> None:
    # bytes intact, count wrong: found only while applying file 2, after files 0 and 1 committed;
    # the job created the index, so a failure removes it: the target is left as it was found
    root, _files = archive
    _edit_file_entry(root, 2, "count")
    with pytest.raises(RecordCountMismatch):
        client.Index("fresh").upsert_from_file(str(root))
    assert not client.has_index("fresh")
    assert any("removed index 'fresh'" in n for n in client.list_imports()[-1].notes)


def test_continue_mode_skips_a_bad_file_whole(client, archive) -> None:
    root, files = archive
    dst, before = _target(client)
    bad = manifest_files(root)[3]
    _flip(root / bad["path"])
    d = dst.upsert_from_file(str(root), error_mode="continue")
    assert d.status == "Completed"
    assert d.records_imported == 50 and d.records_rejected == 10
    got = ids_by_ns(dst)
    expected: dict[str, set[str]] = {"mine": set(before["mine"])}
    for i, (ns, _, ids) in enumerate(files):
        if i != 3:
            expected.setdefault(ns, set()).update(ids)
    assert got == expected
    rejects = [json.loads(line) for line in Path(d.rejects_path).read_text().splitlines()]
    assert len(rejects) == 1
    assert rejects[0]["file"] == bad["path"]
    assert "whole file skipped" in rejects[0]["reason"] and bad["path"] in rejects[0]["reason"]


def _forge_bad_records(root: Path, path: str, fmt: str) -> list[str]:
    """Rewrite one part with two invalid records (wrong dimension, a string in values) and a
    manifest that agrees with the new bytes. Returns the ids of the bad records."""
    if fmt == "jsonl.gz":
        lines = gzip.decompress((root / path).read_bytes()).decode().splitlines()
        bad = []
        for n, how in ((3, "dim"), (5, "str")):
            rec = json.loads(lines[n - 1])
            rec["values"] = rec["values"][:5] if how == "dim" else ["x"] * len(rec["values"])
            lines[n - 1] = json.dumps(rec)
            bad.append(rec["id"])
        replace_part(root, path, gzip.compress(("\n".join(lines) + "\n").encode()))
        return bad
    table = pq.read_table(root / path)
    rows = table.to_pylist()
    rows[2]["values"] = rows[2]["values"][:5]
    rows[4]["sparse_values"] = {"indices": [1, 1], "values": [0.5, 0.5]}
    out = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out)
    replace_part(root, path, out.getvalue().to_pybytes())
    return [rows[2]["id"], rows[4]["id"]]


def test_corrupt_records_with_a_matching_checksum(client, archive) -> None:
    root, files = archive
    fmt = "parquet" if root.name.endswith("parquet") else "jsonl.gz"
    bad_path = manifest_files(root)[4]["path"]
    bad_ids = _forge_bad_records(root, bad_path, fmt)
    dst, before = _target(client)

    # abort: a CorruptRecord naming the file and where in it; nothing of the file applied
    with pytest.raises(CorruptRecord, match=re.escape(bad_path)) as info:
        dst.upsert_from_file(str(root))
    assert ("line 3" if fmt == "jsonl.gz" else "record 2") in str(info.value)
    got = ids_by_ns(dst)
    assert got == {"mine": set(before["mine"]), "": set().union(*(f[2] for f in files[:3])), "b": files[3][2]}

    # continue: bad records skipped and listed (file, line, reason); everything else applied
    d = client.Index("dst2").upsert_from_file(str(root), error_mode="continue")
    assert d.status == "Completed"
    assert (d.records_imported, d.records_rejected) == (58, 2)
    rejects = [json.loads(line) for line in Path(d.rejects_path).read_text().splitlines()]
    assert [r["file"] for r in rejects] == [bad_path, bad_path]
    assert [r["id"] for r in rejects] == bad_ids
    if fmt == "jsonl.gz":
        assert [r["line"] for r in rejects] == [3, 5]
    else:
        assert [r["record"] for r in rejects] == [2, 4]
    assert all(r["reason"] and r["field"] for r in rejects)
    assert "dimension" in rejects[0]["reason"]
    got = ids_by_ns(client.Index("dst2"))
    everything = {ns: set() for ns in ("", "b")}
    for ns, _, ids in files:
        everything[ns] |= ids
    assert got == {ns: ids - set(bad_ids) for ns, ids in everything.items()}


def test_jobs_run_with_job_settings_and_put_them_back(client, tmp_path: Path, monkeypatch) -> None:
    """While a job runs, its threads hand the GIL over within 0.5 ms and the collector runs
    rarely (see spruce.jobs.tuning); the caller's settings are back once the last job ends,
    and a change the caller made meanwhile is kept."""
    import gc
    import sys

    from spruce.jobs import manager, tuning

    seen: list[tuple[float, int]] = []
    real = manager.RUNNERS["export"]

    def spy(ctx: Any) -> None:
        seen.append((sys.getswitchinterval(), gc.get_threshold()[0]))
        real(ctx)

    monkeypatch.setitem(manager.RUNNERS, "export", spy)
    client = spruce.Client(tmp_path / "data2")  # a manager built after the spy is in place
    interval, threshold = sys.getswitchinterval(), gc.get_threshold()
    try:
        src = simple_index(client, "src", {"": 50}, dim=8)
        assert interval > tuning.INTERVAL and 0 < threshold[0] < tuning.GC_THRESHOLD0
        assert src.export_index(str(tmp_path / "a"), sync=True).status == "Completed"
        assert seen == [(pytest.approx(tuning.INTERVAL), tuning.GC_THRESHOLD0)]
        assert sys.getswitchinterval() == interval and gc.get_threshold() == threshold
        # nested (two jobs at once): only the last one out restores them
        with tuning.tuned_for_jobs():
            with tuning.tuned_for_jobs():
                pass
            assert sys.getswitchinterval() == pytest.approx(tuning.INTERVAL)
            assert gc.get_threshold()[0] == tuning.GC_THRESHOLD0
        assert sys.getswitchinterval() == interval and gc.get_threshold() == threshold
        with tuning.tuned_for_jobs():
            sys.setswitchinterval(0.002)
            gc.set_threshold(1234)
        assert sys.getswitchinterval() == pytest.approx(0.002) and gc.get_threshold()[0] == 1234
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*threshold)
        client.jobs.shutdown()
        client.engine.close()
