"""Per-row columns whose older rows live in files and are decoded only when touched.

A namespace opened from its sealed files (persist.py) must answer its first query
without turning 100k JSON blobs into dicts. These columns keep the persisted rows as
the raw bytes (memory-mapped) and decode a row when it is read; rows written since
are plain Python objects. A filter on a field decodes every row once, through
``Postings``, which then keeps its own index.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import orjson

from spruce.records import SparseValues


def offsets(lens: np.ndarray) -> np.ndarray:
    """Start offsets (n+1) of rows whose byte lengths are ``lens`` (-1: no value)."""
    out = np.zeros(lens.size + 1, dtype=np.int64)
    np.cumsum(np.maximum(lens, 0), out=out[1:])
    return out


class MetadataColumn:
    """Metadata dicts by row: persisted rows as JSON bytes, newer rows as dicts."""

    def __init__(self, blob: Any = b"", lens: np.ndarray | None = None) -> None:
        self._blob = blob
        self._lens = np.zeros(0, np.int32) if lens is None else lens
        self._base = int(self._lens.size)
        self._rows: list[dict[str, Any] | None] = []

    @cached_property
    def _off(self) -> np.ndarray:
        """Computed at first read: a query that returns no metadata never needs it (60 ms at 1M)."""
        return offsets(self._lens)

    def __len__(self) -> int:
        return self._base + len(self._rows)

    def __getitem__(self, row: int) -> dict[str, Any] | None:
        if row >= self._base:
            return self._rows[row - self._base]
        if self._lens[row] < 0:
            return None
        return orjson.loads(self._blob[self._off[row]:self._off[row + 1]])

    def extend(self, values: list[dict[str, Any] | None]) -> None:
        self._rows.extend(values)

    def encoded(self, start: int, stop: int) -> tuple[np.ndarray, bytes]:
        """Rows [start, stop) as (lengths, concatenated JSON), the form persist.py writes."""
        lens = np.empty(stop - start, dtype=np.int32)
        parts: list[bytes] = []
        for i, row in enumerate(range(start, stop)):
            if row < self._base:
                if self._lens[row] < 0:
                    lens[i] = -1
                    continue
                text = bytes(self._blob[self._off[row]:self._off[row + 1]])
            else:
                md = self._rows[row - self._base]
                if md is None:
                    lens[i] = -1
                    continue
                text = orjson.dumps(md)
            lens[i] = len(text)
            parts.append(text)
        return lens, b"".join(parts)


class SparseColumn:
    """Sparse vectors by row: persisted rows in CSR arrays, newer rows as objects."""

    def __init__(self, lens: np.ndarray | None = None, indices: np.ndarray | None = None,
                 values: np.ndarray | None = None) -> None:
        self._lens = np.zeros(0, np.int32) if lens is None else lens
        self._idx = np.zeros(0, np.uint32) if indices is None else indices
        self._val = np.zeros(0, np.float32) if values is None else values
        self._base = int(self._lens.size)
        self._rows: list[SparseValues | None] = []
        self._any = bool((self._lens >= 0).any())

    def __len__(self) -> int:
        return self._base + len(self._rows)

    @cached_property
    def _off(self) -> np.ndarray:
        return offsets(self._lens)

    @property
    def any(self) -> bool:
        """Whether any row has a sparse vector (a dense-only namespace skips sparse work)."""
        return self._any

    def __getitem__(self, row: int) -> SparseValues | None:
        if row >= self._base:
            return self._rows[row - self._base]
        if self._lens[row] < 0:
            return None
        a, b = self._off[row], self._off[row + 1]
        return SparseValues(np.array(self._idx[a:b]), np.array(self._val[a:b]))

    def extend(self, values: list[SparseValues | None] | None, n: int) -> None:
        if values is None:
            self._rows.extend([None] * n)
            return
        self._rows.extend(values)
        self._any = self._any or any(v is not None for v in values)

    def lengths(self, start: int, stop: int) -> np.ndarray:
        """Entries per row in [start, stop), -1 for a row without a sparse vector."""
        out = np.empty(stop - start, dtype=np.int32)
        cut = min(max(self._base - start, 0), stop - start)
        out[:cut] = self._lens[start:start + cut]
        for i in range(cut, stop - start):
            sv = self._rows[start + i - self._base]
            out[i] = -1 if sv is None else sv.indices.size
        return out

    def arrays(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, values) of rows [start, stop), concatenated in row order."""
        parts_i: list[np.ndarray] = []
        parts_v: list[np.ndarray] = []
        if start < self._base:
            end = min(stop, self._base)
            parts_i.append(self._idx[self._off[start]:self._off[end]])
            parts_v.append(self._val[self._off[start]:self._off[end]])
        for row in range(max(start, self._base), stop):
            sv = self._rows[row - self._base]
            if sv is not None:
                parts_i.append(sv.indices)
                parts_v.append(sv.values)
        if not parts_i:
            return np.zeros(0, np.uint32), np.zeros(0, np.float32)
        return (np.concatenate(parts_i).astype(np.uint32, copy=False),
                np.concatenate(parts_v).astype(np.float32, copy=False))
