"""Reading data files back as RecordBatches, checking them against the manifest as they stream.

``read_data_file`` is the one reader of data files: archives (strict: the
manifest's sha256, size and record count must hold, the Parquet schema must be
the import schema, a bad record is a CorruptRecord) and plain files (no
expectations; a bad record is a ValidationError) both go through it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from spruce.archive.decode import Assembler, OnError, Shape
from spruce.archive.decrypting import auth_failed, check_stored_size, decrypt_whole
from spruce.archive.decrypting import check_bytes as _check_bytes
from spruce.archive.jsonl import jsonl_batches
from spruce.archive.manifest import MANIFEST_NAME, FileEntry, Manifest, NamespaceEntry, parse_manifest
from spruce.archive.naming import PART_PATH_RE
from spruce.archive.parquet import IMPORT_SCHEMA, schema_matches
from spruce.archive.streams import READ_CHUNK, AuthFailure, DecodeFailure, ReadPipeline
from spruce.errors import (
    ArchiveIncomplete,
    CorruptRecord,
    MissingFile,
    NotAnArchive,
    NotFound,
    RecordCountMismatch,
    SpruceError,
    ValidationError,
)
from spruce.records import RecordBatch
from spruce.storage.base import Store

if TYPE_CHECKING:
    from spruce.archive.keys import ArchiveCipher, ArchiveKey
    from spruce.archive.verify import VerifyReport

DEFAULT_BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A data file to read: where, what format, and what the manifest promises (None: nothing).

    ``cipher``: the archive's, when it is encrypted (spruce.archive.keys.ArchiveCipher): reading
    decrypts the file, or raises ArchiveLocked when the archive was opened without its key."""

    namespace: str
    path: str
    format: str  # "jsonl.gz" | "jsonl" | "parquet"
    sha256: str | None = None
    records: int | None = None
    bytes: int | None = None
    cipher: ArchiveCipher | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_entry(cls, entry: FileEntry, *, namespace: str, fmt: str,
                   cipher: ArchiveCipher | None = None) -> SourceFile:
        return cls(namespace=namespace, path=entry.path, format=fmt, sha256=entry.sha256,
                   records=entry.records, bytes=entry.bytes, cipher=cipher)


def corrupt(err: ValidationError) -> CorruptRecord:
    """An archive's bad record: same location and reason, as an IntegrityError."""
    exc = CorruptRecord(f"corrupt record: {err}")
    exc.file, exc.line, exc.record, exc.field = err.file, err.line, err.record, err.field  # type: ignore[attr-defined]
    exc.__cause__ = err
    return exc


def check_file_bytes(store: Store, f: SourceFile) -> None:
    """Hash a file without decoding it and compare size and sha256 with the manifest.

    A restore runs this over every file before applying any, so a corrupt archive is
    refused whole rather than discovered half-way.
    """
    sha, size = _hash_stream(_open(store, f))
    _check_bytes(f, sha, size)


def _check_count(f: SourceFile, count: int) -> None:
    if f.records is not None and count != f.records:
        raise RecordCountMismatch(f"{f.path}: holds {count} records, the manifest says {f.records}")


def read_data_file(
    store: Store,
    f: SourceFile,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dimension: int | None = None,
    vector_type: str | None = None,
    on_error: OnError | None = None,
    strict: bool = False,
    shape: Shape | None = None,
    hash_alongside: bool = False,
) -> Iterator[RecordBatch]:
    """Yield the records of one data file in order, in batches of up to ``batch_size``.

    JSON Lines files stream (gunzip and sha256 in a background thread); their
    checksum and record count are checked at the end of the file, so records
    come out before the file is known to be intact. Parquet files are hashed
    before the first record comes out, unless ``hash_alongside``: the caller
    commits nothing of the file before its last batch (a restore's transaction),
    so a local file is hashed in a thread alongside the decoding, and a mismatch
    fails the file before its last batch is handed over.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    asm = Assembler(f.path, by_line=f.format != "parquet", shape=shape or Shape(dimension, vector_type),
                    on_error=on_error)
    if f.format == "parquet":
        yield from _read_parquet(store, f, asm, batch_size, strict, hash_alongside)
    else:
        yield from _read_jsonl(store, f, asm, batch_size, strict)


def _open(store: Store, f: SourceFile) -> Any:
    try:
        return store.open_reader(f.path)
    except FileNotFoundError:
        raise MissingFile(f"{f.path}: listed but absent from {store.uri}") from None


def _read_jsonl(store: Store, f: SourceFile, asm: Assembler, batch_size: int,
                strict: bool) -> Iterator[RecordBatch]:
    decryptor = None if f.cipher is None else f.cipher.decryptor(f.path)  # ArchiveLocked without the key
    raw = _open(store, f)
    if decryptor is not None:
        check_stored_size(f, raw)
    pipe = ReadPipeline(raw, gzip=f.format == "jsonl.gz", decryptor=decryptor)
    counter = [0]
    try:
        try:
            yield from jsonl_batches(pipe, asm, batch_size, counter)
        except DecodeFailure as e:
            sha, size = pipe.finish_hash()
            _check_bytes(f, sha, size, cause=str(e))
            if isinstance(e, AuthFailure):
                raise auth_failed(f, str(e)) from None
            raise CorruptRecord(f"{f.path or store.uri}: {e}") from None  # a single file is its store
        except ValidationError as e:
            if f.sha256 is not None or f.bytes is not None:
                # A bad record in a file that differs from the manifest: the file is the problem.
                sha, size = pipe.finish_hash()
                _check_bytes(f, sha, size, cause=f"found while reading line {e.line}")
            if strict:
                raise corrupt(e) from e
            raise
        _check_bytes(f, pipe.sha256, pipe.size)
        _check_count(f, counter[0])
    finally:
        pipe.close()


def _hash_stream(src: Any, sink: Any = None) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with src:
        while data := src.read(READ_CHUNK):
            h.update(data)
            size += len(data)
            if sink is not None:
                sink.write(data)
    return h.hexdigest(), size


def _hash_alongside(src: Any) -> Future[tuple[str, int]]:
    """_hash_stream in its own thread (hashlib and file reads release the GIL)."""
    fut: Future[tuple[str, int]] = Future()

    def run() -> None:
        try:
            fut.set_result(_hash_stream(src))
        except BaseException as e:
            fut.set_exception(e)

    threading.Thread(target=run, name="spruce-hash", daemon=True).start()
    return fut


def _read_parquet(store: Store, f: SourceFile, asm: Assembler, batch_size: int,
                  strict: bool, hash_alongside: bool = False) -> Iterator[RecordBatch]:
    local = store.local_path(f.path)
    tmp = None
    alongside: Future[tuple[str, int]] | None = None
    try:
        if f.cipher is not None:
            # decrypted and authenticated whole (Parquet needs random access) before the first record
            f.cipher.require()
            where, tmp = decrypt_whole(_open(store, f), f)
        elif local is not None:
            if not os.path.isfile(local):
                raise MissingFile(f"{f.path}: listed but absent from {store.uri}")
            if f.sha256 is not None and hash_alongside:
                alongside = _hash_alongside(_open(store, f))
                sha, size = None, None
            elif f.sha256 is not None:
                sha, size = _hash_stream(_open(store, f))
            else:
                sha, size = None, os.path.getsize(local)
            where = local
        else:
            # Parquet needs random access: spool the object to a temporary file, hashing it on the way.
            tmp = tempfile.NamedTemporaryFile(prefix="spruce-", suffix=".parquet")  # noqa: SIM115
            sha, size = _hash_stream(_open(store, f), tmp)
            tmp.flush()
            where = tmp.name
        if alongside is None and f.cipher is None:
            _check_bytes(f, sha, size)
        try:
            pf = pq.ParquetFile(where, memory_map=True)
        except (pa.ArrowException, OSError) as e:
            raise CorruptRecord(f"{f.path}: not a readable Parquet file: {e}") from None
        with pf:
            schema = pf.schema_arrow
            if strict and not schema_matches(schema):
                raise CorruptRecord(f"{f.path}: the Parquet schema is not the import schema: "
                                    f"found {_schema_text(schema)}, expected {_schema_text(IMPORT_SCHEMA)}")
            try:
                asm.check_arrow_schema(schema)
            except ValidationError as e:
                if strict:
                    raise corrupt(e) from e
                raise
            _check_count(f, pf.metadata.num_rows)
            columns = [c for c in ("id", "values", "sparse_values", "metadata") if c in schema.names]
            row = 0
            batches = pf.iter_batches(batch_size=batch_size, columns=columns, use_threads=True)
            while True:
                try:
                    rb = next(batches)
                except StopIteration:
                    break
                except (pa.ArrowException, OSError) as e:
                    raise CorruptRecord(f"{f.path}: cannot decode the Parquet data after row {row}: {e}") from None
                try:
                    batch = asm.from_arrow(rb, row)
                except ValidationError as e:
                    if strict:
                        raise corrupt(e) from e
                    raise
                row += rb.num_rows
                if batch is not None:
                    if alongside is not None and row == pf.metadata.num_rows:
                        _check_bytes(f, *alongside.result())  # before the last batch is handed over
                        alongside = None
                    yield batch
        if alongside is not None:
            _check_bytes(f, *alongside.result())
            alongside = None
    except Exception:
        if alongside is not None:  # a bad file or record in a file that changed: the change is the news
            _check_bytes(f, *alongside.result())
        raise
    finally:
        if tmp is not None:
            tmp.close()
        # mimalloc keeps what a file's row groups freed (over 100 MB here); two files can be
        # in flight during a restore, and their leftovers would add up toward the memory goal
        pa.default_memory_pool().release_unused()


def _schema_text(schema: pa.Schema) -> str:
    return "{" + ", ".join(f"{fld.name}: {fld.type}{'' if fld.nullable else ' not null'}"
                           for fld in schema) + "}"


class ArchiveReader:
    """Reads a committed archive. Every file is checked against the manifest while it is read.

    ``key`` (spruce.archive.keys.ArchiveKey) unlocks an encrypted archive; it is checked on first
    use of ``cipher`` (``files()``, ``iter_batches``, ``unlock()``): WrongKey, or ManifestTampered
    when the manifest's HMAC fails. Without it an encrypted archive's manifest and checksums can be
    read, its records not (ArchiveLocked). A key given for an archive that is not encrypted is
    not used."""

    def __init__(self, store: Store, *, key: ArchiveKey | None = None) -> None:
        self.store = store
        self.key = key
        self._manifest: Manifest | None = None
        self._cipher: ArchiveCipher | None = None

    @property
    def manifest(self) -> Manifest:
        """The validated manifest. ArchiveIncomplete when absent; ManifestInvalid when wrong."""
        if self._manifest is None:
            self._manifest = load_manifest(self.store)
        return self._manifest

    @property
    def cipher(self) -> ArchiveCipher | None:
        """None for an archive that is not encrypted; else its cipher, locked without the key."""
        if self._cipher is None and self.manifest.encryption is not None:
            from spruce.archive.keys import unlock

            self._cipher = unlock(self.manifest, self.key, self.store.uri)
        return self._cipher

    def unlock(self) -> ArchiveCipher | None:
        """Check the key now: ArchiveLocked (encrypted, no key), WrongKey, ManifestTampered."""
        cipher = self.cipher
        if cipher is not None:
            cipher.require()
        return cipher

    def files(self) -> list[SourceFile]:
        m = self.manifest
        cipher = self.cipher
        return [SourceFile.from_entry(f, namespace=ns.name, fmt=m.file_format, cipher=cipher)
                for ns in m.namespaces for f in ns.files]

    def iter_batches(
        self,
        entry: NamespaceEntry | FileEntry | SourceFile,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dimension: int | None = None,
        vector_type: str | None = None,
        on_error: OnError | None = None,
    ) -> Iterator[RecordBatch]:
        """Records of one namespace (all its files, in order) or of one file.

        The dimension and vector type default to the manifest's source index.
        Raises MissingFile, ChecksumMismatch, RecordCountMismatch or
        CorruptRecord (naming the file, and the line or row) when the data is
        not what the manifest says.
        """
        m = self.manifest
        dimension = m.dimension if dimension is None else dimension
        vector_type = vector_type or m.vector_type
        cipher = self.cipher
        if isinstance(entry, NamespaceEntry):
            files = [SourceFile.from_entry(f, namespace=entry.name, fmt=m.file_format, cipher=cipher)
                     for f in entry.files]
        elif isinstance(entry, FileEntry):
            files = [SourceFile.from_entry(entry, namespace=m.namespace_of(entry).name, fmt=m.file_format,
                                           cipher=cipher)]
        else:
            files = [entry]
        shape = Shape(dimension, vector_type)
        for f in files:
            yield from read_data_file(self.store, f, batch_size=batch_size, on_error=on_error,
                                      strict=True, shape=shape)

    def verify(self, *, batch_size: int = 4096) -> VerifyReport:
        """Re-read every file; a VerifyReport listing every problem found (see spruce.archive.verify)."""
        from spruce.archive.verify import verify_archive

        return verify_archive(self.store, batch_size=batch_size, key=self.key)


def load_manifest(store: Store) -> Manifest:
    try:
        raw = store.get_bytes(MANIFEST_NAME)
    except FileNotFoundError:
        raise _no_manifest(store) from None
    except (IsADirectoryError, NotADirectoryError):
        raise NotAnArchive(f"{store.uri}: is a file, not an archive folder (the folder that holds "
                           f"{MANIFEST_NAME})") from None
    return parse_manifest(raw, where=MANIFEST_NAME)


def _no_manifest(store: Store) -> SpruceError:
    """Why there is no manifest: nothing there at all, a crashed export's parts, or other files."""
    try:
        listed = [info.path for _, info in zip(range(1000), store.list(""), strict=False)]
    except (FileNotFoundError, NotADirectoryError):
        listed = []
    if not listed:
        return NotFound(f"{store.uri}: not found (nothing is stored there)")
    if any(PART_PATH_RE.fullmatch(p) for p in listed):
        return ArchiveIncomplete(
            f"{store.uri}: no {MANIFEST_NAME}: the export that wrote this archive never committed "
            "(it crashed, was cancelled or is still running); export again")
    return NotAnArchive(f"{store.uri}: not an archive: no {MANIFEST_NAME} among its {len(listed)} file(s)")

