"""Change tracking for incremental backups: what was written and deleted after a point.

Every record row already carries the sequence number of the transaction that last wrote it
(``records.seq``), so "upserted since P" is ``seq > P``. To find those rows without a scan,
each written batch adds one row to ``changelog (seq, ns, ids)``: the batch's ids as JSON, one
row per batch rather than one index entry per record (an index on ``records(ns, seq)`` cost
11-20% of upsert throughput at 768-d; this costs one small insert per batch). Deletions leave
no row, so the engine keeps *tombstones*: ``(ns, id, seq)`` for a record deleted by id or by
filter, and a namespace *reset* ``(ns, seq)`` when a whole namespace was emptied or deleted (one
row, however many records it held).

Tracking costs nothing until an index is first backed up: ``start`` records ``tracking_from``,
the point from which every write is logged and every deletion has a tombstone. Each repository that backs the index up holds a
*pin*, the point of its newest snapshot; tombstones at or below every pin are needed by no
future incremental and are purged, and ``tracking_from`` moves up with them. A parent snapshot
older than ``tracking_from`` cannot anchor an incremental: the backup is then a full one, never
an incremental missing deletions.

Pins and ``tracking_from`` are bookkeeping, not data writes: they never bump the write sequence.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from spruce.engine import store
from spruce.records import RecordBatch

SCHEMA = """
CREATE TABLE IF NOT EXISTS tombstones (
    ns TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (ns, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS resets (ns TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changelog (seq INTEGER NOT NULL, ns TEXT NOT NULL, ids TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS changelog_seq ON changelog (seq);
"""
_PIN = "pin:"

#: Copy the rows about to be deleted into tombstones (the same ids, only those that exist).
_TOMBSTONE_SQL = ("INSERT INTO tombstones (ns, id, seq) SELECT ns, id, ?3 FROM records "
                  "WHERE ns = ?1 AND id = ?2 ON CONFLICT (ns, id) DO UPDATE SET seq = excluded.seq")


def migrate(conn: sqlite3.Connection) -> None:
    """Create the tracking tables (empty until tracking starts) and the index's uid."""
    conn.executescript(SCHEMA)
    if conn.execute("SELECT 1 FROM config WHERE key = 'uid'").fetchone() is None:
        conn.execute("INSERT OR IGNORE INTO config (key, value) VALUES ('uid', ?)", (uuid.uuid4().hex,))


def uid(conn: sqlite3.Connection) -> str:
    """A random id given at creation: an index deleted and re-created under the same name is a
    different index, and no incremental may build on the old one's snapshots."""
    row = conn.execute("SELECT value FROM config WHERE key = 'uid'").fetchone()
    return str(row[0]) if row else ""


def tracking_from(conn: sqlite3.Connection) -> int | None:
    """The point since which every deletion has a tombstone; None: not tracking."""
    row = conn.execute("SELECT value FROM config WHERE key = 'tracking_from'").fetchone()
    return int(row[0]) if row else None


def pins(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT key, value FROM config WHERE key >= ? AND key < ?", (_PIN, _PIN + "\U0010ffff"))
    return {k[len(_PIN):]: int(orjson.loads(v)["point"]) for k, v in rows}


# -- writes (inside the index's write transaction) ---------------------------------------------

def log_batch(conn: sqlite3.Connection, ns: str, ids: list[str], seq: int) -> None:
    """A batch was written (when tracking): its ids, for the next incremental to find."""
    conn.execute("INSERT INTO changelog (seq, ns, ids) VALUES (?, ?, ?)", (seq, ns, orjson.dumps(ids).decode()))


def record_deletes(conn: sqlite3.Connection, ns: str, ids: Iterable[str], seq: int) -> None:
    """Call before deleting ``ids``: a tombstone for each that exists (when tracking)."""
    if tracking_from(conn) is None:
        return
    conn.executemany(_TOMBSTONE_SQL, ((ns, i, seq) for i in ids))


def record_reset(conn: sqlite3.Connection, ns: str, seq: int) -> None:
    """A namespace was emptied or deleted: one reset row replaces its tombstones."""
    if tracking_from(conn) is None:
        return
    conn.execute("INSERT OR REPLACE INTO resets (ns, seq) VALUES (?, ?)", (ns, seq))
    conn.execute("DELETE FROM tombstones WHERE ns = ?", (ns,))


def start(conn: sqlite3.Connection, repo: str, point: int) -> None:
    """Start tracking for a repository before its backup takes its snapshot (so no deletion
    between the snapshot and the backup's end goes unrecorded). Idempotent."""
    if tracking_from(conn) is None:
        conn.execute("INSERT INTO config (key, value) VALUES ('tracking_from', ?)", (str(point),))
    key = _PIN + repo
    if conn.execute("SELECT 1 FROM config WHERE key = ?", (key,)).fetchone() is None:
        conn.execute("INSERT INTO config (key, value) VALUES (?, ?)", (key, orjson.dumps({"point": point}).decode()))


def pin(conn: sqlite3.Connection, repo: str, point: int) -> int:
    """A backup into ``repo`` committed at ``point``: move its pin there and purge what no pin
    needs. Returns the tombstones purged."""
    conn.execute("INSERT OR REPLACE INTO config (key, value) VALUES (?, ?)",
                 (_PIN + repo, orjson.dumps({"point": point}).decode()))
    floor = min(pins(conn).values())
    n = conn.execute("DELETE FROM tombstones WHERE seq <= ?", (floor,)).rowcount
    conn.execute("DELETE FROM resets WHERE seq <= ?", (floor,))
    conn.execute("DELETE FROM changelog WHERE seq <= ?", (floor,))
    current = tracking_from(conn) or 0
    if floor > current:
        conn.execute("UPDATE config SET value = ? WHERE key = 'tracking_from'", (str(floor),))
    return n


def unpin(conn: sqlite3.Connection, repo: str) -> None:
    """Forget a repository's pin (it no longer backs this index up); tombstones only it needed
    are purged with the next backup's pin."""
    conn.execute("DELETE FROM config WHERE key = ?", (_PIN + repo,))


# -- reads (inside a Snapshot's read transaction) ---------------------------------------------

def reset_after(conn: sqlite3.Connection, ns: str, since: int) -> int | None:
    """The seq of a reset of ``ns`` after ``since``, if any."""
    row = conn.execute("SELECT seq FROM resets WHERE ns = ? AND seq > ?", (ns, since)).fetchone()
    return int(row[0]) if row else None


def reset_namespaces(conn: sqlite3.Connection, since: int) -> list[str]:
    return [r[0] for r in conn.execute("SELECT ns FROM resets WHERE seq > ? ORDER BY ns", (since,))]


def deleted_ids(conn: sqlite3.Connection, ns: str, since: int) -> list[str]:
    """Ids deleted after ``since`` and absent now (a re-inserted id travels as an upsert)."""
    rows = conn.execute(
        "SELECT t.id FROM tombstones t WHERE t.ns = ?1 AND t.seq > ?2 AND NOT EXISTS "
        "(SELECT 1 FROM records r WHERE r.ns = ?1 AND r.id = t.id) ORDER BY t.id", (ns, since))
    return [r[0] for r in rows]


def changed_rows(conn: sqlite3.Connection, ns: str, since: int) -> list[tuple[int, str]]:
    """(rowid, id) of the records of ``ns`` written after ``since``, in id order: the ids the
    changelog names, those of them that still exist with a newer seq."""
    ids: set[str] = set()
    for (text,) in conn.execute("SELECT ids FROM changelog WHERE seq > ? AND ns = ?", (since, ns)):
        ids.update(orjson.loads(text))
    if not ids:
        return []
    rows = conn.execute("SELECT rowid, id FROM records WHERE ns = ? AND seq > ? AND id IN "
                        "(SELECT value FROM json_each(?))", (ns, since, orjson.dumps(sorted(ids)).decode())).fetchall()
    rows.sort(key=lambda r: r[1])
    return rows


#: A batch of rows by rowid, in id order, gathered as store's _BATCH_COLUMNS gathers them.
_ROWS_SQL = """
SELECT json_group_array(id), CAST(group_concat(dense, '') AS BLOB),
       json_group_array(length(CAST(sp_idx AS BLOB))), CAST(group_concat(sp_idx, '') AS BLOB),
       CAST(group_concat(sp_val, '') AS BLOB),
       json_group_array(length(CAST(metadata AS BLOB))), CAST(group_concat(metadata, '') AS BLOB)
FROM (SELECT id, dense, sp_idx, sp_val, metadata FROM records
      WHERE rowid IN (SELECT value FROM json_each(?1)) ORDER BY id)
"""


def iter_changed(conn: sqlite3.Connection, rows: list[tuple[int, str]], dimension: int | None, batch_size: int,
                 *, raw_metadata: bool = False) -> Iterator[RecordBatch]:
    """The records ``changed_rows`` found, in id order, ``batch_size`` at a time; only their
    rows are read."""
    for a in range(0, len(rows), batch_size):
        chunk = orjson.dumps([r[0] for r in rows[a:a + batch_size]]).decode()
        batch = store._batch_rows(conn.execute(_ROWS_SQL, (chunk,)).fetchone(), dimension, raw_metadata)
        if batch is not None:
            yield batch


def summary(conn: sqlite3.Connection) -> dict[str, Any]:
    """What tracking holds, for ``stats`` and tests."""
    return {
        "tracking_from": tracking_from(conn),
        "pins": pins(conn),
        "tombstones": int(conn.execute("SELECT count(*) FROM tombstones").fetchone()[0]),
        "resets": int(conn.execute("SELECT count(*) FROM resets").fetchone()[0]),
        "changelog": int(conn.execute("SELECT count(*) FROM changelog").fetchone()[0]),
    }
