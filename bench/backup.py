"""Backups: an incremental against a full snapshot, a restored chain against one full archive, and
what change tracking costs the engine's writes.

    .venv/bin/python bench/backup.py                  # 200k records, 768-d, 3 runs
    .venv/bin/python bench/backup.py --records 20000 --runs 2

All through the public API on an embedded index, in one process, each figure against its
baseline in the same run (medians over ``--runs``):

* incremental: after 1% of the records changed (upserts of existing ids) and 0.1% were deleted,
  ``spruce backup`` (incremental) against ``spruce backup --full`` of the same index: time and
  bytes. Goals: <= 5% of the full's time, <= 3% of its bytes.
* chain restore: 1 full + 10 incrementals (each after such an edit round), restored into a new
  index, against restoring one full snapshot of the same final state. Speed = records of the
  final state / seconds. Goal: the chain at >= 70% of the full's speed.
* tracking overhead: upserts of batches of 1,000 (768-d numpy values, metadata) into an index
  whose writes and deletions are tracked for a repository (changelog and tombstones) against the same
  upserts into an untracked index, alternated ``--write-runs`` times. Goal: <= 5% slower. Deletes
  are timed the same way.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import spruce
from spruce.archive.repository import Repository
from spruce.jobs.backup import start_backup
from spruce.jobs.chain import start_snapshot_restore
from spruce.storage import open_store

DIM = 768
NAMESPACES = ("", "second")


def batches(rng: np.random.Generator, ids: list[str], batch: int = 1000) -> list[list[dict[str, Any]]]:
    out = []
    for a in range(0, len(ids), batch):
        chunk = ids[a:a + batch]
        x = rng.standard_normal((len(chunk), DIM)).astype(np.float32)
        out.append([{"id": rid, "values": x[i], "metadata": {"n": i, "tag": f"t{i % 7}"}}
                    for i, rid in enumerate(chunk)])
    return out


def fill(c: Any, name: str, n: int, seed: int) -> dict[str, list[str]]:
    c.create_index(name, dimension=DIM, metric="cosine")
    rng = np.random.default_rng(seed)
    ids = {ns: [f"{ns or 'd'}-{i:07d}" for i in range(n // len(NAMESPACES))] for ns in NAMESPACES}
    for ns, these in ids.items():
        for b in batches(rng, these):
            c.Index(name).upsert(b, namespace=ns)
    return ids


def edit_round(c: Any, name: str, ids: dict[str, list[str]], rng: np.random.Generator) -> None:
    """1% of the records rewritten, 0.1% deleted (each namespace alike)."""
    for ns, these in ids.items():
        n = len(these)
        changed = [these[i] for i in rng.choice(n, size=max(1, n // 100), replace=False)]
        for b in batches(rng, changed):
            c.Index(name).upsert(b, namespace=ns)
        gone = set(rng.choice(n, size=max(1, n // 1000), replace=False).tolist())
        c.Index(name).delete(ids=[these[i] for i in gone], namespace=ns)
        ids[ns] = [x for i, x in enumerate(these) if i not in gone]


def timed_backup(c: Any, name: str, repo: Path, **kw: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    job = start_backup(c.engine, name, str(repo), sync=True, manager=c.jobs, **kw)
    secs = time.perf_counter() - t0
    assert job.status == "Completed", job.error
    return secs, Repository.open(open_store(str(repo))).resolve(job.options["snapshot_id"])


def timed_restore(c: Any, repo: Path, snapshot: str, target: str) -> float:
    t0 = time.perf_counter()
    job = start_snapshot_restore(c.engine, str(repo), target, snapshot=snapshot, manager=c.jobs)
    secs = time.perf_counter() - t0
    assert job.status == "Completed", job.error
    return secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--format", default="jsonl.gz", choices=["jsonl.gz", "jsonl", "parquet"])
    ap.add_argument("--chain", type=int, default=10, help="incrementals in the restored chain")
    ap.add_argument("--write-runs", type=int, default=9,
                    help="alternated upsert runs per index for the tracking overhead (it is a few %%: "
                    "fewer runs leave the median inside the noise)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="spruce-bench-backup-"))
    try:
        run(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path, args: Any) -> None:
    c = spruce.Client(root / "data")
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    ids = fill(c, "src", args.records, 1)
    print(f"{args.records:,} records x {DIM}-d in {len(NAMESPACES)} namespaces, built in {time.perf_counter() - t0:.1f}s;"
          f" format {args.format}; {args.runs} runs", flush=True)

    # -- incremental vs full -----------------------------------------------------------------
    full_t, full_b, inc_t, inc_b = [], [], [], []
    for r in range(args.runs):
        repo = root / f"repo-{r}"
        secs, snap = timed_backup(c, "src", repo, full=True, format=args.format)
        full_t.append(secs)
        full_b.append(snap.bytes)
        edit_round(c, "src", ids, rng)
        secs, snap = timed_backup(c, "src", repo, format=args.format)
        assert not snap.full
        inc_t.append(secs)
        inc_b.append(snap.bytes)
        print(f"  run {r + 1}: full {full_t[-1]:.2f}s {full_b[-1]:,} B; incremental {inc_t[-1]:.3f}s "
              f"{inc_b[-1]:,} B ({snap.records:,} records, {snap.deleted:,} deletions)", flush=True)
    mt, mb = statistics.median(inc_t) / statistics.median(full_t), statistics.median(inc_b) / statistics.median(full_b)
    print(f"incremental after 1% changed + 0.1% deleted: median {statistics.median(inc_t):.3f}s vs full "
          f"{statistics.median(full_t):.2f}s = {mt:.1%} of the time (goal <= 5%); {statistics.median(inc_b):,.0f} B vs "
          f"{statistics.median(full_b):,.0f} B = {mb:.2%} of the bytes (goal <= 3%)", flush=True)

    # -- chain restore vs one full -----------------------------------------------------------
    chain_repo = root / "chain"
    timed_backup(c, "src", chain_repo, full=True, format=args.format)
    for _ in range(args.chain):
        edit_round(c, "src", ids, rng)
        _, last = timed_backup(c, "src", chain_repo, format=args.format)
    assert len(Repository.open(open_store(str(chain_repo))).chain(last)) == args.chain + 1
    full_repo = root / "final-full"
    _, final_full = timed_backup(c, "src", full_repo, full=True, format=args.format)
    n = final_full.total_records
    chain_s, full_s = [], []
    for r in range(args.runs):  # alternated, so drift hits both alike
        chain_s.append(timed_restore(c, chain_repo, last.id, f"chain-{r}"))
        full_s.append(timed_restore(c, full_repo, final_full.id, f"full-{r}"))
        c.delete_index(f"chain-{r}")
        c.delete_index(f"full-{r}")
        print(f"  run {r + 1}: chain of {args.chain + 1} {chain_s[-1]:.2f}s ({n / chain_s[-1]:,.0f} rec/s); one full "
              f"{full_s[-1]:.2f}s ({n / full_s[-1]:,.0f} rec/s)", flush=True)
    ratio = statistics.median(full_s) / statistics.median(chain_s)
    print(f"chain restore (1 full + {args.chain} incrementals): median {n / statistics.median(chain_s):,.0f} rec/s "
          f"vs one full {n / statistics.median(full_s):,.0f} rec/s = {ratio:.0%} of its speed (goal >= 70%)", flush=True)

    # -- tracking overhead on writes ---------------------------------------------------------
    per = min(50_000, args.records // 4)
    c.create_index("plain", dimension=DIM, metric="cosine")
    c.create_index("tracked", dimension=DIM, metric="cosine")
    c.engine.index("tracked").start_tracking("bench-repo")
    wrng = np.random.default_rng(5)
    work = batches(wrng, [f"w-{i:07d}" for i in range(per)])
    up: dict[str, list[float]] = {"plain": [], "tracked": []}
    dl: dict[str, list[float]] = {"plain": [], "tracked": []}
    for r in range(args.write_runs):
        for name in (("plain", "tracked") if r % 2 == 0 else ("tracked", "plain")):
            ix = c.Index(name)
            t0 = time.perf_counter()
            for b in work:  # first run inserts, later runs overwrite: both paths are measured
                ix.upsert(b)
            up[name].append(per / (time.perf_counter() - t0))
            doomed = [f"w-{i:07d}" for i in range(r, per, 50)]
            t0 = time.perf_counter()
            for a in range(0, len(doomed), 100):
                ix.delete(ids=doomed[a:a + 100])
            dl[name].append(len(doomed) / (time.perf_counter() - t0))
    up_ratio = statistics.median(up["tracked"]) / statistics.median(up["plain"])
    dl_ratio = statistics.median(dl["tracked"]) / statistics.median(dl["plain"])
    print(f"upsert {per:,} x {DIM}-d in batches of 1,000: tracked {statistics.median(up['tracked']):,.0f} rec/s vs "
          f"untracked {statistics.median(up['plain']):,.0f} rec/s = {up_ratio:.1%} ({1 - up_ratio:+.1%} overhead; "
          "goal <= 5%)")
    print(f"delete by id, batches of 100: tracked {statistics.median(dl['tracked']):,.0f} ids/s vs untracked "
          f"{statistics.median(dl['plain']):,.0f} ids/s = {dl_ratio:.1%}")
    c.close()


if __name__ == "__main__":
    sys.exit(main())
