"""The index's side of incremental backups: pins, tracking, and change reads (engine/changes.py).

A mixin, as NamespaceOps is: ``Index`` keeps the write path, this keeps the bookkeeping that a
backup job needs from it. None of these calls is a data write, so none bumps the sequence.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING, Any

from spruce.engine import changes

__all__ = ["BackupOps"]


class BackupOps:
    if TYPE_CHECKING:
        _conn: sqlite3.Connection
        _write_mutex: threading.RLock
        _tracking: bool

        def _reader(self) -> sqlite3.Connection: ...

        def _check_open(self) -> None: ...

    @property
    def uid(self) -> str:
        """The index's identity (kept by no other index, even one re-created under its name)."""
        return changes.uid(self._reader())

    def _bookkeeping(self, apply: Any) -> Any:
        with self._write_mutex:
            self._check_open()
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = apply(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return result

    def start_tracking(self, repo: str) -> int:
        """Before a backup's snapshot: make sure every deletion from now on leaves a tombstone.
        Returns the point from which tracking is complete."""
        def apply(conn: sqlite3.Connection) -> int:
            from spruce.engine import store
            changes.start(conn, repo, store.read_seq(conn))
            self._tracking = True  # under the writer mutex: the next write logs its ids
            return changes.tracking_from(conn) or 0
        return int(self._bookkeeping(apply))

    def pin_backup(self, repo: str, point: int) -> int:
        """A backup into ``repo`` committed at ``point``; returns the tombstones purged."""
        return int(self._bookkeeping(lambda conn: changes.pin(conn, repo, point)))

    def unpin_backup(self, repo: str) -> None:
        self._bookkeeping(lambda conn: changes.unpin(conn, repo))

    def tracking(self) -> dict[str, Any]:
        """tracking_from, pins, and how many tombstones and resets are held."""
        return changes.summary(self._reader())
