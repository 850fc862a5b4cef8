"""The durable half of an index: one SQLite database in WAL mode.

Why SQLite: a committed WAL transaction survives ``kill -9`` of the process
(the OS holds the pages), and a read transaction is an exact, isolated
snapshot for as long as it stays open: exactly what export needs.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from spruce.records import RawJson, RecordBatch, SparseValues

SCHEMA = """
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    ns TEXT NOT NULL,
    id TEXT NOT NULL,
    dense BLOB,
    sp_idx BLOB,
    sp_val BLOB,
    metadata BLOB,
    seq INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS records_ns_id ON records (ns, id);
CREATE TABLE IF NOT EXISTS markers (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS namespaces (name TEXT PRIMARY KEY, schema TEXT, created_at TEXT NOT NULL);
"""

_UPDATE = ("DO UPDATE SET dense=excluded.dense, sp_idx=excluded.sp_idx, "
           "sp_val=excluded.sp_val, metadata=excluded.metadata, seq=excluded.seq")
#: An import's overwrite: it replaces a record only if that record is older than the job's
#: start (?9) or was written by the job itself (its transactions' sequence numbers, ?10).
_PROTECTED_UPDATE = _UPDATE + " WHERE records.seq <= ?9 OR records.seq IN (SELECT value FROM json_each(?10))"

#: One statement writes a whole batch. Each row of ?5 (JSON) is [id, metadata offset, length,
#: sparse offset, length]; the blobs ride in four buffers that substr() slices (byte offsets,
#: -1 for NULL). ``WHERE true`` keeps ON CONFLICT from parsing as a join constraint.
_BATCH_SQL = """
INSERT INTO records (ns, id, dense, sp_idx, sp_val, metadata, seq)
SELECT ?1, r.value ->> 0,
       CASE WHEN ?3 > 0 THEN substr(?2, r.key * ?3 + 1, ?3) END,
       CASE WHEN r.value ->> 4 >= 0 THEN substr(?6, (r.value ->> 3) + 1, r.value ->> 4) END,
       CASE WHEN r.value ->> 4 >= 0 THEN substr(?7, (r.value ->> 3) + 1, r.value ->> 4) END,
       CASE WHEN r.value ->> 2 >= 0 THEN substr(?4, (r.value ->> 1) + 1, r.value ->> 2) END,
       ?8
FROM json_each(?5) AS r WHERE true
ON CONFLICT (ns, id) {}
"""
UPSERT_BATCH_SQL = _BATCH_SQL.format(_UPDATE)
PROTECTED_UPSERT_BATCH_SQL = _BATCH_SQL.format(_PROTECTED_UPDATE)
INSERT_IGNORE_BATCH_SQL = _BATCH_SQL.format("DO NOTHING")


def migrate(conn: sqlite3.Connection) -> None:
    """Bring an index written by an older spruce up to this schema (records.seq: which write
    transaction last wrote each record; 0 for records written before it existed. namespaces:
    one row per namespace, see engine/namespaces.py; an older index gets a row for each namespace
    holding records, which is every namespace it had)."""
    cols = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
    if "seq" not in cols:
        conn.execute("ALTER TABLE records ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'namespaces'").fetchone():
        return
    # not a data write: the sequence number stays, so no job sees it as someone else's write
    at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS namespaces "
                     "(name TEXT PRIMARY KEY, schema TEXT, created_at TEXT NOT NULL)")
        conn.execute("INSERT OR IGNORE INTO namespaces (name, schema, created_at) "
                     "SELECT DISTINCT ns, NULL, ? FROM records", (at,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def connect(path: str, *, durability: str = "process") -> sqlite3.Connection:
    """Open with WAL. 'process' survives kill -9; 'fsync' also survives power loss."""
    if not os.path.exists(path):  # owner-only, like every file of a data folder (-wal/-shm inherit it)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    # Only takes effect when the file is new (before WAL mode is set): 16 KB pages hold
    # several 768-d rows each, where 4 KB pages waste a quarter of each page and write slower.
    conn.execute("PRAGMA page_size=16384")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=" + ("FULL" if durability == "fsync" else "NORMAL"))
    conn.execute("PRAGMA busy_timeout=60000")
    conn.execute("PRAGMA cache_size=-65536")
    return conn


#: The writer checkpoints by itself only past this many WAL pages (1 GB at 16 KB pages): a
#: backstop for when the background Checkpointer cannot keep up. At 256 MB a 100k-record
#: restore (300 MB of WAL) reached it while a background checkpoint was still copying, and
#: the writing thread then copied the WAL itself: 8-10% of the restore's time.
WRITER_AUTOCHECKPOINT_PAGES = 65536
WAL_KEEP_BYTES = 64 << 20


def connect_writer(path: str, *, durability: str = "process") -> sqlite3.Connection:
    """The one connection that writes: checkpoints are left to a Checkpointer thread."""
    conn = connect(path, durability=durability)
    conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}")
    # a WAL that grew during a bulk import is cut back to this size when it next restarts,
    # rather than keeping its largest size on disk for as long as the index stays open
    conn.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
    return conn


class Checkpointer:
    """Copies the WAL back into the database in a background thread.

    SQLite's automatic checkpoint runs inside the committing writer, so a bulk import
    pays for every byte twice on its own thread. Here a separate connection runs
    PASSIVE checkpoints (they never block the writer) once the WAL passes
    ``threshold`` bytes, so the copy overlaps the next batch's work on another core.
    Durability is unchanged: commits are in the WAL either way.
    """

    def __init__(self, db: str, *, threshold: int = 32 << 20) -> None:
        self._wal = db + "-wal"
        self.threshold = threshold
        self._conn = connect(db)
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="spruce-checkpoint", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """A write committed: check the WAL's size soon."""
        self._wake.set()

    def _wal_size(self) -> int:
        try:
            return os.path.getsize(self._wal)
        except OSError:
            return 0

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            if self._wal_size() >= self.threshold:
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # busy or closing: the next commit pokes again, and the writer's backstop holds

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()
        self._conn.close()


def write_batch(conn: sqlite3.Connection, ns: str, batch: RecordBatch, *, skip_existing: bool, seq: int,
                protect: tuple[int, Sequence[int]] | None = None) -> int:
    """Write a batch in one statement; returns the rows inserted or replaced.

    ``seq`` is the sequence number of the transaction writing it, stored on each row. With
    ``protect=(start, own)`` an existing record is replaced only when its seq is at most
    ``start`` or one of ``own``: a record written since (by anyone else) is kept.

    Why one statement: executemany binds each row under the GIL and releases it for each
    step, so a thread decoding the next batch makes every row wait for the GIL. Here the
    whole batch is a handful of buffers, and SQLite inserts it with the GIL released once.
    Rows apply in batch order, so a repeated id behaves as it would one row at a time.
    """
    n = len(batch)
    values = batch.values
    dense: Any = b""
    width = 0
    if values is not None and n:
        dense = memoryview(np.ascontiguousarray(values, dtype="<f4")).cast("B")
        width = dense.nbytes // n
    md_parts: list[bytes] = []
    md_off: list[int] = []
    md_len: list[int] = []
    pos = 0
    texts = batch.metadata_json
    for i, md in enumerate(batch.metadata):
        if md is None:
            md_off.append(0)
            md_len.append(-1)
            continue
        text = md if isinstance(md, RawJson) else texts[i] if texts is not None else orjson.dumps(md)
        md_parts.append(text)
        md_off.append(pos)
        md_len.append(len(text))
        pos += len(text)
    sp_off = [0] * n
    sp_len = [-1] * n
    sp_idx: list[bytes] = []
    sp_val: list[bytes] = []
    if batch.sparse is not None:
        pos = 0
        for i, sv in enumerate(batch.sparse):
            if sv is None:
                continue
            idx = sv.indices.astype("<u4").tobytes()
            sp_idx.append(idx)
            sp_val.append(sv.values.astype("<f4").tobytes())
            sp_off[i] = pos
            sp_len[i] = len(idx)
            pos += len(idx)
    rows = orjson.dumps(list(zip(batch.ids, md_off, md_len, sp_off, sp_len, strict=True)))
    before = conn.total_changes
    params: tuple[Any, ...] = (ns, dense, width, b"".join(md_parts), rows.decode(), b"".join(sp_idx),
                               b"".join(sp_val), seq)
    if skip_existing:
        sql = INSERT_IGNORE_BATCH_SQL
    elif protect is not None:
        sql = PROTECTED_UPSERT_BATCH_SQL
        params += (protect[0], orjson.dumps(list(protect[1])).decode())
    else:
        sql = UPSERT_BATCH_SQL
    conn.execute(sql, params)
    return conn.total_changes - before


#: One query per batch: SQLite gathers a batch's columns into a few strings, so reading it
#: takes the GIL once, not once per row. (Stepping row by row beside a thread busy under the
#: GIL cost 2.9 ms a row at the default switch interval; this costs 9 us.) The subquery's
#: ORDER BY with LIMIT cannot be flattened into the aggregate, so rows arrive in id order,
#: which _batch_rows checks anyway. Lengths are of the BLOBs as stored (bytes).
_BATCH_COLUMNS = """
SELECT json_group_array(id), CAST(group_concat(dense, '') AS BLOB),
       json_group_array(length(CAST(sp_idx AS BLOB))), CAST(group_concat(sp_idx, '') AS BLOB),
       CAST(group_concat(sp_val, '') AS BLOB),
       json_group_array(length(CAST(metadata AS BLOB))), CAST(group_concat(metadata, '') AS BLOB)
FROM (SELECT id, dense, sp_idx, sp_val, metadata FROM records WHERE ns = ?1 {} ORDER BY id LIMIT ?2)
"""
_FIRST_BATCH_SQL = _BATCH_COLUMNS.format("")
_NEXT_BATCH_SQL = _BATCH_COLUMNS.format("AND id > ?3")


def iter_namespace(conn: sqlite3.Connection, ns: str, dimension: int | None,
                   batch_size: int, *, raw_metadata: bool = False) -> Iterator[RecordBatch]:
    """Stream a namespace in id order, batch_size rows at a time (bounded memory). Run it
    inside a read transaction (a Snapshot) for one consistent view across batches."""
    row = conn.execute(_FIRST_BATCH_SQL, (ns, batch_size)).fetchone()
    while True:
        batch = _batch_rows(row, dimension, raw_metadata)
        if batch is None:
            return
        yield batch
        if len(batch) < batch_size:
            return
        row = conn.execute(_NEXT_BATCH_SQL, (ns, batch_size, batch.ids[-1])).fetchone()


def _batch_rows(row: tuple[Any, ...], dimension: int | None, raw_metadata: bool) -> RecordBatch | None:
    ids_json, dense, sp_lens_json, sp_idx, sp_val, md_lens_json, md = row
    ids: list[str] = orjson.loads(ids_json)
    n = len(ids)
    if not n:
        return None
    if ids != sorted(ids):
        raise sqlite3.DatabaseError("records came back out of id order")  # never expected
    values = None
    if dimension is not None:
        values = np.frombuffer(dense, dtype="<f4").reshape(n, dimension)
    sparse: list[SparseValues | None] | None = None
    if sp_idx is not None:
        sparse = []
        pos = 0
        for length in orjson.loads(sp_lens_json):
            if length is None:
                sparse.append(None)
                continue
            sparse.append(SparseValues(np.frombuffer(sp_idx, "<u4", length // 4, pos),
                                       np.frombuffer(sp_val, "<f4", length // 4, pos)))
            pos += length
    metadata: list[Any] = []
    if md is not None:
        pos = 0
        load = RawJson if raw_metadata else orjson.loads
        for length in orjson.loads(md_lens_json):
            if length is None:
                metadata.append(None)
                continue
            metadata.append(load(md[pos:pos + length]))
            pos += length
    else:
        metadata = [None] * n
    return RecordBatch(ids=ids, values=values, sparse=sparse, metadata=metadata)


def namespace_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT ns, count(*) FROM records GROUP BY ns ORDER BY ns").fetchall())


def delete_ids(conn: sqlite3.Connection, ns: str, ids: Iterable[str]) -> None:
    conn.executemany("DELETE FROM records WHERE ns = ? AND id = ?", ((ns, i) for i in ids))


def read_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM config WHERE key = 'seq'").fetchone()
    return int(row[0]) if row else 0


def bump_seq(conn: sqlite3.Connection, seq: int | None = None, by: str | None = None) -> int:
    """Record a write transaction: the index's sequence number, and who wrote it when (so a
    job refused over a newer write can say what wrote it)."""
    seq = read_seq(conn) + 1 if seq is None else seq
    conn.execute("INSERT OR REPLACE INTO config (key, value) VALUES ('seq', ?)", (str(seq),))
    if by is not None:
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        conn.execute("INSERT OR REPLACE INTO config (key, value) VALUES ('last_write', ?)",
                     (orjson.dumps({"seq": seq, "by": by, "at": at}).decode(),))
    return seq


def read_last_write(conn: sqlite3.Connection) -> dict[str, Any] | None:
    row = conn.execute("SELECT value FROM config WHERE key = 'last_write'").fetchone()
    return orjson.loads(row[0]) if row else None
