"""Compare the HNSW libraries spruce could build its graphs with (DESIGN.md "Approximate search").

    .venv/bin/pip install -e ".[bench]"        # hnswlib and faiss-cpu
    .venv/bin/python bench/ann_libs.py --records 100000

Same data for each (clustered, 200 centres, 768-d, cosine), same graph parameters
(M=16, ef_construction=128, ef_search=128), 2 build threads. For each it prints the
build rate, the query p50, recall@10 of the graph alone and after an exact float32
rerank of 64 candidates (what spruce does), the bytes the graph takes, whether it can
be served from a memory-mapped file, and the longest a Python thread that wakes every
millisecond was held up during the build (a library holding the GIL would stall every
query and write of the process for as long as each insert call runs).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def data(n: int, dim: int, nq: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((200, dim), dtype=np.float32)
    x = centres[rng.integers(0, 200, n)] + 0.5 * rng.standard_normal((n, dim), dtype=np.float32)
    q = x[rng.integers(0, n, nq)] + 0.1 * rng.standard_normal((nq, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def longest_stall(build: Callable[[], None]) -> tuple[float, float]:
    """(build seconds, the longest a sleeping Python thread waited past its 1 ms wake-up during
    the build, in ms): a library holding the GIL shows its whole insert time here."""
    done = threading.Event()
    worst = [0.0]

    def tick() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            time.sleep(0.001)
            worst[0] = max(worst[0], time.perf_counter() - t0 - 0.001)

    t = threading.Thread(target=tick)
    t.start()
    start = time.perf_counter()
    build()
    spent = time.perf_counter() - start
    done.set()
    t.join()
    return spent, worst[0] * 1000


def libs(dim: int) -> dict[str, tuple[Callable[[np.ndarray], Any], Callable[[Any, np.ndarray, int], np.ndarray],
                                       Callable[[Any, str], int], bool]]:
    def usearch_new(dtype: str) -> Callable[[np.ndarray], Any]:
        def build(x: np.ndarray) -> Any:
            from usearch.index import Index
            ix = Index(ndim=dim, metric="cos", dtype=dtype, connectivity=16, expansion_add=128, expansion_search=128)
            ix.add(np.arange(len(x)), x, threads=2)
            return ix
        return build

    def usearch_search(ix: Any, q: np.ndarray, k: int) -> np.ndarray:
        return np.asarray(ix.search(q, k).keys)

    def usearch_size(ix: Any, path: str) -> int:
        ix.save(path)
        return os.path.getsize(path)

    def hnswlib_build(x: np.ndarray) -> Any:
        import hnswlib
        p = hnswlib.Index(space="ip", dim=dim)
        p.init_index(max_elements=len(x), ef_construction=128, M=16)
        p.set_num_threads(2)
        p.add_items(x, np.arange(len(x)))
        p.set_ef(128)
        return p

    def hnswlib_size(p: Any, path: str) -> int:
        p.save_index(path)
        return os.path.getsize(path)

    def faiss_new(sq8: bool) -> Callable[[np.ndarray], Any]:
        def build(x: np.ndarray) -> Any:
            import faiss
            faiss.omp_set_num_threads(2)
            if sq8:
                ix = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, 16, faiss.METRIC_INNER_PRODUCT)
                ix.train(x[:20_000])
            else:
                ix = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
            ix.hnsw.efConstruction = 128
            ix.add(x)
            ix.hnsw.efSearch = 128
            return ix
        return build

    def faiss_size(ix: Any, path: str) -> int:
        import faiss
        faiss.write_index(ix, path)
        return os.path.getsize(path)

    return {
        "usearch i8": (usearch_new("i8"), usearch_search, usearch_size, True),
        "usearch f16": (usearch_new("f16"), usearch_search, usearch_size, True),
        "usearch f32": (usearch_new("f32"), usearch_search, usearch_size, True),
        "hnswlib f32": (hnswlib_build, lambda p, q, k: p.knn_query(q, k=k)[0][0], hnswlib_size, False),
        "faiss HNSWFlat": (faiss_new(False), lambda ix, q, k: ix.search(q[None], k)[1][0], faiss_size, False),
        "faiss HNSWSQ8": (faiss_new(True), lambda ix, q, k: ix.search(q[None], k)[1][0], faiss_size, False),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--only", default="", help="comma-separated library names to run")
    args = ap.parse_args()
    wall = time.perf_counter()
    x, qs = data(args.records, args.dim, args.queries)
    truth = [set(np.argsort(-(x @ q))[:10].tolist()) for q in qs]
    print(f"{args.records:,} x {args.dim}, clustered, cosine; M=16 ef_construction=128 ef_search=128; 2 threads")
    print(f"{'library':16s} {'build/s':>8s} {'p50 ms':>7s} {'recall':>7s} {'rerank64':>8s} {'MB':>6s} "
          f"{'mmap':>5s} {'stall ms':>9s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (build, search, size, mmap) in libs(args.dim).items():
            if args.only and name not in args.only.split(","):
                continue
            try:
                holder: list[Any] = []
                spent, stall = longest_stall(lambda b=build, h=holder: h.append(b(x)))
            except ImportError as exc:
                print(f"{name:16s} not installed ({exc.name}): pip install -e '.[bench]'")
                continue
            ix = holder[0]
            lat, raw, rr = [], 0, 0
            for q, t in zip(qs, truth, strict=True):
                t0 = time.perf_counter()
                keys = np.asarray(search(ix, q, 64), dtype=np.int64)
                lat.append(time.perf_counter() - t0)
                raw += len(set(keys[:10].tolist()) & t)
                top = keys[np.argsort(-(x[keys] @ q))[:10]]
                rr += len(set(top.tolist()) & t)
            mb = size(ix, os.path.join(tmp, name.replace(" ", "_"))) / 2**20
            print(f"{name:16s} {args.records / spent:8,.0f} {np.median(lat) * 1000:7.3f} {raw / len(qs) / 10:7.4f} "
                  f"{rr / len(qs) / 10:8.4f} {mb:6.0f} {'yes' if mmap else 'no':>5s} {stall:9.1f}", flush=True)
            del ix, holder
    print(f"wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
