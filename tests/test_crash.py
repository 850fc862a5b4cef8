"""kill -9 in the middle of an export or an import, then reopen the data folder.

An interrupted export is re-run from a fresh snapshot (or failed, by policy) and never leaves a
manifest over partial data; an interrupted import resumes after its last committed file and ends
identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import spruce
from spruce.archive import ArchiveReader, verify_archive
from spruce.errors import FailedPrecondition
from spruce.storage import open_store

N, DIM, PART = 50_000, 64, 500
COUNTS = {"": 30_000, "second": 20_000}

EXPORT_CODE = """
import sys, spruce
c = spruce.Client(sys.argv[1])
c.Index("big").export_index(sys.argv[2], format=sys.argv[3], part_max_records=int(sys.argv[4]), sync=True)
"""

IMPORT_CODE = """
import sys, spruce
c = spruce.Client(sys.argv[1])
c.Index("restored").upsert_from_file(sys.argv[2], sync=True)
"""


def dump(idx: Any) -> dict[str, dict[str, tuple]]:
    out: dict[str, dict[str, tuple]] = {}
    with idx._index.snapshot() as snap:
        for ns in snap.namespaces():
            recs = out.setdefault(ns, {})
            for batch in snap.iter_batches(ns, batch_size=10_000):
                md = [None if m is None else json.dumps(m, sort_keys=True) for m in batch.metadata]
                for i, rid in enumerate(batch.ids):
                    recs[rid] = (batch.values[i].tobytes(), md[i])
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A data folder holding index 'big': 50k records, 64-d, in two namespaces (built once)."""
    data = tmp_path_factory.mktemp("crash-template") / "data"
    c = spruce.Client(data)
    c.create_index("big", dimension=DIM, metric="dotproduct")
    idx = c.Index("big")
    rng = np.random.default_rng(7)
    for ns, n in COUNTS.items():
        x = rng.standard_normal((n, DIM)).astype(np.float32)
        for start in range(0, n, 10_000):
            idx.upsert([{"id": f"{ns}-{i:06d}", "values": x[i], "metadata": {"i": i, "ns": ns}}
                        for i in range(start, min(n, start + 10_000))], namespace=ns)
    c.engine.close()
    return data


@pytest.fixture
def data(template: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "data"
    shutil.copytree(template, dest)
    return dest


def job_files(data: Path) -> list[dict[str, Any]]:
    out = []
    for p in (data / "jobs").glob("*.json"):
        try:
            out.append(json.loads(p.read_bytes()))
        except (OSError, ValueError):  # pragma: no cover - replaced atomically, but be safe
            continue
    return out


def kill_when(proc: subprocess.Popen, data: Path, ready, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the job files until ``ready(job)``, then SIGKILL the process; return that job's state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the worker ended by itself (rc={proc.returncode}) before it could be killed")
        for job in job_files(data):
            if job["status"] == "InProgress" and ready(job):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return job
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the job never got going")


def start(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def archive_records(root: Path) -> dict[str, dict[str, tuple]]:
    reader = ArchiveReader(open_store(str(root)))
    out: dict[str, dict[str, tuple]] = {}
    for ns in reader.manifest.namespaces:
        recs = out.setdefault(ns.name, {})
        for batch in reader.iter_batches(ns, batch_size=10_000):
            for i, rid in enumerate(batch.ids):
                md = batch.metadata[i]
                recs[rid] = (batch.values[i].tobytes(), None if md is None else json.dumps(md, sort_keys=True))
    return out


def kill_export(data: Path, dest: Path, fmt: str = "jsonl.gz") -> dict[str, Any]:
    proc = start(EXPORT_CODE, str(data), str(dest), fmt, str(PART))
    job = kill_when(proc, data, lambda j: j["kind"] == "export" and j["records_done"] > 0
                    and any(dest.rglob("part-*")))
    state = json.loads((data / "jobs" / f"{job['id']}.json").read_bytes())
    assert state["status"] == "InProgress" and 0 < state["records_done"] < N
    # partial data is there, but nothing claims to be an archive
    assert list(dest.rglob("part-*")), "killed before any part was written"
    assert not (dest / "manifest.json").exists()
    return state


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet"])
def test_killed_export_is_rerun_from_a_fresh_snapshot(data: Path, tmp_path: Path, fmt: str) -> None:
    dest = tmp_path / "archive"
    state = kill_export(data, dest, fmt)
    stale = dest / "__default__" / ".spruce-tmp-part-00099.jsonl.gz.dead0000"  # as a kill mid-part leaves
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half a part")

    seen: list[bytes] = []
    stop = threading.Event()

    def watch() -> None:  # every manifest that ever appears must be the final, complete one
        while not stop.is_set():
            try:
                raw = (dest / "manifest.json").read_bytes()
            except FileNotFoundError:
                time.sleep(0.001)
                continue
            if not seen or seen[-1] != raw:
                seen.append(raw)
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    c = spruce.Client(data, resume_jobs=True)  # opted in: the interrupted export starts again at once
    try:
        d = c.wait_export(state["id"], timeout=120)
        time.sleep(0.01)
        stop.set()
        watcher.join()
        assert d.status == "Completed", d.error
        assert d.records_exported == N and d.percent_complete == 100.0
        final = (dest / "manifest.json").read_bytes()
        assert seen == [final]
        after = json.loads((data / "jobs" / f"{state['id']}.json").read_bytes())
        assert after["attempts"] == 2 and any("resumed" in n for n in after["notes"])
        report = verify_archive(open_store(str(dest)))
        assert report.ok and report.records_checked == N
        assert report.orphans == []  # the crashed run's parts were replaced or removed
        assert not list(dest.rglob(".spruce-tmp-*"))  # and so were its half-written temp files
        assert archive_records(dest) == dump(c.Index("big"))
        assert json.loads(final)["export_id"] == state["id"]
    finally:
        stop.set()
        c.jobs.shutdown()
        c.engine.close()


def test_killed_export_stays_interrupted_until_asked(data: Path, tmp_path: Path) -> None:
    dest = tmp_path / "archive"
    state = kill_export(data, dest)
    c = spruce.Client(data)  # opening the folder resumes nothing
    try:
        d = c.describe_export(state["id"])
        assert d.status == "Interrupted" and "stopped before it finished" in d.reason
        assert not c.jobs.is_active(state["id"])
        time.sleep(0.3)
        assert not (dest / "manifest.json").exists()
        assert json.loads((data / "jobs" / f"{state['id']}.json").read_bytes())["attempts"] == 1
        d = c.cancel_export(state["id"])
        assert d.status == "Cancelled"
        with pytest.raises(FailedPrecondition, match="Cancelled"):
            c.jobs.resume(state["id"])
    finally:
        c.jobs.shutdown()
        c.engine.close()


@pytest.mark.parametrize("how", ["auto", "manual"])
def test_killed_import_resumes_to_the_same_result(data: Path, tmp_path: Path, how: str) -> None:
    archive = tmp_path / "archive"
    c = spruce.Client(data)
    c.Index("big").export_index(str(archive), part_max_records=PART, sync=True)
    files = sum(len(ns["files"]) for ns in json.loads((archive / "manifest.json").read_text())["namespaces"])
    assert files == N // PART
    c.engine.close()

    proc = start(IMPORT_CODE, str(data), str(archive))
    job = kill_when(proc, data, lambda j: j["kind"] == "import" and j["files_done"] >= 3)
    state = json.loads((data / "jobs" / f"{job['id']}.json").read_bytes())
    assert state["status"] == "InProgress" and 3 <= state["files_done"] < files

    c = spruce.Client(data, resume_jobs=how == "auto")
    try:
        if how == "auto":
            d = c.wait_import(state["id"], timeout=120)
        else:
            assert not c.jobs.is_active(state["id"]) and c.describe_import(state["id"]).status == "Interrupted"
            c.jobs.resume(state["id"])
            d = c.describe_import(state["id"])
        assert d.status == "Completed", d.error
        # counted once: files committed before the kill are not applied or counted again
        assert (d.records_imported, d.files_done, d.files_total) == (N, files, files)
        assert d.percent_complete == 100.0
        assert any("resumed" in n for n in d.notes) and d.attempts == 2 and len(d.resumed_at) == 1
        c.Index("reference").upsert_from_file(str(archive))
        restored = dump(c.Index("restored"))
        assert restored == dump(c.Index("reference"))
        assert restored == dump(c.Index("big"))
        with pytest.raises(FailedPrecondition):
            c.jobs.resume(state["id"])
    finally:
        c.jobs.shutdown()
        c.engine.close()
