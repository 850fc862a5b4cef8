"""Export and restore through the Pinecone API: spruce's connector against ``spruce serve``.

    .venv/bin/python bench/pinecone_source.py                   # 100k x 768 (a few minutes)
    .venv/bin/python bench/pinecone_source.py --records 20000   # quick run

The server runs in a subprocess on loopback (its own GIL), as ``spruce serve`` would, with
one index of ``--records`` dense records (768 dimensions, small metadata) in 2 namespaces.
Each measurement is repeated ``--repeat`` times; medians are printed.

  export   spruce.sources.pinecone.export (list + parallel fetch + archive, jsonl.gz)
           baseline: a naive single-threaded loop, list a page then fetch it, into memory
           (no archive written, so the baseline does strictly less work)
  restore  spruce.sources.pinecone.restore of that archive into a new index
           baseline: a single-threaded loop upserting batches of 100 (records already in memory)

Each run also prints the CPU the client and the server process spent per record (psutil):
on a machine where both share a few cores, records/s is bounded by their sum. The naive
loops keep nothing (no float32 matrix, no validation, no JSON + gzip + sha256 archive
written; the naive restore's records are decoded before the clock starts), but decode
every response through the SDK's models; the connector reads fetch responses raw (simdjson
into float32) and, on SDK 9.x/10.x, sends archive lines as they are.

Goal: export >= 10k records/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from serverutil import start_server
from spruce.archive import ArchiveReader
from spruce.engine import Engine
from spruce.sources import pinecone as remote
from spruce.storage import open_store

KEY = "bench-key"


def _populate(data_dir: Path, n: int, dim: int) -> None:
    """Write the source index straight into the data folder (the server opens it afterwards)."""
    rng = np.random.default_rng(0)
    engine = Engine(data_dir)
    try:
        idx = engine.create_index("source", dimension=dim, metric="cosine")
        for ns, count in (("", n - n // 4), ("tail", n // 4)):
            for a in range(0, count, 5000):
                k = min(5000, count - a)
                values = rng.standard_normal((k, dim)).astype(np.float32)
                idx.upsert([{"id": f"{ns or 'doc'}-{a + i:08d}", "values": values[i],
                             "metadata": {"n": a + i, "genre": ["drama", "news"][i % 2]}} for i in range(k)],
                           namespace=ns)
    finally:
        engine.close()


def _median(repeat: int, fn: Callable[[int], float]) -> tuple[float, list[float]]:
    runs = [fn(i) for i in range(repeat)]
    return statistics.median(runs), runs


class _Cpu:
    """CPU seconds used by this process and by the server process over a run (psutil, if present)."""

    def __init__(self) -> None:
        try:
            import psutil
        except ImportError:
            self.me = None
            return
        self.me = psutil.Process()
        self.server = next((p for p in self.me.children() if "spruce.server" in " ".join(p.cmdline())), None)

    def _now(self) -> tuple[float, float]:
        if self.me is None:
            return 0.0, 0.0
        c = self.me.cpu_times()
        s = self.server.cpu_times() if self.server is not None else None
        return c.user + c.system, (s.user + s.system) if s is not None else 0.0

    def measure(self) -> Callable[[int], str]:
        c0, s0 = self._now()

        def done(n: int) -> str:
            if self.me is None:
                return ""
            c1, s1 = self._now()
            return f", CPU ms/record: client {1000 * (c1 - c0) / n:.3f}, server {1000 * (s1 - s0) / n:.3f}"
        return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--parallelism", type=int, default=4)
    ap.add_argument("--format", default="jsonl.gz", choices=["jsonl.gz", "parquet"])
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()

    from pinecone import Pinecone

    tmp = Path(tempfile.mkdtemp(prefix="spruce-bench-remote-"))
    try:
        t = time.perf_counter()
        _populate(tmp / "data", args.records, args.dim)
        print(f"populated {args.records:,} x {args.dim} in {time.perf_counter() - t:.1f}s")
        with start_server(tmp / "data", api_key=KEY, mode="subprocess") as srv:
            pc = Pinecone(api_key=KEY, host=srv.url)
            n = args.records
            print(f"server {srv.url}; SDK {remote._Sdk(KEY, srv.url).version}; parallelism {args.parallelism}; "
                  f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
            cpu = _Cpu()

            def export_once(i: int) -> float:
                dest = tmp / f"archive-{i}"
                used = cpu.measure()
                t0 = time.perf_counter()
                m = remote.export("source", str(dest), api_key=KEY, host=srv.url, format=args.format,
                                  parallelism=args.parallelism)
                secs = time.perf_counter() - t0
                assert m.totals["records"] == n
                print(f"  export run {i}: {n / secs:,.0f} records/s ({secs:.1f}s, "
                      f"{m.totals['bytes'] / 1e6:,.0f} MB{used(n)})")
                return n / secs

            def naive_export(i: int) -> float:
                idx = pc.Index(host=pc.describe_index("source").host)
                used = cpu.measure()
                t0 = time.perf_counter()
                got = 0
                for ns in ("", "tail"):
                    token = None
                    while True:
                        page = idx.list_paginated(namespace=ns, limit=100, pagination_token=token)
                        ids = [v.id for v in page.vectors]
                        if ids:
                            got += len(idx.fetch(ids=ids, namespace=ns).vectors)
                        token = page.pagination.next if page.pagination else None
                        if not token:
                            break
                secs = time.perf_counter() - t0
                assert got == n
                print(f"  naive export run {i}: {n / secs:,.0f} records/s ({secs:.1f}s{used(n)})")
                return n / secs

            exp, _ = _median(args.repeat, export_once)
            base_exp = None
            if not args.skip_baseline:
                base_exp, _ = _median(args.repeat, naive_export)

            archive = str(tmp / "archive-0")

            def restore_once(i: int) -> float:
                name = f"restored-{i}"
                used = cpu.measure()
                t0 = time.perf_counter()
                s = remote.restore(archive, name, api_key=KEY, host=srv.url, parallelism=args.parallelism)
                secs = time.perf_counter() - t0
                assert s.records == n and s.verified
                note = used(n)
                pc.delete_index(name)
                print(f"  restore run {i}: {n / secs:,.0f} records/s ({secs:.1f}s{note})")
                return n / secs

            reader = ArchiveReader(open_store(archive))
            loaded: list[tuple[str, list[dict[str, Any]]]] = []
            if not args.skip_baseline:
                for ns in reader.manifest.namespaces:
                    recs = [{"id": r.id, "values": r.values.tolist(), "metadata": r.metadata}
                            for b in reader.iter_batches(ns) for r in b.records()]
                    loaded.append((ns.name, recs))

            def naive_restore(i: int) -> float:
                name = f"naive-{i}"
                pc.create_index(name=name, dimension=args.dim, metric="cosine",
                                spec={"serverless": {"cloud": "aws", "region": "us-east-1"}})
                idx = pc.Index(host=pc.describe_index(name).host)
                used = cpu.measure()
                t0 = time.perf_counter()
                for ns, recs in loaded:
                    for a in range(0, len(recs), 100):
                        idx.upsert(vectors=recs[a:a + 100], namespace=ns)
                secs = time.perf_counter() - t0
                note = used(n)
                pc.delete_index(name)
                print(f"  naive restore run {i}: {n / secs:,.0f} records/s ({secs:.1f}s{note})")
                return n / secs

            res, _ = _median(args.repeat, restore_once)
            base_res = None
            if not args.skip_baseline:
                base_res, _ = _median(args.repeat, naive_restore)

        print()
        print(f"{'':28s}{'records/s (median)':>20s}{'vs baseline':>14s}")
        print(f"{'export (spruce)':28s}{exp:>20,.0f}{(exp / base_exp if base_exp else float('nan')):>13.2f}x")
        if base_exp:
            print(f"{'export (naive list+fetch)':28s}{base_exp:>20,.0f}{1.0:>13.2f}x")
        print(f"{'restore (spruce)':28s}{res:>20,.0f}{(res / base_res if base_res else float('nan')):>13.2f}x")
        if base_res:
            print(f"{'restore (naive upsert 100)':28s}{base_res:>20,.0f}{1.0:>13.2f}x")
        print(f"goal: export >= 10,000 records/s: {'met' if exp >= 10_000 else 'NOT met'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
