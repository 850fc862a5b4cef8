"""A read-only view of a data folder's indexes, for commands that only report.

Why not the engine: opening it takes the folder's lock and imports numpy and the search code,
which is most of ``spruce index list``'s start-up. Each index's configuration and per-namespace
counts are one small SQLite read each (WAL readers never block the writer, and see committed
data only), so reporting works beside a running server or job.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any


def data_dir(path: str | os.PathLike[str] | None) -> Path:
    """--data DIR, else $SPRUCE_DATA, else ./spruce-data (as the engine resolves it)."""
    return Path(path or os.environ.get("SPRUCE_DATA") or "spruce-data").expanduser().absolute()


def _connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.execute("PRAGMA query_only=1")
    return conn


def index_names(root: Path) -> list[str]:
    """The indexes of the folder (none when it does not exist yet). OSError (e.g. a path
    through a file) when it cannot be a folder."""
    try:
        if not root.is_dir() and root.exists():
            raise NotADirectoryError(20, "Not a directory", str(root))
        os.stat(root)
    except FileNotFoundError:
        return []
    indexes = root / "indexes"
    if not indexes.is_dir():
        return []
    return sorted(p.name for p in indexes.iterdir() if not p.name.startswith(".") and (p / "index.db").exists())


def config(root: Path, name: str) -> dict[str, Any] | None:
    """The index's configuration as stored (None: no such index)."""
    db = root / "indexes" / name / "index.db"
    if "/" in name or name.startswith(".") or not db.exists():
        return None
    with _connect(db) as conn:
        row = conn.execute("SELECT value FROM config WHERE key = 'index'").fetchone()
    return json.loads(row[0]) if row else None


def model(cfg: dict[str, Any]) -> dict[str, Any]:
    """The index as ``IndexModel.to_dict()`` gives it (describe_index's shape)."""
    job = cfg.get("initializing_job")
    status: dict[str, Any] = {"ready": not job, "state": "Initializing" if job else "Ready"}
    if job:
        status["spruce_job"] = job
    return {"name": cfg["name"], "dimension": cfg.get("dimension"), "metric": cfg.get("metric", "cosine"),
            "host": f"embedded://{cfg['name']}", "spec": cfg.get("spec"), "status": status,
            "vector_type": cfg.get("vector_type", "dense"), "deletion_protection": cfg.get("deletion_protection",
                                                                                          "disabled"),
            "tags": cfg.get("tags") or None}


def namespace_counts(root: Path, name: str) -> dict[str, int]:
    """Records per namespace with at least one (describe_index_stats' counts, unfiltered).

    From the sealed files' state (engine/persist.py) when it was committed at the index's
    current write sequence, which makes its counts SQLite's; else SQLite's count(*), which
    reads every id (200 ms at 1M records)."""
    folder = root / "indexes" / name
    with _connect(folder / "index.db") as conn:
        row = conn.execute("SELECT value FROM config WHERE key = 'seq'").fetchone()
        seq = int(row[0]) if row else 0
        try:
            state = json.loads((folder / "vectors" / "state.json").read_bytes())
            if state.get("seq") == seq:
                counts = {ns: int(ent["live"]) for ns, ent in state["namespaces"].items()}
                return {ns: n for ns, n in sorted(counts.items()) if n}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return {ns: n for ns, n in conn.execute("SELECT ns, count(*) FROM records GROUP BY ns ORDER BY ns") if n}
