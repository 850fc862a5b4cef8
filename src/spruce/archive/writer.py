"""ArchiveWriter: streams RecordBatches into parts, then commits the manifest.

Threads: the caller's thread encodes (JSON lines with orjson, or Arrow tables
straight from numpy; both need the GIL) and decides where parts end. Each part
is then compressed by one task of a small thread pool, and its bytes hashed and
uploaded by a thread of its own (streams.WriteBehind): isal, pyarrow's Parquet
encoder, hashlib and file writes all release the GIL, so several parts are
finished at once while the caller encodes the next. Memory stays bounded: each
part has a small queue of pending chunks and of pending writes, and at most
``workers + 1`` parts are in flight.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

import spruce
from spruce.archive.crypto import DEFAULT_SEGMENT_SIZE
from spruce.archive.jsonl import encode_lines, write_jsonl_part
from spruce.archive.manifest import (
    CONSISTENCY,
    FORMATS,
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    NamespaceEntry,
    TombstoneEntry,
    build_manifest,
)
from spruce.archive.naming import PART_PATH_RE, encode_namespace, part_name
from spruce.archive.parquet import CODECS, ROW_GROUP_BYTES, batch_to_table, write_parquet_part  # noqa: F401
from spruce.archive.streams import HashingSink, WriteBehind
from spruce.archive.tombstones import TOMBSTONE_PATH_RE, write_tombstones
from spruce.errors import InvalidArgument, ValidationError
from spruce.records import RecordBatch, normalize_namespace
from spruce.storage.base import Store

if TYPE_CHECKING:
    from spruce.archive.keys import ArchiveKey

#: A part is closed once its uncompressed payload reaches this many bytes...
DEFAULT_PART_MAX_BYTES = 64 * 1024 * 1024
#: ...or it holds this many records, whichever comes first.
DEFAULT_PART_MAX_RECORDS = 100_000
#: isal gzip level (0-3). 1 is isal's best speed/size trade-off on JSON text of floats.
DEFAULT_GZIP_LEVEL = 1
DEFAULT_PARQUET_CODEC = "snappy"

#: Records encoded at a time from a caller's batch (bounds the size of a queued chunk).
_JSONL_SLICE = 1000
_PARQUET_SLICE = 16384

ProgressCallback = Callable[[int, int], None]

_END = object()


class _Aborted(Exception):
    pass


@dataclass(eq=False)
class _Part:
    ns: _Namespace
    index: int
    path: str
    queue: queue.Queue
    records: int = 0  # records queued
    payload: int = 0  # uncompressed bytes queued
    future: Future = field(default_factory=Future)
    ended: bool = False  # the worker has taken the end marker off the queue


@dataclass(eq=False)
class _Namespace:
    name: str
    dir: str
    parts: list[_Part] = field(default_factory=list)
    next_index: int = 0
    schema: dict[str, Any] | None = None
    total_records: int | None = None  # backup snapshots: see manifest.NamespaceEntry
    reset: bool = False
    tombstones: TombstoneEntry | None = None


class ArchiveWriter:
    """Writes one archive to ``store`` (rooted at the archive's root).

    Usage::

        w = ArchiveWriter(store, format="parquet")
        w.begin()
        for ns in namespaces:
            for batch in batches(ns):
                w.write(ns, batch)
        manifest = w.commit(source=index_config, consistency="snapshot", snapshot={...})

    ``on_progress(records, bytes)`` is called from worker threads (serialized by
    a lock) as data reaches the store: records newly written and compressed bytes
    newly written. An exception it raises (e.g. a cancellation) aborts the export:
    the next ``write()`` or ``commit()`` raises it.

    ``key`` (spruce.archive.keys.ArchiveKey) encrypts every data and tombstone file after it is
    compressed, in segments of ``segment_size`` plaintext bytes (docs/FORMAT.md, "Encryption");
    the manifest then names the key's fingerprint and carries an HMAC made with the key.
    """

    def __init__(
        self,
        store: Store,
        *,
        format: str = "jsonl.gz",
        compression: str | None = None,
        compression_level: int | None = None,
        part_max_bytes: int = DEFAULT_PART_MAX_BYTES,
        part_max_records: int = DEFAULT_PART_MAX_RECORDS,
        workers: int = 2,
        on_progress: ProgressCallback | None = None,
        queue_depth: int = 4,
        key: ArchiveKey | None = None,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        if format not in FORMATS:
            raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        if format == "parquet":
            compression = compression or DEFAULT_PARQUET_CODEC
            if compression not in CODECS:
                raise InvalidArgument(f"Parquet compression must be one of {', '.join(CODECS)}, "
                                      f"got {compression!r}")
        elif format == "jsonl.gz":
            if compression not in (None, "gzip"):
                raise InvalidArgument("format 'jsonl.gz' is gzip-compressed; use format 'jsonl' for none")
            compression = "gzip"
            compression_level = DEFAULT_GZIP_LEVEL if compression_level is None else compression_level
            if not 0 <= compression_level <= 3:
                raise InvalidArgument(f"gzip level must be 0 to 3 (isal's levels), got {compression_level}")
        else:
            if compression not in (None, "none") or compression_level is not None:
                raise InvalidArgument("format 'jsonl' is not compressed")
            compression = "none"
        if part_max_bytes < 1 or part_max_records < 1:
            raise InvalidArgument("part_max_bytes and part_max_records must be positive")
        if workers < 1 or queue_depth < 1:
            raise InvalidArgument("workers and queue_depth must be at least 1")
        try:  # a passphrase is stretched here (scrypt), once per archive
            self._cipher = None if key is None else key.new_cipher(segment_size=segment_size)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        self.store = store
        self.format = format
        self.compression = compression
        self.compression_level = compression_level
        self.part_max_bytes = part_max_bytes
        self.part_max_records = part_max_records
        self.workers = workers
        self.queue_depth = queue_depth
        self._on_progress = on_progress
        self._progress_lock = threading.Lock()
        self._state = "new"
        self._namespaces: dict[str, _Namespace] = {}
        self._current: _Part | None = None
        self._tasks: queue.Queue[_Part | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._inflight = threading.Semaphore(workers + 1)
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._aborted = threading.Event()
        self._dimension: int | None = None
        self._dense: bool | None = None  # do batches carry dense values?
        self.records_written = 0

    # -- lifecycle --------------------------------------------------------------

    def __enter__(self) -> ArchiveWriter:
        self.begin()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._state != "committed":
            self.abort()

    def begin(self) -> None:
        """Start the archive: first of all, remove a stale manifest so the old archive stops being one."""
        if self._state != "new":
            raise InvalidArgument(f"begin() on a writer that is already {self._state}")
        self.store.delete(MANIFEST_NAME)
        # Daemon threads: a writer that is dropped without commit() or abort() never blocks exit.
        self._threads = [threading.Thread(target=self._worker, name=f"spruce-archive-{i}", daemon=True)
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()
        self._state = "open"

    def add_namespace(self, namespace: str, *, schema: Mapping[str, Any] | None = None,
                      total_records: int | None = None, reset: bool = False) -> None:
        """List ``namespace`` in the manifest even if no record is written to it, with its metadata
        schema if it has one: an empty namespace exists in the index too, and a restore recreates
        it. Namespaces are listed in the order they are first added or written to.
        ``total_records`` and ``reset`` are a backup snapshot's (see docs/FORMAT.md)."""
        if self._state == "new":
            self.begin()
        if self._state != "open":
            raise InvalidArgument(f"add_namespace() on a writer that is {self._state}")
        name = normalize_namespace(namespace)
        ns = self._namespaces.get(name)
        if ns is None:
            ns = self._namespaces[name] = _Namespace(name=name, dir=encode_namespace(name))
        ns.schema = None if schema is None else dict(schema)
        ns.total_records = total_records
        ns.reset = reset

    def write_tombstones(self, namespace: str, ids: Sequence[str]) -> None:
        """An incremental snapshot's deleted ids for a namespace already added (sorted, unique)."""
        ns = self._namespaces[normalize_namespace(namespace)]
        if ids:
            ns.tombstones = write_tombstones(self.store, ns.dir, ids, cipher=self._cipher)

    def write(self, namespace: str, batch: RecordBatch) -> None:
        """Append ``batch`` to ``namespace`` (encoded now; compressed and stored in the background)."""
        if self._state == "new":
            self.begin()
        if self._state != "open":
            raise InvalidArgument(f"write() on a writer that is {self._state}")
        self._raise_if_failed()
        name = normalize_namespace(namespace)
        ns = self._namespaces.get(name)
        if ns is None:
            ns = self._namespaces[name] = _Namespace(name=name, dir=encode_namespace(name))
        if self._current is not None and self._current.ns is not ns:
            self._close_part()
        n = len(batch.ids)
        if n == 0:
            return
        self._check_batch(batch)
        # Large batches go in slices, so workers start on the first while the rest is encoded.
        step = _PARQUET_SLICE if self.format == "parquet" else _JSONL_SLICE
        try:
            for a in range(0, n, step):
                sub = batch if n <= step else _slice(batch, a, min(n, a + step))
                self._write(ns, sub, len(sub.ids))
        except BaseException:
            self.abort()
            raise
        self.records_written += n

    def _write(self, ns: _Namespace, batch: RecordBatch, n: int) -> None:
        if self.format == "parquet":
            table, sizes = batch_to_table(batch)

            def chunk(a: int, b: int) -> Any:
                return table.slice(a, b - a)
        else:
            lines = encode_lines(batch)
            sizes = np.fromiter(map(len, lines), dtype=np.int64, count=n)

            def chunk(a: int, b: int) -> Any:
                return b"".join(lines[a:b])

        csum = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(sizes, out=csum[1:])
        start = 0
        while start < n:
            part = self._current or self._open_part(ns)
            room_records = self.part_max_records - part.records
            room_bytes = self.part_max_bytes - part.payload
            end = int(np.searchsorted(csum, csum[start] + room_bytes, side="right")) - 1
            end = min(end, start + room_records, n)
            if end <= start:
                if part.records:
                    self._close_part()
                    continue
                end = start + 1  # one record larger than a part: it gets a part of its own
            k = end - start
            payload = int(csum[end] - csum[start])
            self._push(part, (chunk(start, end), k, payload))
            part.records += k
            part.payload += payload
            start = end
            if start < n or part.records >= self.part_max_records or part.payload >= self.part_max_bytes:
                self._close_part()

    def commit(
        self,
        *,
        source: Any,
        consistency: str = "snapshot",
        snapshot: Mapping[str, Any] | None = None,
        selection: Mapping[str, Any] | None = None,
        export_id: str | None = None,
        created_at: str | None = None,
        backup: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Finish every part, remove orphans of earlier runs, then write manifest.json (last, atomically).

        ``source`` is the index's IndexConfig or a mapping with index (or name),
        dimension, metric, vector_type, spec and optionally tags, host, kind.
        It must not hold credentials.
        """
        if self._state == "new":
            self.begin()
        if self._state != "open":
            raise InvalidArgument(f"commit() on a writer that is {self._state}")
        if consistency not in CONSISTENCY:
            raise InvalidArgument(f"consistency must be one of {', '.join(CONSISTENCY)}, got {consistency!r}")
        try:
            if self._current is not None:
                self._close_part()
            entries: list[NamespaceEntry] = []
            for ns in self._namespaces.values():
                files: list[FileEntry] = []
                for part in ns.parts:
                    try:
                        files.append(part.future.result())
                    except BaseException:
                        self._raise_if_failed()
                        raise
                entries.append(NamespaceEntry(name=ns.name, dir=ns.dir, files=tuple(files),
                                              record_count=sum(f.records for f in files), schema=ns.schema,
                                              total_records=ns.total_records, reset=ns.reset,
                                              tombstones=ns.tombstones))
            self._raise_if_failed()
            src = _source_dict(source)
            self._check_source(src)
            manifest = build_manifest(
                export_id=export_id or uuid.uuid4().hex,
                spruce_version=spruce.__version__,
                source=src,
                consistency=consistency,
                snapshot=snapshot,
                selection=selection,
                data={"format": self.format, "compression": self.compression,
                      "level": self.compression_level},
                namespaces=entries,
                created_at=created_at,
                backup=backup,
                encryption=None if self._cipher is None else self._cipher.manifest_fields(),
            )
            if self._cipher is not None:
                manifest = self._cipher.seal(manifest)
            self._remove_orphans({f.path for ns in entries for f in ns.files}
                                 | {ns.tombstones.path for ns in entries if ns.tombstones is not None})
            self.store.remove_incomplete()  # a killed earlier run's half-written parts
            self.store.put_bytes(MANIFEST_NAME, manifest.to_json())
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        self._shutdown()
        return manifest

    def abort(self) -> None:
        """Stop the workers and discard parts in progress. No manifest is written."""
        if self._state in ("committed", "aborted"):
            return
        self._aborted.set()
        if self._current is not None:
            part, self._current = self._current, None
            self._put_end(part)
        self._state = "aborted"
        self._shutdown()

    # -- internals ----------------------------------------------------------------

    def _shutdown(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)
        for t in self._threads:
            t.join()
        self._threads = []

    def _worker(self) -> None:
        while (part := self._tasks.get()) is not None:
            if not part.future.set_running_or_notify_cancel():
                continue
            try:
                part.future.set_result(self._run_part(part))
            except BaseException as e:
                part.future.set_exception(e)

    def _check_batch(self, batch: RecordBatch) -> None:
        n = len(batch.ids)
        if len(batch.metadata) != n:
            raise InvalidArgument(f"batch has {n} ids but {len(batch.metadata)} metadata entries")
        if batch.sparse is not None and len(batch.sparse) != n:
            raise InvalidArgument(f"batch has {n} ids but {len(batch.sparse)} sparse entries")
        dense = batch.values is not None
        if self._dense is None:
            self._dense = dense
        elif self._dense != dense:
            raise InvalidArgument("some batches carry dense values and others do not; an archive holds "
                                  "one kind of index")
        if dense:
            if batch.values.ndim != 2 or batch.values.shape[0] != n:
                raise InvalidArgument(f"values must be an ({n}, dimension) matrix, got {batch.values.shape}")
            d = batch.values.shape[1]
            if self._dimension is None:
                self._dimension = d
            elif d != self._dimension:
                raise ValidationError(f"has {d} dimensions, earlier batches had {self._dimension}",
                                      field="values")

    def _check_source(self, src: dict[str, Any]) -> None:
        vt = src.get("vector_type", "dense")
        if self._dense and vt == "sparse":
            raise InvalidArgument("source says vector_type 'sparse' but the records carry dense values")
        if self._dense is False and vt == "dense":
            raise InvalidArgument("source says vector_type 'dense' but the records carry no dense values")
        if self._dimension is not None and src.get("dimension") not in (None, self._dimension):
            raise InvalidArgument(f"source says dimension {src.get('dimension')} but the records have "
                                  f"{self._dimension}")
        if src.get("dimension") is None and self._dimension is not None:
            src["dimension"] = self._dimension

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _set_error(self, exc: BaseException) -> None:
        with self._error_lock:
            if self._error is None and not isinstance(exc, _Aborted):
                self._error = exc

    def _open_part(self, ns: _Namespace) -> _Part:
        while not self._inflight.acquire(timeout=0.1):
            self._raise_if_failed()
            if self._aborted.is_set():
                raise InvalidArgument("the archive writer was aborted")
        index = ns.next_index
        ns.next_index += 1
        part = _Part(ns=ns, index=index, path=f"{ns.dir}/{part_name(index, self.format)}",
                     queue=queue.Queue(maxsize=self.queue_depth))
        self._tasks.put(part)
        ns.parts.append(part)
        self._current = part
        return part

    def _close_part(self) -> None:
        part, self._current = self._current, None
        if part is not None:
            self._put_end(part)

    def _put_end(self, part: _Part) -> None:
        while True:
            try:
                part.queue.put(_END, timeout=0.1)
                return
            except queue.Full:
                if part.future.done():
                    return

    def _push(self, part: _Part, item: Any) -> None:
        while True:
            self._raise_if_failed()
            if self._aborted.is_set():
                raise InvalidArgument("the archive writer was aborted")
            try:
                part.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _progress(self, records: int, nbytes: int) -> None:
        if self._on_progress is not None and (records or nbytes):
            with self._progress_lock:
                self._on_progress(records, nbytes)

    @staticmethod
    def _drain(part: _Part) -> None:
        while not part.ended:
            part.ended = part.queue.get() is _END

    def _run_part(self, part: _Part) -> FileEntry:
        try:
            if self._aborted.is_set() or self._error is not None:
                raise _Aborted
            writer = self.store.open_writer(part.path)
            hashing = HashingSink(writer)
            # encrypting, hashing and storing run in a thread of their own: a part is encoded by one
            # worker, and until it takes the part's chunks the caller cannot move on to the next part
            enc = None if self._cipher is None else self._cipher.encryptor(part.path, hashing)
            sink = WriteBehind(enc or hashing)
            try:
                if self.format == "parquet":
                    records = self._encode_parquet(part, sink)
                else:
                    records = self._encode_jsonl(part, sink)
                sink.close()
                if enc is not None:
                    enc.close()  # the last segment
                writer.close()
            except BaseException:
                sink.close(quiet=True)
                writer.abort()
                raise
            return FileEntry(path=part.path, records=records, bytes=hashing.size, sha256=hashing.sha.hexdigest())
        except BaseException as e:
            self._set_error(e)
            self._drain(part)
            raise
        finally:
            self._inflight.release()

    def _next(self, part: _Part) -> Any:
        item = part.queue.get()
        part.ended = item is _END
        if self._aborted.is_set() or self._error is not None:
            raise _Aborted
        return item

    def _items(self, part: _Part) -> Iterator[Any]:
        while (item := self._next(part)) is not _END:
            yield item

    def _encode_jsonl(self, part: _Part, sink: WriteBehind) -> int:
        level = self.compression_level if self.compression == "gzip" else None
        return write_jsonl_part(self._items(part), sink, gzip_level=level, progress=self._progress)

    def _encode_parquet(self, part: _Part, sink: WriteBehind) -> int:
        records = write_parquet_part(self._items(part), sink, compression=self.compression,
                                     compression_level=self.compression_level, progress=self._progress)
        # Arrow's allocator keeps freed blocks for reuse; hand them back after each part, or an
        # export's RSS stays well above what it holds at any moment
        pa.default_memory_pool().release_unused()
        return records

    def _remove_orphans(self, keep: set[str]) -> None:
        """Delete part files of earlier (crashed or replaced) exports that this manifest does not list."""
        for info in list(self.store.list("")):
            if info.path not in keep and (PART_PATH_RE.fullmatch(info.path)
                                          or TOMBSTONE_PATH_RE.fullmatch(info.path)):
                self.store.delete(info.path)


def _slice(batch: RecordBatch, a: int, b: int) -> RecordBatch:
    return RecordBatch(
        ids=batch.ids[a:b],
        values=None if batch.values is None else batch.values[a:b],
        sparse=None if batch.sparse is None else batch.sparse[a:b],
        metadata=batch.metadata[a:b],
    )


def _source_dict(source: Any) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    to_dict = getattr(source, "to_dict", None)
    if to_dict is None:
        raise InvalidArgument(f"source must be a mapping or an IndexConfig, got {type(source).__name__}")
    # an IndexConfig: deletion_protection is a backup's to record (older readers refuse the key)
    return {k: v for k, v in to_dict().items() if k != "deletion_protection"}
