"""Client-side encryption of archives (docs/FORMAT.md, "Encryption").

Round trips through the export and backup jobs (local and S3) read back bit for bit through the
reading API (``open_source(store, key=...)``); no plaintext survives in an encrypted file; every
kind of tampering is one clear error naming the file (or the manifest) with nothing handed out;
keys come from a key file or SPRUCE_ARCHIVE_PASSPHRASE and never show up in job state, manifests
or error output.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import spruce
from encryption_util import DIM, FAST_N, MARK, index_rows, records, rows, source_rows
from spruce import jobs
from spruce.archive import (
    ArchiveKey,
    ArchiveReader,
    ArchiveWriter,
    generate_key_file,
    open_source,
    verify_archive,
)
from spruce.archive.crypto import (
    HEADER_BYTES,
    MAGIC,
    TAG_BYTES,
    SegmentAuthError,
    decrypt_bytes,
    encrypt_bytes,
)
from spruce.archive.keys import canonical_json
from spruce.archive.reader import SourceFile, read_data_file
from spruce.archive.repository import Repository
from spruce.archive.tombstones import read_tombstones
from spruce.errors import (
    ArchiveLocked,
    ChecksumMismatch,
    DecryptionFailed,
    InvalidArgument,
    ManifestTampered,
    WrongKey,
)
from spruce.jobs.backup import start_backup
from spruce.records import RecordBatch
from spruce.storage import open_store

SEG = 256  # small segments: a part spans many of them


def write_archive(root: Path, key: Any, fmt: str, *, seed: int = 0, n: int = 60,
                  namespaces: tuple[str, ...] = ("",)) -> tuple[Any, dict[str, RecordBatch]]:
    store = open_store(str(root))
    w = ArchiveWriter(store, format=fmt, key=key, segment_size=SEG, part_max_records=n // 2)
    data = {}
    for k, ns in enumerate(namespaces):
        data[ns] = records(n, seed + k, prefix=ns or "d")
        w.write(ns, data[ns])
    w.commit(source={"index": "t", "dimension": DIM, "metric": "cosine", "vector_type": "dense", "spec": {}})
    return store, data


def one_line(exc: BaseException, *words: str) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg and len(msg) < 600, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def drain(source: Any, f: SourceFile, got: list) -> None:
    """Read ``f`` one record at a time (so anything streamed out before an error is seen)."""
    for b in source.read(f, batch_size=1):
        got.append(b)


def first_part(root: Path, source: Any) -> tuple[SourceFile, Path]:
    f = source.files[0]
    return f, root / f.path


def segments(path: Path) -> int:
    return (path.stat().st_size - HEADER_BYTES + SEG + TAG_BYTES - 1) // (SEG + TAG_BYTES)


@pytest.fixture
def key(tmp_path: Path) -> ArchiveKey:
    generate_key_file(tmp_path / "archive.key")
    return ArchiveKey.from_file(tmp_path / "archive.key")


@pytest.fixture
def client(tmp_path: Path):
    c = spruce.Client(data_dir=tmp_path / "data")
    c.create_index("src", dimension=DIM, metric="cosine")
    idx = c.engine.index("src")
    for k, ns in enumerate(("", "alpha", "name with spaces/é")):
        idx.upsert_batch(ns, records(400, k, prefix=f"ns{k}"))
    yield c
    c.jobs.shutdown(timeout=30)
    c.engine.close()


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet"])
def test_encrypted_export_job_reads_back_bit_exact(client, tmp_path, key, fmt) -> None:
    dest = tmp_path / "arch"
    job = jobs.start_export(client.engine, "src", str(dest), format=fmt, part_max_records=150, sync=True,
                            manager=client.jobs, encryption_key=key)
    assert job.status == "Completed", job.error
    assert job.options["encryption"] == {"key_file": key.key_file}
    store = open_store(str(dest))
    m = ArchiveReader(store).manifest
    assert m.encryption is not None and m.encryption["key"] == {"kind": "key-file",
                                                                "fingerprint": key.key_file_fingerprint}
    assert m.encryption["segment_size"] == 1 << 20 and len(m.files) == 9
    for f in m.files:  # every data file is ciphertext, its sha256 that of the stored bytes
        raw = (dest / f.path).read_bytes()
        assert raw.startswith(MAGIC) and len(raw) == f.bytes
    source = open_source(store, key=key)
    assert source.encrypted and source.kind == "archive"
    assert source_rows(source) == index_rows(client, "src")
    report = verify_archive(store, key=key)
    assert report.ok and report.records_read and report.records_checked == 1200, report.problems


def test_encrypted_backup_snapshots_and_their_tombstones(client, tmp_path, key) -> None:
    repo = tmp_path / "repo"
    ix = client.Index("src")

    def backup(k: Any) -> Any:
        job = start_backup(client.engine, "src", str(repo), sync=True, manager=client.jobs, encryption_key=k)
        assert job.status == "Completed", job.error
        return job, Repository.open(open_store(str(repo))).resolve(job.options["snapshot_id"])

    _, full = backup(key)
    gone = ["ns0-0-00003", "ns0-0-00004"]
    ix.delete(ids=gone)
    client.engine.index("src").upsert_batch("", records(5, 9, prefix="new"))
    _, inc = backup(key)
    assert inc.parent == full.id and inc.manifest.encryption is not None
    store = Repository.open(open_store(str(repo))).snapshot_store(inc.id)
    tomb = inc.manifest.namespaces[0].tombstones
    raw = store.get_bytes(tomb.path)
    assert raw.startswith(MAGIC) and not any(g.encode() in raw for g in gone)
    source = open_source(store, key=key)
    assert read_tombstones(store, tomb, cipher=source.cipher) == gone
    with pytest.raises(ArchiveLocked):
        read_tombstones(store, tomb)  # no key: refused, not misread as gzip
    assert rows(b for f in source.files_for("") for b in source.read(f)) == {
        rid: r for rid, r in index_rows(client, "src")[""].items() if rid.startswith("new")}
    assert verify_archive(store, key=key).ok
    # another key (or none) never continues the chain: a restore needs one key
    other = ArchiveKey.from_passphrase("another passphrase", scrypt_n=FAST_N)
    job, snap = backup(other)
    assert snap.full and any("encrypted with another key" in n for n in job.notes), job.notes
    job, snap = backup(None)
    assert snap.full and snap.manifest.encryption is None


def test_encrypted_export_on_s3(s3_server, client, key) -> None:
    s3_server.create_bucket("spruce-enc")
    uri = f"s3://spruce-enc/t-{uuid.uuid4().hex[:10]}/arch"
    job = jobs.start_export(client.engine, "src", uri, format="parquet", part_max_records=300, sync=True,
                            manager=client.jobs, encryption_key=key, storage_options=s3_server.options())
    assert job.status == "Completed", job.error
    store = open_store(uri, **s3_server.options())
    assert source_rows(open_source(store, key=key)) == index_rows(client, "src")
    locked = verify_archive(store)  # no key: the ciphertext's checksums, and the report says so
    assert locked.ok and locked.encrypted and not locked.records_read and locked.records_checked == 0
    assert locked.files_checked == 6 and locked.notes
    from spruce.sources.pinecone.restorer import refuse_encrypted_bulk_import
    with pytest.raises(InvalidArgument) as exc:
        refuse_encrypted_bulk_import(store)
    one_line(exc.value, "encrypted", "bulk import")


# -- no plaintext in an encrypted file ------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_no_plaintext_in_any_encrypted_file(tmp_path, key, fmt) -> None:
    """Written uncompressed (jsonl; Parquet with codec none), the plaintext would be there to
    find: the control archive shows every needle, the encrypted one none."""
    batch = records(200, 3, prefix="plain")
    vec = np.asarray(batch.values[1], dtype=np.float32)
    needles = [batch.ids[1].encode(), f"{MARK}-plain-1".encode()]
    if fmt == "parquet":  # the float32 vector's little-endian bytes
        needles += [vec.astype("<f4").tobytes(), vec[:2].astype("<f4").tobytes()]
    else:  # its decimal text, as JSON Lines writes it ("x,y,z")
        needles += [orjson.dumps(vec, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1],
                    orjson.dumps(vec[3:5], option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]]
    opts = {"compression": "none"} if fmt == "parquet" else {}

    def found(k: Any, root: Path) -> set[int]:
        w = ArchiveWriter(open_store(str(root)), format=fmt, key=k, part_max_records=50, **opts)
        w.write("ns", batch)
        w.commit(source={"index": "t", "dimension": DIM, "metric": "cosine", "vector_type": "dense", "spec": {}})
        blobs = [p.read_bytes() for p in root.rglob("part-*")]
        assert len(blobs) == 4
        return {i for i, n in enumerate(needles) if any(n in blob for blob in blobs)}

    assert found(None, tmp_path / "plain") == set(range(len(needles)))  # the search can fail
    assert found(key, tmp_path / "enc") == set()


# -- wrong key, no key -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet"])
def test_wrong_key_fails_at_once(tmp_path, key, fmt) -> None:
    store, _ = write_archive(tmp_path / "a", key, fmt)
    other = ArchiveKey(key=os.urandom(32))
    with pytest.raises(WrongKey) as exc:
        open_source(store, key=other)
    one_line(exc.value, store.uri, "wrong key", key.key_file_fingerprint)
    with pytest.raises(WrongKey):
        verify_archive(store, key=other)
    with pytest.raises(ArchiveLocked) as exc2:  # a key file's archive, only a passphrase given
        open_source(store, key=ArchiveKey.from_passphrase("pw"))
    one_line(exc2.value, "key file")


def test_wrong_passphrase_fails_at_once(tmp_path) -> None:
    store, data = write_archive(tmp_path / "a", ArchiveKey.from_passphrase("right horse", scrypt_n=FAST_N),
                                "jsonl.gz")
    kdf = ArchiveReader(store).manifest.encryption["key"]["kdf"]
    assert kdf["name"] == "scrypt" and kdf["n"] == FAST_N and len(kdf["salt"]) == 32
    with pytest.raises(WrongKey) as exc:
        open_source(store, key=ArchiveKey.from_passphrase("wrong horse"))
    one_line(exc.value, "passphrase")
    good = open_source(store, key=ArchiveKey.from_passphrase("right horse"))
    assert source_rows(good)[""] == rows([data[""]])


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet"])
def test_missing_key_hands_out_nothing(tmp_path, key, fmt) -> None:
    store, _ = write_archive(tmp_path / "a", key, fmt, namespaces=("", "b"))
    source = open_source(store)  # the manifest is readable: what is there, how big, checksums
    assert source.encrypted and source.total_records == 120
    with pytest.raises(ArchiveLocked) as exc:
        source.require_key()
    one_line(exc.value, store.uri, "encrypted", "--key-file", key.key_file_fingerprint)
    got: list = []
    with pytest.raises(ArchiveLocked):
        drain(source, source.files[0], got)
    assert got == []
    with pytest.raises(ArchiveLocked):
        next(ArchiveReader(store).iter_batches(ArchiveReader(store).manifest.namespaces[1]))


# -- tampering -------------------------------------------------------------------------------


def _tampered(tmp_path: Path, key: Any, fmt: str, edit: Any) -> tuple[Any, SourceFile, Path]:
    store, _ = write_archive(tmp_path / "a", key, fmt)
    source = open_source(store, key=key)
    f, path = first_part(tmp_path / "a", source)
    assert segments(path) >= 4, segments(path)
    raw = bytearray(path.read_bytes())
    path.write_bytes(bytes(edit(raw)))
    return source, f, path


def _seg(i: int) -> slice:
    a = HEADER_BYTES + i * (SEG + TAG_BYTES)
    return slice(a, a + SEG + TAG_BYTES)


def _flip(raw: bytearray) -> bytearray:
    raw[HEADER_BYTES + 5] ^= 0x01
    return raw


def _swap01(raw: bytearray) -> bytearray:
    s0, s1 = bytes(raw[_seg(0)]), bytes(raw[_seg(1)])
    raw[_seg(0)], raw[_seg(1)] = s1, s0
    return raw


def _cut_mid(raw: bytearray) -> bytearray:
    return raw[:len(raw) - 7]


def _cut_boundary(raw: bytearray) -> bytearray:
    return raw[:_seg(2).start]


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet"])
@pytest.mark.parametrize("edit", [_flip, _swap01, _cut_mid, _cut_boundary], ids=["flip", "swap", "cut", "cut-at-seg"])
def test_tampered_file_is_named_and_nothing_handed_out(tmp_path, key, fmt, edit) -> None:
    source, f, _ = _tampered(tmp_path, key, fmt, edit)
    got: list = []
    with pytest.raises(ChecksumMismatch) as exc:  # the stored bytes differ from the manifest
        drain(source, f, got)
    one_line(exc.value, f.path)
    assert got == []
    report = verify_archive(source.store, key=key)
    assert [p.path for p in report.problems] == [f.path]
    assert verify_archive(source.store).bad_files == [f.path]  # without the key too: the checksums


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet"])
@pytest.mark.parametrize("edit", [_flip, _swap01, _cut_boundary], ids=["flip", "swap", "cut-at-seg"])
def test_segments_authenticate_even_without_a_manifest_checksum(tmp_path, key, fmt, edit) -> None:
    """The cipher alone catches each edit: a file read with no size or sha256 to compare with."""
    source, f, _ = _tampered(tmp_path, key, fmt, edit)
    bare = SourceFile(namespace=f.namespace, path=f.path, format=f.format, cipher=f.cipher)
    got: list = []
    with pytest.raises(DecryptionFailed) as exc:
        for b in read_data_file(source.store, bare, strict=True, dimension=DIM, batch_size=1):
            got.append(b)
    msg = one_line(exc.value, f.path)
    if edit is _cut_boundary:  # segments 0 and 1 are intact; the new last one was sealed as "not last"
        assert "last" in msg and "cut short" in msg
        authentic = rows([records(60, 0, prefix="d")])
        assert all(r in authentic.items() for r in rows(got).items())  # only verified records came out
    else:
        assert "segment 0" in msg and got == []


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet"])
def test_a_file_from_another_archive_with_the_same_key(tmp_path, key, fmt) -> None:
    a, _ = write_archive(tmp_path / "a", key, fmt, seed=1)
    write_archive(tmp_path / "b", key, fmt, seed=2)
    src = open_source(a, key=key)
    f = src.files[0]
    shutil.copyfile(tmp_path / "b" / f.path, tmp_path / "a" / f.path)  # same path, same key
    got: list = []
    with pytest.raises(ChecksumMismatch) as exc:
        drain(src, f, got)
    one_line(exc.value, f.path)
    assert got == []
    # and with the manifest's sha256 and size changed to match (sha256s consistent): the HMAC fails
    doc = json.loads(a.get_bytes("manifest.json"))
    entry = doc["namespaces"][0]["files"][0]
    new = (tmp_path / "a" / f.path).read_bytes()
    import hashlib
    doc["totals"]["bytes"] += len(new) - entry["bytes"]
    entry["bytes"], entry["sha256"] = len(new), hashlib.sha256(new).hexdigest()
    a.put_bytes("manifest.json", json.dumps(doc, indent=2).encode())
    with pytest.raises(ManifestTampered) as exc2:
        open_source(a, key=key)
    one_line(exc2.value, "manifest.json", "HMAC")
    # even read without any manifest expectation, the file does not decrypt here: its key is bound
    # to its own archive
    bare = SourceFile(namespace="", path=f.path, format=f.format, cipher=f.cipher)
    with pytest.raises(DecryptionFailed) as exc3:
        list(read_data_file(a, bare, strict=True))
    one_line(exc3.value, f.path, "segment 0")


def _edit_count(doc: dict) -> None:
    ns = doc["namespaces"][0]
    ns["files"][0]["records"] -= 1
    ns["record_count"] -= 1
    doc["totals"]["records"] -= 1


def _rename_namespace(doc: dict) -> None:
    ns = doc["namespaces"][1]
    ns["name"] = ns["dir"] = "renamed"
    for f in ns["files"]:
        f["path"] = "renamed/" + f["path"].split("/", 1)[1]


@pytest.mark.parametrize("edit", [_edit_count, _rename_namespace], ids=["record-count", "namespace-name"])
def test_an_edited_manifest_is_caught_by_its_hmac(tmp_path, key, edit) -> None:
    root = tmp_path / "a"
    store, _ = write_archive(root, key, "jsonl.gz", namespaces=("", "b"))
    doc = json.loads(store.get_bytes("manifest.json"))
    edit(doc)
    if edit is _rename_namespace:
        (root / "b").rename(root / "renamed")  # files where the edited manifest says: sha256s match
    store.put_bytes("manifest.json", json.dumps(doc, indent=2).encode())
    assert verify_archive(store).ok  # consistent as far as anyone without the key can tell ...
    assert "not authenticated" in verify_archive(store).notes[0]
    with pytest.raises(ManifestTampered) as exc:  # ... but not to the key's holder
        open_source(store, key=key)
    one_line(exc.value, "manifest.json", "edited")
    report = verify_archive(store, key=key)
    assert [(p.path, p.kind) for p in report.problems] == [("manifest.json", "ManifestTampered")]
    assert report.records_checked == 0


def test_stream_primitives(tmp_path) -> None:
    master, nonce = os.urandom(32), os.urandom(16)
    for size in (0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 3 * SEG + 5):
        data = os.urandom(size)
        ct = encrypt_bytes(master, nonce, "x/part-00000.jsonl", data, segment_size=SEG)
        n_seg = max(1, -(-size // SEG))
        assert len(ct) == HEADER_BYTES + size + n_seg * TAG_BYTES
        assert decrypt_bytes(master, nonce, "x/part-00000.jsonl", ct, segment_size=SEG) == data
        with pytest.raises(SegmentAuthError):  # bound to its path
            decrypt_bytes(master, nonce, "x/part-00001.jsonl", ct, segment_size=SEG)
        with pytest.raises(SegmentAuthError):  # and to its archive
            decrypt_bytes(master, os.urandom(16), "x/part-00000.jsonl", ct, segment_size=SEG)
        with pytest.raises(SegmentAuthError):  # the header is authenticated (its salt, its prefix)
            decrypt_bytes(master, nonce, "x/part-00000.jsonl", ct[:HEADER_BYTES - 1] + bytes([ct[HEADER_BYTES - 1] ^ 0xFF]) + ct[HEADER_BYTES:],
                          segment_size=SEG)
        for cut in {len(ct) - 1, HEADER_BYTES + SEG + TAG_BYTES, HEADER_BYTES, HEADER_BYTES - 1} - {len(ct)}:
            if cut < len(ct):
                with pytest.raises(SegmentAuthError):
                    decrypt_bytes(master, nonce, "x/part-00000.jsonl", ct[:cut], segment_size=SEG)
    assert canonical_json({"b": 1, "a": ["é"]}) == b'{"a":["\\u00e9"],"b":1}'


def test_archives_without_encryption_are_unchanged(tmp_path, key) -> None:
    store, data = write_archive(tmp_path / "a", None, "jsonl.gz")
    m = ArchiveReader(store).manifest
    assert m.encryption is None and "encryption" not in json.loads(store.get_bytes("manifest.json"))
    source = open_source(store, key=key)  # a key given for an archive that is not encrypted: unused
    assert not source.encrypted and source_rows(source)[""] == rows([data[""]])
    report = verify_archive(store)
    assert report.ok and report.records_read and not report.encrypted and report.records_checked == 60


@pytest.mark.parametrize("edit", [None, _flip, _cut_boundary], ids=["intact", "flip", "cut-at-seg"])
def test_large_parquet_parts_are_decrypted_through_a_temporary_file(tmp_path, key, edit, monkeypatch) -> None:
    """Parts too large to decrypt in memory take the streaming path: same checks, same errors."""
    import spruce.archive.decrypting as decrypting

    monkeypatch.setattr(decrypting, "MAX_IN_MEMORY", 0)
    store, data = write_archive(tmp_path / "a", key, "parquet")
    source = open_source(store, key=key)
    f, path = first_part(tmp_path / "a", source)
    if edit is None:
        assert source_rows(source)[""] == rows([data[""]])
        return
    path.write_bytes(bytes(edit(bytearray(path.read_bytes()))))
    got: list = []
    with pytest.raises(ChecksumMismatch) as exc:
        drain(source, f, got)
    one_line(exc.value, f.path)
    assert got == []
    bare = SourceFile(namespace=f.namespace, path=f.path, format=f.format, cipher=f.cipher)
    with pytest.raises(DecryptionFailed) as exc2:
        list(read_data_file(store, bare, strict=True))
    one_line(exc2.value, f.path, "last" if edit is _cut_boundary else "segment 0")
