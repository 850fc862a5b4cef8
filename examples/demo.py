"""`make demo`: the main job on the embedded default, end to end.

Creates an index, upserts 20k synthetic 768-d records with metadata in two
namespaces, runs a filtered query and prints the stats.
"""

from __future__ import annotations

import time

import numpy as np
from rich.console import Console
from rich.table import Table

import spruce

N, DIM, BATCH = 20_000, 768, 1000
GENRES = ["drama", "comedy", "news", "sport"]
console = Console()


def synthetic(rng: np.random.Generator, start: int, n: int) -> list[dict]:
    values = rng.standard_normal((n, DIM), dtype=np.float32)
    return [
        {
            "id": f"doc-{start + i:06d}",
            "values": values[i],
            "metadata": {"genre": GENRES[(start + i) % 4], "year": 1990 + (start + i) % 35,
                         "tags": ["a", "b"] if i % 3 == 0 else ["c"], "public": i % 2 == 0},
        }
        for i in range(n)
    ]


def main() -> None:
    client = spruce.Client(data_dir="spruce-data")
    if client.has_index("demo"):
        client.delete_index("demo")
    client.create_index("demo", dimension=DIM, metric="cosine")
    idx = client.Index("demo")
    rng = np.random.default_rng(7)

    t0 = time.perf_counter()
    for ns, start in (("", 0), ("articles/2024", N // 2)):
        for b in range(start, start + N // 2, BATCH):
            idx.upsert(synthetic(rng, b, BATCH), namespace=ns)
    elapsed = time.perf_counter() - t0
    console.print(f"upserted [bold]{N:,}[/] records ({DIM}-d) in {elapsed:.2f}s "
                  f"= {N / elapsed:,.0f} records/s")

    query = rng.standard_normal(DIM, dtype=np.float32)
    flt = {"genre": {"$in": ["drama", "news"]}, "year": {"$gte": 2000}}
    t0 = time.perf_counter()
    res = idx.query(vector=query, top_k=5, filter=flt, include_metadata=True)
    ms = (time.perf_counter() - t0) * 1000
    table = Table("id", "score", "genre", "year", title=f"top 5 for filter {flt} ({ms:.1f} ms)")
    for m in res.matches:
        table.add_row(m.id, f"{m.score:.4f}", m.metadata["genre"], str(m.metadata["year"]))
    console.print(table)

    stats = idx.describe_index_stats()
    st = Table("namespace", "records", title="stats")
    for ns, summary in stats.namespaces.items():
        st.add_row(ns or "__default__", f"{summary.vector_count:,}")
    st.add_row("total", f"{stats.total_vector_count:,}")
    console.print(st)
    assert stats.total_vector_count == N


if __name__ == "__main__":
    main()
