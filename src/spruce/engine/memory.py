"""The in-memory half of an index: one matrix per namespace, searched exactly with numpy.

SQLite is the source of truth; this is a cache derived from it, rebuilt on
open. Keeping dense values in one contiguous float32 matrix makes an exact
query a single BLAS matrix-vector product.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spruce.records import Record, SparseValues


class NamespaceData:
    """Records of one namespace: ids, a growable dense matrix, sparse vectors, metadata."""

    def __init__(self, dimension: int | None) -> None:
        self.dimension = dimension
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        cap = 0 if dimension is None else 16
        self._dense = np.zeros((cap, dimension or 0), dtype=np.float32)
        self._sqnorms = np.zeros(cap, dtype=np.float32)
        self.sparse: list[SparseValues | None] = []
        self.metadata: list[dict[str, Any] | None] = []
        self._csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dense(self) -> np.ndarray:
        return self._dense[: len(self.ids)]

    @property
    def sqnorms(self) -> np.ndarray:
        return self._sqnorms[: len(self.ids)]

    def _grow(self, need: int) -> None:
        cap = self._dense.shape[0]
        if need <= cap or self.dimension is None:
            return
        new_cap = max(need, cap * 2, 16)
        dense = np.zeros((new_cap, self.dimension), dtype=np.float32)
        dense[:cap] = self._dense
        sq = np.zeros(new_cap, dtype=np.float32)
        sq[:cap] = self._sqnorms
        self._dense, self._sqnorms = dense, sq

    def put(self, ids: list[str], values: np.ndarray | None, sparse: list[SparseValues | None] | None,
            metadata: list[dict[str, Any] | None]) -> None:
        """Insert or overwrite records (values is an (n, d) matrix or None)."""
        n0 = len(self.ids)
        n = len(ids)
        if self.pos.keys().isdisjoint(ids) and len(set(ids)) == n:
            # all new (a bulk load, a restore): append in bulk, no per-record bookkeeping
            self._grow(n0 + n)
            self.pos.update(zip(ids, range(n0, n0 + n), strict=True))
            self.ids.extend(ids)
            self.sparse.extend([None] * n if sparse is None else sparse)
            self.metadata.extend(metadata)
            if values is not None and self.dimension is not None:
                self._dense[n0:n0 + n] = values
                self._sqnorms[n0:n0 + n] = np.einsum("ij,ij->i", values, values)
            self._csr = None
            return
        new = [rid for rid in ids if rid not in self.pos]
        self._grow(n0 + len(new))
        rows = np.empty(len(ids), dtype=np.int64)
        for i, rid in enumerate(ids):
            row = self.pos.get(rid)
            if row is None:
                row = len(self.ids)
                self.pos[rid] = row
                self.ids.append(rid)
                self.sparse.append(None)
                self.metadata.append(None)
            rows[i] = row
            self.sparse[row] = None if sparse is None else sparse[i]
            self.metadata[row] = metadata[i]
        if values is not None and self.dimension is not None:
            self._dense[rows] = values
            self._sqnorms[rows] = np.einsum("ij,ij->i", values, values)
        self._csr = None

    def remove(self, ids: list[str]) -> int:
        """Delete by swapping the last row into the hole: O(1) per id."""
        removed = 0
        for rid in ids:
            row = self.pos.pop(rid, None)
            if row is None:
                continue
            removed += 1
            last = len(self.ids) - 1
            if row != last:
                moved = self.ids[last]
                self.ids[row] = moved
                self.pos[moved] = row
                self.sparse[row] = self.sparse[last]
                self.metadata[row] = self.metadata[last]
                if self.dimension is not None:
                    self._dense[row] = self._dense[last]
                    self._sqnorms[row] = self._sqnorms[last]
            self.ids.pop()
            self.sparse.pop()
            self.metadata.pop()
        if removed:
            self._csr = None
        return removed

    def record(self, rid: str) -> Record | None:
        row = self.pos.get(rid)
        if row is None:
            return None
        return Record(
            id=rid,
            values=None if self.dimension is None else self._dense[row].copy(),
            sparse_values=self.sparse[row],
            metadata=self.metadata[row],
        )

    # -- scoring --------------------------------------------------------------

    def dense_scores(self, q: np.ndarray, metric: str) -> np.ndarray:
        """Pinecone's scores: cosine similarity, dot product, or squared euclidean distance."""
        dots = self.dense @ q
        if metric == "dotproduct":
            return dots
        qsq = float(q @ q)
        if metric == "euclidean":
            return np.maximum(self.sqnorms - 2.0 * dots + qsq, 0.0)
        denom = np.sqrt(self.sqnorms) * np.float32(np.sqrt(qsq))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, dots / denom, 0.0).astype(np.float32)

    def sparse_scores(self, q: SparseValues) -> np.ndarray:
        """Sparse dot products against every record, vectorized over a cached CSR layout."""
        n = len(self.ids)
        if n == 0 or q.indices.size == 0:
            return np.zeros(n, dtype=np.float32)
        if self._csr is None:
            lengths = np.fromiter((0 if s is None else s.indices.size for s in self.sparse), np.int64, n)
            parts_i = [s.indices for s in self.sparse if s is not None]
            parts_v = [s.values for s in self.sparse if s is not None]
            indices = np.concatenate(parts_i) if parts_i else np.zeros(0, np.uint32)
            data = np.concatenate(parts_v) if parts_v else np.zeros(0, np.float32)
            rows = np.repeat(np.arange(n), lengths)
            self._csr = (rows, indices, data)
        rows, indices, data = self._csr
        order = np.argsort(q.indices)
        qi, qv = q.indices[order], q.values[order]
        pos = np.searchsorted(qi, indices)
        pos_c = np.minimum(pos, qi.size - 1)
        hit = qi[pos_c] == indices
        contrib = np.where(hit, data * qv[pos_c], np.float32(0))
        return np.bincount(rows, weights=contrib, minlength=n).astype(np.float32)
