"""The engine benches run end to end at a toy size, so they cannot rot between measured runs.

No figure is asserted (timings belong to bench/, on an idle machine): only that each bench
completes, reaches its search part through the graph, and reports every line it promises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def run(script: str, *args: str, tmp_path: Path) -> str:
    env = dict(os.environ, SPRUCE_ANN_MIN_ROWS="1000", SPRUCE_ANN_QUIET_SECONDS="0.05")
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_engine_bench_reports_every_goal(tmp_path: Path) -> None:
    out = run("engine.py", "--sizes", "3000", "--dim", "16", "--ingest-records", "2000", "--repeat", "1",
              "--queries", "20", tmp_path=tmp_path)
    for line in ("dicts+lists", "columnar", "sqlite3", "query p50", "recall@10", "first query",
                 "peak RSS", "wall time"):
        assert line in out, out
    assert "mode ann" in out, out  # the graph was built and the queries went through it


def test_peers_bench_runs_spruce_against_the_floor(tmp_path: Path) -> None:
    out = run("peers.py", "--records", "3000", "--dim", "16", "--queries", "20", "--only", "spruce,usearch,numpy",
              "--json", tmp_path=tmp_path)
    doc = json.loads(out)
    rows = {r["engine"]: r for r in doc["engines"]}
    assert set(rows) == {"spruce", "usearch", "numpy"}, out
    assert rows["numpy"]["recall"] == 1.0  # the exact reference agrees with the ground truth
    assert rows["spruce"]["recall"] >= 0.9, rows["spruce"]
