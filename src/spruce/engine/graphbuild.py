"""The graph builder, run as its own process: ``python -m spruce.engine.graphbuild JSON``.

Why a process: a search on a usearch index waits while another thread adds to it
(measured here: queries stalled 0.4 to 0.9 s behind a 1,000-row add), and a served,
memory-mapped view cannot be added to at all, so a build needs a copy of the graph.
In a process of its own that copy's memory never counts against the serving
process, it runs at a lower CPU priority than queries and writes, and a crash or a
kill of either side leaves the other whole.

It reads sealed rows from the namespace's float32 file, adds rows [start, stop) to a
copy of the previous graph (or a new one), and writes the result to ``out`` through a
temporary file and a rename, so a graph file is either whole or absent.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import orjson

#: spruce metric -> usearch metric and the stored scalar. Cosine keeps int8 (a quarter of the
#: float32 bytes; candidates are reranked exactly on float32 anyway); dot product and euclidean
#: are not scale-free, so they keep float16.
KINDS = {"cosine": ("cos", "i8"), "dotproduct": ("ip", "f16"), "euclidean": ("l2sq", "f16")}
CONNECTIVITY = 16
EXPANSION_ADD = 128
BATCH = 4096


def new_index(dimension: int, metric: str):  # type: ignore[no-untyped-def]
    from usearch.index import Index

    kind, dtype = KINDS[metric]
    return Index(ndim=dimension, metric=kind, dtype=dtype, connectivity=CONNECTIVITY,
                 expansion_add=EXPANSION_ADD)


def build(spec: dict) -> None:
    from usearch.index import Index

    dim, start, stop = spec["dimension"], spec["start"], spec["stop"]
    dense = np.memmap(spec["dense"], dtype="<f4", mode="r", shape=(stop, dim))
    index = Index.restore(spec["base"], view=False) if spec.get("base") else new_index(dim, spec["metric"])
    if index is None or len(index) != start:
        raise SystemExit(f"graph {spec.get('base')} does not hold rows [0, {start})")
    threads = os.cpu_count() or 1
    for lo in range(start, stop, BATCH):
        hi = min(stop, lo + BATCH)
        index.add(np.arange(lo, hi, dtype=np.uint64), np.ascontiguousarray(dense[lo:hi]), threads=threads)
    tmp = spec["out"] + ".tmp"
    index.save(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, spec["out"])


if __name__ == "__main__":
    try:
        os.nice(10)  # the index's own queries and writes come first
    except OSError:
        pass
    build(orjson.loads(sys.argv[1]))
