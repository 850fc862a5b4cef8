"""One index: SQLite for durability and snapshots, numpy matrices for search.

Write path: the writer mutex serializes writers; each write is one SQLite
transaction, and only after it commits is the in-memory state updated under
the RW lock. So a query never sees an uncommitted write, and a write that
returned is on disk.

The in-memory state is loaded on the first read that needs it, not on open:
until then writes go to SQLite alone. A restore into a new index therefore
never holds the index in memory, and opening an index to write to it is cheap.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson

from spruce import models
from spruce.engine import changes, namespaces, search, store
from spruce.engine.backups import BackupOps
from spruce.engine.indexing import IndexingOps
from spruce.engine.memory import NamespaceData
from spruce.engine.namespaces import NamespaceOps
from spruce.engine.paging import decode_token as _decode_token
from spruce.engine.paging import encode_token as _encode_token
from spruce.engine.rwlock import RWLock
from spruce.errors import ConflictError, FailedPrecondition, InvalidArgument, NotFound
from spruce.filters import compile_filter
from spruce.records import (
    DEFAULT_NAMESPACE_ALIAS,
    MAX_FETCH_IDS,
    MAX_LIST_LIMIT,
    MAX_TOP_K,
    IndexConfig,
    Record,
    RecordBatch,
    coerce_dense,
    coerce_sparse,
    normalize_namespace,
    parse_batch,
    validate_batch,
    validate_id,
    validate_metadata,
)

ON_CONFLICT = ("overwrite", "skip", "fail")

_origin = threading.local()
log = logging.getLogger("spruce.engine")


@contextmanager
def writing_as(who: str) -> Iterator[None]:
    """Attribute this thread's writes to ``who`` (e.g. "restore job imp-..."), so that a job
    refused over a newer write can name what wrote the index."""
    before = getattr(_origin, "who", None)
    _origin.who = who
    try:
        yield
    finally:
        _origin.who = before


def current_writer() -> str:
    return getattr(_origin, "who", None) or f"a write outside any job (process {os.getpid()})"


class Snapshot:
    """A frozen read view of an index, backed by an open SQLite read transaction.

    It sees exactly the committed state at the moment it was taken, however
    long it lives and whatever other threads write meanwhile. Close it (or use
    ``with``) to release the transaction.
    """

    def __init__(self, path: str, dimension_hint: int | None) -> None:
        self._conn = store.connect(path)
        # a snapshot scans each page once: a big page cache would only hold an export's RSS up
        self._conn.execute("PRAGMA cache_size=-4096")
        self._conn.execute("BEGIN")
        self.point = store.read_seq(self._conn)  # the first read pins the snapshot
        row = self._conn.execute("SELECT value FROM config WHERE key = 'index'").fetchone()
        self.config = IndexConfig.from_dict(orjson.loads(row[0]))
        self._counts: dict[str, int] | None = None

    def namespaces(self) -> dict[str, int]:
        """Record count per namespace ("" is the default), in name order: every namespace that
        exists, including those without records (created empty, or emptied)."""
        if self._counts is None:
            counts = store.namespace_counts(self._conn)
            for row in namespaces.rows(self._conn):
                counts.setdefault(row.name, 0)
            self._counts = dict(sorted(counts.items()))
        return dict(self._counts)

    def schemas(self) -> dict[str, dict[str, Any] | None]:
        """Each namespace's metadata schema (None: created without one, or by an upsert)."""
        return {row.name: row.schema for row in namespaces.rows(self._conn)}

    def iter_batches(self, namespace: str, *, batch_size: int = 1000,
                     filter: Mapping[str, Any] | None = None,
                     raw_metadata: bool = False) -> Iterator[RecordBatch]:
        """Stream one namespace in id order, in bounded memory, optionally filtered.

        ``raw_metadata``: metadata as the stored JSON text (records.RawJson), for a writer that
        would only serialize it again; ignored when filtering, which needs the objects.
        """
        ns = normalize_namespace(namespace)
        flt = compile_filter(filter)
        raw = raw_metadata and flt.matches_all
        for batch in store.iter_namespace(self._conn, ns, self.config.dimension, batch_size,
                                          raw_metadata=raw):
            if flt.matches_all:
                yield batch
                continue
            keep = np.flatnonzero(flt.mask(batch.metadata))
            if keep.size == 0:
                continue
            yield RecordBatch(
                ids=[batch.ids[i] for i in keep],
                values=None if batch.values is None else batch.values[keep],
                sparse=None if batch.sparse is None else [batch.sparse[i] for i in keep],
                metadata=[batch.metadata[i] for i in keep],
            )

    def tracking_from(self) -> int | None:
        """From which point this snapshot can list every deletion (None: not tracked)."""
        return changes.tracking_from(self._conn)

    def uid(self) -> str:
        return changes.uid(self._conn)

    def reset_after(self, namespace: str, since: int) -> bool:
        """Was the namespace emptied or deleted after ``since``?"""
        return changes.reset_after(self._conn, normalize_namespace(namespace), since) is not None

    def deleted_ids(self, namespace: str, since: int) -> list[str]:
        """Ids of ``namespace`` deleted after ``since`` and absent at this snapshot."""
        return changes.deleted_ids(self._conn, normalize_namespace(namespace), since)

    def changed_rows(self, namespace: str, since: int) -> list[tuple[int, str]]:
        """(rowid, id) of the records of a namespace written after ``since``, in id order."""
        return changes.changed_rows(self._conn, normalize_namespace(namespace), since)

    def iter_changed(self, rows: list[tuple[int, str]], *, batch_size: int = 1000,
                     raw_metadata: bool = False) -> Iterator[RecordBatch]:
        """The records ``changed_rows`` found, in id order."""
        return changes.iter_changed(self._conn, rows, self.config.dimension, batch_size, raw_metadata=raw_metadata)

    def close(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        self._conn.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Transaction:
    """A multi-batch write applied atomically: an import commits one file at a time with it.

    Markers are written in the same SQLite transaction as the data, so an
    import's "file N done" record can never disagree with the data it covers.
    """

    def __init__(self, index: Index) -> None:
        self._index = index
        self._conn = index._conn
        self.touched: set[str] = set()
        #: What was written, in order, to apply to memory after the commit (no reload from disk);
        #: nothing is kept while the index's memory is not loaded.
        self.staged: list[tuple[str, RecordBatch, str]] = []
        self.needs_reload = False

    @property
    def seq(self) -> int:
        """The sequence number this transaction commits as."""
        return self._index._pending_seq

    def upsert(self, namespace: str, batch: RecordBatch, *, on_conflict: str = "overwrite",
               validate: bool = True, protect: tuple[int, Sequence[int]] | None = None) -> int:
        """Write a batch; returns how many records were written (skip, or ``protect``ed
        overwrites, leave some alone: see ``store.write_batch``)."""
        if validate:
            cfg = self._index.config
            validate_batch(batch, dimension=cfg.dimension, vector_type=cfg.vector_type)
        ns = normalize_namespace(namespace)
        n = self._index._write_batch(self._conn, ns, batch, on_conflict, self.touched, protect=protect)
        if self._index._loaded:
            if protect is not None and on_conflict == "overwrite" and n < len(batch):
                self.needs_reload = True  # memory cannot replay which rows SQLite kept: reload them
            self.staged.append((ns, batch, on_conflict))
        return n

    def delete(self, namespace: str, ids: Sequence[str] | None, *,
               protect: tuple[int, Sequence[int]] | None = None, drop_namespace: bool = False) -> int:
        """Delete ``ids`` (None: every record) of a namespace; ``drop_namespace`` also removes
        the namespace once empty. With ``protect=(start, own)`` only records at most ``start``
        or written by ``own`` go: a newer write by someone else stays. Returns the records deleted.
        Deletions are tracked for incremental backups of this index, as any delete is."""
        ns = normalize_namespace(namespace)
        conn = self._conn
        where, params = "ns = ?", [ns]
        if ids is not None:  # the ids' own rows, through the (ns, id) index
            where += " AND id IN (SELECT value FROM json_each(?))"
            params.append(orjson.dumps(list(ids)).decode())
        if protect is not None:
            where += " AND (seq <= ? OR seq IN (SELECT value FROM json_each(?)))"
            params += [protect[0], orjson.dumps(list(protect[1])).decode()]
        doomed = [r[0] for r in conn.execute(f"SELECT id FROM records WHERE {where}", params)]
        left = conn.execute("SELECT count(*) FROM records WHERE ns = ?", (ns,)).fetchone()[0] - len(doomed)
        if doomed and left == 0:
            changes.record_reset(conn, ns, self.seq)
            conn.execute("DELETE FROM records WHERE ns = ?", (ns,))
        elif doomed:
            changes.record_deletes(conn, ns, doomed, self.seq)
            store.delete_ids(conn, ns, doomed)
        if drop_namespace and left == 0:
            conn.execute("DELETE FROM namespaces WHERE name = ?", (ns,))
        self.touched.add(ns)
        if self._index._loaded and doomed:
            self.needs_reload = True
        return len(doomed)

    def restore_namespace(self, namespace: str, schema: Mapping[str, Any] | None) -> str:
        """Make a namespace an archive lists exist, with its schema; see namespaces.restore_row.
        Touches no record, so memory needs nothing."""
        return namespaces.restore_row(self._conn, namespaces.checked_name(namespace),
                                      namespaces.validate_schema(schema))

    def set_marker(self, key: str, value: Any) -> None:
        self._conn.execute("INSERT OR REPLACE INTO markers (key, value) VALUES (?, ?)",
                           (key, orjson.dumps(value).decode()))


class Index(NamespaceOps, BackupOps, IndexingOps):
    """An open index. Thread-safe: many readers, writers serialized. The namespace operations
    (create, describe, list, delete) come from ``NamespaceOps``."""

    def __init__(self, path: str, *, durability: str = "process") -> None:
        self.path = path
        self._db = os.path.join(path, "index.db")
        self._conn = store.connect_writer(self._db, durability=durability)
        self._checkpointer = store.Checkpointer(self._db)
        self._write_mutex = threading.RLock()
        self._rw = RWLock()
        self._local = threading.local()
        row = self._conn.execute("SELECT value FROM config WHERE key = 'index'").fetchone()
        self._config = IndexConfig.from_dict(orjson.loads(row[0]))
        self._ns: dict[str, NamespaceData] = {}
        self._loaded = False  # see the module docstring; flips once, under the writer mutex
        self._pending_seq = 0  # the sequence number of the write transaction in progress
        self._closed = False
        store.migrate(self._conn)
        changes.migrate(self._conn)
        #: deletions and written ids are logged for incremental backups (engine/changes.py)
        self._tracking = changes.tracking_from(self._conn) is not None
        self._init_indexing()

    # -- lifecycle ------------------------------------------------------------

    @staticmethod
    def initialize(path: str, config: IndexConfig) -> None:
        conn = store.connect(os.path.join(path, "index.db"))
        try:
            conn.executescript(store.SCHEMA)
            conn.execute("INSERT OR REPLACE INTO config (key, value) VALUES ('index', ?)",
                         (orjson.dumps(config.to_dict()).decode(),))
            conn.execute("INSERT OR REPLACE INTO config (key, value) VALUES ('seq', '0')")
            changes.migrate(conn)
        finally:
            conn.close()

    def close(self, *, persist: bool = True) -> None:
        """Close; ``persist`` seals what is not yet in the search files, so the next open maps
        them instead of reading SQLite (an index being deleted skips it)."""
        self.builder.close()
        try:
            if persist:
                self.persist()
        except OSError as exc:
            log.warning("could not save the search files of %s: %s", self.name, exc)
        with self._write_mutex:
            self._closed = True
            self._checkpointer.close()
            self._conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPrecondition(f"index {self.name!r} was closed with its client or engine; "
                                     "open a new client")

    @property
    def config(self) -> IndexConfig:
        return self._config

    @property
    def name(self) -> str:
        return self._config.name

    def configure(self, *, deletion_protection: str | None = None,
                  tags: Mapping[str, str] | None = None) -> IndexConfig:
        with self._write_mutex:
            cfg = IndexConfig.from_dict(self._config.to_dict())
            if deletion_protection is not None:
                cfg.deletion_protection = deletion_protection
            if tags is not None:
                merged = {**cfg.tags, **tags}
                cfg.tags = {k: v for k, v in merged.items() if v != ""}  # "" removes a tag, as in Pinecone
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("UPDATE config SET value = ? WHERE key = 'index'",
                               (orjson.dumps(cfg.to_dict()).decode(),))
            store.bump_seq(self._conn, by=current_writer())
            self._conn.execute("COMMIT")
            self._config = cfg
            return cfg

    def mark_ready(self, job_id: str) -> None:
        """The restore job that created this index completed: it is Ready. Not a data write, so
        the write sequence is left alone."""
        with self._write_mutex:
            if self._config.initializing_job != job_id:
                return
            cfg = IndexConfig.from_dict(self._config.to_dict())
            cfg.initializing_job = None
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("UPDATE config SET value = ? WHERE key = 'index'",
                               (orjson.dumps(cfg.to_dict()).decode(),))
            self._conn.execute("COMMIT")
            self._config = cfg

    def _ensure_loaded(self) -> None:
        """Load memory before the first read that needs it. Called before taking the read lock:
        loading holds the writer mutex, so no write can commit between reading SQLite and
        marking memory loaded (a writer holding the mutex never waits for this)."""
        if self._loaded:
            return
        with self._write_mutex:
            if not self._loaded:
                self._load_all()
                self._loaded = True

    def _load_all(self) -> None:
        self._ns = self._load_namespaces()
        self.builder.poke()

    def _reader(self) -> sqlite3.Connection:
        self._check_open()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = store.connect(self._db)
            self._local.conn = conn
        return conn

    # -- writes ---------------------------------------------------------------

    def _write_batch(self, conn: sqlite3.Connection, ns: str, batch: RecordBatch, on_conflict: str,
                     touched: set[str] | None = None,
                     protect: tuple[int, Sequence[int]] | None = None) -> int:
        if on_conflict not in ON_CONFLICT:
            raise InvalidArgument(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, got {on_conflict!r}")
        if on_conflict == "fail":
            existing = self._existing_ids(conn, ns, batch.ids)
            if existing:
                shown = ", ".join(repr(i) for i in existing[:5])
                raise ConflictError(
                    f"{len(existing)} record(s) already exist in namespace {ns or DEFAULT_NAMESPACE_ALIAS!r} "
                    f"of index {self.name!r} (on_conflict='fail'): {shown}")
        namespaces.ensure(conn, ns)  # an upsert into a new namespace creates it
        n = store.write_batch(conn, ns, batch, skip_existing=on_conflict == "skip", seq=self._pending_seq,
                              protect=protect)
        if self._tracking:  # one row per batch, not per record: what an incremental backup reads
            changes.log_batch(conn, ns, batch.ids, self._pending_seq)
        if touched is not None:
            touched.add(ns)
        return n

    @staticmethod
    def _existing_ids(conn: sqlite3.Connection, ns: str, ids: Sequence[str]) -> list[str]:
        found: list[str] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            q = f"SELECT id FROM records WHERE ns = ? AND id IN ({','.join('?' * len(chunk))})"
            found.extend(r[0] for r in conn.execute(q, (ns, *chunk)))
        return found

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One atomic SQLite write transaction; rolled back on any error."""
        with self._write_mutex:
            self._check_open()
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._pending_seq = store.read_seq(conn) + 1
                yield conn
                store.bump_seq(conn, self._pending_seq, current_writer())
                self.last_write_at = time.monotonic()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._checkpointer.poke()
            self.builder.poke()

    def upsert_batch(self, namespace: str | None, batch: RecordBatch, *, on_conflict: str = "overwrite",
                     validate: bool = True) -> int:
        """Upsert a columnar batch atomically; the fast path for imports and bulk loads."""
        ns = normalize_namespace(namespace)
        if validate:
            validate_batch(batch, dimension=self._config.dimension, vector_type=self._config.vector_type)
        if not len(batch):
            return 0
        with self._write_mutex:
            if not self._loaded:
                with self._write() as conn:
                    n = self._write_batch(conn, ns, batch, on_conflict)
                return n if on_conflict == "skip" else len(batch)
            if on_conflict == "skip":
                data = self._ns.get(ns)
                keep = [i for i, rid in enumerate(batch.ids) if data is None or rid not in data.pos]
                if len(keep) != len(batch):
                    batch = batch.take(keep)
                if not len(batch):
                    return 0
            with self._write() as conn:
                self._write_batch(conn, ns, batch, on_conflict)
            with self._rw.write():
                self._namespace(ns, create=True).put(batch.ids, batch.values, batch.sparse, batch.metadata)
        return len(batch)

    def upsert(self, vectors: Iterable[Any], namespace: str | None = None) -> models.UpsertResponse:
        """Upsert SDK-shaped records (dicts, tuples, objects) atomically."""
        batch = parse_batch(vectors, dimension=self._config.dimension, vector_type=self._config.vector_type)
        if not len(batch):
            return models.UpsertResponse(upserted_count=0)
        return models.UpsertResponse(upserted_count=self.upsert_batch(namespace, batch, validate=False))

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Stage many batches and commit them as one; memory is rebuilt for touched namespaces."""
        with self._write_mutex:
            with self._write():
                tx = Transaction(self)
                yield tx
            if not self._loaded:
                return
            if tx.needs_reload:
                self._reload(tx.touched)
                return
            try:
                self._apply_staged(tx.staged)
            except BaseException:
                self._reload(tx.touched)  # memory must follow the committed data whatever happened
                raise

    def _apply_staged(self, staged: list[tuple[str, RecordBatch, str]]) -> None:
        """Replay a committed transaction's upserts on memory, with SQLite's conflict rules:
        overwrite (last write wins) or skip (an id already present, or written earlier, stays)."""
        with self._rw.write():
            for ns, batch, on_conflict in staged:
                if on_conflict == "skip":
                    data = self._ns.get(ns)
                    seen: set[str] = set()
                    keep = []
                    for i, rid in enumerate(batch.ids):
                        if rid not in seen and (data is None or rid not in data.pos):
                            seen.add(rid)
                            keep.append(i)
                    if len(keep) != len(batch):
                        batch = batch.take(keep)
                if len(batch):
                    self._namespace(ns, create=True).put(batch.ids, batch.values, batch.sparse, batch.metadata)

    def _reload(self, namespaces: Iterable[str]) -> None:
        dim = self._config.dimension
        conn = self._reader()
        for ns in namespaces:
            data = NamespaceData(dim)
            conn.execute("BEGIN")
            try:
                for batch in store.iter_namespace(conn, ns, dim, 10_000):
                    data.put(batch.ids, batch.values, batch.sparse, batch.metadata)
            finally:
                conn.execute("ROLLBACK")
            with self._rw.write():
                if len(data):
                    self._ns[ns] = data
                else:
                    self._ns.pop(ns, None)

    def existing_ids(self, namespace: str | None, ids: Sequence[str]) -> list[str]:
        """Which of ``ids`` exist in a namespace (committed state)."""
        ns = normalize_namespace(namespace)
        if not self._loaded:
            return self._existing_ids(self._reader(), ns, ids)
        with self._rw.read():
            data = self._ns.get(ns)
            return [] if data is None else [i for i in ids if i in data.pos]

    @property
    def seq(self) -> int:
        """The sequence number of the last committed write transaction (0: none since creation)."""
        return store.read_seq(self._reader())

    def last_write(self) -> dict[str, Any] | None:
        """{"seq", "by", "at"} of the last committed write transaction, when recorded."""
        return store.read_last_write(self._reader())

    def markers(self, prefix: str) -> dict[str, Any]:
        rows = self._reader().execute("SELECT key, value FROM markers WHERE key >= ? AND key < ?",
                                      (prefix, prefix + "\U0010ffff")).fetchall()
        return {k: orjson.loads(v) for k, v in rows}

    def get_marker(self, key: str) -> Any:
        row = self._reader().execute("SELECT value FROM markers WHERE key = ?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def delete_markers(self, prefix: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM markers WHERE key >= ? AND key < ?", (prefix, prefix + "\U0010ffff"))

    def update(self, id: str, values: Any = None, set_metadata: Mapping[str, Any] | None = None,
               namespace: str | None = None, sparse_values: Any = None) -> models.UpdateResponse:
        """Replace values or sparse values and merge set_metadata into the record's metadata."""
        ns = normalize_namespace(namespace)
        validate_id(id)
        self._ensure_loaded()
        with self._write_mutex:
            current = self._namespace(ns).record(id) if ns in self._ns else None
            if current is None:
                raise NotFound(f"record {id!r} not found in namespace {ns or DEFAULT_NAMESPACE_ALIAS!r}")
            new = Record(id=id, values=current.values, sparse_values=current.sparse_values,
                         metadata=current.metadata)
            if values is not None:
                if self._config.vector_type == "sparse":
                    raise InvalidArgument("a sparse index takes no dense values")
                new.values = coerce_dense(values, self._config.dimension, record_id=id)
            if sparse_values is not None:
                new.sparse_values = coerce_sparse(sparse_values, record_id=id)
            if set_metadata is not None:
                new.metadata = validate_metadata({**(current.metadata or {}), **set_metadata}, record_id=id)
            self.upsert_batch(ns, RecordBatch.from_records([new]), validate=False)
        return models.UpdateResponse(matched_records=1)

    def delete(self, ids: Sequence[str] | None = None, delete_all: bool | None = None,
               namespace: str | None = None, filter: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Delete by ids, by metadata filter, or everything in a namespace."""
        ns = normalize_namespace(namespace)
        chosen = sum(x is not None and x is not False for x in (ids, filter)) + bool(delete_all)
        if chosen != 1:
            raise InvalidArgument("delete takes exactly one of ids, delete_all=True or filter")
        self._ensure_loaded()
        with self._write_mutex:
            data = self._ns.get(ns)
            if delete_all:
                with self._write() as conn:
                    changes.record_reset(conn, ns, self._pending_seq)
                    conn.execute("DELETE FROM records WHERE ns = ?", (ns,))
                with self._rw.write():
                    self._ns.pop(ns, None)
                return {}
            if ids is not None:
                if isinstance(ids, str):
                    raise InvalidArgument("ids must be a list of strings")
                target = [validate_id(i, record=k) for k, i in enumerate(ids)]
            else:
                flt = compile_filter(filter)
                if flt.matches_all:  # an empty filter must not be a quiet delete_all
                    raise InvalidArgument("delete by filter needs a non-empty filter; use delete_all=True "
                                          "to delete every record in the namespace")
                if data is None:
                    return {}
                with self._rw.read():
                    mask = data.filter_mask(flt.filter)
                    target = [data.ids[i] for i in np.flatnonzero(mask)]
            if data is None or not target:
                return {}
            with self._write() as conn:
                changes.record_deletes(conn, ns, target, self._pending_seq)
                store.delete_ids(conn, ns, target)
            with self._rw.write():
                data.remove(target)
                if not len(data):
                    self._ns.pop(ns, None)
        return {}

    # -- reads ----------------------------------------------------------------

    def _namespace(self, ns: str, *, create: bool = False) -> NamespaceData:
        data = self._ns.get(ns)
        if data is None:
            data = NamespaceData(self._config.dimension)
            if create:
                self._ns[ns] = data
        return data

    def fetch_records(self, ids: Sequence[str], namespace: str | None = None) -> list[Record]:
        """The records of ``ids`` that exist, in the order asked, with float32 values (copies).

        The server's fetch path: its response is written from float32 arrays, never from
        Python floats. Metadata dicts are the index's own; do not modify them.
        """
        ns = normalize_namespace(namespace)
        if isinstance(ids, str):
            raise InvalidArgument("ids must be a list of strings")
        if len(ids) > MAX_FETCH_IDS:
            raise InvalidArgument(f"fetch takes at most {MAX_FETCH_IDS} ids, got {len(ids)}")
        for k, rid in enumerate(ids):
            validate_id(rid, record=k)
        self._ensure_loaded()
        with self._rw.read():
            data = self._ns.get(ns)
            if data is None:
                return []
            found = (data.record(rid) for rid in ids)
            return [rec for rec in found if rec is not None]

    def fetch(self, ids: Sequence[str], namespace: str | None = None) -> models.FetchResponse:
        records = self.fetch_records(ids, namespace)
        return models.FetchResponse(vectors={rec.id: _vector(rec) for rec in records},
                                    namespace=normalize_namespace(namespace), usage=models.Usage(read_units=1))

    def query(self, *, top_k: int, vector: Any = None, id: str | None = None,
              sparse_vector: Any = None, namespace: str | None = None,
              filter: Mapping[str, Any] | None = None, include_values: bool = False,
              include_metadata: bool = False, exact: bool = False) -> models.QueryResponse:
        """Search a namespace. Scores follow Pinecone: cosine and dotproduct higher-is-better,
        euclidean is the squared distance, lower-is-better; they are always exact. Which
        records are considered may be approximate in a big namespace (see engine/search.py);
        ``exact=True`` (an extension) scans every record."""
        ns = normalize_namespace(namespace)
        cfg = self._config
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidArgument(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}")
        if sum(x is not None for x in (vector, id)) > 1:
            raise InvalidArgument("query takes either vector or id, not both")
        flt = compile_filter(filter)
        q_dense = None if vector is None or (cfg.vector_type == "sparse" and len(vector) == 0) else \
            coerce_dense(vector, cfg.dimension)
        q_sparse = None if sparse_vector is None else coerce_sparse(sparse_vector)
        if q_dense is not None and cfg.vector_type == "sparse":
            raise InvalidArgument("a sparse index is queried with sparse_vector, not vector")
        if q_sparse is not None and cfg.metric != "dotproduct":
            raise InvalidArgument("sparse_vector queries need an index with metric 'dotproduct'")
        self._ensure_loaded()
        with self._rw.read():
            data = self._ns.get(ns)
            if id is not None:
                validate_id(id)
                rec = None if data is None else data.record(id)
                if rec is None:
                    return models.QueryResponse(matches=[], namespace=ns, usage=models.Usage(read_units=1))
                q_dense, q_sparse = rec.values, (rec.sparse_values if rec.values is None else None)
            if q_dense is None and q_sparse is None:
                raise InvalidArgument("query needs vector, id or sparse_vector")
            if data is None or not len(data):
                return models.QueryResponse(matches=[], namespace=ns, usage=models.Usage(read_units=1))
            rows, scores, _ = search.run(data, q_dense, q_sparse, cfg.metric, top_k, flt.filter,
                                         exact=bool(exact), ann_min=self.builder.ann_min)
            matches = [
                models.ScoredVector(
                    id=data.ids[row],
                    score=float(score),
                    values=data.vector(row).tolist() if include_values and cfg.dimension is not None else [],
                    sparse_values=_sparse_model(data.sparse[row]) if include_values else None,
                    metadata=_md_copy(data.metadata[row]) if include_metadata else None,
                )
                for row, score in zip(rows.tolist(), scores.tolist(), strict=True)
            ]
        return models.QueryResponse(matches=matches, namespace=ns, usage=models.Usage(read_units=5))

    def list_paginated(self, prefix: str | None = None, limit: int | None = None,
                       pagination_token: str | None = None,
                       namespace: str | None = None) -> models.ListResponse:
        """Ids in lexicographic order; the token is the last id returned, so pages are stable."""
        ns = normalize_namespace(namespace)
        limit = 100 if limit is None else limit
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidArgument(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}, got {limit!r}")
        after = _decode_token(pagination_token) if pagination_token else None
        prefix = prefix or ""
        lo = max(prefix, after) if after is not None else prefix
        op = ">" if after is not None and after >= prefix else ">="
        sql = f"SELECT id FROM records WHERE ns = ? AND id {op} ?"
        args: list[Any] = [ns, lo]
        if prefix:
            sql += " AND id < ?"
            args.append(prefix + "\U0010ffff")
        sql += " ORDER BY id LIMIT ?"
        args.append(limit + 1)
        rows = [r[0] for r in self._reader().execute(sql, args)]
        rows = [r for r in rows if r.startswith(prefix)]
        page, more = rows[:limit], len(rows) > limit
        return models.ListResponse(
            vectors=[models.ListItem(id=i) for i in page],
            pagination=models.Pagination(next=_encode_token(page[-1])) if more else None,
            namespace=ns,
            usage=models.Usage(read_units=1),
        )

    def list(self, prefix: str | None = None, limit: int | None = None,
             pagination_token: str | None = None, namespace: str | None = None) -> Iterator[list[str]]:
        """Yield pages of ids until exhausted, as the SDK's ``list`` does."""
        return models.iter_id_pages(self.list_paginated, prefix=prefix, limit=limit,
                                    pagination_token=pagination_token, namespace=namespace)

    def describe_index_stats(self, filter: Mapping[str, Any] | None = None) -> models.DescribeIndexStatsResponse:
        flt = compile_filter(filter)
        if flt.matches_all and not self._loaded:
            # counts come from the store: opening stats must not load every vector into memory
            counts = self.stored_counts()
        else:
            self._ensure_loaded()
            with self._rw.read():
                counts = {
                    ns: len(d) if flt.matches_all else int(d.filter_mask(flt.filter).sum())
                    for ns, d in sorted(self._ns.items())
                }
        counts = {ns: c for ns, c in counts.items() if c}
        return models.DescribeIndexStatsResponse(
            namespaces={ns: models.NamespaceSummary(vector_count=c) for ns, c in counts.items()},
            dimension=self._config.dimension,
            index_fullness=0.0,
            total_vector_count=sum(counts.values()),
            metric=self._config.metric,
            vector_type=self._config.vector_type,
        )

    def snapshot(self) -> Snapshot:
        """An exact, isolated read view for export; close it when done."""
        return Snapshot(self._db, self._config.dimension)


def _sparse_model(sv: Any) -> models.SparseVector | None:
    if sv is None:
        return None
    return models.SparseVector(indices=sv.indices.tolist(), values=sv.values.tolist())


def _md_copy(md: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy for a response, so a caller editing it cannot change the index's memory."""
    return None if md is None else {k: list(v) if type(v) is list else v for k, v in md.items()}


def _vector(rec: Record) -> models.Vector:
    return models.Vector(
        id=rec.id,
        values=[] if rec.values is None else rec.values.tolist(),
        sparse_values=_sparse_model(rec.sparse_values),
        metadata=_md_copy(rec.metadata),
    )
