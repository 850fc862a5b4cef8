"""The approximate half of search: one HNSW graph per namespace, built in the background.

Writes never wait for a graph. A namespace's rows are sealed to its files (persist.py),
then a separate process (graphbuild.py) adds the newly sealed rows to a copy of the
graph and writes it as a new file, which the index then memory-maps and swaps in.
Until a row is in the graph, queries scan it exactly (search.py), so a query is never
stale, and a restore runs at full speed: the builder starts only once writes have been
quiet for ``quiet`` seconds, at a lower CPU priority.

Why usearch: see DESIGN.md ("Approximate search"): int8 storage (a quarter of the
float32 bytes), a file it can serve memory-mapped, and the fastest build of the three
measured here.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from usearch.index import Index as UIndex  # imported with the engine: opening an index should not pay for it

if TYPE_CHECKING:
    from spruce.engine.index import Index
    from spruce.engine.memory import NamespaceData

log = logging.getLogger("spruce.engine")

#: live records in a namespace from which a graph is built and used (SPRUCE_ANN_MIN_ROWS)
ANN_MIN_ROWS = 20_000
#: seconds without a write before the builder starts (SPRUCE_ANN_QUIET_SECONDS)
QUIET_SECONDS = 1.0
#: rows written since the last build that make a new one worthwhile
MIN_NEW_ROWS = 2048
#: the search beam (ef) of a graph of up to EXPANSION_ROWS rows; larger graphs widen it
EXPANSION_SEARCH = 128
EXPANSION_ROWS = 160_000
MAX_EXPANSION = 512
#: past this share of dead rows a namespace is rebuilt from SQLite (and its graph with it)
MAX_DEAD_FRACTION = 0.5


def settings() -> tuple[int, float]:
    return (int(os.environ.get("SPRUCE_ANN_MIN_ROWS", ANN_MIN_ROWS)),
            float(os.environ.get("SPRUCE_ANN_QUIET_SECONDS", QUIET_SECONDS)))


class Graph:
    """A read-only, memory-mapped usearch graph whose keys are rows [0, rows) of a namespace."""

    def __init__(self, path: Path, rows: int) -> None:
        self.path = path
        self.rows = rows
        self._index = UIndex.restore(str(path), view=True)
        if self._index is None or len(self._index) != rows:
            raise ValueError(f"graph {path.name} does not hold {rows} rows")
        #: with int8 distances a beam of 128 found 0.89 of the true top 10 at 1M x 768, 256
        #: found 0.95-0.97 and 320 0.98 (reranked exactly each time): the beam grows as the
        #: square root of the graph's size
        self.ef = expansion_for(rows)
        #: candidates to ask for: half the beam (64 at 128), at most 128 (each is read and rescored)
        self.candidates = min(self.ef // 2, 128)
        self._index.expansion_search = self.ef

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        ef = max(self.ef, k)
        if self._index.expansion_search != ef:
            self._index.expansion_search = ef
        return np.asarray(self._index.search(q, k).keys, dtype=np.int64)


def expansion_for(rows: int) -> int:
    """The search beam for a graph of ``rows`` rows: 128 up to 160k, then 128 * sqrt(rows / 160k)
    (320 at 1M), at most 512."""
    return int(min(MAX_EXPANSION, max(EXPANSION_SEARCH, EXPANSION_SEARCH * (rows / EXPANSION_ROWS) ** 0.5)))


def open_graph(path: Path, rows: int) -> Graph | None:
    """The graph at ``path`` if it is whole and holds ``rows`` rows; else None (rebuilt later)."""
    try:
        return Graph(path, rows)
    except Exception as exc:  # a missing or damaged graph costs a rebuild, never a wrong answer
        log.warning("ignoring graph %s: %s", path, exc)
        return None


class Builder:
    """The index's background thread: loads, seals, builds graphs and commits when writes rest."""

    def __init__(self, index: Index) -> None:
        self._index = index
        self.ann_min, self.quiet = settings()
        self._wake = threading.Event()
        self._stop = False
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._counter = 0
        self.busy = False
        self._thread = threading.Thread(target=self._run, name="spruce-graph", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        idle = True
        while not self._stop:
            self._wake.wait(None if idle else self.quiet)
            self._wake.clear()
            if self._stop:
                return
            rest = self.quiet - (time.monotonic() - self._index.last_write_at)
            if rest > 0:
                idle = False
                self._stopping.wait(min(rest, self.quiet))  # close() must not wait out the quiet time
                continue
            try:
                self.busy = True
                idle = not self._step()
            except Exception as exc:  # the index still serves exactly; retry later
                if self._stop:
                    return
                log.warning("background indexing of %s failed: %s", self._index.name, exc)
                idle = False
                self._stopping.wait(self.quiet)
            finally:
                self.busy = False

    def _step(self) -> bool:
        """One unit of work; True if there may be more."""
        index = self._index
        if not index.loaded:
            if max(index.stored_counts().values(), default=0) < self.ann_min:
                return False
            index.ensure_loaded()
        for ns, data in list(index.namespaces_data().items()):
            if data.nrows >= self.ann_min and data.dead_fraction > MAX_DEAD_FRACTION:
                index.compact(ns)  # rows killed by overwrites and deletes: rebuild from SQLite
                return True
        for ns, data in list(index.namespaces_data().items()):
            covered = 0 if data.graph is None else data.graph.rows
            new = data.nrows - covered
            if len(data) >= self.ann_min and new >= (MIN_NEW_ROWS if covered else 1):
                self._build(ns, data, covered)
                return True
        index.persist_if_quiet()
        return False

    def _build(self, ns: str, data: NamespaceData, covered: int) -> None:
        index = self._index
        upto = data.nrows
        index.seal_namespace(ns, data, upto)
        if data.sealed.get("rows", 0) < upto:
            return  # the namespace was replaced or deleted meanwhile
        d = index.vector_files.ns_dir(ns)
        self._counter += 1
        out = d / f"graph-{time.time_ns()}-{self._counter}.usearch"
        spec = {"dense": str(d / "dense.f32"), "dimension": index.config.dimension, "metric": index.config.metric,
                "start": covered, "stop": upto, "out": str(out),
                "base": str(data.graph.path) if data.graph is not None else None}
        started = time.monotonic()
        self._proc = subprocess.Popen([sys.executable, "-m", "spruce.engine.graphbuild", orjson.dumps(spec).decode()],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = self._proc.communicate()
        code, self._proc = self._proc.returncode, None
        if self._stop:
            return
        if code != 0:
            raise RuntimeError(f"graph build exited {code}: {err.decode(errors='replace').strip()[-500:]}")
        graph = Graph(out, upto)
        if not index.swap_graph(ns, data, covered, graph):
            out.unlink(missing_ok=True)
            return
        log.info("graph of %s/%r: rows %d-%d in %.1f s", index.name, ns, covered, upto, time.monotonic() - started)


def graph_status(data: NamespaceData, ann_min: int) -> dict[str, Any]:
    """How a namespace is searched: "exact" (small), "building" (graph behind), or "ann"."""
    covered = 0 if data.graph is None else data.graph.rows
    if len(data) < ann_min:
        mode = "exact"
    elif data.nrows - covered >= MIN_NEW_ROWS or covered == 0:
        mode = "building"
    else:
        mode = "ann"
    return {"mode": mode, "indexed_rows": covered, "rows": data.nrows, "live": len(data)}
