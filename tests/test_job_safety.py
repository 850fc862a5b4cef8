"""Jobs never undo a user's writes: no silent resume, no resume over newer writes, one writing job
per index, and overwrite never replaces a record written after the restore started.

The reproduction of issue 11 runs end to end: a restore killed with SIGKILL, the same command run
again, the index edited, the folder reopened (embedded, CLI, ``spruce serve``): the edit survives.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import spruce
from serverutil import start_server
from spruce.errors import FailedPrecondition, JobConflict
from spruce.jobs.state import STATUSES, JobStatus, _seed_spelling

N, DIM, PART = 20_000, 16, 500
CLI = [sys.executable, "-c", "from spruce.cli import main; main()"]


def cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SPRUCE_DATA"}
    env.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    p = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=180)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    return p


def job_files(data: Path) -> list[dict[str, Any]]:
    out = []
    for p in (data / "jobs").glob("*.json"):
        try:
            out.append(json.loads(p.read_bytes()))
        except (OSError, ValueError):
            continue
    return out


def kill_when(proc: subprocess.Popen, data: Path, ready, timeout: float = 90.0) -> dict[str, Any]:
    """SIGKILL ``proc`` once a job file satisfies ``ready``; return that job's state as left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the worker ended by itself (rc={proc.returncode}) before it could be killed")
        for job in job_files(data):
            if job["status"] == "InProgress" and ready(job):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return json.loads((data / "jobs" / f"{job['id']}.json").read_bytes())
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the job never got going")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """An archive of 20k 16-d records in 40 files (two namespaces), built once."""
    root = tmp_path_factory.mktemp("safety")
    with spruce.Client(root / "data") as c:
        c.create_index("src", dimension=DIM, metric="cosine")
        idx = c.Index("src")
        x = np.random.default_rng(11).standard_normal((N, DIM)).astype(np.float32)
        for ns, lo, hi in (("", 0, N // 2), ("two", N // 2, N)):
            idx.upsert([{"id": f"r{i:05d}", "values": x[i], "metadata": {"i": i}} for i in range(lo, hi)],
                       namespace=ns)
        c.Index("src").export_index(str(root / "archive"), part_max_records=PART, sync=True)
    return root / "archive"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def restore_killed(data: Path, archive: Path, files: int = 3) -> dict[str, Any]:
    """``spruce restore ARCHIVE x`` killed with SIGKILL once ``files`` files committed."""
    proc = subprocess.Popen([*CLI, "--data", str(data), "restore", str(archive), "x", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = kill_when(proc, data, lambda j: j["kind"] == "import" and j["files_done"] >= files)
    assert state["status"] == "InProgress" and state["files_done"] < 2 * N // PART // 2
    return state


def edit(data: Path) -> tuple[str, str]:
    """The user's edit of x: one record changed (in a file not yet restored), one deleted."""
    with spruce.Client(data) as c:
        idx = c.Index("x")
        idx.upsert([{"id": "r19999", "values": [9.0] * DIM, "metadata": {"edited": True}}], namespace="two")
        idx.delete(ids=["r00001"])
    return "r19999", "r00001"


def assert_edit_survived(c: Any) -> None:
    got = c.Index("x").fetch(["r19999"], namespace="two").vectors["r19999"]
    assert got.metadata == {"edited": True} and list(got.values) == [9.0] * DIM
    assert c.Index("x").fetch(["r00001"]).vectors == {}


# -- the reproduction ----------------------------------------------------------------------


def test_rerun_adopts_the_killed_restore_and_a_later_edit_survives_every_reopen(data: Path, archive: Path) -> None:
    killed = restore_killed(data, archive)
    out = cli("--data", str(data), "restore", str(archive), "x", check=True).stdout
    assert f"restored {N:,} records into x" in out  # the job's whole count: both attempts
    jobs = job_files(data)
    assert [j["id"] for j in jobs] == [killed["id"]]  # adopted, not a second job
    assert jobs[0]["status"] == "Completed" and jobs[0]["attempts"] == 2 and len(jobs[0]["resumed_at"]) == 1
    assert jobs[0]["records_done"] == N

    edit(data)
    with spruce.Client(data) as c:  # opening the folder again resumes nothing
        time.sleep(0.3)
        assert_edit_survived(c)
        assert c.Index("x").describe_index_stats().total_vector_count == N - 1
    listing = cli("--data", str(data), "jobs", "list", check=True).stdout
    assert "InProgress" not in listing and "Interrupted" not in listing
    with start_server(data) as srv:  # neither does a server
        time.sleep(0.3)
        got = httpx.get(f"{srv.url}/index/x/vectors/fetch", params={"ids": ["r19999"], "namespace": "two"}).json()
        assert got["vectors"]["r19999"]["metadata"] == {"edited": True}
    with spruce.Client(data) as c:
        assert_edit_survived(c)


def test_an_edit_after_the_kill_supersedes_the_job_cli(data: Path, archive: Path) -> None:
    killed = restore_killed(data, archive)
    with spruce.Client(data) as c:
        d = c.describe_import(killed["id"])
        assert d.status == "Interrupted" and "stopped before it finished" in d.reason
    edit(data)
    p = cli("--data", str(data), "jobs", "resume", killed["id"])
    assert p.returncode == 1
    line = p.stderr.strip().splitlines()[-1]
    assert "written after this job's last commit" in line and "a write outside any job" in line
    assert "Superseded" in line
    state = json.loads((data / "jobs" / f"{killed['id']}.json").read_bytes())
    assert state["status"] == "Superseded" and state["finished_at"]
    with spruce.Client(data) as c:
        assert_edit_survived(c)
        with pytest.raises(FailedPrecondition, match="Superseded"):
            c.jobs.resume(killed["id"])
    # the same command run again starts afresh (the superseded job is not adopted) and completes
    cli("--data", str(data), "restore", str(archive), "x", check=True)
    assert sorted(j["status"] for j in job_files(data)) == ["Completed", "Superseded"]


def test_an_edit_after_the_kill_supersedes_the_job_serve(data: Path, archive: Path) -> None:
    from pinecone import Pinecone

    killed = restore_killed(data, archive)
    edit(data)
    with start_server(data, api_key="k", mode="subprocess") as srv:
        pc = Pinecone(api_key="k", host=srv.url)
        idx = pc.Index(host=srv.index_host("x"))
        got = idx.fetch(ids=["r19999"], namespace="two").vectors["r19999"]
        assert got.metadata == {"edited": True}
        job = httpx.get(f"{srv.url}/jobs/{killed['id']}", headers=srv.headers()).json()
        assert job["status"] == "Superseded" and "written after" in job["reason"]
        assert idx.describe_import(id=killed["id"]).status == "Cancelled"  # Pinecone's enum has no Superseded


def test_serve_resumes_at_start_and_overwrite_keeps_what_clients_write_meanwhile(data: Path, archive: Path) -> None:
    """The probe of issue 11: import killed, server restarted (it resumes the import), a client
    upserts new values for ids in files not yet imported: none is reverted to the archive's."""
    from pinecone import Pinecone

    killed = restore_killed(data, archive, files=2)
    with start_server(data, mode="subprocess") as srv:
        pc = Pinecone(api_key="x", host=srv.url)
        idx = pc.Index(host=srv.index_host("x"))
        late = [f"r{i:05d}" for i in range(N // 2 + 100, N, 700)]  # spread over the later files
        idx.upsert(vectors=[{"id": i, "values": [7.0] * DIM, "metadata": {"client": True}} for i in late],
                   namespace="two")
        deadline = time.monotonic() + 120
        while (job := httpx.get(f"{srv.url}/jobs/{killed['id']}").json())["status"] != "Completed":
            assert job["status"] in ("Pending", "InProgress"), job
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert job["attempts"] == 2 and job["resumedAt"]
        got = idx.fetch(ids=late, namespace="two").vectors
        assert all(got[i].metadata == {"client": True} for i in late)
        assert job["recordsImported"] + job["recordsKeptNewer"] == N
    with spruce.Client(data) as c:
        assert c.describe_import(killed["id"]).records_kept_newer == job["recordsKeptNewer"]


def test_no_resume_leaves_jobs_interrupted(data: Path, archive: Path) -> None:
    killed = restore_killed(data, archive)
    env = {k: v for k, v in os.environ.items() if k != "SPRUCE_DATA"}
    from serverutil import free_port

    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--data", str(data), "--port", str(port), "--no-resume",
                             "--log-level", "warning"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        time.sleep(0.3)
        job = httpx.get(f"http://127.0.0.1:{port}/jobs/{killed['id']}").json()
        assert job["status"] == "Interrupted"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "resuming" not in err


def test_serve_logs_one_line_per_resumed_job(data: Path, archive: Path) -> None:
    killed = restore_killed(data, archive)
    from serverutil import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SPRUCE_DATA"}
    proc = subprocess.Popen([*CLI, "serve", "--data", str(data), "--port", str(port), "--log-level", "warning"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                job = httpx.get(f"http://127.0.0.1:{port}/jobs/{killed['id']}").json()
                if job["status"] == "Completed":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    lines = [ln for ln in err.splitlines() if "resuming" in ln]
    assert len(lines) == 1 and killed["id"] in lines[0]


# -- one writing job per index -------------------------------------------------------------


def test_a_second_restore_into_the_same_index_is_refused_then_superseded(data: Path, archive: Path) -> None:
    killed = restore_killed(data, archive)
    with spruce.Client(data) as c:
        assert c.describe_index("x").status.state == "Initializing"  # partial work is visible
        assert c.describe_index("x").status.spruce_job == killed["id"]
        with pytest.raises(JobConflict) as err:
            c.Index("x").upsert_from_file(str(archive), on_conflict="skip")
        msg = str(err.value)
        assert killed["id"] in msg and f"spruce jobs cancel {killed['id']}" in msg
        assert f"spruce jobs resume {killed['id']}" in msg
        assert len(c.jobs.list("import")) == 1  # the refused one never became a job
        d = c.Index("x").upsert_from_file(str(archive), on_conflict="skip", supersede=True)
        old = c.describe_import(killed["id"])
        assert old.status == "Cancelled"
        assert any("removed index 'x'" in n for n in old.notes)  # it created x, and never finished it
        assert d.status == "Completed" and d.records_imported == N and d.records_skipped == 0
        assert c.describe_index("x").status.state == "Ready"
        # counts are honest: what was there already is skipped, not counted as imported
        again = c.Index("x").upsert_from_file(str(archive), on_conflict="skip")
        assert (again.records_imported, again.records_skipped) == (0, N)


def test_an_interrupted_restore_refuses_a_second_one_over_http(data: Path, archive: Path) -> None:
    shutil.copytree(archive, data / "exports" / "archive")  # inside the server's storage roots
    archive = data / "exports" / "archive"
    killed = restore_killed(data, archive)
    with start_server(data, auto_resume=False) as srv:
        state = httpx.get(f"{srv.url}/indexes/x").json()["status"]
        assert state == {"ready": False, "state": "Initializing", "spruceJob": killed["id"]}
        second = httpx.post(f"{srv.url}/index/x/bulk/imports", json={"uri": str(archive), "onConflict": "skip"})
        assert second.status_code == 409, second.text
        err = second.json()
        assert err["code"] == 10 and killed["id"] in err["message"]  # gRPC ABORTED, data-plane shape
        resumed = httpx.post(f"{srv.url}/jobs/{killed['id']}/resume")
        assert resumed.status_code == 200, resumed.text
        deadline = time.monotonic() + 60
        while httpx.get(f"{srv.url}/jobs/{killed['id']}").json()["status"] != "Completed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.get(f"{srv.url}/indexes/x").json()["status"] == {"ready": True, "state": "Ready"}


def test_cli_restore_refused_while_another_is_interrupted(data: Path, archive: Path) -> None:
    killed = restore_killed(data, archive)
    p = cli("--data", str(data), "restore", str(archive), "x", "--on-conflict", "skip")
    assert p.returncode == 1
    line = p.stderr.strip().splitlines()[-1]
    assert killed["id"] in line and "spruce jobs cancel" in line and "--supersede" in line
    p = cli("--data", str(data), "restore", str(archive), "x", "--on-conflict", "skip", "--supersede", check=True)
    assert f"superseded job {killed['id']}" in p.stdout and f"restored {N:,} records" in p.stdout
    p = cli("--data", str(data), "restore", str(archive), "x", "--on-conflict", "skip", check=True)
    assert "restored 0 records" in p.stdout and f"skipped {N:,} record(s)" in p.stdout


def test_exports_run_beside_a_restore(data: Path, archive: Path, tmp_path: Path) -> None:
    killed = restore_killed(data, archive)
    with spruce.Client(data) as c:
        d = c.Index("x").export_index(str(tmp_path / "x-export"), sync=True)
        assert d.status == "Completed"
        assert c.describe_import(killed["id"]).status == "Interrupted"


# -- overwrite never replaces a newer write ------------------------------------------------


def test_overwrite_keeps_records_written_after_the_job_started(tmp_path: Path) -> None:
    """White-box, at the engine: the job's start is a write sequence number, not a time."""
    from spruce.records import RecordBatch

    with spruce.Client(tmp_path / "d") as c:
        c.create_index("t", dimension=2, metric="euclidean")
        index = c.engine.index("t")
        index.upsert([("old", [1, 1]), ("mine", [1, 1])])
        start = index.seq
        index.upsert([("old", [2, 2])])  # a user's write after the job's start
        batch = RecordBatch.from_records(
            [spruce.records.Record(id=i, values=np.array([5, 5], np.float32)) for i in ("old", "mine", "new")])
        with index.transaction() as tx:
            n = tx.upsert("", batch, protect=(start, []))
            own = tx.seq
        assert n == 2  # "old" kept, "mine" replaced, "new" inserted
        got = {k: list(v.values) for k, v in c.Index("t").fetch(["old", "mine", "new"]).vectors.items()}
        assert got == {"old": [2, 2], "mine": [5, 5], "new": [5, 5]}
        with index.transaction() as tx:  # the job may overwrite its own earlier writes
            batch2 = RecordBatch.from_records([spruce.records.Record(id="mine", values=np.array([6, 6], np.float32))])
            assert tx.upsert("", batch2, protect=(start, [own])) == 1
        assert list(c.Index("t").fetch(["mine"]).vectors["mine"].values) == [6, 6]
        last = index.last_write()
        assert last["seq"] == index.seq and "a write outside any job" in last["by"]


# -- statuses behave like values -----------------------------------------------------------


@given(st.sampled_from(STATUSES), st.booleans())
def test_job_status_equality_sets_and_dicts(status: str, seed_spelling: bool) -> None:
    s = JobStatus(status)
    seed = _seed_spelling(status)
    assert s == status and s == seed
    assert (s != seed) is False
    assert s in {seed} and {seed: 1}[s] == 1  # the seed's poll loop, written with a set, ends
    assert hash(s) == hash(seed)
    other = next(x for x in STATUSES if x != status)
    assert s != other and s not in {_seed_spelling(other)}
    if seed_spelling:
        assert JobStatus(seed) == status


def test_the_seed_poll_loop_ends(tmp_path: Path) -> None:
    with spruce.Client(tmp_path / "d") as c:
        c.create_index("t", dimension=2)
        c.Index("t").upsert([("a", [1, 2])])
        job = c.Index("t").export_index(str(tmp_path / "out"), sync=False)
        deadline = time.monotonic() + 30
        while (d := c.describe_export(job.export_id)).status not in {"COMPLETED", "FAILED", "CANCELLED"}:
            assert time.monotonic() < deadline, d.status
            time.sleep(0.02)
        assert d.status == "Completed" and d.status == "COMPLETED"

