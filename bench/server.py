"""REST server benchmark: the official pinecone SDK against ``spruce serve``, with the
embedded engine doing the same operations in-process as the baseline.

    .venv/bin/python bench/server.py                 # 100k x 768 (a few minutes)
    .venv/bin/python bench/server.py --records 5000  # quick run

Measures, each repeated ``--repeat`` times and reported as the median:
  * upsert records/s with batches of 100 and of 1000 (sequential requests, one client;
    also the SDK's own ``upsert(batch_size=...)``, which 10.x parallelizes)
  * query latency p50 / p99 (top_k=10, one client)
  * query throughput with ``--clients`` concurrent clients (one SDK client per thread)

The server runs in a subprocess (its own GIL), as ``spruce serve`` would. Goals:
upsert >= 10k records/s, query p50 <= 20 ms at 100k x 768.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from serverutil import start_server
from spruce.engine import Engine


def _chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [seq[i:i + size] for i in range(0, len(seq), size)]


def _median_run(repeat: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(repeat))


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class Target:
    """The same operations, over REST (SDK) or on the embedded engine."""

    name: str

    def upsert(self, vectors: Sequence[Any]) -> None: ...
    def upsert_sdk_batched(self, vectors: Sequence[Any], batch_size: int) -> None: ...
    def query(self, vector: list[float]) -> Any: ...
    def clear(self) -> None: ...
    def count(self) -> int: ...
    def client(self) -> Target:
        return self


class Rest(Target):
    name = "REST (SDK)"

    def __init__(self, url: str, api_key: str, index: str, *, pc: Any = None) -> None:
        from pinecone import Pinecone

        self._url, self._key, self._index_name = url, api_key, index
        self._pc = pc or Pinecone(api_key=api_key, host=url)
        self.idx = self._pc.Index(name=index)

    def upsert(self, vectors: Sequence[Any]) -> None:
        self.idx.upsert(vectors=vectors)

    def upsert_sdk_batched(self, vectors: Sequence[Any], batch_size: int) -> None:
        self.idx.upsert(vectors=vectors, batch_size=batch_size, show_progress=False)

    def query(self, vector: list[float]) -> Any:
        return self.idx.query(vector=vector, top_k=10)

    def clear(self) -> None:
        if self.count():
            self.idx.delete(delete_all=True)

    def count(self) -> int:
        return int(self.idx.describe_index_stats().total_vector_count)

    def client(self) -> Target:
        from pinecone import Pinecone

        return Rest(self._url, self._key, self._index_name, pc=Pinecone(api_key=self._key, host=self._url))


class Embedded(Target):
    name = "embedded"

    def __init__(self, engine: Engine, index: str) -> None:
        self.idx = engine.index(index)

    def upsert(self, vectors: Sequence[Any]) -> None:
        self.idx.upsert(vectors)

    def upsert_sdk_batched(self, vectors: Sequence[Any], batch_size: int) -> None:
        for chunk in _chunks(vectors, batch_size):
            self.idx.upsert(chunk)

    def query(self, vector: list[float]) -> Any:
        return self.idx.query(vector=vector, top_k=10)

    def clear(self) -> None:
        self.idx.delete(delete_all=True)

    def count(self) -> int:
        return self.idx.describe_index_stats().total_vector_count


def bench_upsert(t: Target, vectors: Sequence[Any], batch: int, *, sdk_batched: bool) -> float:
    t.clear()
    start = time.perf_counter()
    if sdk_batched:
        t.upsert_sdk_batched(vectors, batch)
    else:
        for chunk in _chunks(vectors, batch):
            t.upsert(chunk)
    elapsed = time.perf_counter() - start
    assert t.count() == len(vectors), f"{t.name}: {t.count()} records after upserting {len(vectors)}"
    return len(vectors) / elapsed


def bench_query_latency(t: Target, queries: list[list[float]]) -> tuple[float, float]:
    for q in queries[:5]:
        t.query(q)  # warm up
    lat = []
    for q in queries:
        start = time.perf_counter()
        res = t.query(q)
        lat.append((time.perf_counter() - start) * 1000)
        assert len(res.matches) == 10
    return _percentile(lat, 50), _percentile(lat, 99)


def bench_query_throughput(t: Target, queries: list[list[float]], clients: int) -> float:
    per = max(1, len(queries) // clients)
    errors: list[BaseException] = []
    targets = [t.client() for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def run(c: int) -> None:
        mine = queries[c * per:(c + 1) * per] or queries[:per]
        barrier.wait()
        try:
            for q in mine:
                targets[c].query(q)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for th in threads:
        th.start()
    barrier.wait()
    start = time.perf_counter()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return clients * per / elapsed


def run(args: argparse.Namespace, batches: list[int], vectors: list[Any], queries: list[list[float]],
        tmp: Path) -> dict[str, dict[str, float]]:
    from pinecone import Pinecone, ServerlessSpec

    api_key = uuid.uuid4().hex
    results: dict[str, dict[str, float]] = {}
    with start_server(tmp / "served", api_key=api_key, mode="subprocess") as srv:
        Pinecone(api_key=api_key, host=srv.url).create_index(
            name="bench", dimension=args.dim, metric="cosine",
            spec=ServerlessSpec(cloud="aws", region="us-east-1"))
        rest = Rest(srv.url, api_key, "bench")
        engine = Engine(tmp / "embedded")
        engine.create_index("bench", dimension=args.dim, metric="cosine")
        embedded = Embedded(engine, "bench")
        try:
            for target in (rest, embedded):
                r = results.setdefault(target.name, {})
                for b in batches:
                    print(f"[{target.name}] upsert, batches of {b} ...", flush=True)
                    r[f"upsert b={b} (records/s)"] = _median_run(
                        args.repeat, lambda t=target, b=b: bench_upsert(t, vectors, b, sdk_batched=False))
                if target is rest:
                    for b in batches:
                        print(f"[{target.name}] upsert(batch_size={b}) ...", flush=True)
                        r[f"sdk upsert(batch_size={b}) (records/s)"] = _median_run(
                            args.repeat, lambda t=target, b=b: bench_upsert(t, vectors, b, sdk_batched=True))
                print(f"[{target.name}] query latency ...", flush=True)
                lat = [bench_query_latency(target, queries) for _ in range(args.repeat)]
                r["query p50 (ms)"] = statistics.median(x[0] for x in lat)
                r["query p99 (ms)"] = statistics.median(x[1] for x in lat)
                print(f"[{target.name}] query throughput, {args.clients} clients ...", flush=True)
                r[f"query {args.clients} clients (q/s)"] = _median_run(
                    args.repeat, lambda t=target: bench_query_throughput(t, queries, args.clients))
        finally:
            engine.close()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--batches", default="100,1000")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]

    rng = np.random.default_rng(7)
    print(f"generating {args.records} x {args.dim} records ...", flush=True)
    mat = rng.standard_normal((args.records, args.dim), dtype=np.float32)
    values = mat.tolist()
    vectors = [(f"v{i:07d}", values[i], {"group": i % 10}) for i in range(args.records)]
    del values
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32).tolist()

    with tempfile.TemporaryDirectory(prefix="spruce-bench-") as tmp:
        results = run(args, batches, vectors, queries, Path(tmp))

    print()
    print(f"spruce server benchmark: {args.records} x {args.dim}, cosine, top_k=10, "
          f"median of {args.repeat} runs")
    rest_name, embedded_name = Rest.name, Embedded.name
    keys = list(results[rest_name])
    width = max(len(k) for k in keys) + 2
    print(f"{'metric':<{width}}{'REST (SDK)':>14}{'embedded':>14}{'REST/embedded':>16}")
    for k in keys:
        a = results[rest_name][k]
        b = results[embedded_name].get(k)
        ratio = f"{a / b:.2f}" if b else "-"
        print(f"{k:<{width}}{a:>14.1f}{(f'{b:.1f}' if b is not None else '-'):>14}{ratio:>16}")
    print("goals: upsert >= 10000 records/s; query p50 <= 20 ms (at 100k x 768)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
