"""Choosing between the exact scan and the graph, per query.

Exact is used when the namespace is small (below ``ann_min`` live records, where one
matrix product beats a graph walk and is exact), when the query asks for it
(``exact=True``), for sparse and hybrid queries, for a large ``top_k``, and for a
filter that leaves few candidates (scanning them is cheap and exact). Otherwise the
graph proposes candidates among the rows it covers, every row written since is
scanned exactly, dead rows and rows outside the filter are dropped, and all survivors
are scored exactly on float32: the scores returned are always exact, only the choice
of candidates is approximate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from spruce.engine.memory import NamespaceData
from spruce.records import SparseValues

#: above this top_k the graph saves little over a scan
MAX_ANN_TOP_K = 256
#: a filter matching at most this many records is scanned exactly
FILTER_EXACT_ROWS = 2048
#: candidates asked of the graph: at least this many (or the graph's own, larger for large
#: graphs: ann.Graph.candidates), and twice top_k
MIN_CANDIDATES = 64
MAX_CANDIDATES = 4096


def run(data: NamespaceData, q_dense: np.ndarray | None, q_sparse: SparseValues | None, metric: str,
        top_k: int, node: Mapping[str, Any] | None, *, exact: bool,
        ann_min: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(rows, scores, mode) of the best ``top_k`` live rows, best first; mode is "ann" or "exact"."""
    mask = None if node is None else data.filter_mask(node)
    graph = data.graph
    if (not exact and graph is not None and q_sparse is None and q_dense is not None
            and top_k <= MAX_ANN_TOP_K and len(data) >= ann_min):
        found = _ann(data, graph, q_dense, metric, top_k, mask)
        if found is not None:
            return (*found, "ann")
    return (*_exact(data, q_dense, q_sparse, metric, top_k, mask), "exact")


def _ann(data: NamespaceData, graph: Any, q: np.ndarray, metric: str, top_k: int,
         mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    n, covered = data.nrows, graph.rows
    want = max(2 * top_k, MIN_CANDIDATES, graph.candidates)
    live = data.alive if mask is None else mask
    matching = len(data) if mask is None else int(np.count_nonzero(mask))
    if mask is not None:
        if matching <= FILTER_EXACT_ROWS:
            return None
        want = math.ceil(want * n / matching)  # enough that ~2 top_k of them pass the filter
    if want > min(MAX_CANDIDATES, covered // 4):
        return None
    keys = graph.search(q, want)
    keys = keys[keys < covered]
    keys = keys[live[keys]]
    newer = np.flatnonzero(live[covered:]) + covered
    if keys.size + newer.size < min(top_k, matching):
        return None  # too many proposals were dead or filtered out: scan instead
    rows = np.concatenate([np.sort(keys), newer])  # sorted, so ties fall to the lower row, as in a scan
    scores = data.dense_scores(q, metric, rows)
    order = _best(scores, top_k, metric == "euclidean")
    return rows[order], scores[order]


def _exact(data: NamespaceData, q_dense: np.ndarray | None, q_sparse: SparseValues | None, metric: str,
           top_k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    n = data.nrows
    ascending = metric == "euclidean"
    rows = np.flatnonzero(data.alive if mask is None else mask)
    if mask is None and rows.size == n:
        rows = None  # nothing dead, nothing filtered: no selection needed
    if rows is not None and rows.size * 4 < n and q_sparse is None and q_dense is not None:
        scores = data.dense_scores(q_dense, metric, rows)  # a selective filter: score its rows only
        order = _best(scores, top_k, ascending)
        return rows[order], scores[order]
    scores = np.zeros(n, dtype=np.float32)
    if q_dense is not None:
        scores += data.dense_scores(q_dense, metric)
    if q_sparse is not None:
        scores += data.sparse_scores(q_sparse)
    if rows is None:
        order = _best(scores, top_k, ascending)
        return order, scores[order]
    order = _best(scores[rows], top_k, ascending)
    return rows[order], scores[rows[order]]


def _best(scores: np.ndarray, k: int, ascending: bool) -> np.ndarray:
    """Positions of the k best scores, best first; ties broken by position for determinism."""
    if scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    s = scores if ascending else -scores
    if scores.size > k:
        part = np.argpartition(s, k - 1)[:k]
        # the k-th best may tie with scores left out: take every tie, then sort stably
        cut = s[part].max()
        part = np.flatnonzero(s <= cut)
        order = part[np.lexsort((part, s[part]))][:k]
    else:
        order = np.argsort(s, kind="stable")
    return order.astype(np.int64)
