"""Benchmark the embedded engine: upsert throughput and exact-query latency.

    .venv/bin/python bench/engine.py                      # 100k x 768, 3 repeats
    .venv/bin/python bench/engine.py --records 20000 --dim 128 --repeat 1

Measures, each as the median over --repeat runs:

* upsert records/s in batches of 1000 through ``Index.upsert`` with SDK-shaped input
  (dicts with numpy values + metadata, and dicts with list values + metadata), and
  through the columnar fast path ``Index.upsert_batch(ns, RecordBatch)``; each run
  loads a fresh index. Only the upsert calls are timed (building the input is not).
* exact query latency p50/p99 (top_k=10, cosine) over --queries random vectors,
  and a filtered query p50.

Baselines measured in the same process on the same data: a plain ``sqlite3``
executemany of the same blobs (default settings, one transaction per batch), and a
pure numpy in-memory search (``M @ q`` + argpartition, precomputed norms and masks).
The ratio column is spruce's cost over the baseline's (1.0 = as fast as the baseline).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import spruce
from spruce.engine import store
from spruce.records import RecordBatch

GENRES = ("drama", "comedy", "action", "documentary", "horror")
BATCH = 1000


def make_data(n: int, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((n, dim), dtype=np.float32)
    ids = [f"doc-{i:08d}" for i in range(n)]
    metadata = [{"genre": GENRES[i % len(GENRES)], "year": 1990 + i % 35, "rating": round(float(i % 50) / 10, 1),
                 "tags": [f"t{i % 7}", f"s{i % 11}"], "title": f"Document number {i}"} for i in range(n)]
    return ids, values, metadata


def sdk_records(kind: str, ids: list[str], values: np.ndarray, metadata: list[dict[str, Any]],
                start: int, stop: int) -> list[dict[str, Any]]:
    if kind == "dicts+numpy":
        return [{"id": ids[i], "values": values[i], "metadata": metadata[i]} for i in range(start, stop)]
    rows = values[start:stop].tolist()
    return [{"id": ids[i], "values": rows[i - start], "metadata": metadata[i]} for i in range(start, stop)]


def new_index(root: Path, dim: int) -> tuple[spruce.Client, Any]:
    if root.exists():
        shutil.rmtree(root)
    client = spruce.Client(data_dir=root)
    client.create_index("bench", dimension=dim, metric="cosine")
    return client, client.Index("bench")


def bench_upsert(kind: str, root: Path, ids: list[str], values: np.ndarray,
                 metadata: list[dict[str, Any]]) -> tuple[float, spruce.Client, Any]:
    """Load a fresh index; return records/s counting only the time inside the upsert calls."""
    client, idx = new_index(root, values.shape[1])
    n, spent = len(ids), 0.0
    for start in range(0, n, BATCH):
        stop = min(start + BATCH, n)
        if kind == "columnar":
            payload: Any = RecordBatch(ids=ids[start:stop], values=values[start:stop],
                                       metadata=metadata[start:stop])
            t = time.perf_counter()
            idx._index.upsert_batch("", payload)
        else:
            payload = sdk_records(kind, ids, values, metadata, start, stop)
            t = time.perf_counter()
            idx.upsert(payload)
        spent += time.perf_counter() - t
    return n / spent, client, idx


def bench_sqlite_baseline(root: Path, ids: list[str], values: np.ndarray, metadata: list[dict[str, Any]]) -> float:
    """Plain sqlite3 (default journal and synchronous settings), same schema, same blobs."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    conn = sqlite3.connect(root / "plain.db", isolation_level=None)
    conn.executescript(store.SCHEMA)
    sql = "INSERT INTO records (ns, id, dense, sp_idx, sp_val, metadata) VALUES (?, ?, ?, NULL, NULL, ?)"
    n, spent = len(ids), 0.0
    for start in range(0, n, BATCH):
        stop = min(start + BATCH, n)
        t = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(sql, (("", ids[i], values[i].tobytes(), orjson.dumps(metadata[i]))
                               for i in range(start, stop)))
        conn.execute("COMMIT")
        spent += time.perf_counter() - t
    conn.close()
    shutil.rmtree(root)
    return n / spent


def latencies(fn: Callable[[np.ndarray], Any], queries: np.ndarray) -> np.ndarray:
    out = np.empty(len(queries))
    for k, q in enumerate(queries):
        t = time.perf_counter()
        fn(q)
        out[k] = time.perf_counter() - t
    return out * 1000.0  # ms


def numpy_search(matrix: np.ndarray, norms: np.ndarray, q: np.ndarray, k: int,
                 mask: np.ndarray | None = None) -> np.ndarray:
    """The naive baseline: cosine scores with precomputed norms, then argpartition."""
    scores = matrix @ q
    scores /= norms * np.float32(np.linalg.norm(q))
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def fmt_ratio(spruce_cost: float, base_cost: float) -> str:
    return f"{spruce_cost / base_cost:6.2f}x"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    n, dim = args.records, args.dim
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="spruce-bench-"))
    print(f"spruce {spruce.__version__}: {n:,} records x {dim} dims, batches of {BATCH}, "
          f"{args.repeat} repeat(s), {args.queries} queries, top_k={args.top_k}; scratch {scratch}")

    ids, values, metadata = make_data(n, dim)
    queries = np.random.default_rng(1).standard_normal((args.queries, dim), dtype=np.float32)
    query_lists = [q.tolist() for q in queries]  # what SDK callers pass
    flt = {"genre": "drama", "year": {"$gte": 2000}}
    fmask = np.array([m["genre"] == "drama" and m["year"] >= 2000 for m in metadata])
    norms = np.linalg.norm(values, axis=1).astype(np.float32)
    k = args.top_k

    results: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    for rep in range(args.repeat):
        for kind in ("dicts+numpy", "dicts+lists"):
            rate, client, _ = bench_upsert(kind, scratch / "idx", ids, values, metadata)
            record(f"upsert {kind}", rate)
            client.engine.close()
            del client
            gc.collect()
        record("upsert baseline sqlite3", bench_sqlite_baseline(scratch / "plain", ids, values, metadata))
        rate, client, idx = bench_upsert("columnar", scratch / "idx", ids, values, metadata)
        record("upsert columnar", rate)

        engine_index = idx._index
        engine_index.query(vector=query_lists[0], top_k=k)  # warm up BLAS threads
        lat = np.empty(len(query_lists))
        for j, q in enumerate(query_lists):
            t = time.perf_counter()
            idx.query(vector=q, top_k=k)
            lat[j] = (time.perf_counter() - t) * 1000
        record("query p50 ms", float(np.percentile(lat, 50)))
        record("query p99 ms", float(np.percentile(lat, 99)))
        base = latencies(lambda q: numpy_search(values, norms, q, k), queries)
        record("baseline query p50 ms", float(np.percentile(base, 50)))
        record("baseline query p99 ms", float(np.percentile(base, 99)))

        nf = max(20, len(query_lists) // 5)
        flat = np.empty(nf)
        for j, q in enumerate(query_lists[:nf]):
            t = time.perf_counter()
            res = idx.query(vector=q, top_k=k, filter=flt, include_metadata=True)
            flat[j] = (time.perf_counter() - t) * 1000
        assert all(m.metadata["genre"] == "drama" for m in res.matches)
        record("filtered query p50 ms", float(np.percentile(flat, 50)))
        fbase = latencies(lambda q: numpy_search(values, norms, q, k, fmask), queries[:nf])
        record("baseline filtered p50 ms", float(np.percentile(fbase, 50)))

        # sanity: spruce and the baseline agree on the top hit
        top = idx.query(vector=query_lists[0], top_k=1).matches[0].id
        assert top == ids[int(numpy_search(values, norms, queries[0], 1)[0])]
        client.engine.close()
        del client, idx, engine_index
        gc.collect()
        print(f"  run {rep + 1}/{args.repeat} done", flush=True)

    med = {name: statistics.median(v) for name, v in results.items()}
    base_rate = med["upsert baseline sqlite3"]
    print()
    print(f"{'measure':34s} {'median':>12s}   vs baseline (cost ratio)")
    for kind in ("dicts+numpy", "dicts+lists", "columnar"):
        rate = med[f"upsert {kind}"]
        goal = "ok" if rate >= 20_000 else "BELOW 20k/s goal"
        print(f"{'upsert ' + kind + ' (records/s)':34s} {rate:12,.0f}   {fmt_ratio(base_rate, rate)}  {goal}")
    print(f"{'upsert plain sqlite3 (records/s)':34s} {base_rate:12,.0f}")
    for name, base in (("query p50 ms", "baseline query p50 ms"), ("query p99 ms", "baseline query p99 ms"),
                       ("filtered query p50 ms", "baseline filtered p50 ms")):
        goal = "" if name != "query p50 ms" else ("ok" if med[name] <= 10 else "ABOVE 10 ms goal")
        print(f"{name:34s} {med[name]:12.2f}   {fmt_ratio(med[name], med[base])}  {goal}")
        print(f"{'  numpy ' + base:34s} {med[base]:12.2f}")
    if args.dir is None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
