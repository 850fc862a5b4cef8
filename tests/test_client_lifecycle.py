"""The embedded client owns its folder: close() stops its jobs as Interrupted and releases the lock,
calls after close fail clearly, a busy folder names its holder, and an index a restore is still
filling says so (Initializing) until the job completes, or goes away when the job is cancelled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import spruce
from serverutil import start_server
from spruce.engine import DataDirLocked
from spruce.errors import FailedPrecondition

N, DIM, PART = 40_000, 8, 500
CLI = [sys.executable, "-c", "from spruce.cli import main; main()"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lifecycle")
    with spruce.Client(root / "data") as c:
        c.create_index("src", dimension=DIM)
        x = np.random.default_rng(5).standard_normal((N, DIM)).astype(np.float32)
        c.Index("src").upsert([{"id": f"r{i:05d}", "values": x[i]} for i in range(N)])
        c.Index("src").export_index(str(root / "archive"), part_max_records=PART, sync=True)
    return root / "archive"


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if k != "SPRUCE_DATA"}, "COLUMNS": "250", "NO_COLOR": "1"}
    p = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in p.stderr
    return p


def interrupted_restore(data: Path, archive: Path) -> str:
    """A restore into a new index ``x``, stopped by ``close()`` after its first files committed."""
    c = spruce.Client(data)
    job = c.Index("x").upsert_from_file(str(archive), sync=False).import_id
    deadline = time.monotonic() + 60
    while c.describe_import(job).files_done < 2:
        assert time.monotonic() < deadline and c.describe_import(job).status in ("Pending", "InProgress")
        time.sleep(0.002)
    c.close()
    return job


def test_close_interrupts_running_jobs_and_resume_job_finishes_them(tmp_path: Path, archive: Path) -> None:
    job = interrupted_restore(tmp_path / "d", archive)
    with spruce.Client(tmp_path / "d") as c:
        d = c.describe_import(job)
        assert d.status == "Interrupted" and d.reason == "the client that ran it was closed"
        assert 2 <= d.files_done < N // PART and d.finished_at is None
        model = c.describe_index("x")
        assert (model.status.state, model.status.ready, model.status.spruce_job) == ("Initializing", False, job)
        c.resume_job(job, sync=True)
        d = c.describe_import(job)
        assert (d.status, d.records_imported, d.attempts, len(d.resumed_at)) == ("Completed", N, 2, 1)
        assert c.describe_index("x").status.state == "Ready" and c.describe_index("x").status.spruce_job is None
        assert c.Index("x").describe_index_stats().total_vector_count == N


def test_calls_after_close_fail_clearly_and_the_lock_is_released(tmp_path: Path) -> None:
    c = spruce.Client(tmp_path / "d")
    c.create_index("a", dimension=2)
    handle = c.Index("a")
    c.close()
    c.close()  # twice is harmless
    for call in (lambda: c.list_indexes(), lambda: handle.upsert([("v", [1.0, 2.0])]),
                 lambda: handle.fetch(["v"]), lambda: c.Index("a").describe_index_stats(),
                 lambda: c.list_imports(), lambda: c.resume_job("imp-x")):
        with pytest.raises(FailedPrecondition, match="closed"):
            call()
    # another process can take the folder now
    probe = "import spruce, sys; c = spruce.Client(sys.argv[1]); print(c.list_indexes().names())"
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "d")], capture_output=True, text=True)
    assert out.returncode == 0 and "'a'" in out.stdout, out.stderr


def test_closing_one_of_two_clients_leaves_the_other_working(tmp_path: Path) -> None:
    a, b = spruce.Client(tmp_path / "d"), spruce.Client(tmp_path / "d")
    a.create_index("a", dimension=2)
    a.close()
    b.Index("a").upsert([("v", [1.0, 2.0])])
    assert b.Index("a").fetch(["v"]).vectors["v"].values == [1.0, 2.0]
    b.close()
    with pytest.raises(FailedPrecondition):
        b.Index("a").fetch(["v"])


HOLD = """
import sys, time, spruce
c = spruce.Client(sys.argv[1])
print("ready", flush=True)
time.sleep(60)
"""


def _holder(data: Path, job: str | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    if job:
        env["SPRUCE_WORKER_JOB"] = job  # what a detached --no-wait worker runs with
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(data)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_busy_folder_names_its_holder_and_the_way_forward(tmp_path: Path) -> None:
    data = tmp_path / "d"
    proc = _holder(data)
    try:
        with pytest.raises(DataDirLocked) as err:
            spruce.Client(data)
        msg = str(err.value)
        assert f"spruce process {proc.pid}" in msg and "spruce.Client(host=" in msg and "--host" not in msg
        p = cli("--data", str(data), "index", "create", "y", "-d", "2")
        assert p.returncode == 1
        assert f"spruce process {proc.pid}" in p.stderr and "spruce serve" in p.stderr and "--host" in p.stderr
        assert "spruce.Client" not in p.stderr
    finally:
        proc.kill()
        proc.wait()
    proc = _holder(data, job="imp-20261203000000-abcdef12")
    try:
        p = cli("--data", str(data), "index", "create", "y", "-d", "2")
        assert p.returncode == 1
        assert "a worker running job imp-20261203000000-abcdef12" in p.stderr
        assert "spruce jobs show imp-20261203000000-abcdef12" in p.stderr
    finally:
        proc.kill()
        proc.wait()


def test_the_cli_shows_an_initializing_index(tmp_path: Path, archive: Path) -> None:
    job = interrupted_restore(tmp_path / "d", archive)
    listing = cli("--data", str(tmp_path / "d"), "index", "list")
    assert listing.returncode == 0 and f"Initializing (restore job {job})" in listing.stdout
    stats = cli("--data", str(tmp_path / "d"), "stats", "x")
    assert stats.returncode == 0 and "Initializing" in stats.stdout and "partial" in stats.stdout


def test_cancelling_an_interrupted_restore_removes_the_index_it_created(tmp_path: Path, archive: Path) -> None:
    job = interrupted_restore(tmp_path / "d", archive)
    with spruce.Client(tmp_path / "d") as c:
        d = c.cancel_import(job)
        assert d.status == "Cancelled" and not c.has_index("x")
        assert any("removed index 'x'" in n for n in d.notes)


def test_an_index_the_user_wrote_into_is_kept_when_the_restore_is_cancelled(tmp_path: Path, archive: Path) -> None:
    job = interrupted_restore(tmp_path / "d", archive)
    with spruce.Client(tmp_path / "d") as c:
        c.Index("x").upsert([{"id": "mine", "values": [1.0] * DIM}])
        d = c.cancel_import(job)
        assert d.status == "Cancelled" and c.has_index("x")
        assert c.Index("x").fetch(["mine"]).vectors["mine"].values == [1.0] * DIM
        assert c.describe_index("x").status.state == "Ready"
        assert any("kept index 'x'" in n and "only part" in n for n in d.notes)


def test_a_cancelled_running_restore_removes_the_index_it_created(tmp_path: Path, archive: Path) -> None:
    with spruce.Client(tmp_path / "d") as c:
        job = c.Index("x").upsert_from_file(str(archive), sync=False).import_id
        while c.describe_import(job).files_done < 1:
            time.sleep(0.002)
        c.cancel_import(job)
        d = c.wait_import(job, timeout=60)
        assert d.status == "Cancelled" and not c.has_index("x")


def test_the_remote_client_closes_and_resumes_like_the_embedded_one(tmp_path: Path, archive: Path) -> None:
    data = tmp_path / "d"
    (data / "exports").mkdir(parents=True)
    job = interrupted_restore(data, archive)
    with start_server(data, auto_resume=False) as srv:
        with spruce.Client(host=srv.url) as rc:
            assert rc.describe_index("x").status.state == "Initializing"
            assert rc.describe_index("x").status.spruce_job == job
            assert rc.describe_import(job).status == "Interrupted"
            rc.resume_job(job, sync=True)
            assert rc.describe_import(job).status == "Completed"
            assert rc.describe_index("x").status.state == "Ready"
        with pytest.raises(FailedPrecondition, match="closed"):
            rc.list_indexes()
