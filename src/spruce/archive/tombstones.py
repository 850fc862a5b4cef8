"""Tombstone files: the ids an incremental snapshot deletes, one namespace per file.

Why a file and not a manifest list: a big delete can name millions of ids, and the manifest
must stay small enough to list snapshots quickly. Like a part, the file is checksummed in the
manifest and verified before any of it is applied.

Layout: ``<dir>/tombstones.jsonl.gz``, gzip of UTF-8 lines, each a JSON string (the id), sorted.
In an encrypted snapshot the gzip stream is encrypted as a data part is (spruce.archive.crypto);
``bytes`` and ``sha256`` are then of the ciphertext.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from isal import isal_zlib

from spruce.archive.crypto import MAGIC, SegmentAuthError
from spruce.archive.manifest import TombstoneEntry
from spruce.errors import (
    ArchiveLocked,
    ChecksumMismatch,
    CorruptRecord,
    DecryptionFailed,
    MissingFile,
    RecordCountMismatch,
    ValidationError,
)
from spruce.records import validate_id
from spruce.storage.base import Store

if TYPE_CHECKING:
    from spruce.archive.keys import ArchiveCipher

TOMBSTONE_NAME = "tombstones.jsonl.gz"
TOMBSTONE_PATH_RE = re.compile(r"([A-Za-z0-9_-]{1,255})/tombstones\.jsonl\.gz")
_CHUNK = 65536


class _Hashing:
    def __init__(self, writer: Any) -> None:
        self.writer, self.sha, self.size = writer, hashlib.sha256(), 0

    def write(self, data: Any) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.writer.write(data)
        return len(data)


def write_tombstones(store: Store, folder: str, ids: Sequence[str], *,
                     cipher: ArchiveCipher | None = None) -> TombstoneEntry:
    """Stream the ids into ``<folder>/tombstones.jsonl.gz`` (atomic on close), encrypted with
    ``cipher`` when given; its entry."""
    path = f"{folder}/{TOMBSTONE_NAME}"
    comp = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    writer = store.open_writer(path)
    hashing = _Hashing(writer)
    sink: Any = hashing if cipher is None else cipher.encryptor(path, hashing)
    try:
        for a in range(0, len(ids), _CHUNK):
            text = b"".join(orjson.dumps(i) + b"\n" for i in ids[a:a + _CHUNK])
            out = comp.compress(text)
            if out:
                sink.write(out)
        sink.write(comp.flush())
        if cipher is not None:
            sink.close()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return TombstoneEntry(path=path, count=len(ids), bytes=hashing.size, sha256=hashing.sha.hexdigest())


def check_tombstone_bytes(store: Store, entry: TombstoneEntry) -> bytes:
    """The file's stored bytes, after checking their size and sha256 against the manifest."""
    try:
        raw = store.get_bytes(entry.path)
    except FileNotFoundError:
        raise MissingFile(f"{entry.path}: listed in the manifest but not found") from None
    if len(raw) != entry.bytes:
        raise ChecksumMismatch(f"{entry.path}: {len(raw)} bytes, the manifest says {entry.bytes}")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != entry.sha256:
        raise ChecksumMismatch(f"{entry.path}: sha256 is {digest}, the manifest says {entry.sha256}")
    return raw


def read_tombstones(store: Store, entry: TombstoneEntry, *, cipher: ArchiveCipher | None = None) -> list[str]:
    """The ids, verified: checksum first, then (encrypted snapshots, with the snapshot's unlocked
    ``cipher``: ``open_source(...).cipher``) every segment, then every line, then the count."""
    raw = check_tombstone_bytes(store, entry)
    if cipher is not None:
        try:
            raw = cipher.decrypt(entry.path, raw)
        except SegmentAuthError as exc:
            raise DecryptionFailed(f"{entry.path}: cannot be decrypted: {exc}") from None
    elif raw.startswith(MAGIC):
        raise ArchiveLocked(f"{entry.path}: the snapshot is encrypted and no key was given to read its deletions")
    try:
        text = isal_zlib.decompress(raw, 31)
    except isal_zlib.error as exc:
        raise CorruptRecord(f"{entry.path}: not a gzip stream ({exc})") from None
    ids: list[str] = []
    for line_no, line in enumerate(text.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            ids.append(validate_id(orjson.loads(line)))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise CorruptRecord(f"{entry.path}: line {line_no}: field 'id': {exc}") from None
    if len(ids) != entry.count:
        raise RecordCountMismatch(f"{entry.path}: holds {len(ids)} ids, the manifest says {entry.count}")
    return ids
