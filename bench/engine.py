"""Benchmark the embedded engine against issue 16's goals: ingest, search, open, memory.

    .venv/bin/python bench/engine.py                          # ingest at 100k, search at 100k and 1M
    .venv/bin/python bench/engine.py --sizes 100000 --repeat 1

Ingest (at --ingest-records, each the median over --repeat fresh loads, batches of 1000,
768-d with metadata; only the upsert calls are timed): SDK-shaped dicts with list
values (as JSON-born data arrives; goal 25k records/s), dicts with numpy values, the
columnar ``upsert_batch``, and the baseline, a plain sqlite3 executemany of the same
blobs.

Search, for each size in --sizes, on clustered data (200 centres, as real embeddings
cluster), with a ``genre`` field of 10 values (a ``$eq`` filter keeps 10%): the index is
loaded, its graph built (timed), and closed; then a fresh process opens it and measures
the first query after open, query p50/p99 (top_k=10), recall@10 against ``exact=True``,
the filtered p50, ``exact=True`` p50, and its peak RSS while serving, as a multiple of
the vector bytes. The baseline in that same process is a numpy exact scan (matrix @ q
and argpartition over vectors already in RAM), measured after spruce's figures so that
its memory does not count against spruce's RSS. Another fresh process runs
``describe_index_stats`` and reports how much memory that took (it reads no vectors).
The bench prints its own wall time.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import spruce
from spruce.engine import store
from spruce.records import RecordBatch

GENRES = tuple(f"genre-{i}" for i in range(10))
BATCH = 1000
GOALS = {  # size -> (p50 ms, recall, filtered p50 ms, first query ms), peak RSS <= 1.5x vector bytes
    100_000: (1.5, 0.97, 5.0, 100.0),
    1_000_000: (5.0, 0.95, 10.0, 500.0),
}


def make_data(n: int, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, dim), dtype=np.float32)
    values = centres[rng.integers(0, 200, n)]
    values += 0.5 * rng.standard_normal((n, dim), dtype=np.float32)
    ids = [f"doc-{i:08d}" for i in range(n)]
    metadata = [{"genre": GENRES[i % 10], "year": 1990 + i % 35, "tags": [f"t{i % 7}", f"s{i % 11}"],
                 "title": f"Document number {i}"} for i in range(n)]
    return ids, values, metadata


def queries_for(n: int, dim: int) -> np.ndarray:
    _, values, _ = make_data(min(n, 1000), dim, seed=0)  # same centres
    rng = np.random.default_rng(7)
    return values[rng.integers(0, len(values), n)] + 0.1 * rng.standard_normal((n, dim), dtype=np.float32)


def rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB.

    Not ``ru_maxrss``: Linux carries that across execve, so a worker spawned by this bench
    would report the parent's peak (1 GB after the ingest part) instead of its own.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- ingest -----------------------------------------------------------------------------


def bench_upsert(kind: str, root: Path, ids: list[str], values: np.ndarray, metadata: list[dict[str, Any]]) -> float:
    if root.exists():
        shutil.rmtree(root)
    client = spruce.Client(root)
    client.create_index("bench", dimension=values.shape[1], metric="cosine")
    idx = client.Index("bench")
    spent = 0.0
    for start in range(0, len(ids), BATCH):
        stop = min(start + BATCH, len(ids))
        if kind == "columnar":
            payload: Any = RecordBatch(ids=ids[start:stop], values=values[start:stop], metadata=metadata[start:stop])
            t = time.perf_counter()
            idx._index.upsert_batch("", payload)
        else:
            rows = values[start:stop].tolist() if kind == "dicts+lists" else values[start:stop]
            payload = [{"id": ids[i], "values": rows[i - start], "metadata": metadata[i]} for i in range(start, stop)]
            t = time.perf_counter()
            idx.upsert(payload)
        spent += time.perf_counter() - t
    client.close()
    return len(ids) / spent


def bench_sqlite(root: Path, ids: list[str], values: np.ndarray, metadata: list[dict[str, Any]]) -> float:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    conn = sqlite3.connect(root / "plain.db", isolation_level=None)
    conn.executescript(store.SCHEMA)
    sql = "INSERT INTO records (ns, id, dense, sp_idx, sp_val, metadata) VALUES (?, ?, ?, NULL, NULL, ?)"
    spent = 0.0
    for start in range(0, len(ids), BATCH):
        stop = min(start + BATCH, len(ids))
        t = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(sql, (("", ids[i], values[i].tobytes(), orjson.dumps(metadata[i])) for i in range(start, stop)))
        conn.execute("COMMIT")
        spent += time.perf_counter() - t
    conn.close()
    shutil.rmtree(root)
    return len(ids) / spent


# -- search (the serving process) -----------------------------------------------------------


def serve_worker(root: str, dim: int, nq: int) -> dict[str, Any]:
    """Runs in a fresh process: open, first query, then the search figures."""
    queries = queries_for(nq, dim)
    ql = [q.tolist() for q in queries]
    import spruce.client  # a serving process has its modules loaded: time the open, not imports
    t = time.perf_counter()
    client = spruce.Client(root)
    idx = client.Index("bench")
    idx.query(vector=ql[0], top_k=10)
    first_ms = (time.perf_counter() - t) * 1000

    def timed(**kw: Any) -> tuple[np.ndarray, list[list[str]]]:
        lat, ids = np.empty(nq), []
        for j, q in enumerate(ql):
            t0 = time.perf_counter()
            r = idx.query(vector=q, top_k=10, **kw)
            lat[j] = (time.perf_counter() - t0) * 1000
            ids.append([m.id for m in r.matches])
        return lat, ids

    timed()  # warm
    lat, got = timed()
    flat, fgot = timed(filter={"genre": {"$eq": GENRES[3]}})
    elat, truth = timed(exact=True)
    _, ftruth = timed(filter={"genre": {"$eq": GENRES[3]}}, exact=True)
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth, strict=True)]))
    frecall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(fgot, ftruth, strict=True)]))
    peak = rss_mb()
    mode = idx.search_status()[""]["mode"]
    # the baseline, in RAM, after spruce's RSS was read
    data = idx._index._ns[""]
    matrix = np.array(data.base)
    norms = np.linalg.norm(matrix, axis=1).astype(np.float32)
    blat = np.empty(nq)
    for j, q in enumerate(queries):
        t0 = time.perf_counter()
        s = matrix @ q
        s /= norms * np.float32(np.linalg.norm(q))
        top = np.argpartition(-s, 10)[:10]
        top[np.argsort(-s[top])]
        blat[j] = (time.perf_counter() - t0) * 1000
    client.close()
    return {"first_ms": first_ms, "p50": float(np.median(lat)), "p99": float(np.percentile(lat, 99)),
            "recall": recall, "filtered_p50": float(np.median(flat)), "filtered_recall": frecall,
            "exact_p50": float(np.median(elat)), "peak_rss_mb": peak, "mode": mode,
            "baseline_p50": float(np.median(blat))}


def stats_worker(root: str) -> dict[str, Any]:
    before = rss_mb()
    client = spruce.Client(root)
    t = time.perf_counter()
    s = client.Index("bench").describe_index_stats()
    ms = (time.perf_counter() - t) * 1000
    client.close()
    return {"stats_ms": ms, "stats_rss_growth_mb": rss_mb() - before, "count": s.total_vector_count}


def bench_size(n: int, dim: int, nq: int, scratch: Path) -> dict[str, Any]:
    root = scratch / f"search-{n}"
    shutil.rmtree(root, ignore_errors=True)
    ids, values, metadata = make_data(n, dim)
    client = spruce.Client(root)
    client.create_index("bench", dimension=dim, metric="cosine")
    idx = client.Index("bench")
    t = time.perf_counter()
    for start in range(0, n, 10_000):
        idx._index.upsert_batch("", RecordBatch(ids=ids[start:start + 10_000], values=values[start:start + 10_000],
                                                metadata=metadata[start:start + 10_000]))
    load_s = time.perf_counter() - t
    del ids, values, metadata
    gc.collect()
    t = time.perf_counter()
    assert idx.wait_for_index(3600), "graph build timed out"
    build_s = time.perf_counter() - t
    client.close()
    out: dict[str, Any] = {"records": n, "load_s": load_s, "graph_build_s": build_s, "vector_mb": n * dim * 4 / 2**20}
    for worker, extra in (("serve", [str(dim), str(nq)]), ("stats", [])):
        proc = subprocess.run([sys.executable, __file__, f"--{worker}-worker", str(root), *extra],
                              capture_output=True, text=True, check=True)
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated record counts for the search part")
    ap.add_argument("--ingest-records", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--serve-worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--stats-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_worker:
        print(json.dumps(serve_worker(args.serve_worker[0], int(args.serve_worker[1]), int(args.serve_worker[2]))))
        return
    if args.stats_worker:
        print(json.dumps(stats_worker(args.stats_worker)))
        return
    wall = time.perf_counter()
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="spruce-bench-"))
    dim = args.dim
    print(f"spruce {spruce.__version__}: {dim} dims; scratch {scratch}", flush=True)
    if not args.skip_ingest:
        n = args.ingest_records
        ids, values, metadata = make_data(n, dim)
        rates: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            for kind in ("dicts+lists", "dicts+numpy", "columnar"):
                rates.setdefault(kind, []).append(bench_upsert(kind, scratch / "ingest", ids, values, metadata))
                gc.collect()
            rates.setdefault("sqlite3", []).append(bench_sqlite(scratch / "plain", ids, values, metadata))
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(f"\ningest, {n:,} records, median of {args.repeat} (records/s; ratio = sqlite3 executemany time / spruce's)")
        for kind in ("dicts+lists", "dicts+numpy", "columnar", "sqlite3"):
            goal = "  goal >= 25,000: " + ("ok" if med[kind] >= 25_000 else "MISSED") if kind == "dicts+lists" else ""
            print(f"  {kind:14s} {med[kind]:10,.0f}   {med[kind] / med['sqlite3']:5.2f}x{goal}")
        del ids, values, metadata
        gc.collect()
    for n in (int(s) for s in args.sizes.split(",") if s):
        r = bench_size(n, dim, args.queries, scratch)
        g = GOALS.get(n)
        rss_ratio = r["peak_rss_mb"] / r["vector_mb"]

        def mark(ok: bool, g: Any = g) -> str:
            return "" if g is None else ("ok" if ok else "MISSED")

        print(f"\nsearch, {n:,} records x {dim} ({r['vector_mb']:,.0f} MB of vectors): loaded in {r['load_s']:.1f} s, "
              f"graph built in {r['graph_build_s']:.1f} s after the load, mode {r['mode']}")
        rows = [
            ("query p50 ms (top_k=10)", f"{r['p50']:.3f}", g and f"<= {g[0]}", mark(bool(g) and r["p50"] <= g[0])),
            ("query p99 ms", f"{r['p99']:.3f}", "", ""),
            ("  numpy exact scan p50 ms", f"{r['baseline_p50']:.3f}", f"ratio {r['p50'] / r['baseline_p50']:.3f}x", ""),
            ("exact=True p50 ms", f"{r['exact_p50']:.3f}", f"ratio {r['exact_p50'] / r['baseline_p50']:.2f}x", ""),
            ("recall@10 vs exact", f"{r['recall']:.4f}", g and f">= {g[1]}", mark(bool(g) and r["recall"] >= g[1])),
            ("$eq filter (10%) p50 ms", f"{r['filtered_p50']:.3f}", g and f"<= {g[2]}",
             mark(bool(g) and r["filtered_p50"] <= g[2])),
            ("  its recall@10", f"{r['filtered_recall']:.4f}", "", ""),
            ("first query after open ms", f"{r['first_ms']:.1f}", g and f"<= {g[3]}",
             mark(bool(g) and r["first_ms"] <= g[3])),
            ("peak RSS serving / vectors", f"{rss_ratio:.2f}x", "<= 1.5x", mark(rss_ratio <= 1.5)),
            ("describe_index_stats ms", f"{r['stats_ms']:.1f}", "", ""),
            ("  RSS it added, MB", f"{r['stats_rss_growth_mb']:.1f}", "(reads no vectors)", ""),
        ]
        for name, val, goal, ok in rows:
            print(f"  {name:30s} {val:>10s}   {goal or '':18s} {ok}")
    print(f"\nwall time {time.perf_counter() - wall:.0f} s")
    if args.dir is None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
