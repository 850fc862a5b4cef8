"""The index's search structures kept in step with SQLite: sealed files, graphs, commits.

A mixin of ``Index`` (index.py), holding what the background builder (ann.py) and
``close`` need: loading from the sealed files or else from SQLite, sealing a
namespace, swapping a graph in, and committing the files' state.

Locks, always taken in this order: the writer mutex, the seal lock, the read/write
lock. A seal writes files holding only the seal lock (rows never change once
written); swaps take the read/write lock for the moment of the swap.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from spruce.engine import ann, store
from spruce.engine.memory import NamespaceData
from spruce.engine.persist import VectorFiles

log = logging.getLogger("spruce.engine")


class IndexingOps:
    """Mixin: needs ``_conn``, ``_reader()``, ``_write_mutex``, ``_rw``, ``_ns``, ``_loaded``,
    ``_config``, ``_check_open()`` and ``path`` from Index."""

    _ns: dict[str, NamespaceData]
    _loaded: bool
    vector_files: VectorFiles
    builder: ann.Builder
    last_write_at: float

    def _init_indexing(self) -> None:
        self.vector_files = VectorFiles(self.path, self._config.dimension)  # type: ignore[attr-defined]
        self._seal_lock = threading.Lock()
        self._committed_seq: int | None = None
        self.last_write_at = 0.0
        self.builder = ann.Builder(self)  # type: ignore[arg-type]

    # -- loading ----------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._loaded

    def ensure_loaded(self) -> None:
        self._ensure_loaded()  # type: ignore[attr-defined]

    def stored_counts(self) -> dict[str, int]:
        """Records per namespace, reading no vector: from the committed files' state when it is
        at SQLite's current write sequence, else from SQLite's id index."""
        self._check_open()  # type: ignore[attr-defined]
        conn = self._reader()  # type: ignore[attr-defined]
        counts = self.vector_files.live_counts(store.read_seq(conn))  # the state of that moment
        return counts if counts is not None else store.namespace_counts(conn)

    def _load_namespaces(self) -> dict[str, NamespaceData]:
        """From the sealed files when they equal SQLite now; otherwise rebuilt from SQLite (and
        the files forgotten, to be sealed again in the background)."""
        conn = self._conn  # type: ignore[attr-defined]
        seq = store.read_seq(conn)
        loaded = self.vector_files.load(seq, lambda: store.namespace_counts(conn))
        if loaded is not None:
            state = self.vector_files.read_state() or {}
            for ns, data in loaded.items():
                g = state["namespaces"][ns].get("graph")
                if g:
                    data.graph = ann.open_graph(self.vector_files.ns_dir(ns) / g["file"], g["rows"])
            self._committed_seq = seq
            return loaded
        self.vector_files.reset()
        dim = self._config.dimension  # type: ignore[attr-defined]
        out: dict[str, NamespaceData] = {}
        for ns, count in store.namespace_counts(conn).items():
            data = NamespaceData(dim)
            data.reserve(count)
            for batch in store.iter_namespace(conn, ns, dim, 10_000):
                data.put(batch.ids, batch.values, batch.sparse, batch.metadata)
            out[ns] = data
        return out

    def namespaces_data(self) -> dict[str, NamespaceData]:
        with self._rw.read():  # type: ignore[attr-defined]
            return dict(self._ns)

    # -- sealing and graphs -----------------------------------------------------

    def seal_namespace(self, ns: str, data: NamespaceData, upto: int) -> None:
        """Write rows [sealed, upto) of a namespace to its files and serve them from there."""
        with self._seal_lock:
            if data.sealed.get("rows", 0) >= upto or self._ns.get(ns) is not data:
                return
            sizes, base, base_sq = self.vector_files.seal(ns, data, upto)
            with self._rw.write():  # type: ignore[attr-defined]
                if self._ns.get(ns) is not data:
                    return  # replaced or deleted meanwhile: its files are rewritten at its next seal
                if base is not None and base_sq is not None:
                    data.rebase(base, base_sq)
                data.sealed = sizes

    def swap_graph(self, ns: str, data: NamespaceData, covered: int, graph: Any) -> bool:
        with self._write_mutex, self._rw.write():  # type: ignore[attr-defined]
            current = 0 if data.graph is None else data.graph.rows
            if self._ns.get(ns) is not data or current != covered:
                return False
            data.graph = graph
            return True

    def compact(self, ns: str) -> None:
        """Drop a namespace's dead rows by reloading it from SQLite (writers wait meanwhile: the
        builder does this only when writes have been quiet)."""
        with self._write_mutex:  # type: ignore[attr-defined]
            if self._loaded and ns in self._ns:
                self._reload([ns])  # type: ignore[attr-defined]

    # -- commit -----------------------------------------------------------------

    def persist(self) -> None:
        """Seal every namespace and commit the files as equal to SQLite now (the writer
        mutex keeps writes out meanwhile). Cheap when little was written since the last seal."""
        with self._write_mutex:  # type: ignore[attr-defined]
            if not self._loaded or self._closed:  # type: ignore[attr-defined]
                return
            seq = store.read_seq(self._conn)  # type: ignore[attr-defined]
            if seq == self._committed_seq:
                return
            for ns, data in list(self._ns.items()):
                self.seal_namespace(ns, data, data.nrows)
            self.vector_files.commit(seq, self._ns)
            self._committed_seq = seq

    def persist_if_quiet(self) -> None:
        if time.monotonic() - self.last_write_at >= self.builder.quiet:
            self.persist()

    # -- status -----------------------------------------------------------------

    def search_status(self) -> dict[str, dict[str, Any]]:
        """Per namespace: "exact", "building" or "ann", and how many rows the graph covers
        (an extension; `spruce stats` and describe_index_stats show the mode)."""
        if not self._loaded:
            return {ns: {"mode": "exact" if c < self.builder.ann_min else "building", "indexed_rows": 0,
                         "rows": c, "live": c} for ns, c in self.stored_counts().items() if c}
        with self._rw.read():  # type: ignore[attr-defined]
            return {ns: ann.graph_status(d, self.builder.ann_min) for ns, d in sorted(self._ns.items()) if len(d)}

    def wait_for_index(self, timeout: float = 600.0) -> bool:
        """Block until every namespace big enough has a graph covering all its rows (benchmarks
        and tests; queries never need to wait). False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.search_status()
            if all(s["mode"] != "building" for s in status.values()) and not self.builder.busy:
                return True
            self.builder.poke()
            time.sleep(0.05)
        return False
