"""`make demo`: the main job on the embedded default, end to end.

Creates an index, upserts 20k synthetic 768-d records with metadata in two
namespaces, runs a filtered query, exports it to ./spruce-backups/<timestamp>/
with a progress bar, verifies the archive, restores it into demo-restored,
compares every record bit for bit, and prints a summary.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import numpy as np
from rich.console import Console
from rich.table import Table

import spruce
from spruce.archive import verify_archive
from spruce.cli.progress import follow
from spruce.storage import open_store

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
    if stats.total_vector_count != N:
        sys.exit(f"expected {N} records, the index holds {stats.total_vector_count}")

    # -- export -> verify -> restore -> compare ---------------------------------
    dest = f"spruce-backups/{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    t0 = time.perf_counter()
    job = idx.export_index(storage_path=dest, format="jsonl.gz", sync=False)
    done = follow(client.describe_export, client.cancel_export, job.export_id, label="export demo",
                  done_attr="records_exported", bytes_attr="bytes_written")
    export_s = time.perf_counter() - t0
    if done.status != "COMPLETED":
        sys.exit(f"export {done.status}: {done.error}")
    console.print(f"exported to {dest}  (download: {done.download_url})")

    t0 = time.perf_counter()
    report = verify_archive(open_store(dest))
    verify_s = time.perf_counter() - t0
    if not report.ok:
        sys.exit(f"verify failed: {report.problems}")
    console.print(f"verified {report.files_checked} files, {report.records_checked:,} records (sha256 + counts)")

    if client.has_index("demo-restored"):
        client.delete_index("demo-restored")
    t0 = time.perf_counter()
    restored = client.Index("demo-restored").upsert_from_file(dest)
    restore_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    compared = compare(idx, client.Index("demo-restored"))
    compare_s = time.perf_counter() - t0

    summary = Table("step", "records", "bytes", "seconds", "records/s", title="summary")
    for step, n, nbytes, secs in (
        ("export (jsonl.gz)", done.records_exported, done.bytes_written, export_s),
        ("verify", report.records_checked, report.bytes_checked, verify_s),
        ("restore", restored.records_imported, None, restore_s),
        ("compare bit for bit", compared, None, compare_s),
    ):
        summary.add_row(step, f"{n:,}", "" if nbytes is None else f"{nbytes:,}", f"{secs:.2f}",
                        f"{n / max(secs, 1e-9):,.0f}")
    console.print(summary)
    console.print("[bold green]identical:[/] every record of demo-restored equals demo, float32 values bit for bit")


def compare(a, b) -> int:
    """Every record in both indexes, compared exactly (ids, float32 bits, metadata)."""
    sa, sb = a.describe_index_stats(), b.describe_index_stats()
    if sa.namespaces != sb.namespaces:
        sys.exit(f"namespaces differ: {sa.namespaces} vs {sb.namespaces}")
    n = 0
    for ns in sa.namespaces:
        for page in a.list(namespace=ns, limit=1000):
            va, vb = a.fetch(page, namespace=ns).vectors, b.fetch(page, namespace=ns).vectors
            for rid, rec in va.items():
                other = vb.get(rid)
                same = other is not None and other.metadata == rec.metadata and (
                    np.asarray(rec.values, np.float32).tobytes() == np.asarray(other.values, np.float32).tobytes())
                if not same:
                    sys.exit(f"record {rid!r} in namespace {ns!r} differs after restore")
                n += 1
    return n


if __name__ == "__main__":
    main()
