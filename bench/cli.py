"""Benchmark the command line as a user meets it: each command timed as a whole process.

    .venv/bin/python bench/cli.py                          # 100k x 768 index for stats, 7 repeats
    .venv/bin/python bench/cli.py --records 20000 --dim 128 --repeat 5

Measures, as the median over --repeat runs of a fresh process each (wall time and peak RSS,
from ``wait4``): ``spruce --help``, ``spruce --version``, ``spruce jobs list``, ``spruce index
list`` and ``spruce stats INDEX`` on a data folder holding one --records x --dim index.

The baseline, run in the same process on the same machine, is ``python -c pass``: the
interpreter's own start-up, which no command can avoid. The ratio column is the command's
time over the baseline's. Goals (issue 12, this 2-core machine): --help <= 0.25 s, jobs list
and index list <= 0.35 s, stats at 100k x 768 <= 0.4 s and 150 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "spruce"]


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one process running ``argv``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return secs, usage.ru_maxrss / 1024


def measure(argv: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    runs = [run_once(argv, env) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


BUILD = """
import sys
import numpy as np
import spruce
data, records, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
with spruce.Client(data) as c:
    c.create_index("big", dimension=dim)
    idx = c.Index("big")
    for start in range(0, records, 5000):
        n = min(5000, records - start)
        x = rng.standard_normal((n, dim), dtype=np.float32)
        idx.upsert([{"id": f"r{start + i}", "values": x[i], "metadata": {"i": start + i}} for i in range(n)],
                   namespace="" if start % 10000 else "other")
"""


def build(data: Path, records: int, dim: int) -> None:
    """In a child process: this one stays small, so a forked child's peak RSS is its own."""
    subprocess.run([sys.executable, "-c", BUILD, str(data), str(records), str(dim)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="spruce-bench-cli-"))
    try:
        data = tmp / "data"
        t0 = time.perf_counter()
        build(data, args.records, args.dim)
        print(f"built {args.records:,} x {args.dim} in {time.perf_counter() - t0:.1f}s", flush=True)
        env = {**os.environ, "SPRUCE_DATA": str(data), "COLUMNS": "120"}
        env.pop("SPRUCE_HOST", None)
        base_s, base_mb = measure([sys.executable, "-c", "pass"], env, args.repeat)
        rows = [("python -c pass (baseline)", base_s, base_mb)]
        for label, argv in (("spruce --help", ["--help"]), ("spruce --version", ["--version"]),
                            ("spruce jobs list", ["jobs", "list"]), ("spruce index list", ["index", "list"]),
                            (f"spruce stats big ({args.records:,} x {args.dim})", ["stats", "big"])):
            s, mb = measure([*CLI, *argv], env, args.repeat)
            rows.append((label, s, mb))
        print(f"\n{'command':<44} {'median s':>9} {'ratio':>7} {'peak RSS MB':>12}")
        for label, s, mb in rows:
            print(f"{label:<44} {s:>9.3f} {s / base_s:>7.1f} {mb:>12.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
