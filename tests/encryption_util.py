"""Shared by tests/test_encryption*.py: records with awkward values, and exact comparisons."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from spruce.records import RecordBatch, SparseValues

DIM = 8
FAST_N = 1 << 12  # scrypt cost for passphrase archives made in-process (the default is 2**17)
MARK = "zqx-marker"  # in every metadata string: must never be found in an encrypted file


# -- helpers ---------------------------------------------------------------------------------


def records(n: int, seed: int, prefix: str = "doc") -> RecordBatch:
    """Hybrid records with awkward floats (subnormal, -0.0, max), sparse values on some, metadata."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x[0, :3] = [np.float32(1e-45), np.float32(-0.0), np.float32(3.4028235e38)]
    sparse = [SparseValues(indices=np.array([i, i + 9], dtype=np.uint32),
                           values=np.array([0.25, x[i, 1]], dtype=np.float32)) if i % 3 == 0 else None
              for i in range(n)]
    md = [None if i % 7 == 6 else {"title": f"{MARK}-{prefix}-{i}", "i": i, "f": float(x[i, 2]), "ok": i % 2 == 0,
                                   "tags": [f"{MARK}-tag", "é"]} for i in range(n)]
    return RecordBatch(ids=[f"{prefix}-{seed}-{i:05d}" for i in range(n)], values=x, sparse=sparse, metadata=md)


def rows(batches: Any) -> dict[str, tuple]:
    """id -> (float32 bits, sparse bits, metadata JSON): exact, order-independent."""
    out = {}
    for b in batches:
        for i, rid in enumerate(b.ids):
            sp = None if b.sparse is None or b.sparse[i] is None else (
                np.asarray(b.sparse[i].indices, dtype=np.uint32).tobytes(),
                np.asarray(b.sparse[i].values, dtype=np.float32).tobytes())
            out[rid] = (np.asarray(b.values[i], dtype=np.float32).tobytes(), sp,
                        json.dumps(b.metadata[i], sort_keys=True))
    return out


def index_rows(c: Any, name: str) -> dict[str, dict[str, tuple]]:
    with c.engine.index(name).snapshot() as snap:
        return {ns: rows(snap.iter_batches(ns, batch_size=500)) for ns in snap.namespaces()}


def source_rows(source: Any) -> dict[str, dict[str, tuple]]:
    """Every record through the reading API, per namespace."""
    return {ns: rows(b for f in source.files_for(ns) for b in source.read(f)) for ns in source.namespaces}
