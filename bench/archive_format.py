"""Archive format throughput: export (ArchiveWriter) and restore (read + validate) in records/s.

    .venv/bin/python bench/archive_format.py                 # 100k records, 768-d, 3 runs
    .venv/bin/python bench/archive_format.py --records 20000 --runs 2

Each format is exported to a fresh local folder (LocalStore: temp file, fsync,
rename per part) and read back through ``open_source(...).read`` with full
validation and checksum checks. Medians over ``--runs`` runs are printed, with
the ratio against a naive baseline measured in the same process: one
``json.dumps(record)`` per line into ``gzip.open`` at its default level (and
``json.loads`` per line back). The baseline is so slow that it runs on the
first ``--baseline-records`` records only; rates are per record, so the ratio
compares like with like.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from spruce.archive import ArchiveWriter, open_source
from spruce.records import RecordBatch
from spruce.storage import LocalStore


def make_data(n: int, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # embedding-like: unit norm, small components
    ids = [f"doc-{i:08d}#chunk-{i % 7}" for i in range(n)]
    genres = ["news", "blog", "paper", "manual", "forum"]
    metadata = [{"source": f"https://example.com/{i // 7}", "genre": genres[i % 5], "chunk": i % 7,
                 "score": float(i % 100) / 3.0, "tags": ["a", "b"] if i % 2 else []} for i in range(n)]
    return ids, x, metadata


def batches(ids: list[str], x: np.ndarray, md: list[dict], size: int) -> list[RecordBatch]:
    return [RecordBatch(ids=ids[a:a + size], values=x[a:a + size], metadata=md[a:a + size])
            for a in range(0, len(ids), size)]


def cpu_seconds() -> float:
    """CPU time of this process, all threads (user + system)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def timed(fn: Callable[[], int]) -> tuple[float, int, float]:
    """(wall seconds, result, CPU seconds across all threads)."""
    c = cpu_seconds()
    t = time.perf_counter()
    n = fn()
    return time.perf_counter() - t, n, cpu_seconds() - c


def export(root: str, fmt: str, data: list[RecordBatch], dim: int) -> int:
    shutil.rmtree(root, ignore_errors=True)
    w = ArchiveWriter(LocalStore(root), format=fmt)
    w.begin()
    for b in data:
        w.write("", b)
    m = w.commit(source={"index": "bench", "dimension": dim, "metric": "cosine", "vector_type": "dense",
                         "spec": {}})
    return m.totals["records"]


def restore(root: str, batch_size: int = 1000) -> int:
    src = open_source(LocalStore(root))
    n = 0
    for f in src.files:
        for b in src.read(f, batch_size=batch_size):
            n += len(b)
    return n


def naive_export(path: str, data: list[RecordBatch]) -> int:
    n = 0
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for b in data:
            for i, rid in enumerate(b.ids):
                f.write(json.dumps({"id": rid, "values": b.values[i].tolist(), "metadata": b.metadata[i]}))
                f.write("\n")
                n += 1
    return n


def naive_restore(path: str, batch_size: int = 1000) -> int:
    n = 0
    rows: list[list[float]] = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line)["values"])
            if len(rows) == batch_size:
                np.asarray(rows, dtype=np.float32)
                n += len(rows)
                rows = []
    if rows:
        np.asarray(rows, dtype=np.float32)
        n += len(rows)
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000, help="records per RecordBatch written")
    ap.add_argument("--formats", default="jsonl.gz,parquet")
    ap.add_argument("--baseline-records", type=int, default=2000)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp folder)")
    args = ap.parse_args(argv)

    ids, x, md = make_data(args.records, args.dim)
    data = batches(ids, x, md, args.batch)
    base = tempfile.mkdtemp(prefix="spruce-bench-", dir=args.dir)
    print(f"{args.records:,} records, {args.dim}-d float32, {args.runs} runs, {os.cpu_count()} CPUs, "
          f"batches of {args.batch}, load average {os.getloadavg()[0]:.1f} (other processes compete)")
    try:
        nb = min(args.baseline_records, args.records)
        bdata = batches(ids[:nb], x[:nb], md[:nb], args.batch)
        bpath = os.path.join(base, "naive.jsonl.gz")
        t_bx, _, _ = timed(lambda: naive_export(bpath, bdata))
        t_br, _, _ = timed(lambda: naive_restore(bpath))
        naive_x, naive_r = nb / t_bx, nb / t_br
        print(f"naive baseline ({nb:,} records): export {naive_x:,.0f} rec/s, restore {naive_r:,.0f} rec/s, "
              f"{os.path.getsize(bpath) / nb:,.0f} B/record")

        for fmt in args.formats.split(","):
            root = os.path.join(base, fmt.replace(".", "_"))
            ex, rs, ex_cpu, rs_cpu = [], [], [], []
            size = 0
            for _ in range(args.runs):
                t, n, c = timed(lambda root=root, fmt=fmt: export(root, fmt, data, args.dim))
                assert n == args.records
                ex.append(n / t)
                ex_cpu.append(c / n * 1e6)
                size = sum(f.stat().st_size for f in os.scandir(os.path.join(root, "__default__")))
                t, n, c = timed(lambda root=root: restore(root))
                assert n == args.records
                rs.append(n / t)
                rs_cpu.append(c / n * 1e6)
            mx, mr = statistics.median(ex), statistics.median(rs)
            print(f"{fmt:9s} export  {mx:>9,.0f} rec/s median (runs {', '.join(f'{v:,.0f}' for v in ex)}) "
                  f"= {mx / naive_x:5.1f}x naive; {statistics.median(ex_cpu):.0f} CPU-us/record; "
                  f"{size / args.records:,.0f} B/record")
            print(f"{fmt:9s} restore {mr:>9,.0f} rec/s median (runs {', '.join(f'{v:,.0f}' for v in rs)}) "
                  f"= {mr / naive_r:5.1f}x naive; {statistics.median(rs_cpu):.0f} CPU-us/record")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
