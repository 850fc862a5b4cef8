"""The search-ready half of a namespace: rows of vectors, searched exactly or through a graph.

SQLite is the source of truth; this is derived from it. Rows are append-only: an
upsert appends a row, an overwrite appends one and kills the old, a delete kills.
So a row never changes once written, which is what lets the rows be sealed to files
(persist.py) and memory-mapped, indexed by a graph built in the background (ann.py),
and posted to inverted indexes (postings.py), all without locks on the row data.

Dense values are two blocks: the sealed rows (``base``, a memory map of the
namespace's float32 file) and the rows written since (``tail``, a growable array).
An exact query is one matrix-vector product per block.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import compress
from typing import Any

import numpy as np

from spruce.engine import dense
from spruce.engine.columns import MetadataColumn, SparseColumn
from spruce.engine.postings import Postings
from spruce.records import Record, SparseValues


class NamespaceData:
    """The rows of one namespace: ids, liveness, dense blocks, sparse, metadata, postings."""

    def __init__(self, dimension: int | None, *, ids: list[str] | None = None,
                 alive: np.ndarray | None = None, base: np.ndarray | None = None,
                 base_sq: np.ndarray | None = None, metadata: MetadataColumn | None = None,
                 sparse: SparseColumn | None = None) -> None:
        self.dimension = dimension
        self.ids: list[str] = ids or []
        n = len(self.ids)
        self._alive = np.ones(max(n, 16), dtype=bool)
        if alive is not None:
            self._alive[:n] = alive
        #: id -> live row; built at first use, which a query never is (0.3-0.5 s at 1M ids)
        self._pos: dict[str, int] | None = None
        self._nlive = int(np.count_nonzero(self._alive[:n]))
        d = dimension or 0
        self.base = np.zeros((0, d), np.float32) if base is None else base
        self.base_sq = np.zeros(0, np.float32) if base_sq is None else base_sq
        self._tail = np.zeros((0 if dimension is None else 16, d), dtype=np.float32)
        self._tail_sq = np.zeros(self._tail.shape[0], dtype=np.float32)
        self.metadata = metadata or MetadataColumn()
        self.sparse = sparse or SparseColumn()
        self.postings = Postings(lambda row: self.metadata[row])
        self._csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        #: persisted state (persist.py): rows and byte sizes already in the namespace's files
        self.sealed: dict[str, int] = {}
        #: the ANN graph (ann.Graph) over rows [0, graph.rows), or None
        self.graph: Any = None

    # -- shape ----------------------------------------------------------------

    def __len__(self) -> int:
        pos = self._pos
        return self._nlive if pos is None else len(pos)

    @property
    def pos(self) -> dict[str, int]:
        pos = self._pos
        if pos is None:  # readers may race to build it: each builds the same dict
            n = self.nrows
            live = self._alive[:n].tolist()
            pos = (dict(zip(self.ids, range(n), strict=True)) if all(live)
                   else dict(zip(compress(self.ids, live), compress(range(n), live), strict=True)))
            self._pos = pos
        return pos

    @property
    def nrows(self) -> int:
        """Rows ever appended, dead ones included."""
        return len(self.ids)

    @property
    def nbase(self) -> int:
        return self.base.shape[0] if self.dimension is not None else 0

    @property
    def alive(self) -> np.ndarray:
        return self._alive[: self.nrows]

    @property
    def tail(self) -> np.ndarray:
        return self._tail[: self.nrows - self.nbase] if self.dimension is not None else self._tail

    @property
    def tail_sq(self) -> np.ndarray:
        return self._tail_sq[: self.nrows - self.nbase]

    @property
    def dead_fraction(self) -> float:
        return 0.0 if not self.nrows else 1.0 - len(self) / self.nrows

    # -- writes ---------------------------------------------------------------

    def reserve(self, rows: int) -> None:
        """Room for ``rows`` rows at once: a namespace read back from SQLite would otherwise
        double its arrays a dozen times (25 s of copying at 1M x 768)."""
        self._grow(rows, exact=True)

    def _grow(self, need: int, *, exact: bool = False) -> None:
        if need > self._alive.size:
            alive = np.zeros(max(need, self._alive.size * 2), dtype=bool)
            alive[: self._alive.size] = self._alive
            self._alive = alive
        if self.dimension is None:
            return
        need_tail = need - self.nbase
        cap = self._tail.shape[0]
        if need_tail > cap:
            new_cap = need_tail if exact else max(need_tail, cap * 2, 16)
            tail = np.zeros((new_cap, self.dimension), dtype=np.float32)
            tail[:cap] = self._tail
            sq = np.zeros(new_cap, dtype=np.float32)
            sq[:cap] = self._tail_sq
            self._tail, self._tail_sq = tail, sq

    def put(self, ids: list[str], values: np.ndarray | None, sparse: list[SparseValues | None] | None,
            metadata: list[dict[str, Any] | None]) -> None:
        """Append records; an id already present (or repeated in the batch) kills its older row."""
        n0, n = self.nrows, len(ids)
        self._grow(n0 + n)
        self._alive[n0:n0 + n] = True
        pos = self.pos
        if pos.keys().isdisjoint(ids) and len(set(ids)) == n:
            pos.update(zip(ids, range(n0, n0 + n), strict=True))  # a bulk load: no per-id checks
        else:
            for row, rid in enumerate(ids, n0):
                old = pos.get(rid)
                if old is not None:
                    self._alive[old] = False
                pos[rid] = row
        self.ids.extend(ids)
        self.sparse.extend(sparse, n)
        self.metadata.extend(metadata)
        if values is not None and self.dimension is not None:
            t0 = n0 - self.nbase
            self._tail[t0:t0 + n] = values
            self._tail_sq[t0:t0 + n] = np.einsum("ij,ij->i", values, values)
        self.postings.add_rows(n0, metadata)
        self._csr = None

    def remove(self, ids: list[str]) -> int:
        """Kill the rows of ``ids``; returns how many existed."""
        removed = 0
        for rid in ids:
            row = self.pos.pop(rid, None)
            if row is not None:
                self._alive[row] = False
                removed += 1
        return removed

    def rebase(self, base: np.ndarray, base_sq: np.ndarray) -> None:
        """Rows [0, len(base)) are now sealed in ``base`` (a memory map): drop them from the tail."""
        cut = base.shape[0] - self.nbase
        rest = self.tail[cut:]
        tail = np.zeros((max(16, rest.shape[0] * 2), self.dimension or 0), dtype=np.float32)
        tail[: rest.shape[0]] = rest
        sq = np.zeros(tail.shape[0], dtype=np.float32)
        sq[: rest.shape[0]] = self.tail_sq[cut:]
        self.base, self.base_sq, self._tail, self._tail_sq = base, base_sq, tail, sq

    # -- rows -----------------------------------------------------------------

    def vector(self, row: int) -> np.ndarray:
        nb = self.nbase
        return dense.gather(self.base, np.array([row])).reshape(-1).copy() if row < nb else self._tail[row - nb].copy()

    def vectors(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense values of ``rows`` (a gather across both blocks), with their squared norms."""
        nb = self.nbase
        if rows.size and rows.max() < nb:
            return dense.gather(self.base, rows), self.base_sq[rows]
        if rows.size and rows.min() >= nb:
            return self._tail[rows - nb], self._tail_sq[rows - nb]
        out = np.empty((rows.size, self.dimension or 0), dtype=np.float32)
        sq = np.empty(rows.size, dtype=np.float32)
        lo = rows < nb
        out[lo], sq[lo] = dense.gather(self.base, rows[lo]), self.base_sq[rows[lo]]
        out[~lo], sq[~lo] = self._tail[rows[~lo] - nb], self._tail_sq[rows[~lo] - nb]
        return out, sq

    def record(self, rid: str) -> Record | None:
        row = self.pos.get(rid)
        if row is None:
            return None
        return Record(id=rid, values=None if self.dimension is None else self.vector(row),
                      sparse_values=self.sparse[row], metadata=self.metadata[row])

    def filter_mask(self, node: Mapping[str, Any] | None) -> np.ndarray:
        """Live rows matching a normalized filter (None: every live row)."""
        if node is None:
            return self.alive.copy()
        return self.postings.mask(node, self.nrows) & self.alive

    # -- scoring --------------------------------------------------------------

    def dense_scores(self, q: np.ndarray, metric: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Pinecone's scores for every row (or ``rows``): cosine similarity, dot product, or
        squared euclidean distance."""
        if rows is None:
            nb = self.nbase
            dots = np.empty(self.nrows, dtype=np.float32)
            dots[:nb] = dense.scan(self.base, q)
            dots[nb:] = self.tail @ q
            sqn = np.concatenate([self.base_sq, self.tail_sq]) if metric != "dotproduct" else None
        else:
            vecs, sqn = self.vectors(rows)
            dots = vecs @ q
        return score(dots, sqn, q, metric)

    def sparse_scores(self, q: SparseValues) -> np.ndarray:
        """Sparse dot products against every row, vectorized over a cached CSR layout."""
        n = self.nrows
        if n == 0 or q.indices.size == 0 or not self.sparse.any:
            return np.zeros(n, dtype=np.float32)
        if self._csr is None:
            lengths = np.maximum(self.sparse.lengths(0, n), 0)
            indices, data = self.sparse.arrays(0, n)
            self._csr = (np.repeat(np.arange(n), lengths), indices, data)
        rows, indices, data = self._csr
        order = np.argsort(q.indices)
        qi, qv = q.indices[order], q.values[order]
        pos = np.searchsorted(qi, indices)
        pos_c = np.minimum(pos, qi.size - 1)
        hit = qi[pos_c] == indices
        contrib = np.where(hit, data * qv[pos_c], np.float32(0))
        return np.bincount(rows, weights=contrib, minlength=n).astype(np.float32)


def score(dots: np.ndarray, sqnorms: np.ndarray | None, q: np.ndarray, metric: str) -> np.ndarray:
    if metric == "dotproduct":
        return dots
    qsq = float(q @ q)
    assert sqnorms is not None
    if metric == "euclidean":
        return np.maximum(sqnorms - 2.0 * dots + qsq, 0.0)
    denom = np.sqrt(sqnorms) * np.float32(np.sqrt(qsq))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, dots / denom, 0.0).astype(np.float32)
