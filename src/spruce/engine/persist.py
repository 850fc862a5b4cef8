"""Sealed rows on disk, so an index opens without reading every vector out of SQLite.

Layout, beside ``index.db``::

    vectors/state.json            the commit record (written last, replaced atomically)
    vectors/<key>/dense.f32       float32 rows, row-major, little-endian
    vectors/<key>/sqnorms.f32     each row's squared norm (cosine/euclidean without a pass)
    vectors/<key>/ids.jsonl       one JSON array of ids per seal, in row order
    vectors/<key>/meta.len, meta.bin      int32 byte length per row (-1: none), the JSON texts
    vectors/<key>/sp.len, sp.idx, sp.val  int32 entries per row (-1: none), uint32, float32
    vectors/<key>/dead-<seq>.i64  rows killed by overwrites and deletes, as of the commit
    vectors/<key>/graph-<n>.usearch       the ANN graph over the first rows (ann.py)

``<key>`` is the first 16 hex digits of sha256 of the namespace name, so any name is a
safe folder. Files only grow by appending whole seals; a file's prefix that a state
names is never rewritten while that state can still be valid.

Why it can never serve wrong results: SQLite stays the source of truth, and
state.json records the write sequence it equals. On open the state is used only if
its sequence is the index's current one, every file is at least as long as recorded
and every namespace's live count equals SQLite's; otherwise everything here is
deleted (state.json first) and rebuilt from SQLite. Every write transaction bumps the
sequence, so a kill -9 after any write leaves a state that no longer matches.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from spruce.engine import dense
from spruce.engine.columns import MetadataColumn, SparseColumn
from spruce.engine.memory import NamespaceData

FORMAT = 1
STATE = "state.json"
FILES = ("dense.f32", "sqnorms.f32", "ids.jsonl", "meta.len", "meta.bin", "sp.len", "sp.idx", "sp.val")


def ns_key(ns: str) -> str:
    return hashlib.sha256(ns.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _fsync_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _map(path: Path, dtype: str, count: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if count == 0:
        return np.zeros(shape or (0,), dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape or (count,))


def _map_dense(path: Path, rows: int, dim: int) -> np.ndarray:
    return np.zeros((0, dim), np.float32) if rows == 0 else dense.open_rows(path, rows, dim)


class VectorFiles:
    """The ``vectors/`` folder of one index."""

    def __init__(self, index_dir: str, dimension: int | None) -> None:
        self.root = Path(index_dir) / "vectors"
        self.dimension = dimension

    def ns_dir(self, ns: str) -> Path:
        return self.root / ns_key(ns)

    # -- open -------------------------------------------------------------------

    def read_state(self) -> dict[str, Any] | None:
        try:
            state = orjson.loads((self.root / STATE).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return state if isinstance(state, dict) and state.get("format") == FORMAT else None

    def live_counts(self, seq: int) -> dict[str, int] | None:
        """Records per namespace as committed at write sequence ``seq``, or None if the files
        are not at ``seq``. Every write transaction bumps the sequence, so at an equal
        sequence these are SQLite's counts, without its count(*) over every id (200 ms at 1M)."""
        state = self.read_state()
        if state is None or state.get("seq") != seq:
            return None
        try:
            return {ns: int(ent["live"]) for ns, ent in state.get("namespaces", {}).items()}
        except (KeyError, TypeError, ValueError):
            return None  # a state written before counts were kept: SQLite counts instead

    def load(self, seq: int, sqlite_counts: Callable[[], Mapping[str, int]]) -> dict[str, NamespaceData] | None:
        """The namespaces as sealed at write sequence ``seq``, or None if the files are missing,
        stale, or disagree with their own state (the caller then rebuilds from SQLite).
        ``sqlite_counts`` is asked only of a state written before counts were kept in it."""
        state = self.read_state()
        if state is None or state.get("seq") != seq or state.get("dimension") != self.dimension:
            return None
        entries: dict[str, Any] = state.get("namespaces", {})
        counts: Mapping[str, int] | None = None
        if not all("live" in ent for ent in entries.values()):
            counts = sqlite_counts()
            if set(entries) != {ns for ns, c in counts.items() if c}:
                return None
        out: dict[str, NamespaceData] = {}
        try:
            for ns, ent in entries.items():
                data = self._load_ns(ns, ent)
                if data is None or len(data) != (ent["live"] if counts is None else counts.get(ns)):
                    return None
                out[ns] = data
        except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            return None
        return out

    def _load_ns(self, ns: str, ent: Mapping[str, Any]) -> NamespaceData | None:
        d = self.ns_dir(ns)
        sizes: dict[str, int] = ent["sizes"]
        for name in FILES:
            if (d / name).stat().st_size < sizes.get(name, 0):
                return None
        rows: int = ent["rows"]
        ids: list[str] = []
        with open(d / "ids.jsonl", "rb") as f:
            for line in f.read(sizes["ids.jsonl"]).splitlines():
                ids.extend(orjson.loads(line))
        if len(ids) != rows:
            return None
        alive = np.ones(rows, dtype=bool)
        dead = np.fromfile(d / ent["dead"], dtype="<i8") if ent.get("dead") else np.zeros(0, np.int64)
        if dead.size and (dead.min() < 0 or dead.max() >= rows):
            return None
        alive[dead] = False
        dim = self.dimension
        base = base_sq = None
        if dim is not None:
            base = _map_dense(d / "dense.f32", rows, dim)
            base_sq = _map(d / "sqnorms.f32", "<f4", rows)
        meta_lens = np.fromfile(d / "meta.len", dtype="<i4", count=rows)
        meta_blob: Any = _map(d / "meta.bin", "u1", sizes["meta.bin"])
        sp_lens = np.fromfile(d / "sp.len", dtype="<i4", count=rows)
        nnz = sizes["sp.idx"] // 4
        data = NamespaceData(
            dim, ids=ids, alive=alive, base=base, base_sq=base_sq,
            metadata=MetadataColumn(memoryview(meta_blob).cast("B") if sizes["meta.bin"] else b"", meta_lens),
            sparse=SparseColumn(sp_lens, _map(d / "sp.idx", "<u4", nnz), _map(d / "sp.val", "<f4", nnz)))
        data.sealed = dict(sizes, rows=rows)
        return data

    def reset(self) -> None:
        """Forget everything here (state.json first, so a crash midway leaves no valid state)."""
        try:
            (self.root / STATE).unlink()
        except FileNotFoundError:
            pass
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)

    # -- seal -------------------------------------------------------------------

    def seal(self, ns: str, data: NamespaceData, upto: int) -> tuple[dict[str, int], np.ndarray | None,
                                                                    np.ndarray | None]:
        """Append rows [sealed, upto) of ``data`` to the namespace's files and map them.

        Rows never change once written, so this runs without the index's locks; the caller
        swaps the returned maps in (``NamespaceData.rebase``) under its write lock. Files are
        first cut back to the sizes already sealed: a seal that a crash or a rebuild left
        half-written is overwritten, never appended to.
        """
        d = self.ns_dir(ns)
        d.mkdir(parents=True, exist_ok=True)
        start = data.sealed.get("rows", 0)
        nb = data.nbase
        parts: dict[str, bytes | memoryview] = {}
        if self.dimension is not None:
            parts["dense.f32"] = memoryview(np.ascontiguousarray(data.tail[start - nb:upto - nb])).cast("B")
            parts["sqnorms.f32"] = data.tail_sq[start - nb:upto - nb].tobytes()
        parts["ids.jsonl"] = orjson.dumps(data.ids[start:upto]) + b"\n" if upto > start else b""
        meta_lens, meta_blob = data.metadata.encoded(start, upto)
        parts["meta.len"], parts["meta.bin"] = meta_lens.astype("<i4").tobytes(), meta_blob
        parts["sp.len"] = data.sparse.lengths(start, upto).astype("<i4").tobytes()
        sp_idx, sp_val = data.sparse.arrays(start, upto)
        parts["sp.idx"], parts["sp.val"] = sp_idx.astype("<u4").tobytes(), sp_val.astype("<f4").tobytes()
        sizes: dict[str, int] = {}
        for name in FILES:
            old = data.sealed.get(name, 0)
            chunk = parts.get(name, b"")
            with open(d / name, "ab") as f:
                f.truncate(old)
                f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            sizes[name] = old + len(chunk)
        sizes["rows"] = upto
        if self.dimension is None:
            return sizes, None, None
        return (sizes, _map_dense(d / "dense.f32", upto, self.dimension),
                _map(d / "sqnorms.f32", "<f4", upto))

    # -- commit -----------------------------------------------------------------

    def commit(self, seq: int, namespaces: Mapping[str, NamespaceData]) -> None:
        """Record that the files equal SQLite at ``seq``: every namespace fully sealed (the
        caller holds the writer mutex, so nothing changes meanwhile). Dead rows go to a file
        named by the sequence; state.json is replaced last; stale files are removed after."""
        self.root.mkdir(parents=True, exist_ok=True)
        entries: dict[str, Any] = {}
        for ns, data in namespaces.items():
            if not len(data):
                continue
            assert data.sealed.get("rows") == data.nrows, "commit of a namespace with unsealed rows"
            d = self.ns_dir(ns)
            dead_name = f"dead-{seq}.i64"
            _fsync_write(d / dead_name, np.flatnonzero(~data.alive).astype("<i8").tobytes())
            ent: dict[str, Any] = {"rows": data.nrows, "live": len(data), "sizes": {k: v for k, v in data.sealed.items()
                                                                 if k in FILES}, "dead": dead_name}
            if data.graph is not None:
                ent["graph"] = {"file": data.graph.path.name, "rows": data.graph.rows}
            entries[ns] = ent
            _fsync_dir(d)
        state = {"format": FORMAT, "seq": seq, "dimension": self.dimension, "namespaces": entries}
        _fsync_write(self.root / STATE, orjson.dumps(state, option=orjson.OPT_INDENT_2))
        _fsync_dir(self.root)
        self.collect(entries)

    def collect(self, entries: Mapping[str, Any]) -> None:
        """Remove folders of namespaces no longer present and files no state names."""
        keep = {ns_key(ns): ent for ns, ent in entries.items()}
        for child in self.root.iterdir():
            if child.name == STATE or child.name.endswith(".tmp") or not child.is_dir():
                continue
            ent = keep.get(child.name)
            if ent is None:
                shutil.rmtree(child, ignore_errors=True)
                continue
            named = {ent.get("dead"), (ent.get("graph") or {}).get("file")}
            for f in child.iterdir():
                if f.name.startswith(("dead-", "graph-")) and not f.name.endswith(".tmp") and f.name not in named:
                    f.unlink(missing_ok=True)
