"""kill -9 at random points of an export and of a restore (ten of each), while an unrelated writer
edits another index in the same process.

Whatever the moment, after the folder is reopened: no job is left InProgress; each is Completed,
Interrupted (and then resumes to Completed), Cancelled or Failed with a reason; an export reported
Completed has a manifest that verifies; a resumed restore holds exactly the source's records.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import spruce
from spruce.archive import verify_archive
from spruce.storage import open_store

N, DIM, PART, ROUNDS = 10_000, 16, 500, 10
#: "Pending": killed after the job was recorded and before it started; resumable like Interrupted
#: (``spruce jobs resume``, or ``spruce serve`` at start-up)
ENDED_OR_RESUMABLE = {"Completed", "Interrupted", "Pending", "Cancelled", "Failed", "Superseded"}

WORKER = """
import sys, threading, time, spruce
data, kind, target, dest = sys.argv[1:5]
c = spruce.Client(data)

def unrelated_writer():
    idx, i = c.Index("other"), 0
    while True:
        idx.upsert([{"id": f"w{i % 50}", "values": [float(i)] * 4}])
        i += 1
        time.sleep(0.002)

threading.Thread(target=unrelated_writer, daemon=True).start()
if kind == "export":
    c.Index("src").export_index(dest, part_max_records=500, sync=True)
else:
    c.Index(target).upsert_from_file(dest, sync=True)
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("kill-anywhere")
    data = root / "data"
    with spruce.Client(data) as c:
        c.create_index("src", dimension=DIM, metric="dotproduct")
        c.create_index("other", dimension=4, metric="euclidean")
        x = np.random.default_rng(3).standard_normal((N, DIM)).astype(np.float32)
        c.Index("src").upsert([{"id": f"s{i:05d}", "values": x[i], "metadata": {"i": i}} for i in range(N)])
        c.Index("src").export_index(str(root / "archive"), part_max_records=PART, sync=True)
        expected = {f"s{i:05d}": x[i].tobytes() for i in range(N)}
    return data, root / "archive", expected


def contents(c: spruce.Client, name: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with c.engine.index(name).snapshot() as snap:
        for batch in snap.iter_batches(""):
            out.update((rid, batch.values[i].tobytes()) for i, rid in enumerate(batch.ids))
    return out


def kill_at_random(data: Path, kind: str, target: str, dest: str, rng: random.Random) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(data), kind, target, dest],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(rng.uniform(0.4, 2.0))  # from before the job starts to (rarely) after it ended
    proc.kill()
    _, err = proc.communicate()
    assert b"Traceback" not in err, err.decode()


@pytest.mark.parametrize("kind", ["export", "restore"])
def test_kill_anywhere_then_reopen_and_resume(folder, tmp_path: Path, kind: str) -> None:
    data, archive, expected = folder
    rng = random.Random(f"{kind}-11")
    for k in range(ROUNDS):
        dest = str(tmp_path / f"export-{k}") if kind == "export" else str(archive)
        target = "src" if kind == "export" else f"restored-{k}"
        kill_at_random(data, kind, target, dest, rng)
        with spruce.Client(data) as c:  # nothing resumes by itself
            for s in c.jobs.list():
                assert s.status in ENDED_OR_RESUMABLE, (k, s.id, s.status)
                if s.status == "Failed":
                    assert s.error
                if s.status == "Interrupted":
                    assert s.reason
            mine = [s for s in c.jobs.list("export" if kind == "export" else "import")
                    if (s.uri.rstrip("/").endswith(f"export-{k}") if kind == "export" else s.index == target)]
            assert len(mine) <= 1
            if not mine:
                continue  # killed before the job was recorded: nothing to resume, nothing written
            job = mine[0]
            if job.status in ("Interrupted", "Pending"):
                done = c.jobs.resume(job.id, sync=True)
                assert done.status == "Completed", (k, done.status, done.error, done.reason)
            else:
                assert job.status == "Completed", (k, job.status, job.error)
            if kind == "export":
                report = verify_archive(open_store(dest))
                assert report.ok and report.records_checked == N
                assert json.loads(Path(dest, "manifest.json").read_bytes())["export_id"] == job.id
                assert not list(Path(dest).rglob(".spruce-tmp-*"))
            else:
                assert contents(c, target) == expected
                assert c.describe_index(target).status.state == "Ready"
            assert c.Index("other").describe_index_stats().total_vector_count <= 50
