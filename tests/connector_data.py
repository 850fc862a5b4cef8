"""The data set every connector test moves: awkward ids, three namespaces (the default one
included), every metadata type, sparse values, and float32 values compared bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DIM = 8
IDS = ["007", "7", "ünïcødé ☃", "6ba7b811-9dad-11d1-80b4-00c04fd430c8", "a b/c?d#e", "x" * 100]
NAMESPACES = ["", "films", "Ödd namespace!"]


def records(namespace: str, *, sparse: bool = True, seed: int = 0, n_extra: int = 20) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed + len(namespace))
    out = []
    ids = IDS + [f"{namespace or 'd'}-{i:04d}" for i in range(n_extra)]
    for i, rid in enumerate(ids):
        values = rng.standard_normal(DIM).astype(np.float32)
        rec: dict[str, Any] = {"id": rid, "values": values.tolist(), "metadata": {
            "title": f"record {rid}", "year": 1990 + i, "score": float(np.float32(i / 7)), "big": 2**53 - i,
            "negative": -i, "flag": i % 2 == 0, "tags": ["a", f"t{i}"], "empty_string": "",
        }}
        if i % 3 == 1:
            rec["metadata"] = None  # a record without metadata
        if sparse and i % 2 == 0:
            rec["sparse_values"] = {"indices": [i, 100 + i, 70000], "values": [0.5, float(np.float32((i + 1) / 3)), -1.25]}
        out.append(rec)
    return out


def fill(client: Any, name: str, *, metric: str = "dotproduct", sparse: bool = True) -> dict[str, list[dict]]:
    """Create index ``name`` with the data set; return it per namespace."""
    client.create_index(name, dimension=DIM, metric=metric)
    idx = client.Index(name)
    data = {}
    for ns in NAMESPACES:
        data[ns] = records(ns, sparse=sparse)
        idx.upsert(vectors=data[ns], namespace=ns)
    return data


def assert_same(client: Any, a: str, b: str) -> None:
    """Indexes ``a`` and ``b`` hold exactly the same records: ids, float32 bits, sparse, metadata."""
    ia, ib = client.Index(a), client.Index(b)
    sa, sb = ia.describe_index_stats(), ib.describe_index_stats()
    assert {k: v.vector_count for k, v in sa.namespaces.items()} == {k: v.vector_count for k, v in sb.namespaces.items()}
    for ns in sa.namespaces:
        ids = _all_ids(ia, ns)
        assert sorted(ids) == sorted(_all_ids(ib, ns))
        for start in range(0, len(ids), 100):
            chunk = ids[start:start + 100]
            fa, fb = ia.fetch(chunk, namespace=ns).vectors, ib.fetch(chunk, namespace=ns).vectors
            for rid in chunk:
                ra, rb = fa[rid], fb[rid]
                assert np.asarray(ra.values, np.float32).tobytes() == np.asarray(rb.values, np.float32).tobytes(), rid
                assert (ra.sparse_values is None) == (rb.sparse_values is None), rid
                if ra.sparse_values is not None:
                    assert list(ra.sparse_values.indices) == list(rb.sparse_values.indices), rid
                    assert np.asarray(ra.sparse_values.values, np.float32).tobytes() == \
                        np.asarray(rb.sparse_values.values, np.float32).tobytes(), rid
                assert (ra.metadata or None) == (rb.metadata or None), rid
                for k, v in (ra.metadata or {}).items():
                    assert type(v) is type(rb.metadata[k]), (rid, k)


def _all_ids(idx: Any, ns: str) -> list[str]:
    out: list[str] = []
    token = None
    while True:
        page = idx.list_paginated(namespace=ns, limit=100, pagination_token=token)
        out += [v.id for v in page.vectors]
        token = page.pagination.next if page.pagination else None
        if not token:
            return out


# -- driving the CLI: shared by every connector test ---------------------------------------
CLI = [sys.executable, "-c", "from spruce.cli import main; main()"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}


def cli(*args: str, data: str) -> subprocess.CompletedProcess:
    """Run ``spruce --data DATA ARGS...`` in a new process, as an operator would."""
    return subprocess.run([*CLI, "--data", data, *args], capture_output=True, text=True, env=_env(), timeout=300)


def big(client: Any, name: str, n: int) -> None:
    """An index of ``n`` dense records, large enough that a copy takes many pages."""
    client.create_index(name, dimension=DIM, metric="euclidean")
    rng = np.random.default_rng(3)
    idx = client.Index(name)
    for start in range(0, n, 1000):
        idx.upsert([(f"r{i:06d}", rng.standard_normal(DIM).astype(np.float32).tolist(), {"i": i})
                    for i in range(start, min(n, start + 1000))])


def kill_midway(data: str, args: list[str], *, after: int = 2000) -> str:
    """Start ``spruce copy`` in a new process and SIGKILL it once its job file says ``after``
    records were copied (and not all of them); returns the job id."""
    jobs_dir = os.path.join(data, "jobs")
    before = set(os.listdir(jobs_dir)) if os.path.isdir(jobs_dir) else set()
    proc = subprocess.Popen([*CLI, "--data", data, *args], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for name in os.listdir(jobs_dir) if os.path.isdir(jobs_dir) else []:
            if name.startswith("cpy-") and name.endswith(".json") and name not in before:
                try:
                    state = json.loads(Path(jobs_dir, name).read_text())
                except ValueError:
                    continue  # caught mid-write
                if state["records_done"] >= after:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    assert state["records_done"] < state["records_total"], "the copy finished before the kill"
                    return name[:-5]
        if proc.poll() is not None:
            raise AssertionError(f"the copy ended (exit {proc.returncode}) before it could be killed")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the copy never got going")


def kill_reading_then_resume(data: str, uri: str, n: int) -> None:
    """Kill a copy from ``uri`` into a new index ``back`` midway, resume it, and check that
    ``back`` holds exactly what ``src`` holds (nothing skipped, nothing doubled)."""
    import spruce

    job = kill_midway(data, ["copy", uri, "back"])
    p = cli("jobs", "resume", job, data=data)
    assert p.returncode == 0, p.stderr
    with spruce.Client(data_dir=data) as c:
        assert c.Index("back").describe_index_stats().total_vector_count == n
        assert_same(c, "src", "back")


def assert_resume_refused(job: str, data: str) -> None:
    """The resume of ``job`` is refused because its target changed, and the job is Superseded."""
    p = cli("jobs", "resume", job, data=data)
    assert p.returncode == 1 and "changed after this job stopped" in p.stderr, p.stderr
    p = cli("jobs", "show", job, "--json", data=data)
    assert json.loads(p.stdout)["status"] == "Superseded"
