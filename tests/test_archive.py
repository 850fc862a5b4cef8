"""Archive format: lossless round trips, integrity checks, plain-file sources (real files, LocalStore)."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spruce.archive import (
    IMPORT_SCHEMA,
    ArchiveReader,
    ArchiveWriter,
    Manifest,
    decode_dir,
    encode_namespace,
    load_schema,
    open_source,
    parse_manifest,
)
from spruce.archive.naming import DIR_RE
from spruce.errors import (
    ArchiveIncomplete,
    ChecksumMismatch,
    CorruptRecord,
    IntegrityError,
    InvalidArgument,
    ManifestInvalid,
    MissingFile,
    RecordCountMismatch,
    ValidationError,
)
from spruce.records import Record, RecordBatch, SparseValues, make_index_config
from spruce.storage import LocalStore

REPO = Path(__file__).resolve().parents[1]
FORMATS = ["jsonl.gz", "parquet"]
F32 = np.finfo(np.float32)

SPECIAL_FLOATS = np.array(
    [0.0, -0.0, 1e-45, -1e-45, 1.17549435e-38, 1.1754942e-38, 3e-39, F32.max, -F32.max, F32.tiny,
     1.0, -1.0, 0.1, 1 / 3, 16777217.0, 1e-7, 123456789.0],
    dtype=np.float32,
)

METADATA_SAMPLES: list[dict[str, Any] | None] = [
    {"genre": "drama", "year": 2021, "rating": 4.5, "public": True, "tags": ["a", "b"]},
    {"empty_list": [], "unicode": "ünïcødé ✓ 日本語 🌲", "quote": 'say "hi"\n\ttab\\'},
    {"big": 2**63 - 1, "bigger": 2**64 - 1, "neg": -(2**63), "past_double": 2**53 + 1},
    {"float_exact": 0.1, "tiny": 5e-324, "huge": 1.7976931348623157e308, "neg_zero": -0.0, "false": False},
    None,
    {},
    {"": "empty key", "nested.dots": "x", "zero": 0},
]


# -- helpers ------------------------------------------------------------------


def make_records(kind: str, n: int, *, dim: int = 8, seed: int = 0, prefix: str = "id") -> list[Record]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        values = None
        if kind in ("dense", "hybrid"):
            values = rng.standard_normal(dim).astype(np.float32)
            if i < len(SPECIAL_FLOATS):
                values[0] = SPECIAL_FLOATS[i]
                values[-1] = SPECIAL_FLOATS[-1 - i]
        sparse = None
        if kind == "sparse" or (kind == "hybrid" and i % 3):
            nnz = 1 + i % 5
            idx = np.sort(rng.choice(2**32 - 1, size=nnz, replace=False)).astype(np.uint32)
            if i == 1:
                idx[-1] = 2**32 - 1
            val = rng.standard_normal(nnz).astype(np.float32)
            val[0] = SPECIAL_FLOATS[i % len(SPECIAL_FLOATS)]
            sparse = SparseValues(indices=idx, values=val)
        md = METADATA_SAMPLES[i % len(METADATA_SAMPLES)]
        out.append(Record(id=f"{prefix}-{i}", values=values, sparse_values=sparse,
                          metadata=None if md is None else dict(md)))
    return out


def source_for(kind: str, dim: int | None = 8) -> dict[str, Any]:
    sparse = kind == "sparse"
    return {"index": "test-index", "dimension": None if sparse else dim,
            "metric": "dotproduct" if sparse else "cosine", "vector_type": "sparse" if sparse else "dense",
            "spec": {"serverless": {"cloud": "local", "region": "local"}}}


def write_archive(store: LocalStore, fmt: str, data: dict[str, list[Record]], *, kind: str = "dense",
                  dim: int = 8, batch: int = 4, **kw: Any) -> Manifest:
    w = ArchiveWriter(store, format=fmt, **kw)
    w.begin()
    for ns, records in data.items():
        if not records:
            w.write(ns, RecordBatch(ids=[]))
        for a in range(0, len(records), batch):
            w.write(ns, RecordBatch.from_records(records[a:a + batch]))
    return w.commit(source=source_for(kind, dim), consistency="snapshot",
                    snapshot={"point": 42, "taken_at": "2025-01-02T03:04:05Z"},
                    selection={"namespaces": None, "filter": None})


def read_namespace(store: LocalStore, ns: str, **kw: Any) -> list[Record]:
    reader = ArchiveReader(store)
    out: list[Record] = []
    for b in reader.iter_batches(reader.manifest.namespace(ns), **kw):
        out.extend(b.records())
    return out


def assert_same(got: list[Record], expected: list[Record]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g == e, (g, e)  # Record.__eq__ is bit-exact on float32 arrays
        if e.metadata is not None:
            for key, value in e.metadata.items():
                assert type(g.metadata[key]) is type(value), key


def rewrite_manifest(store: LocalStore, edit: Any) -> None:
    doc = json.loads(store.get_bytes("manifest.json"))
    edit(doc)
    store.put_bytes("manifest.json", json.dumps(doc).encode())


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "archive")


# -- round trips --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl.gz", "jsonl", "parquet"])
@pytest.mark.parametrize("kind", ["dense", "sparse", "hybrid"])
def test_round_trip_is_lossless(store: LocalStore, fmt: str, kind: str) -> None:
    records = make_records(kind, 40)
    manifest = write_archive(store, fmt, {"": records, "other": records[:5]}, kind=kind)
    assert_same(read_namespace(store, ""), records)
    assert_same(read_namespace(store, "other"), records[:5])
    assert manifest.totals == {"namespaces": 2, "records": 45, "files": 2,
                               "bytes": sum(f.bytes for f in manifest.files)}
    assert manifest.source["vector_type"] == ("sparse" if kind == "sparse" else "dense")
    # the manifest on disk is the one returned, and it validates
    assert parse_manifest(store.get_bytes("manifest.json")) == manifest
    assert ArchiveReader(store).verify().ok


@pytest.mark.parametrize("fmt", FORMATS)
def test_float32_bit_patterns_survive(store: LocalStore, fmt: str) -> None:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, size=64 * 2000, dtype=np.uint64).astype(np.uint32)
    bits[:6] = [0x00000001, 0x80000001, 0x007FFFFF, 0x80000000, 0x7F7FFFFF, 0xFF7FFFFF]
    values = bits.view(np.float32).copy()
    values[~np.isfinite(values)] = 1.5
    values = values.reshape(-1, 64)
    batch = RecordBatch(ids=[f"r{i}" for i in range(len(values))], values=values)
    w = ArchiveWriter(store, format=fmt)
    w.write("", batch)
    w.commit(source=source_for("dense", 64))
    got = np.concatenate([b.values for b in ArchiveReader(store).iter_batches(
        ArchiveReader(store).manifest.namespace(""), batch_size=333)])
    assert got.dtype == np.float32
    assert got.tobytes() == values.tobytes()


def test_jsonl_lines_are_plain_records(store: LocalStore) -> None:
    rec = Record(id="a", values=np.array([0.1, -0.0, 1e-45], dtype=np.float32),
                 sparse_values=SparseValues(np.array([3], dtype=np.uint32), np.array([0.5], dtype=np.float32)),
                 metadata={"k": "v"})
    w = ArchiveWriter(store, format="jsonl")
    w.write("", RecordBatch.from_records([rec, Record(id="b", values=np.ones(3, dtype=np.float32))]))
    w.commit(source=source_for("dense", 3))
    lines = store.get_bytes("__default__/part-00000.jsonl").splitlines()
    assert lines[0] == (b'{"id":"a","values":[0.1,-0.0,1e-45],'
                        b'"sparse_values":{"indices":[3],"values":[0.5]},"metadata":{"k":"v"}}')
    assert lines[1] == b'{"id":"b","values":[1.0,1.0,1.0]}'  # absent parts are omitted


NAMESPACES = ["", "a/b", "..", ".", " spaced ", "ünïcødé", "__default__x", "__Default__", "__default",
              "___", "__ns-mexwe", "__nsh-" + "0" * 64, "ns-abc", "plain_name-1", "a" * 255, "b" * 256,
              "x" * 512, "ü" * 512, "\t\n", "UPPER", "upper", "%2F", "a\\b", "con", "-"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_any_namespace_name_round_trips(store: LocalStore, fmt: str) -> None:
    data = {ns: make_records("dense", 2, seed=i, prefix=f"n{i}") for i, ns in enumerate(NAMESPACES)}
    manifest = write_archive(store, fmt, data)
    assert [ns.name for ns in manifest.namespaces] == NAMESPACES
    dirs = [ns.dir for ns in manifest.namespaces]
    assert len(set(dirs)) == len(dirs)
    for ns in manifest.namespaces:
        assert DIR_RE.fullmatch(ns.dir) and ns.dir not in (".", "..")
        assert len(ns.dir.encode()) <= 255
        assert (store.root / ns.dir).is_dir()
        assert_same(read_namespace(store, ns.name), data[ns.name])
    assert manifest.namespace("").dir == "__default__"
    assert manifest.namespace("plain_name-1").dir == "plain_name-1"  # Pinecone's import reads it as is
    assert manifest.namespace("UPPER").dir == "UPPER"
    assert manifest.namespace("x" * 512).dir.startswith("__nsh-")  # too long: name only in the manifest
    # every top-level folder is a namespace folder of the manifest
    assert {p.name for p in store.root.iterdir() if p.is_dir()} == set(dirs)


def test_default_alias_is_the_default_namespace(store: LocalStore) -> None:
    a, b = make_records("dense", 2), make_records("dense", 2, prefix="other")
    w = ArchiveWriter(store)
    w.write("", RecordBatch.from_records(a))
    w.write("__default__", RecordBatch.from_records(b))
    m = w.commit(source=source_for("dense"))
    assert [(ns.name, ns.dir, ns.record_count) for ns in m.namespaces] == [("", "__default__", 4)]


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=512))
def test_namespace_folder_encoding_property(name: str) -> None:
    folder = encode_namespace(name)
    assert DIR_RE.fullmatch(folder)
    assert "/" not in folder and folder not in (".", "..")
    assert len(folder.encode()) <= 255
    decoded = decode_dir(folder)
    assert decoded == name or (decoded is None and folder.startswith("__nsh-"))
    if re.fullmatch(r"[A-Za-z0-9_-]{1,255}", name) and not name.startswith("__"):
        assert folder == name


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_namespace_folder_encoding_is_collision_free(a: str, b: str) -> None:
    if a != b:
        assert encode_namespace(a) != encode_namespace(b)


def test_decode_rejects_non_canonical_folders() -> None:
    for bad in ("__ns-", "__ns-MEXWE", "__ns-a1", "__nsh-xyz", "__foo", ".", "a b"):
        with pytest.raises(ValueError):
            decode_dir(bad)


# -- Parquet ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "sparse", "hybrid"])
def test_parquet_schema_is_the_import_schema(store: LocalStore, kind: str) -> None:
    write_archive(store, "parquet", {"": make_records(kind, 10)}, kind=kind)
    path = store.root / "__default__" / "part-00000.parquet"
    schema = pq.read_schema(path)
    assert schema.remove_metadata().equals(IMPORT_SCHEMA)
    expected = [
        ("id", pa.string(), False),
        ("values", pa.list_(pa.float32()), False),
        ("sparse_values", pa.struct([("indices", pa.list_(pa.uint32())), ("values", pa.list_(pa.float32()))]),
         True),
        ("metadata", pa.string(), True),
    ]
    assert [(f.name, f.type, f.nullable) for f in schema] == expected
    table = pq.read_table(path)
    if kind == "sparse":
        assert table.column("values").to_pylist() == [[]] * 10  # sparse-only: an empty list per row
    if kind == "dense":
        assert table.column("sparse_values").null_count == 10
    md = table.column("metadata").to_pylist()
    assert md[4] is None and json.loads(md[0])["genre"] == "drama"  # JSON text


# -- parts --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_parts_roll_over_by_records(store: LocalStore, fmt: str) -> None:
    records = make_records("hybrid", 50)
    m = write_archive(store, fmt, {"ns": records}, batch=9, part_max_records=7)
    files = m.namespace("ns").files
    assert [f.records for f in files] == [7] * 7 + [1]
    assert [f.path for f in files] == [f"ns/part-{i:05d}.{fmt}" for i in range(8)]
    assert_same(read_namespace(store, "ns"), records)


@pytest.mark.parametrize("fmt", FORMATS)
def test_parts_roll_over_by_bytes(store: LocalStore, fmt: str) -> None:
    records = make_records("dense", 60, dim=64)
    m = write_archive(store, fmt, {"": records}, dim=64, batch=25, part_max_bytes=4000)
    files = m.namespace("").files
    assert len(files) > 5
    assert sum(f.records for f in files) == 60
    assert all(f.records < 15 for f in files)
    assert_same(read_namespace(store, ""), records)


def test_a_record_larger_than_a_part_gets_its_own_part(store: LocalStore) -> None:
    records = make_records("dense", 3, dim=100)
    m = write_archive(store, "jsonl.gz", {"": records}, dim=100, part_max_bytes=10)
    assert [f.records for f in m.files] == [1, 1, 1]


def test_namespaces_may_interleave(store: LocalStore) -> None:
    a, b = make_records("dense", 9, prefix="a"), make_records("dense", 9, prefix="b")
    w = ArchiveWriter(store, format="parquet", part_max_records=4)
    for i in range(0, 9, 3):
        w.write("a", RecordBatch.from_records(a[i:i + 3]))
        w.write("b", RecordBatch.from_records(b[i:i + 3]))
    m = w.commit(source=source_for("dense"))
    assert [ns.name for ns in m.namespaces] == ["a", "b"]
    assert_same(read_namespace(store, "a"), a)
    assert_same(read_namespace(store, "b"), b)


def test_writer_copies_what_it_encodes_later(store: LocalStore) -> None:
    buf = np.ones((4, 8), dtype=np.float32)
    w = ArchiveWriter(store, format="parquet")
    w.write("", RecordBatch(ids=["a", "b", "c", "d"], values=buf))
    buf[:] = 7.0  # the caller reuses its buffer before the part is encoded
    w.commit(source=source_for("dense"))
    assert all((r.values == 1.0).all() for r in read_namespace(store, ""))


def test_progress_adds_up(store: LocalStore) -> None:
    seen = []
    records = make_records("dense", 30)
    m = write_archive(store, "parquet", {"": records}, part_max_records=8,
                      on_progress=lambda r, b: seen.append((r, b)))
    assert sum(r for r, _ in seen) == 30
    assert sum(b for _, b in seen) == m.totals["bytes"]


def test_empty_namespace_is_listed(store: LocalStore) -> None:
    m = write_archive(store, "jsonl.gz", {"empty": [], "full": make_records("dense", 3)})
    first = m.namespaces[0]
    assert (first.name, first.record_count, first.files) == ("empty", 0, ())
    assert read_namespace(store, "empty") == []


# -- crash safety -------------------------------------------------------------


def test_abort_leaves_no_manifest(store: LocalStore) -> None:
    w = ArchiveWriter(store, part_max_records=2)
    w.write("", RecordBatch.from_records(make_records("dense", 5)))
    w.abort()
    assert not store.exists("manifest.json")
    with pytest.raises(InvalidArgument):
        w.write("", RecordBatch.from_records(make_records("dense", 1)))


def test_uncommitted_archive_is_incomplete(store: LocalStore) -> None:
    write_archive(store, "parquet", {"": make_records("dense", 5)}, part_max_records=2)
    store.delete("manifest.json")  # a crash just before the commit
    with pytest.raises(ArchiveIncomplete, match=r"manifest\.json"):
        _ = ArchiveReader(store).manifest
    with pytest.raises(ArchiveIncomplete):  # the parts are not mistaken for plain files
        open_source(store)
    src = open_source(store, force_plain=True)
    assert src.kind == "plain" and src.namespaces == [""]


def test_reexport_removes_stale_manifest_first_and_orphans_last(store: LocalStore) -> None:
    write_archive(store, "jsonl.gz", {"": make_records("dense", 20), "gone": make_records("dense", 3)},
                  part_max_records=5)
    store.put_bytes("notes.txt", b"not ours")
    w = ArchiveWriter(store, part_max_records=5)
    w.begin()
    assert not store.exists("manifest.json")  # the old archive stopped being one at once
    w.write("", RecordBatch.from_records(make_records("dense", 7, seed=3)))
    m = w.commit(source=source_for("dense"))
    paths = sorted(i.path for i in store.list(""))
    assert paths == ["__default__/part-00000.jsonl.gz", "__default__/part-00001.jsonl.gz", "manifest.json",
                     "notes.txt"]
    assert m.totals["records"] == 7
    assert_same(read_namespace(store, ""), make_records("dense", 7, seed=3))


def test_orphan_parts_are_ignored_by_readers(store: LocalStore) -> None:
    records = make_records("dense", 5)
    write_archive(store, "jsonl.gz", {"": records})
    store.put_bytes("__default__/part-00007.jsonl.gz", b"left by a crashed run")
    assert_same(read_namespace(store, ""), records)
    report = ArchiveReader(store).verify()
    assert report.ok and report.orphans == ["__default__/part-00007.jsonl.gz"]


def test_worker_failure_surfaces_and_leaves_no_manifest(store: LocalStore) -> None:
    def boom(records: int, nbytes: int) -> None:
        raise RuntimeError("cancelled")

    w = ArchiveWriter(store, part_max_records=2, on_progress=boom)
    with pytest.raises(RuntimeError, match="cancelled"):
        for _ in range(50):
            w.write("", RecordBatch.from_records(make_records("dense", 4)))
        w.commit(source=source_for("dense"))
    assert not store.exists("manifest.json")


def test_commit_refuses_credentials_and_inconsistent_source(store: LocalStore) -> None:
    w = ArchiveWriter(store)
    w.write("", RecordBatch.from_records(make_records("dense", 2)))
    with pytest.raises(InvalidArgument, match="credentials"):
        w.commit(source={**source_for("dense"), "host": "https://user:secret@example.com/x"})
    assert not store.exists("manifest.json")
    w = ArchiveWriter(store)
    w.write("", RecordBatch.from_records(make_records("dense", 2)))
    with pytest.raises(InvalidArgument, match="dimension"):
        w.commit(source=source_for("dense", dim=9))


# -- corruption ---------------------------------------------------------------


@pytest.fixture(params=FORMATS)
def archive(request: pytest.FixtureRequest, store: LocalStore) -> tuple[LocalStore, Manifest]:
    data = {"": make_records("hybrid", 30), "b": make_records("hybrid", 30, seed=1)}
    return store, write_archive(store, request.param, data, kind="hybrid", part_max_records=15)


def read_everything(store: LocalStore) -> int:
    reader = ArchiveReader(store)
    return sum(len(b) for ns in reader.manifest.namespaces for b in reader.iter_batches(ns))


@pytest.mark.parametrize("where", [0, 5, 0.25, 0.5, 0.75, -9, -1])
def test_flipped_byte_is_a_checksum_mismatch(archive: tuple[LocalStore, Manifest], where: float) -> None:
    store, m = archive
    target = m.namespace("b").files[1]
    path = store.root / target.path
    data = bytearray(path.read_bytes())
    pos = int(len(data) * where) if isinstance(where, float) else where
    data[pos] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match=re.escape(target.path)):
        read_everything(store)
    report = ArchiveReader(store).verify()
    assert not report.ok
    assert report.bad_files == [target.path]
    assert report.problems[0].kind == "ChecksumMismatch"


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_flipped_byte_is_caught(store: LocalStore, fmt: str) -> None:
    write_archive(store, fmt, {"": make_records("hybrid", 6)}, kind="hybrid")
    path = store.root / "__default__" / f"part-00000.{fmt}"
    original = path.read_bytes()
    for pos in range(0, len(original), max(1, len(original) // 60)):
        data = bytearray(original)
        data[pos] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.raises(ChecksumMismatch, match="part-00000"):
            read_everything(store)
    path.write_bytes(original)
    assert read_everything(store) == 6


def test_truncated_file_is_a_checksum_mismatch(archive: tuple[LocalStore, Manifest]) -> None:
    store, m = archive
    target = m.namespace("").files[0]
    path = store.root / target.path
    path.write_bytes(path.read_bytes()[: target.bytes // 2])
    with pytest.raises(ChecksumMismatch, match=re.escape(target.path)):
        read_everything(store)
    assert ArchiveReader(store).verify().bad_files == [target.path]


def test_missing_part(archive: tuple[LocalStore, Manifest]) -> None:
    store, m = archive
    target = m.namespace("b").files[0]
    store.delete(target.path)
    with pytest.raises(MissingFile, match=re.escape(target.path)):
        read_everything(store)


def test_verify_lists_every_bad_file(archive: tuple[LocalStore, Manifest]) -> None:
    store, m = archive
    a, b, c = m.namespace("").files[0], m.namespace("").files[1], m.namespace("b").files[1]
    store.delete(a.path)
    (store.root / b.path).write_bytes(b"garbage")
    p = store.root / c.path
    p.write_bytes(p.read_bytes() + b"\n")
    report = ArchiveReader(store).verify()
    assert report.files_checked == 4
    assert report.bad_files == sorted([a.path, b.path, c.path])
    kinds = {p.path: p.kind for p in report.problems}
    assert kinds == {a.path: "MissingFile", b.path: "ChecksumMismatch", c.path: "ChecksumMismatch"}
    with pytest.raises(IntegrityError, match="2 more"):
        report.raise_for_problems()


def test_edited_record_count(archive: tuple[LocalStore, Manifest]) -> None:
    store, m = archive

    def bump_file_only(doc: dict) -> None:
        doc["namespaces"][1]["files"][0]["records"] += 1

    rewrite_manifest(store, bump_file_only)  # totals no longer add up: caught before any data is read
    with pytest.raises(ManifestInvalid, match="record_count"):
        _ = ArchiveReader(store).manifest

    def bump_consistently(doc: dict) -> None:
        doc["namespaces"][1]["record_count"] += 1
        doc["totals"]["records"] += 1

    rewrite_manifest(store, bump_consistently)
    path = m.namespace("b").files[0].path
    with pytest.raises(RecordCountMismatch, match=re.escape(path)):
        read_everything(store)
    report = ArchiveReader(store).verify()
    assert [(p.path, p.kind) for p in report.problems] == [(path, "RecordCountMismatch")]


def test_edited_checksum(archive: tuple[LocalStore, Manifest]) -> None:
    store, m = archive
    rewrite_manifest(store, lambda d: d["namespaces"][0]["files"][1].update(sha256="0" * 64))
    with pytest.raises(ChecksumMismatch, match=re.escape(m.namespace("").files[1].path)):
        read_everything(store)


@pytest.mark.parametrize("edit", [
    lambda d: d.pop("export_id"),
    lambda d: d["source"].pop("dimension"),
    lambda d: d["namespaces"][0]["files"][0].pop("sha256"),
    lambda d: d["namespaces"][0]["files"][0].update(path="../escape/part-00000.parquet"),
    lambda d: d["namespaces"][0]["files"][0].update(path="b/part-00000.parquet"),
    lambda d: d["namespaces"][0].update(dir="elsewhere"),
    lambda d: d["namespaces"][1].update(name=""),
    lambda d: d["totals"].update(bytes=1),
    lambda d: d.update(version=2),
    lambda d: d.update(format="tarball"),
    lambda d: d.update(created_at="yesterday"),
    lambda d: d.update(unexpected=True),
])
def test_edited_manifest_is_invalid(archive: tuple[LocalStore, Manifest], edit: Any) -> None:
    store, _ = archive
    rewrite_manifest(store, edit)
    with pytest.raises(ManifestInvalid, match=r"manifest\.json"):
        _ = ArchiveReader(store).manifest
    report = ArchiveReader(store).verify()
    assert [(p.path, p.kind) for p in report.problems] == [("manifest.json", "ManifestInvalid")]


def test_manifest_that_is_not_json(archive: tuple[LocalStore, Manifest]) -> None:
    store, _ = archive
    store.put_bytes("manifest.json", store.get_bytes("manifest.json")[:-20])
    with pytest.raises(ManifestInvalid, match="not valid JSON"):
        _ = ArchiveReader(store).manifest


def test_missing_manifest(archive: tuple[LocalStore, Manifest]) -> None:
    store, _ = archive
    store.delete("manifest.json")
    with pytest.raises(ArchiveIncomplete):
        read_everything(store)
    assert [p.kind for p in ArchiveReader(store).verify().problems] == ["ArchiveIncomplete"]


def test_corrupt_record_with_a_matching_checksum(store: LocalStore) -> None:
    """A file that matches its manifest but holds a bad record (a writer bug) is a CorruptRecord."""
    write_archive(store, "jsonl", {"": make_records("dense", 5)})
    path = "__default__/part-00000.jsonl"
    lines = store.get_bytes(path).splitlines(keepends=True)
    lines[3] = b'{"id":"id-3","values":[1.0]}\n'
    data = b"".join(lines)

    def fix(doc: dict) -> None:
        f = doc["namespaces"][0]["files"][0]
        doc["totals"]["bytes"] += len(data) - f["bytes"]
        f.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    store.put_bytes(path, data)
    rewrite_manifest(store, fix)
    with pytest.raises(CorruptRecord, match=r"part-00000.jsonl, line 4, id 'id-3', field 'values'"):
        read_everything(store)
    report = ArchiveReader(store).verify()
    assert report.problems[0].kind == "CorruptRecord" and "1 invalid record" in report.problems[0].message


class RemoteLikeStore(LocalStore):
    """A LocalStore that hides its local paths, as S3/GCS/Azure stores do."""

    def local_path(self, path: str) -> str | None:
        return None

    def child(self, prefix: str) -> RemoteLikeStore:
        return RemoteLikeStore(self._path(prefix))


@pytest.mark.parametrize("fmt", FORMATS)
def test_stores_without_local_paths(tmp_path: Path, fmt: str) -> None:
    store = RemoteLikeStore(tmp_path / "remote")
    records = make_records("hybrid", 20)
    m = write_archive(store, fmt, {"x": records}, kind="hybrid", part_max_records=8)
    assert_same(read_namespace(store, "x"), records)
    assert ArchiveReader(store).verify().ok
    target = m.files[1]
    p = store.root / target.path
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match=re.escape(target.path)):
        read_everything(store)


# -- manifest schema ----------------------------------------------------------


def test_schema_copies_are_identical() -> None:
    docs = (REPO / "docs" / "archive.schema.json").read_bytes()
    packaged = (REPO / "src" / "spruce" / "archive" / "archive.schema.json").read_bytes()
    assert docs == packaged
    assert load_schema() == json.loads(docs)
    assert load_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_rejects_missing_required_fields(store: LocalStore) -> None:
    m = write_archive(store, "parquet", {"": make_records("dense", 3)})
    good = m.to_dict()
    assert parse_manifest(json.dumps(good).encode()) == m
    for key in load_schema()["required"]:
        doc = dict(good)
        del doc[key]
        with pytest.raises(ManifestInvalid):
            parse_manifest(json.dumps(doc).encode())


def test_manifest_fields(store: LocalStore) -> None:
    m = write_archive(store, "jsonl.gz", {"": make_records("dense", 3)})
    doc = json.loads(store.get_bytes("manifest.json"))
    assert doc["format"] == "spruce-archive" and doc["version"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", doc["created_at"])
    assert doc["data"] == {"format": "jsonl.gz", "compression": "gzip", "level": 1}
    assert doc["snapshot"] == {"point": 42, "taken_at": "2025-01-02T03:04:05Z"}
    f = doc["namespaces"][0]["files"][0]
    raw = store.get_bytes(f["path"])
    assert f["bytes"] == len(raw) and f["sha256"] == hashlib.sha256(raw).hexdigest()
    assert m.export_id == doc["export_id"]


def test_index_config_as_source(store: LocalStore) -> None:
    cfg = make_index_config("my-index", dimension=8, metric="dotproduct", tags={"team": "search"})
    w = ArchiveWriter(store)
    w.write("", RecordBatch.from_records(make_records("dense", 2)))
    m = w.commit(source=cfg, consistency="live")
    assert m.source == {"index": "my-index", "dimension": 8, "metric": "dotproduct", "vector_type": "dense",
                        "spec": cfg.spec, "tags": {"team": "search"}}
    assert m.consistency == "live" and m.snapshot == {"point": None, "taken_at": None}


# -- plain files --------------------------------------------------------------


def plain_rows(n: int, dim: int = 4, start: int = 0) -> list[dict[str, Any]]:
    return [{"id": f"p{i}", "values": [float(i), 0.5, -1.25, 1e-3][:dim], "metadata": {"i": i, "s": "x"}}
            for i in range(start, start + n)]


def jsonl_bytes(rows: list[Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def write_plain_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "id": [r["id"] for r in rows],
        "values": pa.array([r["values"] for r in rows], type=pa.list_(pa.float32())),
        "metadata": [json.dumps(r["metadata"]) if r.get("metadata") is not None else None for r in rows],
        "extra": list(range(len(rows))),  # other columns are ignored, as by Pinecone's import
    })
    pq.write_table(table, path)


def read_source(src: Any, **kw: Any) -> list[Record]:
    return [r for f in src.files for b in src.read(f, **kw) for r in b.records()]


@pytest.mark.parametrize("name", ["data.jsonl", "data.jsonl.gz", "data.parquet", "data.ndjson"])
def test_plain_single_file(tmp_path: Path, name: str) -> None:
    rows = plain_rows(25)
    path = tmp_path / "in" / name
    path.parent.mkdir()
    if name.endswith(".parquet"):
        write_plain_parquet(path, rows)
    elif name.endswith(".gz"):
        raw = jsonl_bytes(rows)
        path.write_bytes(gzip.compress(raw[:500]) + gzip.compress(raw[500:]))  # two gzip members
    else:
        path.write_bytes(jsonl_bytes(rows).replace(b"\n", b"\r\n", 3) + b"\n\n")
    for src in (open_source(LocalStore(path), namespace="target"),
                open_source(LocalStore(tmp_path / "in"), name, namespace="target")):
        assert src.kind == "plain" and src.namespaces == ["target"]
        assert src.infer() == (4, "dense")
        got = read_source(src, batch_size=7)
        assert [r.id for r in got] == [f"p{i}" for i in range(25)]
        assert got[3].values.tolist() == [3.0, 0.5, -1.25, np.float32(1e-3)]
        assert got[3].metadata == {"i": 3, "s": "x"}


def test_plain_pinecone_layout_folder(tmp_path: Path) -> None:
    root = tmp_path / "import"
    write_plain_parquet(root / "__default__" / "0.parquet", plain_rows(5))
    write_plain_parquet(root / "__default__" / "1.parquet", plain_rows(5, start=5))
    (root / "docs").mkdir()
    (root / "docs" / "a.jsonl").write_bytes(jsonl_bytes(plain_rows(3, start=100)))
    (root / "docs" / "more").mkdir()
    (root / "docs" / "more" / "b.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes(plain_rows(2, start=200))))
    (root / "top.jsonl").write_bytes(jsonl_bytes(plain_rows(1, start=300)))  # goes to the caller's namespace
    (root / "docs" / ".log").write_text("ignored")
    (root / "docs" / "notes.txt").write_text("ignored")
    src = open_source(LocalStore(root))
    assert src.kind == "plain"
    assert src.namespaces == ["", "docs"]
    assert [f.path for f in src.files_for("")] == ["__default__/0.parquet", "__default__/1.parquet",
                                                  "top.jsonl"]
    assert [r.id for f in src.files_for("") for b in src.read(f) for r in b.records()] == [
        f"p{i}" for i in range(10)] + ["p300"]
    assert open_source(LocalStore(root), namespace="elsewhere").namespaces == ["", "docs", "elsewhere"]
    assert [r.id for f in src.files_for("docs") for b in src.read(f) for r in b.records()] == [
        "p100", "p101", "p102", "p200", "p201"]


def test_plain_sparse_file_is_inferred_sparse(tmp_path: Path) -> None:
    rows = [{"id": f"s{i}", "sparse_values": {"indices": [i, i + 10], "values": [0.5, 0.25]}}
            for i in range(4)]
    rows[3] = {"sparseValues": {"values": [1.0], "indices": [7]}, "id": "s3"}  # any key order, SDK alias
    (tmp_path / "s.jsonl").write_bytes(jsonl_bytes(rows))
    src = open_source(LocalStore(tmp_path), "s.jsonl")
    assert src.infer() == (None, "sparse")
    got = read_source(src)
    assert got[2].values is None and got[2].sparse_values.indices.tolist() == [2, 12]


def bad_jsonl(tmp_path: Path) -> Path:
    rows: list[Any] = plain_rows(6)
    lines = [orjson.dumps(r) for r in rows]
    lines[2] = orjson.dumps({"id": "p2", "values": [1.0, 2.0]})  # wrong dimension, line 3
    lines[4] = b'{"id": "p4", "values": [1, 2, 3, 4], '  # not JSON, line 5
    lines.insert(5, orjson.dumps({"id": "p5b", "values": [1, 2, 3, 4], "metadata": {"n": None}}))  # line 6
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_plain_bad_line_raises_with_file_line_and_field(tmp_path: Path) -> None:
    path = bad_jsonl(tmp_path)
    src = open_source(LocalStore(tmp_path), "bad.jsonl")
    with pytest.raises(ValidationError) as info:
        read_source(src)
    err = info.value
    assert (err.file, err.line, err.field, err.record_id) == ("bad.jsonl", 3, "values", "p2")
    assert "bad.jsonl, line 3, id 'p2', field 'values'" in str(err)
    assert path.exists()


def test_plain_bad_lines_skipped_and_reported(tmp_path: Path) -> None:
    bad_jsonl(tmp_path)
    src = open_source(LocalStore(tmp_path), "bad.jsonl")
    errors: list[ValidationError] = []
    got = read_source(src, on_error=errors.append, dimension=4, vector_type="dense")
    assert [r.id for r in got] == ["p0", "p1", "p3", "p5"]
    assert [(e.line, e.field) for e in errors] == [(3, "values"), (5, None), (6, "metadata.n")]
    assert all(e.file == "bad.jsonl" for e in errors)
    assert "not valid JSON" in errors[1].reason


def test_plain_parquet_bad_row_names_the_row(tmp_path: Path) -> None:
    rows = plain_rows(8)
    rows[6]["values"] = [1.0, 2.0, float("nan"), 4.0]
    write_plain_parquet(tmp_path / "x.parquet", rows)
    src = open_source(LocalStore(tmp_path), "x.parquet")
    with pytest.raises(ValidationError) as info:
        read_source(src, batch_size=4)
    assert (info.value.file, info.value.record, info.value.field) == ("x.parquet", 6, "values")
    errors: list[ValidationError] = []
    assert len(read_source(src, batch_size=4, on_error=errors.append)) == 7
    assert [(e.record, e.record_id) for e in errors] == [(6, "p6")]


def test_archive_is_a_source_too(store: LocalStore) -> None:
    records = make_records("dense", 12)
    write_archive(store, "parquet", {"a/b": records})
    src = open_source(store)
    assert src.kind == "archive" and src.namespaces == ["a/b"] and src.total_records == 12
    assert src.infer() == (8, "dense")
    assert_same(read_source(src, batch_size=5), records)
    assert all(f.sha256 and f.records is not None for f in src.files)


@pytest.mark.parametrize("damage", ["sha256", "bytes"])
def test_parquet_hashed_alongside_holds_back_the_last_batch(store: LocalStore, damage: str) -> None:
    """With hash_alongside (a restore, which commits a file only after its last batch) a
    Parquet file is decoded while it is hashed; a file that is not what the manifest says
    yields no last batch: the mismatch is raised instead. Without the option it is raised
    before the first batch."""
    from spruce.archive.reader import SourceFile, read_data_file

    records = make_records("dense", 50)
    write_archive(store, "parquet", {"": records})
    entry = ArchiveReader(store).files()[0]
    if damage == "sha256":
        entry = SourceFile(entry.namespace, entry.path, entry.format, sha256="0" * 64,
                           records=entry.records, bytes=entry.bytes)
    else:
        entry = SourceFile(entry.namespace, entry.path, entry.format, sha256=entry.sha256,
                           records=entry.records, bytes=entry.bytes + 1)
    got: list[str] = []
    with pytest.raises(ChecksumMismatch, match=re.escape(entry.path)):
        for b in read_data_file(store, entry, batch_size=8, hash_alongside=True, strict=True):
            got.extend(b.ids)
    assert got == [r.id for r in records[:48]]  # six batches of 8; the seventh (last) held back
    with pytest.raises(ChecksumMismatch):
        next(read_data_file(store, entry, batch_size=8, strict=True))
    intact = ArchiveReader(store).files()[0]
    assert [i for b in read_data_file(store, intact, batch_size=8, hash_alongside=True, strict=True)
            for i in b.ids] == [r.id for r in records]


class FailingWritesStore(LocalStore):
    """A LocalStore whose uploads fail after ``budget`` bytes (a full disk, a dropped connection:
    a fault a test cannot produce for real on demand)."""

    def __init__(self, root: Path, budget: int) -> None:
        super().__init__(root)
        self.budget = budget

    def open_writer(self, path: str) -> Any:
        inner = super().open_writer(path)
        store = self

        class Writer:
            def write(self, data: Any) -> int:
                store.budget -= len(data)
                if store.budget < 0:
                    raise OSError(28, "No space left on device")
                return inner.write(data)

            def close(self) -> None:
                inner.close()

            def abort(self) -> None:
                inner.abort()

        return Writer()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failing_upload_fails_the_export_and_leaves_no_part(tmp_path: Path, fmt: str) -> None:
    """Parts are hashed and stored by a thread of their own (Parquet) or by the encoding worker
    (JSON Lines); either way an upload error fails the archive with that error, nothing waits
    forever, and neither a part nor a manifest is left behind."""
    store = FailingWritesStore(tmp_path / "full", budget=20_000)
    records = make_records("dense", 400, dim=64)
    with pytest.raises(OSError, match="No space left"):
        write_archive(store, fmt, {"": records}, dim=64, batch=50, part_max_records=150)
    left = sorted(p.name for p in (tmp_path / "full").rglob("*") if p.is_file())
    assert left == [], left
