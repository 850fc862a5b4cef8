"""spruce against its embedded peers: ingest, query latency, recall and memory on the same data.

    .venv/bin/python bench/peers.py                               # 100k x 768, every engine, 1 run
    .venv/bin/python bench/peers.py --records 20000 --skip qdrant # quick
    .venv/bin/python bench/peers.py --only spruce,usearch,numpy --json

Engines, each embedded in this machine's Python (no server):

* spruce         ``spruce.Client(data_dir=...)``, columnar ``upsert_batch`` in batches of 1000; after the
                 ingest it calls ``wait_for_index()`` where the index has one (a background ANN build)
* chroma         ``chromadb.PersistentClient``, cosine HNSW (its defaults), ``add`` in batches of 1000
* lancedb        ``table.add`` in batches of 1000, then an ANN index (``--lance-index``: IVF_HNSW_SQ
                 with refine_factor 2 by default; IVF_PQ with refine_factor 10 reached the same recall
                 at twice the latency and a 5x longer build on this data) and a BITMAP index on genre
* qdrant         ``qdrant-client`` local mode ``QdrantClient(path=...)``: pure Python, exact scan;
                 ``--qdrant-records`` caps its record count
* qdrant-edge    ``qdrant-edge-py``'s in-process shard, HNSW built by ``optimize()``; not a project
                 dependency (``pip install qdrant-edge-py``), reported as not installed without it
* milvus         Milvus Lite ``MilvusClient("x.db")``, index built after the ingest (``--milvus-index``:
                 Lite builds only FLAT, IVF_FLAT or AUTOINDEX; IVF_FLAT by default)
* usearch        raw ``usearch.index.Index`` (HNSW, its defaults): the library floor, no metadata
* numpy          exact scan, normalized matrix @ q + argpartition: the reference

Data: clustered and reproducible: 200 centres ~N(0,1) in --dim dimensions, each record (and each
query) a random centre + 0.5*N(0,1), float32, from --seed; metadata {"genre": "g0".."g9" (10% each),
"year": int}. Ground truth is the exact cosine top-k, computed here with numpy.

Per engine:

* write rec/s    records / time inside the write calls (what a writer waits for)
* ingest rec/s   records / (time inside the write calls + the index build that must finish before
                 queries run at full speed); generating the data is not timed. "build s" is that
                 build alone (0 where the engine indexes while it writes).
* p50/p99 ms     single-query calls, top_k=10, warm (10 untimed warm-up queries first)
* recall@10      against the exact top-10
* filt p50 ms, filt recall   the same with an equality filter on genre (10% selectivity)
* RSS MB         VmRSS after the ingest and build; "+load MB" is that minus VmRSS with the empty
                 index open (libraries loaded); peak MB is VmHWM at the end; all are the
                 engine's own process (each engine runs in a fresh ``--worker`` subprocess, which
                 regenerates the data batch by batch, so RSS holds no copy of the whole data set
                 but numpy's, whose matrix is its index), plus its child processes (Milvus Lite
                 serves from one; their VmHWM is added to the peak).
                 "RSS/vec" reads RSS against the raw vector bytes (n x dim x 4).

Engines that fail or are not installed are reported as such; the others still run. The run ends
with its wall time and the load average: timings assume an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ENGINES = ("spruce", "chroma", "lancedb", "qdrant", "qdrant-edge", "milvus", "usearch", "numpy")
CENTRES = 200
BATCH = 1000
GENRES = tuple(f"g{i}" for i in range(10))
FILTER_GENRE = "g3"
WARMUP = 10


# -- data -------------------------------------------------------------------------------------------

def genre_of(i: int) -> str:
    return GENRES[i % len(GENRES)]


def year_of(i: int) -> int:
    return 1990 + (i * 7) % 35


def centres(dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((CENTRES, dim), dtype=np.float32)


def record_batches(n: int, dim: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, values) in batches of BATCH; batch b depends only on (seed, b), so any process
    regenerates exactly the same records without holding them all."""
    c = centres(dim, seed)
    for b, start in enumerate(range(0, n, BATCH)):
        m = min(BATCH, n - start)
        rng = np.random.default_rng([seed, 1, b])
        labels = rng.integers(0, CENTRES, m)
        yield start, c[labels] + np.float32(0.5) * rng.standard_normal((m, dim), dtype=np.float32)


def make_queries(nq: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 2])
    labels = rng.integers(0, CENTRES, nq)
    return centres(dim, seed)[labels] + np.float32(0.5) * rng.standard_normal((nq, dim), dtype=np.float32)


def exact_topk(n: int, dim: int, seed: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k ids for every query, unfiltered and with genre == FILTER_GENRE."""
    m = np.empty((n, dim), dtype=np.float32)
    for start, vals in record_batches(n, dim, seed):
        m[start:start + len(vals)] = vals
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = qn @ m.T
    del m
    rows = np.flatnonzero(np.arange(n) % len(GENRES) == GENRES.index(FILTER_GENRE))

    def top(s: np.ndarray) -> np.ndarray:
        part = np.argpartition(-s, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1)
        return np.take_along_axis(part, order, axis=1)

    return top(scores), rows[top(scores[:, rows])]


def recall(got: list[list[int]], truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(g[:k]) & set(t.tolist())) / k for g, t in zip(got, truth, strict=True)]))


# -- engines (run inside a worker) -----------------------------------------------------------------

class Engine:
    """One engine's adapter: ``add`` and ``build`` are timed as ingest, ``search`` as a query;
    ``ids`` turns a search result into record numbers, untimed."""

    filters = True

    def __init__(self, root: Path, dim: int, n: int, args: argparse.Namespace) -> None:
        self.root, self.dim, self.n, self.args = root, dim, n, args
        self.notes: list[str] = []

    def add(self, start: int, vals: np.ndarray) -> None:
        raise NotImplementedError

    def build(self) -> float:
        """Finish whatever must happen before queries run at full speed; return the seconds
        spent in an index build (0 where the engine indexes as it writes)."""
        return 0.0

    def search(self, q: np.ndarray, k: int, genre: str | None) -> Any:
        raise NotImplementedError

    def ids(self, res: Any) -> list[int]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def str_ids(start: int, m: int) -> list[str]:
    return [f"doc-{i:08d}" for i in range(start, start + m)]


def metadata(start: int, m: int) -> list[dict[str, Any]]:
    return [{"genre": genre_of(i), "year": year_of(i)} for i in range(start, start + m)]


class Spruce(Engine):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        import spruce
        from spruce.records import RecordBatch

        self.RecordBatch = RecordBatch
        self.client = spruce.Client(data_dir=self.root / "spruce")
        self.client.create_index("bench", dimension=self.dim, metric="cosine")
        self.idx = self.client.Index("bench")
        self.eidx = self.idx._index
        self.notes.append(f"spruce {spruce.__version__}")

    def add(self, start: int, vals: np.ndarray) -> None:
        m = len(vals)
        self.eidx.upsert_batch("", self.RecordBatch(ids=str_ids(start, m), values=vals,
                                                    metadata=metadata(start, m)))

    def build(self) -> float:
        wait = getattr(self.idx, "wait_for_index", None) or getattr(self.eidx, "wait_for_index", None)
        if wait is None:
            self.notes.append("no wait_for_index(): queries ran right after the ingest")
            return 0.0
        t = time.perf_counter()
        wait()
        spent = time.perf_counter() - t
        self.notes.append(f"wait_for_index() {spent:.2f}s")
        return spent

    def search(self, q: np.ndarray, k: int, genre: str | None) -> Any:
        return self.idx.query(vector=q, top_k=k, filter={"genre": {"$eq": genre}} if genre else None)

    def ids(self, res: Any) -> list[int]:
        return [int(m.id[4:]) for m in res.matches]

    def close(self) -> None:
        self.client.close()


class Chroma(Engine):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        import chromadb
        from chromadb.config import Settings

        self.client = chromadb.PersistentClient(path=str(self.root / "chroma"),
                                                settings=Settings(anonymized_telemetry=False))
        try:
            self.col = self.client.create_collection("bench", configuration={"hnsw": {"space": "cosine"}},
                                                     embedding_function=None)
        except Exception:  # older clients: the metadata spelling
            self.col = self.client.create_collection("bench", metadata={"hnsw:space": "cosine"},
                                                     embedding_function=None)
        self.notes.append(f"chromadb {chromadb.__version__}, HNSW defaults, cosine")

    def add(self, start: int, vals: np.ndarray) -> None:
        m = len(vals)
        self.col.add(ids=str_ids(start, m), embeddings=vals, metadatas=metadata(start, m))

    def search(self, q: np.ndarray, k: int, genre: str | None) -> Any:
        return self.col.query(query_embeddings=q[None, :], n_results=k, where={"genre": genre} if genre else None,
                              include=[])

    def ids(self, res: Any) -> list[int]:
        return [int(s[4:]) for s in res["ids"][0]]


class Lance(Engine):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        import lancedb
        import pyarrow as pa

        self.pa = pa
        self.db = lancedb.connect(str(self.root / "lance"))
        self.table: Any = None
        self.kind = self.args.lance_index
        self.notes.append(f"lancedb {lancedb.__version__}")

    def add(self, start: int, vals: np.ndarray) -> None:
        pa, m = self.pa, len(vals)
        batch = pa.table({
            "id": pa.array(np.arange(start, start + m, dtype=np.int64)),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vals.reshape(-1)), self.dim),
            "genre": pa.array([genre_of(i) for i in range(start, start + m)]),
            "year": pa.array([year_of(i) for i in range(start, start + m)], type=pa.int32()),
        })
        if self.table is None:
            self.table = self.db.create_table("bench", data=batch)
        else:
            self.table.add(batch)

    def build(self) -> float:
        t = time.perf_counter()
        if self.kind == "IVF_PQ":
            parts = max(1, round(self.n ** 0.5))
            self.table.create_index(metric="cosine", index_type="IVF_PQ", num_partitions=parts,
                                    num_sub_vectors=self.dim // 8)
            self.nprobes = max(1, parts // 10)
            self.refine = 10 if self.args.lance_refine is None else self.args.lance_refine
            self.notes.append(f"IVF_PQ partitions={parts} sub_vectors={self.dim // 8}, "
                              f"nprobes={self.nprobes} refine_factor={self.refine}")
        else:
            self.table.create_index(metric="cosine", index_type=self.kind)
            self.nprobes = self.args.lance_nprobes
            self.refine = 2 if self.args.lance_refine is None else self.args.lance_refine
            self.notes.append(f"{self.kind} (build defaults), nprobes={self.nprobes}"
                              + (f" ef={self.args.lance_ef}" if self.args.lance_ef else "")
                              + (f" refine_factor={self.refine}" if self.refine else ""))
        self.table.create_scalar_index("genre", index_type="BITMAP")
        return time.perf_counter() - t

    def search(self, q: np.ndarray, k: int, genre: str | None) -> Any:
        s = self.table.search(q).distance_type("cosine").limit(k).nprobes(self.nprobes).select(["id"])
        if self.refine:
            s = s.refine_factor(self.refine)
        if self.args.lance_ef and self.kind != "IVF_PQ":
            s = s.ef(self.args.lance_ef)
        if genre:
            s = s.where(f"genre = '{genre}'", prefilter=True)
        return s.to_arrow()

    def ids(self, res: Any) -> list[int]:
        return res["id"].to_pylist()


class Qdrant(Engine):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        from qdrant_client import QdrantClient, models

        self.models = models
        self.client = QdrantClient(path=str(self.root / "qdrant"))
        self.client.create_collection("bench", vectors_config=models.VectorParams(
            size=self.dim, distance=models.Distance.COSINE))
        self.notes.append(f"qdrant-client {version('qdrant-client')} local mode (exact scan in Python)")

    def add(self, start: int, vals: np.ndarray) -> None:
        m = len(vals)
        self.client.upsert("bench", points=self.models.Batch(ids=list(range(start, start + m)),
                                                             vectors=vals.tolist(), payloads=metadata(start, m)))

    def search(self, q: np.ndarray, k: int, genre: str | None) -> Any:
        models = self.models
        flt = models.Filter(must=[models.FieldCondition(key="genre", match=models.MatchValue(value=genre))]) \
            if genre else None
        return self.client.query_points("bench", query=q, limit=k, query_filter=flt, with_payload=False)

    def ids(self, res: Any) -> list[int]:
        return [p.id for p in res.points]

    def close(self) -> None:
        self.client.close()


class QdrantEdge(Engine):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        import qdrant_edge as qe

        self.qe = qe
        self.shard = qe.EdgeShard.create(str(self.root / "qdrant-edge"), qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=self.dim, distance=qe.Distance.Cosine)))
        self.shard.update(qe.UpdateOperation.create_field_index("genre", qe.PayloadSchemaType.Keyword))
        self.notes.append(f"qdrant-edge-py {version('qdrant-edge-py')} HNSW defaults, keyword index on genre")

    def add(self, start: int, vals: np.ndarray) -> None:
        qe, rows, md = self.qe, vals.tolist(), metadata(start, len(vals))
        self.shard.update(qe.UpdateOperation.upsert_points(
            [qe.Point(id=start + i, vector=rows[i], payload=md[i]) for i in range(len(rows))]))

    def build(self) -> float:
        t = time.perf_counter()
        self.shard.optimize()
        spent = time.perf_counter() - t
        info = self.shard.info()
        self.notes.append(f"optimize() {spent:.2f}s: {info.segments_count} segment(s), "
                          f"{info.indexed_vectors_count} indexed vectors")
        return spent

    def search(self, q: np.ndarray, k: int, genre: str | None) -> Any:
        qe = self.qe
        flt = qe.Filter(must=[qe.FieldCondition(key="genre", match=qe.MatchValue(genre))]) if genre else None
        return self.shard.query(qe.QueryRequest(limit=k, query=qe.Query.Nearest(q.tolist()), filter=flt,
                                                with_payload=False))

    def ids(self, res: Any) -> list[int]:
        return [p.id for p in res]

    def close(self) -> None:
        self.shard.close()


class Milvus(Engine):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        from pymilvus import DataType, MilvusClient

        self.client = MilvusClient(str(self.root / "milvus.db"))
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("genre", DataType.VARCHAR, max_length=16)
        schema.add_field("year", DataType.INT64)
        self.client.create_collection("bench", schema=schema)
        self.params: dict[str, Any] = {}

    def add(self, start: int, vals: np.ndarray) -> None:
        self.client.insert("bench", [{"id": start + i, "vector": v, "genre": genre_of(start + i),
                                      "year": year_of(start + i)} for i, v in enumerate(vals)])

    def build(self) -> float:
        t = time.perf_counter()
        self.client.flush("bench")
        kind = self.args.milvus_index
        build: dict[str, Any] = {}
        if kind == "IVF_FLAT":
            nlist = max(1, round(4 * self.n ** 0.5))
            build, self.params = {"nlist": nlist}, {"nprobe": max(1, nlist // 16)}
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type=kind, metric_type="COSINE", params=build)
        self.client.create_index("bench", index)
        self.client.load_collection("bench")
        self.notes.append(f"milvus-lite {version('milvus-lite')} {kind} {build} search {self.params}")
        return time.perf_counter() - t

    def search(self, q: np.ndarray, k: int, genre: str | None) -> Any:
        return self.client.search("bench", data=[q.tolist()], limit=k, filter=f'genre == "{genre}"' if genre else "",
                                  search_params={"metric_type": "COSINE", "params": self.params}, output_fields=[])

    def ids(self, res: Any) -> list[int]:
        return [h["id"] for h in res[0]]

    def close(self) -> None:
        self.client.close()


class USearch(Engine):
    filters = False

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        import usearch
        from usearch.index import Index

        self.index = Index(ndim=self.dim, metric="cos")
        self.notes.append(f"usearch {usearch.__version__} HNSW defaults, dtype {self.index.dtype}")

    def add(self, start: int, vals: np.ndarray) -> None:
        self.index.add(np.arange(start, start + len(vals)), vals)

    def search(self, q: np.ndarray, k: int, genre: str | None) -> Any:
        return self.index.search(q, k)

    def ids(self, res: Any) -> list[int]:
        return res.keys.tolist()


class Numpy(Engine):
    """The reference: the normalized matrix in memory, one matrix-vector product a query."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.m = np.empty((self.n, self.dim), dtype=np.float32)

    def add(self, start: int, vals: np.ndarray) -> None:
        self.m[start:start + len(vals)] = vals / np.linalg.norm(vals, axis=1, keepdims=True)

    def build(self) -> float:
        codes = np.arange(self.n) % len(GENRES)
        self.masks = {g: codes == i for i, g in enumerate(GENRES)}
        return 0.0

    def search(self, q: np.ndarray, k: int, genre: str | None) -> Any:
        s = self.m @ (q / np.linalg.norm(q))
        if genre:
            s = np.where(self.masks[genre], s, -np.inf)
        top = np.argpartition(-s, k)[:k]
        return top[np.argsort(-s[top])]

    def ids(self, res: Any) -> list[int]:
        return res.tolist()


CLASSES: dict[str, type[Engine]] = {"spruce": Spruce, "chroma": Chroma, "lancedb": Lance, "qdrant": Qdrant,
                                    "qdrant-edge": QdrantEdge, "milvus": Milvus, "usearch": USearch,
                                    "numpy": Numpy}


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def status_mb(pid: int | str, field: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants() -> list[int]:
    """This process's live descendants (Milvus Lite, for one, serves from a child process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [os.getpid()]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def vm_rss_mb() -> tuple[float, int]:
    """VmRSS of this process and its live descendants, and how many descendants there are."""
    kids = descendants()
    return status_mb("self", "VmRSS") + sum(status_mb(p, "VmRSS") for p in kids), len(kids)


def peak_rss_mb() -> float:
    """VmHWM of this process plus that of each live descendant (an upper bound on the peak of the
    sum when there are descendants). Not ru_maxrss: Linux carries it across exec, so a worker
    would report the driver's own peak (it holds the data for the ground truth) as its floor."""
    return status_mb("self", "VmHWM") + sum(status_mb(p, "VmHWM") for p in descendants())


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Load one engine from scratch in this (fresh) process and measure it."""
    name, n, dim, k = args.worker, engine_records(args.worker, args), args.dim, args.top_k
    root = Path(args.dir) / f"{name}-{os.getpid()}"
    root.mkdir(parents=True)
    queries = make_queries(args.queries, dim, args.seed)
    cls = CLASSES[name]
    eng = cls(root, dim, n, args)
    gc.collect()
    rss_empty, _ = vm_rss_mb()

    spent = 0.0
    for start, vals in record_batches(n, dim, args.seed):
        t = time.perf_counter()
        eng.add(start, vals)
        spent += time.perf_counter() - t
    build = eng.build()
    gc.collect()
    rss_loaded, kids = vm_rss_mb()
    if kids:
        eng.notes.append(f"RSS includes {kids} child process(es)")

    def run(genre: str | None) -> tuple[np.ndarray, list[list[int]]]:
        for q in queries[:WARMUP]:
            eng.search(q, k, genre)
        lat, got = np.empty(len(queries)), []
        for j, q in enumerate(queries):
            t = time.perf_counter()
            res = eng.search(q, k, genre)
            lat[j] = (time.perf_counter() - t) * 1000
            got.append([int(x) for x in eng.ids(res)])
        return lat, got

    lat, got = run(None)
    out: dict[str, Any] = {
        "engine": name, "records": n, "upsert_s": spent, "build_s": build,
        "ingest_rps": n / (spent + build), "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)), "ids": got,
    }
    if eng.filters:
        flat, fgot = run(FILTER_GENRE)
        bad = sum(1 for row in fgot for i in row if genre_of(i) != FILTER_GENRE)
        if bad:
            eng.notes.append(f"filtered results held {bad} records of another genre")
        out.update(filt_p50_ms=float(np.percentile(flat, 50)), filt_p99_ms=float(np.percentile(flat, 99)),
                   filt_ids=fgot)
    out.update(rss_empty_mb=rss_empty, rss_mb=rss_loaded,
               peak_mb=peak_rss_mb(), notes=eng.notes)
    eng.close()
    shutil.rmtree(root, ignore_errors=True)
    return out


# -- driver ----------------------------------------------------------------------------------------

def engine_records(name: str, args: argparse.Namespace) -> int:
    if name == "qdrant" and args.qdrant_records:
        return min(args.records, args.qdrant_records)
    return args.records


def available(name: str) -> str | None:
    """None when the engine's package imports, else why not."""
    module = {"spruce": "spruce", "chroma": "chromadb", "lancedb": "lancedb", "qdrant": "qdrant_client",
              "qdrant-edge": "qdrant_edge", "milvus": "milvus_lite", "usearch": "usearch", "numpy": "numpy"}[name]
    return None if importlib.util.find_spec(module) else f"not installed ({module})"


def run_worker(name: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--records", str(args.records),
           "--dim", str(args.dim), "--queries", str(args.queries), "--top-k", str(args.top_k),
           "--seed", str(args.seed), "--dir", str(scratch), "--qdrant-records", str(args.qdrant_records),
           "--lance-index", args.lance_index, "--lance-nprobes", str(args.lance_nprobes),
           "--lance-ef", str(args.lance_ef),
           *(["--lance-refine", str(args.lance_refine)] if args.lance_refine is not None else []),
           "--milvus-index", args.milvus_index]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    env.setdefault("ANONYMIZED_TELEMETRY", "False")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"engine": name, "error": f"timed out after {args.timeout}s"}
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines or not lines[-1].startswith("{"):
        tail = [x for x in p.stderr.strip().splitlines() if x.strip()][-1:] or [f"exit {p.returncode}"]
        return {"engine": name, "error": tail[0][:160], "stderr": p.stderr[-3000:]}
    return json.loads(lines[-1])


NUMERIC = ("upsert_s", "build_s", "ingest_rps", "p50_ms", "p99_ms", "filt_p50_ms", "filt_p99_ms",
           "rss_empty_mb", "rss_mb", "peak_mb")


def summarize(runs: list[dict[str, Any]], truth: dict[int, tuple[np.ndarray, np.ndarray]],
              dim: int) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[-1]
    last = ok[-1]
    out: dict[str, Any] = {"engine": last["engine"], "records": last["records"], "runs": len(ok),
                           "notes": last["notes"]}
    for key in NUMERIC:
        if key in last:
            out[key] = statistics.median(r[key] for r in ok)
    gt, fgt = truth[last["records"]]
    out["recall"] = statistics.mean(recall(r["ids"], gt) for r in ok)
    if "filt_ids" in last:
        out["filt_recall"] = statistics.mean(recall(r["filt_ids"], fgt) for r in ok)
    out["vector_mb"] = last["records"] * dim * 4 / 2**20
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = ("engine", "records", "write rec/s", "ingest rec/s", "build s", "p50 ms", "p99 ms", "recall@10", "filt p50",
            "filt rec", "RSS MB", "+load MB", "peak MB", "RSS/vec")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append((r["engine"], "-", "failed: " + r["error"], *([""] * (len(head) - 3))))
            continue
        f = "filt_p50_ms" in r
        lines.append((
            r["engine"], f"{r['records']:,}", f"{r['records'] / r['upsert_s']:,.0f}", f"{r['ingest_rps']:,.0f}",
            f"{r['build_s']:.1f}",
            f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['recall']:.3f}",
            f"{r['filt_p50_ms']:.2f}" if f else "-", f"{r['filt_recall']:.3f}" if f else "-",
            f"{r['rss_mb']:,.0f}", f"{r['rss_mb'] - r['rss_empty_mb']:,.0f}", f"{r['peak_mb']:,.0f}", f"{r['rss_mb'] / r['vector_mb']:.2f}x",
        ))
    widths = [max(len(str(row[i])) for row in lines if not str(row[2]).startswith("failed") or i < 2)
              for i in range(len(head))]
    out = []
    for row in lines:
        if str(row[2]).startswith("failed"):
            out.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]}")
        else:
            out.append("  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in
                                 enumerate(zip(row, widths, strict=True))))
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--runs", type=int, default=1, help="fresh loads per engine; medians are reported")
    ap.add_argument("--only", default="", help=f"comma-separated engines from {','.join(ENGINES)}")
    ap.add_argument("--skip", default="", help="comma-separated engines to leave out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--qdrant-records", type=int, default=0,
                    help="cap qdrant local mode's record count (0: --records); its recall uses that subset")
    ap.add_argument("--lance-index", default="IVF_HNSW_SQ", choices=("IVF_HNSW_SQ", "IVF_PQ"))
    ap.add_argument("--lance-nprobes", type=int, default=20, help="nprobes for LanceDB's IVF_HNSW_SQ")
    ap.add_argument("--lance-refine", type=int, default=None,
                    help="LanceDB refine_factor, 0 for none (default: 2 for IVF_HNSW_SQ, 10 for IVF_PQ)")
    ap.add_argument("--lance-ef", type=int, default=0, help="ef for LanceDB's IVF_HNSW_SQ (0: its default)")
    ap.add_argument("--milvus-index", default="IVF_FLAT", choices=("FLAT", "IVF_FLAT", "AUTOINDEX"),
                    help="Milvus Lite builds FLAT, IVF_FLAT or AUTOINDEX")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per engine run")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON document")
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker:
        out = worker(args)
        print(json.dumps(out))
        return
    t0 = time.perf_counter()
    names = [e for e in (args.only.split(",") if args.only else ENGINES) if e]
    skip = {e for e in args.skip.split(",") if e}
    unknown = [e for e in [*names, *skip] if e not in ENGINES]
    if unknown:
        raise SystemExit(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    names = [e for e in names if e not in skip]
    n, dim, k = args.records, args.dim, args.top_k
    say = (lambda *a, **kw: print(*a, **kw, file=sys.stderr)) if args.json else print
    say(f"{n:,} records x {dim} dims ({CENTRES} clusters, seed {args.seed}), {args.queries} queries, "
        f"top_k={k}, {args.runs} run(s); vector bytes {n * dim * 4 / 2**20:,.0f} MB; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    queries = make_queries(args.queries, dim, args.seed)
    truth: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for count in sorted({engine_records(e, args) for e in names}):
        t = time.perf_counter()
        truth[count] = exact_topk(count, dim, args.seed, queries, k)
        say(f"ground truth for {count:,} records: {time.perf_counter() - t:.1f}s")
    gc.collect()

    scratch = Path(args.dir or tempfile.mkdtemp(prefix="spruce-peers-"))
    rows: list[dict[str, Any]] = []
    try:
        for name in names:
            why = available(name)
            if why:
                rows.append({"engine": name, "error": why})
                say(f"  {name}: skipped, {why}")
                continue
            runs = []
            for r in range(args.runs):
                t = time.perf_counter()
                res = run_worker(name, args, scratch)
                runs.append(res)
                status = res.get("error", "ok")
                say(f"  {name} run {r + 1}/{args.runs}: {time.perf_counter() - t:.1f}s, {status}", flush=True)
            rows.append(summarize(runs, truth, dim))
    finally:
        if args.dir is None:
            shutil.rmtree(scratch, ignore_errors=True)

    wall = time.perf_counter() - t0
    if args.json:
        print(json.dumps({"records": n, "dim": dim, "queries": args.queries, "top_k": k, "runs": args.runs,
                          "seed": args.seed, "vector_mb": n * dim * 4 / 2**20, "wall_s": wall,
                          "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
                          "engines": [{key: v for key, v in r.items() if key != "stderr"} for r in rows]},
                         indent=2))
    else:
        print()
        print(table(rows))
        print()
        for r in rows:
            detail = r.get("notes") or ([r["stderr"].strip().splitlines()[-1]] if r.get("stderr") else [])
            if detail:
                print(f"  {r['engine']}: {'; '.join(detail)}")
        print("ingest rec/s counts the write calls and the index build; RSS is VmRSS after ingest+build, "
              "+load is that minus VmRSS with the empty index open, RSS/vec = RSS / raw vector bytes")
    say(f"total wall time {wall:.1f}s (load average now {os.getloadavg()[0]:.2f}: other work on the machine "
        "skews the timings)")


if __name__ == "__main__":
    main()
