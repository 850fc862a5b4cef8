"""Crash safety: an acknowledged upsert survives ``kill -9``; a batch is never half applied.
And one process owns a data folder at a time."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import spruce
from spruce.engine import DataDirLocked

DIM = 32
BATCH = 400
HOT = 50  # ids every batch overwrites: after a crash they must all carry one batch's version

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import spruce

    data, start, dim, size, hot = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    client = spruce.Client(data_dir=data)
    if not client.has_index("dur"):
        client.create_index("dur", dimension=dim, metric="dotproduct")
    idx = client.Index("dur")
    print("ready", flush=True)
    b = start
    while True:
        values = np.random.default_rng(b).standard_normal((size, dim)).astype(np.float32)
        records = [{"id": f"b{b:05d}-{i:04d}", "values": values[i], "metadata": {"batch": b, "i": i}}
                   for i in range(size)]
        records += [{"id": f"hot-{j:03d}", "values": values[j], "metadata": {"batch": b}} for j in range(hot)]
        idx.upsert(records)
        print(b, flush=True)
        b += 1
    """
)


def batch_values(b: int) -> np.ndarray:
    return np.random.default_rng(b).standard_normal((BATCH, DIM)).astype(np.float32)


def run_and_kill(data_dir, start: int, acks_before_kill: int, delay: float) -> list[int]:
    """Start the writer, SIGKILL it after some acknowledged batches; return the acknowledged ones."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir), str(start), str(DIM), str(BATCH), str(HOT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acked: list[int] = []
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        while len(acked) < acks_before_kill:
            line = proc.stdout.readline()
            assert line, f"writer died: {proc.stderr.read()}"
            acked.append(int(line))
        time.sleep(delay)  # land the kill somewhere inside a later upsert
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # lines written before the kill are acknowledgements too
        acked.extend(int(line) for line in proc.stdout.read().split())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return acked


def check_folder(data_dir, acked: list[int]) -> int:
    """Every acknowledged batch is whole and exact; any other batch is whole or absent."""
    client = spruce.Client(data_dir=data_dir)
    try:
        idx = client.Index("dur")
        ids = [x for page in idx.list(limit=1000) for x in page]
        per_batch: dict[int, int] = {}
        for rid in ids:
            if rid.startswith("b"):
                b = int(rid[1:6])
                per_batch[b] = per_batch.get(b, 0) + 1
        assert all(n == BATCH for n in per_batch.values()), "a batch was partially applied"
        assert set(acked) <= set(per_batch), "an acknowledged batch was lost"
        last = max(per_batch)
        assert set(per_batch) == set(range(min(per_batch), last + 1))
        assert last - max(acked) <= 1  # at most the batch in flight at the kill committed, unacknowledged
        for b in (acked[0], acked[-1], last):
            got = idx.fetch([f"b{b:05d}-{i:04d}" for i in range(BATCH)]).vectors
            expect = batch_values(b)
            for i in (0, 1, BATCH // 2, BATCH - 1):
                v = got[f"b{b:05d}-{i:04d}"]
                assert np.float32(v.values).tobytes() == expect[i].tobytes()
                assert v.metadata == {"batch": b, "i": i}
        # the overwritten ids all carry the last committed batch: no half-applied overwrite
        hot = idx.fetch([f"hot-{j:03d}" for j in range(HOT)]).vectors
        assert len(hot) == HOT and {v.metadata["batch"] for v in hot.values()} == {last}
        expect = batch_values(last)
        assert all(np.float32(hot[f"hot-{j:03d}"].values).tobytes() == expect[j].tobytes() for j in range(HOT))
        # the search matrix rebuilt on open agrees with the store
        top = idx.query(vector=expect[3], top_k=1, filter={"batch": last, "i": 3}).matches
        assert [m.id for m in top] == [f"b{last:05d}-0003"]
        assert idx.describe_index_stats().total_vector_count == len(per_batch) * BATCH + HOT
        return last
    finally:
        client.engine.close()


def test_acknowledged_batches_survive_sigkill_and_batches_are_atomic(tmp_path):
    data = tmp_path / "data"
    start = 0
    for acks, delay in ((3, 0.0), (5, 0.013), (2, 0.031)):  # crash repeatedly on the same folder
        acked = run_and_kill(data, start, acks, delay)
        assert len(acked) >= acks
        last = check_folder(data, acked)
        start = last + 1


LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time
    import spruce
    spruce.Client(data_dir=sys.argv[1])
    print("ready", flush=True)
    time.sleep(120)
    """
)

LOCK_PROBE = textwrap.dedent(
    """
    import sys
    import spruce
    from spruce.engine import DataDirLocked
    try:
        spruce.Client(data_dir=sys.argv[1])
    except DataDirLocked as exc:
        print("locked:", exc)
        sys.exit(3)
    print("opened")
    """
)


def test_data_folder_is_locked_to_one_process(tmp_path):
    data = tmp_path / "data"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(data)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        probe = subprocess.run([sys.executable, "-c", LOCK_PROBE, str(data)], capture_output=True, text=True,
                               timeout=60)
        assert probe.returncode == 3, probe.stdout + probe.stderr
        assert "in use" in probe.stdout and str(data) in probe.stdout
        with pytest.raises(DataDirLocked):
            spruce.Client(data_dir=data)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        # the lock dies with its owner: no stale lock file to clean up by hand
        probe = subprocess.run([sys.executable, "-c", LOCK_PROBE, str(data)], capture_output=True, text=True,
                               timeout=60)
        assert probe.returncode == 0 and probe.stdout.strip() == "opened", probe.stdout + probe.stderr
        client = spruce.Client(data_dir=data)
        client.create_index("after", dimension=2)
        client.engine.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()


def test_the_wal_is_copied_back_by_the_background_checkpointer(tmp_path):
    """The writer leaves checkpoints to a background thread: committed pages reach the main
    database file without the writer checkpointing (its own backstop is far above this)."""
    from spruce.engine import Engine

    eng = Engine(tmp_path / "data")
    try:
        idx = eng.create_index("ck", dimension=64, metric="cosine")
        idx._checkpointer.threshold = 1
        db = os.path.join(idx.path, "index.db")
        before = os.path.getsize(db)
        values = np.random.default_rng(0).standard_normal((2000, 64)).astype(np.float32)
        idx.upsert([{"id": f"r{i}", "values": values[i]} for i in range(2000)])
        deadline = time.monotonic() + 30
        while os.path.getsize(db) <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.getsize(db) > before + 2000 * 64 * 4 // 2
        assert idx.fetch(["r1999"]).vectors["r1999"].values == values[1999].tolist()
    finally:
        eng.close()


def test_a_wal_grown_by_a_bulk_write_is_cut_back_when_it_restarts(tmp_path, monkeypatch):
    """A WAL grown past WAL_KEEP_BYTES by a bulk import does not keep that size on disk: once
    checkpointed, the next write restarts it and truncates it back to the limit."""
    from spruce.engine import Engine, store

    monkeypatch.setattr(store, "WAL_KEEP_BYTES", 256 << 10)
    eng = Engine(tmp_path / "data")
    try:
        idx = eng.create_index("wal", dimension=256, metric="cosine")
        idx._checkpointer.threshold = 1 << 40  # no background checkpoint: the test decides when
        wal = os.path.join(idx.path, "index.db-wal")
        values = np.random.default_rng(0).standard_normal((3000, 256)).astype(np.float32)
        for a in range(0, 3000, 1000):
            idx.upsert([{"id": f"r{i}", "values": values[i]} for i in range(a, a + 1000)])
        grown = os.path.getsize(wal)
        assert grown > 2 << 20
        with sqlite3.connect(os.path.join(idx.path, "index.db")) as other:
            other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        idx.upsert([{"id": "one-more", "values": values[0]}])
        assert os.path.getsize(wal) <= 256 << 10 < grown
        assert idx.fetch(["r2999", "one-more"]).vectors["r2999"].values == values[2999].tolist()
    finally:
        eng.close()
