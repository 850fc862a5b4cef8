"""End-to-end export/restore jobs: records/s and extra memory, against a naive baseline.

    .venv/bin/python bench/archive.py                      # 100k records, 768-d, 2 namespaces, 3 runs
    .venv/bin/python bench/archive.py --records 20000 --runs 2
    .venv/bin/python bench/archive.py --profile export-jsonl.gz   # cProfile one job, top functions
    .venv/bin/python bench/archive.py --encrypt            # encrypted vs plain, side by side (only that)

Measured through the public API on an embedded index (SQLite snapshot -> archive -> new index):

* spruce export, ``Index.export_index(..., sync=True)``, in jsonl.gz and parquet;
* spruce restore, ``Index.upsert_from_file(...)`` of each archive into a fresh index;
* the naive path the seed used, as the baseline: records read from the same snapshot and written
  as ``json.dumps(record)`` lines through ``gzip.open(path, "wt")`` (default level), one file per
  namespace; restore reads them back line by line with ``json.loads`` and upserts them with
  ``Index.upsert`` in batches of 1000. The baseline is slow, so it runs on the first
  ``--baseline-records`` records only; rates are per record, so ratios compare like with like.

Medians over ``--runs`` runs. Extra memory: each job runs once more in a fresh subprocess that
samples its RSS (psutil, every 5 ms): extra = peak during the job - RSS just before it (after the
source index is loaded). For a restore, the new index's own in-memory copy is part of the result,
not overhead, so its steady state (RSS after the job) is shown too.

Floors: the same run also times the libraries alone on the first ``--floor-records`` records of
the source, with none of spruce's code: the CPU a record costs at least (orjson's float32
formatting + isal gzip; isal gunzip + simdjson's number parsing; pyarrow's Parquet encoding or
decoding; a bare SQLite read or insert of the same rows). ``ceiling`` = CPUs / floor: the rate
nothing could beat on this machine even if all cores did only that work.

Goals: export jsonl.gz >= 40k rec/s, export parquet >= 100k rec/s, restore jsonl.gz >= 25k rec/s,
restore parquet >= 60k rec/s, extra RSS <= 300 MB.

``--encrypt`` measures only the cost of client-side encryption, in one run on the same data: each
job plain and encrypted (a key file; AES-256-GCM segments of 1 MiB), alternating which goes first,
``--runs`` times; medians and the ratio encrypted/plain of the wall time. Goal: <= 1.15 for both
export and restore. Jobs: export (the export job, ``spruce.jobs.start_export``); read (every record
through the reading API, ``open_source(store, key=...)`` and ``Source.read``: decrypt, gunzip or
Parquet decode, validation); restore (the restore job, ``upsert_from_file(..., encryption_key=)``,
into a fresh index).
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import spruce
from spruce.records import RecordBatch

FORMATS = ("jsonl.gz", "parquet")
GOALS = {("export", "jsonl.gz"): 40_000, ("export", "parquet"): 100_000,
         ("restore", "jsonl.gz"): 25_000, ("restore", "parquet"): 60_000}
NAMESPACES = ("", "second")

RSS_CHILD = r"""
import json, sys, threading, time
import psutil
import spruce

data, kind, fmt, archive = sys.argv[1:5]
c = spruce.Client(data)
proc = psutil.Process()
if kind == "export":
    c.Index("src")._index  # the source index is loaded before the baseline is taken
base = proc.memory_info().rss
peak = [base]
stop = threading.Event()

def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.005)

t = threading.Thread(target=sample, daemon=True)
t.start()
if kind == "export":
    c.Index("src").export_index(archive, format=fmt, sync=True, overwrite=True)
else:
    c.Index("rss-restore").upsert_from_file(archive)
stop.set()
t.join()
after = proc.memory_info().rss
peak[0] = max(peak[0], after)
if kind == "restore":
    c.delete_index("rss-restore")
print(json.dumps({"base": base, "peak": peak[0], "after": after}))
"""


def make_records(n: int, dim: int, seed: int = 0) -> list[tuple[str, RecordBatch]]:
    """Embedding-like unit vectors with typical metadata, split over two namespaces."""
    rng = np.random.default_rng(seed)
    genres = ["news", "blog", "paper", "manual", "forum"]
    out = []
    half = n // 2
    for ns, lo, hi in (("", 0, half), ("second", half, n)):
        for a in range(lo, hi, 5000):
            b = min(hi, a + 5000)
            x = rng.standard_normal((b - a, dim), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            ids = [f"doc-{i:08d}#chunk-{i % 7}" for i in range(a, b)]
            md = [{"source": f"https://example.com/{i // 7}", "genre": genres[i % 5], "chunk": i % 7,
                   "score": float(i % 100) / 3.0, "tags": ["a", "b"] if i % 2 else []} for i in range(a, b)]
            out.append((ns, RecordBatch(ids=ids, values=x, metadata=md)))
    return out


def load(client: Any, n: int, dim: int) -> None:
    client.create_index("src", dimension=dim, metric="cosine")
    eng = client.Index("src")._index
    for ns, batch in make_records(n, dim):
        eng.upsert_batch(ns, batch)


# -- the naive baseline --------------------------------------------------------------------


def naive_export(client: Any, root: Path, limit: int) -> int:
    root.mkdir(parents=True, exist_ok=True)
    n = 0
    per_ns = max(1, limit // len(NAMESPACES))
    with client.Index("src")._index.snapshot() as snap:
        for k, ns in enumerate(NAMESPACES):
            done = 0
            with gzip.open(root / f"ns{k}.jsonl.gz", "wt") as f:
                for batch in snap.iter_batches(ns):
                    for rec in batch.records():
                        f.write(json.dumps({"id": rec.id, "values": rec.values.tolist(),
                                            "metadata": rec.metadata}) + "\n")
                        done += 1
                        if done >= per_ns:
                            break
                    if done >= per_ns:
                        break
            n += done
    return n


def naive_restore(client: Any, root: Path, name: str) -> int:
    if client.has_index(name):
        client.delete_index(name)
    client.create_index(name, dimension=client.describe_index("src").dimension, metric="cosine")
    idx = client.Index(name)
    n = 0
    for k, ns in enumerate(NAMESPACES):
        batch: list[dict] = []
        with gzip.open(root / f"ns{k}.jsonl.gz", "rt") as f:
            for line in f:
                batch.append(json.loads(line))
                if len(batch) == 1000:
                    idx.upsert(batch, namespace=ns)
                    n += len(batch)
                    batch = []
        if batch:
            idx.upsert(batch, namespace=ns)
            n += len(batch)
    return n


# -- spruce ---------------------------------------------------------------------------------


def spruce_export(client: Any, root: Path, fmt: str) -> int:
    r = client.Index("src").export_index(str(root), format=fmt, sync=True, overwrite=True)
    d = client.describe_export(r.export_id)
    assert d.status == "Completed", d.error
    return d.records_exported


def spruce_restore(client: Any, root: Path, name: str) -> int:
    if client.has_index(name):
        client.delete_index(name)
    d = client.Index(name).upsert_from_file(str(root))
    assert d.status == "Completed", d.error
    return d.records_imported


def cpu_seconds() -> float:
    """CPU time of this process, all threads (user + system)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


CPU: dict[tuple[str, str], list[float]] = {}


def timed(fn: Any, key: tuple[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and fn's result; with ``key``, also records CPU microseconds per record."""
    c, t = cpu_seconds(), time.perf_counter()
    n = fn()
    wall = time.perf_counter() - t
    if key is not None:
        CPU.setdefault(key, []).append((cpu_seconds() - c) / max(n, 1) * 1e6)
    return wall, n


def rss(data: Path, kind: str, fmt: str, archive: Path) -> dict[str, int]:
    p = subprocess.run([sys.executable, "-c", RSS_CHILD, str(data), kind, fmt, str(archive)],
                       capture_output=True, text=True, check=False)
    if p.returncode:
        raise SystemExit(f"RSS child failed: {p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def profile(client: Any, base: Path, what: str, top: int) -> None:
    kind, fmt = what.split("-", 1)
    root = base / f"prof-{fmt}"
    spruce_export(client, root, fmt)
    prof = cProfile.Profile()
    prof.enable()
    if kind == "export":
        spruce_export(client, root, fmt)
    else:
        spruce_restore(client, root, "prof")
    prof.disable()
    # job work runs in threads that cProfile (one thread) does not see for async jobs; sync jobs run here
    pstats.Stats(prof).sort_stats("cumulative").print_stats(top)
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def _best(fn: Any, n: int, repeat: int = 3) -> float:
    """Microseconds per record of fn() (best of ``repeat``: the floor, not the typical cost)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best / n * 1e6


def floors(client: Any, base: Path, n: int) -> dict[tuple[str, str], float]:
    """CPU microseconds per record that the libraries alone need, for each job (see the docstring)."""
    import sqlite3

    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq
    import simdjson
    from isal import igzip

    from spruce.archive.parquet import IMPORT_SCHEMA, batch_to_table

    with client.Index("src")._index.snapshot() as snap:
        batch = next(snap.iter_batches("", batch_size=n))
    n = len(batch)
    opt = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    rows = list(batch.values)
    lines = [orjson.dumps({"id": batch.ids[i], "values": rows[i], "metadata": batch.metadata[i]}, option=opt)
             for i in range(n)]
    text = b"".join(lines)
    packed = igzip.compress(text, compresslevel=1)
    table, _ = batch_to_table(batch)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="snappy", use_dictionary=False, write_statistics=False)
    pbuf = sink.getvalue()
    blobs = [(batch.ids[i], rows[i].tobytes(), orjson.dumps(batch.metadata[i])) for i in range(n)]

    def sqlite_insert() -> None:
        path = base / "floor.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA page_size=16384")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE r (id TEXT PRIMARY KEY, dense BLOB, metadata BLOB)")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO r VALUES (?, ?, ?)", blobs)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()

    def sqlite_read() -> None:
        conn = sqlite3.connect(base / "floor.db")
        cur = conn.execute("SELECT id, dense, metadata FROM r ORDER BY id")
        while rows_ := cur.fetchmany(1000):
            np.frombuffer(b"".join(r[1] for r in rows_), dtype="<f4")
            [orjson.loads(r[2]) for r in rows_]
        conn.close()

    def simd() -> None:
        parser = simdjson.Parser()
        out = np.empty((n, batch.values.shape[1]), dtype=np.float32)
        for i, line in enumerate(lines):
            doc = parser.parse(line)
            out[i] = np.frombuffer(doc["values"].as_buffer(of_type="d"), dtype=np.float64)
            doc["metadata"].as_dict()
            del doc

    insert = _best(sqlite_insert, n)
    read = _best(sqlite_read, n)
    return {
        ("export", "jsonl.gz"): read + _best(lambda: [orjson.dumps(
            {"id": batch.ids[i], "values": rows[i], "metadata": batch.metadata[i]}, option=opt)
            for i in range(n)], n) + _best(lambda: igzip.compress(text, compresslevel=1), n),
        ("restore", "jsonl.gz"): _best(lambda: igzip.decompress(packed), n) + _best(simd, n) + insert,
        ("export", "parquet"): read + _best(lambda: pq.write_table(
            table, pa.BufferOutputStream(), compression="snappy", use_dictionary=False,
            write_statistics=False), n),
        ("restore", "parquet"): _best(lambda: pq.read_table(pa.BufferReader(pbuf), schema=IMPORT_SCHEMA)
                                      .column("values").combine_chunks().flatten().to_numpy(), n) + insert,
    }


def encrypt_comparison(client: Any, base: Path, runs: int, records: int) -> None:
    """Plain vs encrypted, same run, same data: medians and ratios (see the docstring)."""
    from spruce import jobs
    from spruce.archive import ArchiveKey, generate_key_file, open_source
    from spruce.storage import open_store

    generate_key_file(base / "bench.key")
    key = ArchiveKey.from_file(base / "bench.key")
    times: dict[tuple[str, str, bool], list[float]] = {}

    def export(fmt: str, enc: bool) -> int:
        s = jobs.start_export(client.engine, "src", str(base / f"enc-{fmt}-{enc}"), format=fmt, sync=True,
                              overwrite=True, manager=client.jobs, encryption_key=key if enc else None)
        assert s.status == "Completed", s.error
        return s.records_done

    def read(fmt: str, enc: bool, into: str | None = None) -> int:
        source = open_source(open_store(str(base / f"enc-{fmt}-{enc}")), key=key if enc else None)
        assert source.encrypted == enc
        idx = None
        if into is not None:
            if client.has_index(into):
                client.delete_index(into)
            client.create_index(into, dimension=client.describe_index("src").dimension, metric="cosine")
            idx = client.engine.index(into)
        n = 0
        for f in source.files:
            for batch in source.read(f, batch_size=2000):
                n += len(batch)
                if idx is not None:
                    idx.upsert_batch(f.namespace, batch)
        if into is not None:
            client.delete_index(into)
        return n

    def restore(fmt: str, enc: bool) -> int:
        """The restore job itself (upsert_from_file: preflight, per-file transactions, markers)."""
        if client.has_index("enc-copy"):
            client.delete_index("enc-copy")
        d = client.Index("enc-copy").upsert_from_file(str(base / f"enc-{fmt}-{enc}"),
                                                      encryption_key=key if enc else None)
        client.delete_index("enc-copy")
        return d.records_imported

    for r in range(runs):
        for fmt in FORMATS:
            order = (False, True) if r % 2 == 0 else (True, False)
            for kind, fn in (("export", export), ("read", read), ("restore", restore)):
                for enc in order:
                    t, n = timed(lambda fn=fn, fmt=fmt, enc=enc: fn(fmt, enc))
                    assert n == records, (kind, fmt, enc, n)
                    times.setdefault((kind, fmt, enc), []).append(t)
    sizes = {(fmt, enc): sum(p.stat().st_size for p in (base / f"enc-{fmt}-{enc}").rglob("part-*"))
             for fmt in FORMATS for enc in (False, True)}
    print(f"\n{'job':<20}{'plain rec/s':>13}{'encrypted rec/s':>17}{'ratio':>8}  (median wall time encrypted / plain;"
          f" goal <= 1.15)   runs (s): plain | encrypted")
    for kind in ("export", "read", "restore"):
        for fmt in FORMATS:
            plain, enc = (statistics.median(times[(kind, fmt, e)]) for e in (False, True))
            ratio = enc / plain
            mark = "ok" if ratio <= 1.15 else "MISSED"
            print(f"{kind + ' ' + fmt:<20}{records / plain:>13,.0f}{records / enc:>17,.0f}{ratio:>8.3f} {mark:<7}"
                  f"{', '.join(f'{t:.2f}' for t in times[(kind, fmt, False)])} | "
                  f"{', '.join(f'{t:.2f}' for t in times[(kind, fmt, True)])}")
    print("archive size: " + ", ".join(
        f"{fmt} {sizes[(fmt, True)] / sizes[(fmt, False)] - 1:+.3%} encrypted" for fmt in FORMATS))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline-records", type=int, default=5000)
    ap.add_argument("--floor-records", type=int, default=10_000)
    ap.add_argument("--no-rss", action="store_true", help="skip the memory measurement")
    ap.add_argument("--profile", choices=[f"{k}-{f}" for k in ("export", "restore") for f in FORMATS],
                    help="cProfile one job instead of benchmarking")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--encrypt", action="store_true",
                    help="only compare encrypted with plain export, read and restore (same run, medians, ratio)")
    ap.add_argument("--dir", default=None, help="where to work (default: a temp folder)")
    args = ap.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="spruce-bench-archive-", dir=args.dir))
    data = base / "data"
    client = spruce.Client(data)
    try:
        t, _ = timed(lambda: load(client, args.records, args.dim))
        print(f"{args.records:,} records x {args.dim}-d float32 with metadata in {len(NAMESPACES)} namespaces "
              f"(loaded in {t:.1f}s); {args.runs} runs; {os.cpu_count()} CPUs; "
              f"load average {os.getloadavg()[0]:.1f}")
        if args.profile:
            profile(client, base, args.profile, args.top)
            return 0
        if args.encrypt:
            encrypt_comparison(client, base, args.runs, args.records)
            return 0

        rates: dict[tuple[str, str], list[float]] = {}
        nb = min(args.baseline_records, args.records)
        for r in range(args.runs):
            t, n = timed(lambda: naive_export(client, base / "naive", nb), ("export", "naive"))
            rates.setdefault(("export", "naive"), []).append(n / t)
            t, n = timed(lambda: naive_restore(client, base / "naive", "naive"), ("restore", "naive"))
            rates.setdefault(("restore", "naive"), []).append(n / t)
            client.delete_index("naive")
            for fmt in FORMATS:
                root = base / f"archive-{fmt}"
                t, n = timed(lambda root=root, fmt=fmt: spruce_export(client, root, fmt), ("export", fmt))
                assert n == args.records, n
                rates.setdefault(("export", fmt), []).append(n / t)
                t, n = timed(lambda root=root: spruce_restore(client, root, "copy"), ("restore", fmt))
                assert n == args.records, n
                rates.setdefault(("restore", fmt), []).append(n / t)
                if r == 0:  # the copy is the source, record for record
                    got = client.Index("copy").describe_index_stats().namespaces
                    want = client.Index("src").describe_index_stats().namespaces
                    assert {k: v.vector_count for k, v in got.items()} == {
                        k: v.vector_count for k, v in want.items()}
                client.delete_index("copy")

        sizes = {fmt: sum(p.stat().st_size for p in (base / f"archive-{fmt}").rglob("part-*")) for fmt in FORMATS}
        print(f"\n{'job':<22}{'median rec/s':>14}{'x naive':>9}{'goal':>9}{'CPU us/rec':>18}  runs")
        for kind in ("export", "restore"):
            naive = statistics.median(rates[(kind, "naive")])
            for fmt in ("naive", *FORMATS):
                vals = rates[(kind, fmt)]
                med = statistics.median(vals)
                goal = GOALS.get((kind, fmt))
                mark = "" if goal is None else (" ok" if med >= goal else " MISSED")
                label = f"{kind} {fmt}" + (f" ({nb:,})" if fmt == "naive" else "")
                cpu = statistics.median(CPU[(kind, fmt)])
                print(f"{label:<22}{med:>14,.0f}{med / naive:>8.1f}x{(f'{goal:,}' if goal else '-'):>9}{mark:<7}"
                      f"{cpu:>11,.0f}  {', '.join(f'{v:,.0f}' for v in vals)}")
        print("archive size: " + ", ".join(f"{fmt} {s / args.records:,.0f} B/record" for fmt, s in sizes.items()))
        floor = floors(client, base, min(args.floor_records, args.records))
        cpus = os.cpu_count() or 1
        print(f"\n{'job':<22}{'floor CPU us/rec':>17}{'ceiling rec/s':>15}{'spruce':>9}  (ceiling = {cpus} CPUs / floor)")
        for key, us in floor.items():
            ceiling = cpus / us * 1e6
            med = statistics.median(rates[key])
            print(f"{key[0] + ' ' + key[1]:<22}{us:>17,.1f}{ceiling:>15,.0f}{med / ceiling:>8.0%}")
    finally:
        client.engine.close()

    if not args.no_rss:
        print(f"\n{'job (own process)':<22}{'extra peak MB':>14}{'steady MB':>11}{'transient MB':>14}")
        for kind in ("export", "restore"):
            for fmt in FORMATS:
                m = rss(data, kind, fmt, base / f"archive-{fmt}")
                extra, steady = (m["peak"] - m["base"]) / 1e6, (m["after"] - m["base"]) / 1e6
                flag = "" if extra <= 300 else "  (> 300 MB)"
                print(f"{kind + ' ' + fmt:<22}{extra:>14,.0f}{steady:>11,.0f}{extra - steady:>14,.0f}{flag}")
        print("extra peak = peak RSS during the job - RSS before it; steady = RSS after - before (for a\n"
              "restore: the new index held in memory); transient = extra peak - steady")
    shutil.rmtree(base, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
