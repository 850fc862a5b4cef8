"""Connector throughput: spruce's copy job against the naive loop, in the same run.

For each engine: N x D records read from the engine into an archive, and written from an archive
into the engine. The naive loop is what a user writes from the engine's documentation: page
with the engine's own paging (Qdrant: scroll, 100 at a time) and upsert in batches of 100;
its export side writes gzipped JSON lines with the standard library. Each measurement runs in
its own process, so peak RSS is that process's own (reported as extra over an idle process
that imported the same modules).

    python bench/connectors.py [--n 100000] [--dim 768] [--engines qdrant] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IDLE_MB = 0.0


PRELUDE = """
import json, resource
def emit(d):
    d["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    print(json.dumps(d))
"""


def _child(code: str, env: dict[str, str]) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter; it reports seconds, records and its own peak RSS."""
    p = subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True, env=env,
                       timeout=3600)
    if p.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


SETUP = """
import numpy as np, spruce
with spruce.Client(data_dir={data!r}) as c:
    c.create_index("src", dimension={dim}, metric="euclidean")
    idx = c.Index("src")
    rng = np.random.default_rng(0)
    for start in range(0, {n}, 2000):
        m = min({n}, start + 2000) - start
        vals = rng.standard_normal((m, {dim})).astype(np.float32)
        idx.upsert([(f"id-{{start + i:07d}}", vals[i], {{"i": start + i, "tag": "t" + str(i % 7)}})
                    for i in range(m)])
    c.Index("src").export_index(storage_path={arc!r}, sync=True)
emit({{}})
"""

IDLE = """
import json, spruce, spruce.sources.copy, qdrant_client
emit({"seconds": 0})
"""

SPRUCE_COPY = """
import json, time, spruce
t = time.perf_counter()
job = spruce.copy({src!r}, {dst!r}, data_dir={data!r}, overwrite=True)
emit({{"seconds": time.perf_counter() - t, "records": job.records_done}})
"""

NAIVE_QDRANT_WRITE = """
import json, time
from qdrant_client import QdrantClient, models
from spruce.archive import ArchiveReader
from spruce.storage import open_store
t = time.perf_counter()
client = QdrantClient(path={path!r})
client.create_collection("naive", vectors_config=models.VectorParams(size={dim}, distance=models.Distance.EUCLID))
reader = ArchiveReader(open_store({arc!r}))
n = 0
for ns in reader.manifest.namespaces:
    for batch in reader.iter_batches(ns, batch_size=100):
        points = [models.PointStruct(id=n + i, vector=batch.values[i].tolist(),
                                     payload={{**(batch.metadata[i] or {{}}), "__id__": rid}})
                  for i, rid in enumerate(batch.ids)]
        client.upsert("naive", points=points)
        n += len(points)
client.close()
emit({{"seconds": time.perf_counter() - t, "records": n}})
"""

NAIVE_QDRANT_READ = """
import gzip, json, os, time
from qdrant_client import QdrantClient
t = time.perf_counter()
client = QdrantClient(path={path!r})
os.makedirs({out!r}, exist_ok=True)
n, offset = 0, None
with gzip.open(os.path.join({out!r}, "part-00000.jsonl.gz"), "wt") as f:
    while True:
        points, offset = client.scroll({collection!r}, limit=100, offset=offset, with_payload=True, with_vectors=True)
        for p in points:
            payload = dict(p.payload)
            f.write(json.dumps({{"id": payload.pop("__id__", str(p.id)), "values": p.vector, "metadata": payload}}) + "\\n")
        n += len(points)
        if offset is None:
            break
client.close()
emit({{"seconds": time.perf_counter() - t, "records": n}})
"""


def bench_qdrant(work: Path, data: str, arc: str, n: int, dim: int, repeat: int, env: dict[str, str]) -> None:
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in ("spruce write", "naive write", "spruce read",
                                                                 "naive read")}
    for r in range(repeat):
        qpath = str(work / f"qdrant-{r}")
        uri = f"qdrant://{qpath}?collection=bench".replace("qdrant://", "qdrant:///", 1).replace("////", "///")
        rows["spruce write"].append(_child(SPRUCE_COPY.format(src=arc, dst=uri, data=data), env))
        rows["naive write"].append(_child(NAIVE_QDRANT_WRITE.format(path=str(work / f"naive-{r}"), arc=arc, dim=dim),
                                          env))
        rows["spruce read"].append(_child(SPRUCE_COPY.format(src=uri, dst=str(work / f"out-{r}"), data=data), env))
        rows["naive read"].append(_child(NAIVE_QDRANT_READ.format(path=qpath, out=str(work / f"naive-out-{r}"),
                                                                  collection="bench"), env))
    report("qdrant (local mode)", rows, n)


def report(engine: str, rows: dict[str, list[dict[str, float]]], n: int) -> None:
    print(f"\n{engine}: {n:,} records")
    med = {k: statistics.median(x["seconds"] for x in v) for k, v in rows.items()}
    for k, v in rows.items():
        rss = max(x["rss_mb"] for x in v)
        print(f"  {k:13s} median {med[k]:7.2f} s  {n / med[k]:9,.0f} records/s  peak RSS {rss:7.0f} MB "
              f"({rss - IDLE_MB:+.0f} MB over idle)")
    for side in ("write", "read"):
        print(f"  {side}: spruce is {med[f'naive {side}'] / med[f'spruce {side}']:.2f}x the naive loop")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engines", default="qdrant")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    with tempfile.TemporaryDirectory(prefix="spruce-bench-") as tmp:
        work = Path(tmp)
        data, arc = str(work / "data"), str(work / "arc")
        t = time.perf_counter()
        _child(SETUP.format(data=data, n=args.n, dim=args.dim, arc=arc), env)
        print(f"setup: {args.n:,}x{args.dim} index and archive in {time.perf_counter() - t:.1f}s")
        idle = _child(IDLE, env)
        global IDLE_MB
        IDLE_MB = idle["rss_mb"]
        print(f"idle interpreter with the clients imported: {IDLE_MB:.0f} MB")
        for engine in args.engines.split(","):
            {"qdrant": bench_qdrant}[engine](work, data, arc, args.n, args.dim, args.repeat, env)


if __name__ == "__main__":
    main()
