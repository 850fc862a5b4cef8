"""A cancelled or failed export removes the parts and temporary files it wrote, on a local folder
and on S3 alike; a killed one leaves them until it is resumed or cancelled. Files that are not the
export's, and a committed archive, are never touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import spruce
from spruce.archive.naming import PART_PATH_RE
from spruce.storage import open_store

N, DIM = 30_000, 32


def fill(c: spruce.Client, name: str = "src", namespaces: tuple[str, ...] = ("", "b")) -> None:
    c.create_index(name, dimension=DIM)
    x = np.random.default_rng(1).standard_normal((N, DIM)).astype(np.float32)
    per = N // len(namespaces)
    for k, ns in enumerate(namespaces):
        c.Index(name).upsert([{"id": f"r{i}", "values": x[i]} for i in range(k * per, (k + 1) * per)],
                             namespace=ns)


def parts(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and PART_PATH_RE.fullmatch(str(p.relative_to(folder))))


def test_a_cancelled_export_removes_its_parts_and_keeps_other_files(tmp_path: Path) -> None:
    dest = tmp_path / "arc"
    dest.mkdir()
    (dest / "README.txt").write_text("mine")
    with spruce.Client(tmp_path / "data") as c:
        fill(c)
        e = c.Index("src").export_index(str(dest), part_max_records=200, compression_level=3)
        while c.describe_export(e.export_id).bytes_written == 0:
            assert c.describe_export(e.export_id).status in ("Pending", "InProgress")
            time.sleep(0.001)
        c.cancel_export(e.export_id)
        d = c.wait_export(e.export_id, timeout=60)
        assert d.status == "Cancelled" and d.error == "cancelled by the user"
        notes = c.jobs.describe(e.export_id).notes
    assert any("removed" in n and "unfinished archive" in n for n in notes), notes
    assert parts(dest) == [] and not (dest / "manifest.json").exists()
    assert sorted(p.name for p in dest.iterdir()) == ["README.txt"]  # no empty namespace folders either
    assert not [p for p in dest.rglob(".*")]  # no temp files


def test_a_failed_export_removes_what_it_wrote(tmp_path: Path) -> None:
    """A real failure half-way: namespace "b"'s folder name is taken by a file of the user's."""
    dest = tmp_path / "arc"
    dest.mkdir()
    (dest / "b").write_text("a file where the export wants a folder")
    with spruce.Client(tmp_path / "data") as c:
        fill(c)
        e = c.Index("src").export_index(str(dest), part_max_records=1000)
        d = c.wait_export(e.export_id, timeout=60)
        assert d.status == "Failed" and "b" in d.error
    assert parts(dest) == [] and (dest / "b").read_text().startswith("a file")
    assert sorted(p.name for p in dest.iterdir()) == ["b"]


def test_a_committed_archive_is_never_removed(tmp_path: Path) -> None:
    dest = tmp_path / "arc"
    with spruce.Client(tmp_path / "data") as c:
        fill(c)
        assert c.Index("src").export_index(str(dest), sync=True).status == "Completed"
        before = parts(dest)
        e = c.Index("src").export_index(str(dest))  # no overwrite: refused, and it must not clean up
        assert c.wait_export(e.export_id, timeout=60).status == "Failed"
    assert parts(dest) == before and (dest / "manifest.json").exists()


KILLED_EXPORT = """
import sys, spruce
c = spruce.Client(sys.argv[1])
c.Index("src").export_index(sys.argv[2], part_max_records=100, compression_level=3, sync=True)
"""


def test_a_killed_export_keeps_its_parts_until_it_is_cancelled(tmp_path: Path) -> None:
    data, dest = tmp_path / "data", tmp_path / "arc"
    with spruce.Client(data) as c:
        fill(c)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(data), str(dest)])
    deadline = time.monotonic() + 60
    while len(parts(dest)) < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = parts(dest)
    assert left and not (dest / "manifest.json").exists()
    with spruce.Client(data) as c:
        (job,) = c.list_exports()
        assert job.status == "Interrupted" and parts(dest) == left  # kept until resumed or cancelled
        d = c.cancel_export(job.export_id)
        assert d.status == "Cancelled"
    assert parts(dest) == [] and not dest.exists()
    state = json.loads((data / "jobs" / f"{job.export_id}.json").read_bytes())
    assert any("unfinished archive" in n for n in state["notes"])


def test_a_cancelled_s3_export_leaves_no_objects(s3_server, tmp_path: Path) -> None:
    bucket = "spruce-cleanup"
    s3_server.create_bucket(bucket)
    uri = f"s3://{bucket}/c-{uuid.uuid4().hex[:8]}"
    keep = open_store(f"s3://{bucket}/", **s3_server.options())
    keep.put_bytes("unrelated.txt", b"keep me")
    with spruce.Client(tmp_path / "data") as c:
        fill(c)
        e = c.Index("src").export_index(uri, part_max_records=200, storage_options=s3_server.options())
        while c.describe_export(e.export_id).bytes_written == 0:
            assert c.describe_export(e.export_id).status in ("Pending", "InProgress")
            time.sleep(0.001)
        c.cancel_export(e.export_id)
        assert c.wait_export(e.export_id, timeout=60).status == "Cancelled"
    assert list(open_store(uri, **s3_server.options()).list()) == []
    assert keep.get_bytes("unrelated.txt") == b"keep me"
    assert not [k for k in s3_server.pending_uploads(bucket) if uri.rsplit("/", 1)[-1] in k]


def test_cancelling_an_interrupted_s3_export_removes_its_objects(s3_server, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = "spruce-cleanup"
    s3_server.create_bucket(bucket)
    uri = f"s3://{bucket}/i-{uuid.uuid4().hex[:8]}"
    with spruce.Client(tmp_path / "data") as c:
        fill(c)
        e = c.Index("src").export_index(uri, part_max_records=200, storage_options=s3_server.options())
        while c.describe_export(e.export_id).bytes_written < 50_000:
            time.sleep(0.001)
    # closed: the job is Interrupted and its objects are still there
    assert list(open_store(uri, **s3_server.options()).list())
    for k, v in s3_server.env().items():  # a new process: credentials come from its environment
        monkeypatch.setenv(k, v)
    with spruce.Client(tmp_path / "data") as c:
        assert c.describe_export(e.export_id).status == "Interrupted"
        assert c.cancel_export(e.export_id).status == "Cancelled"
    assert list(open_store(uri, **s3_server.options()).list()) == []
