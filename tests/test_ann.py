"""The engine at scale: sealed files, background graphs, inverted indexes (issue 16).

Small on purpose (the graph threshold is lowered through SPRUCE_ANN_MIN_ROWS): the big
figures are bench/engine.py's. Every check compares with an exact answer computed here
by brute force, or with SQLite, the source of truth.
"""

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
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spruce
from selective_reference import FILTERS, make_records, ref_match
from spruce.engine import catalog
from spruce.engine.postings import Postings
from spruce.filters import compile_filter
from spruce.records import RecordBatch

DIM, N, CENTRES = 32, 4000, 20


@pytest.fixture(autouse=True)
def small_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRUCE_ANN_MIN_ROWS", "1000")
    monkeypatch.setenv("SPRUCE_ANN_QUIET_SECONDS", "0.05")


def clustered(n: int, seed: int) -> np.ndarray:
    """Records (or queries) around the same centres whatever the seed, as real embeddings are."""
    centres = np.random.default_rng(0).standard_normal((CENTRES, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    return (centres[rng.integers(0, CENTRES, n)] + 0.4 * rng.standard_normal((n, DIM))).astype(np.float32)


def load(idx: Any, vectors: np.ndarray, *, ns: str = "", start: int = 0, metadata: Any = None) -> None:
    for s in range(0, len(vectors), 1000):
        chunk = vectors[s:s + 1000]
        ids = [f"r{start + s + i}" for i in range(len(chunk))]
        md = metadata[s:s + 1000] if metadata is not None else [{"g": f"g{(start + s + i) % 10}", "n": (s + i) % 50}
                                                                 for i in range(len(chunk))]
        idx._index.upsert_batch(ns, RecordBatch(ids=ids, values=chunk, metadata=list(md)))


def exact_top(vectors: dict[str, np.ndarray], q: np.ndarray, k: int, keep: Any = None) -> list[str]:
    ids = [i for i in vectors if keep is None or keep(i)]
    m = np.stack([vectors[i] for i in ids])
    s = (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))
    return [ids[j] for j in np.argsort(-s, kind="stable")[:k]]


@pytest.fixture
def built(tmp_path: Path) -> Any:
    c = spruce.Client(tmp_path / "data")
    c.create_index(name="v", dimension=DIM, metric="cosine")
    idx = c.Index("v")
    vecs = clustered(N, 0)
    load(idx, vecs)
    assert idx.wait_for_index(120)
    assert idx.search_status()[""]["mode"] == "ann"
    yield c, idx, {f"r{i}": vecs[i] for i in range(N)}
    c.close()


def test_ann_recall_against_exact_and_scores_are_exact(built: Any) -> None:
    _, idx, vecs = built
    queries = clustered(100, 1)
    hits = 0
    for q in queries:
        ann = idx.query(vector=q.tolist(), top_k=10)
        exact = idx.query(vector=q.tolist(), top_k=10, exact=True)
        assert [m.id for m in exact.matches] == exact_top(vecs, q, 10)
        hits += len({m.id for m in ann.matches} & {m.id for m in exact.matches})
        for m in ann.matches:  # the graph only proposes; every score is computed exactly
            v = vecs[m.id]
            assert m.score == pytest.approx(float(v @ q / (np.linalg.norm(v) * np.linalg.norm(q))), abs=1e-5)
    assert hits / 1000 >= 0.97


def test_deletes_and_overwrites_never_resurface(built: Any) -> None:
    _, idx, vecs = built
    gone = [f"r{i}" for i in range(0, 400, 2)]
    idx.delete(ids=gone)
    moved = [f"r{i}" for i in range(1, 400, 2)]
    far = clustered(len(moved), 9) * -1.0
    idx.upsert([{"id": rid, "values": far[k].tolist()} for k, rid in enumerate(moved)])
    for rid in gone[:50] + moved[:50]:
        found = [m.id for m in idx.query(vector=vecs[rid].tolist(), top_k=10).matches]
        assert rid not in gone or rid not in found  # a deleted record is never found
        if rid in moved:  # an overwritten record is found only as its new self, scored on its new values
            for m in idx.query(vector=vecs[rid].tolist(), top_k=10, include_values=True).matches:
                if m.id == rid:
                    assert np.array_equal(np.asarray(m.values, np.float32), far[moved.index(rid)])
    assert idx.describe_index_stats().total_vector_count == N - len(gone)


def test_rows_written_after_the_graph_are_searched(built: Any) -> None:
    _, idx, _ = built
    fresh = clustered(10, 5)
    idx.upsert([{"id": f"new{i}", "values": v.tolist()} for i, v in enumerate(fresh)])
    for i, v in enumerate(fresh):  # not in any graph yet: found by the exact scan of newer rows
        assert idx.query(vector=v.tolist(), top_k=1).matches[0].id == f"new{i}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flt=FILTERS, seed=st.integers(0, 1000))
def test_filtered_queries_never_leave_the_filter(built_filtered: Any, flt: dict[str, Any], seed: int) -> None:
    idx, records = built_filtered
    q = np.random.default_rng(seed).standard_normal(4).astype(np.float32)
    allowed = {r["id"] for r in records if ref_match(r.get("metadata"), flt)}
    got = [m.id for m in idx.query(vector=q.tolist(), top_k=20, filter=flt).matches]
    assert set(got) <= allowed
    assert len(got) == min(20, len(allowed))
    assert idx.describe_index_stats(filter=flt).total_vector_count == len(allowed)


@pytest.fixture(scope="module")
def built_filtered(tmp_path_factory: pytest.TempPathFactory) -> Any:
    os.environ["SPRUCE_ANN_MIN_ROWS"] = "1000"
    c = spruce.Client(tmp_path_factory.mktemp("filtered") / "data")
    c.create_index(name="f", dimension=4, metric="cosine")
    idx = c.Index("f")
    records = make_records(np.random.default_rng(3), n=3000)
    idx.upsert(records)
    assert idx.wait_for_index(120)
    yield idx, records
    c.close()


@settings(max_examples=200, deadline=None)
@given(flt=FILTERS, seed=st.integers(0, 10_000))
def test_postings_agree_with_the_filter_language(flt: dict[str, Any], seed: int) -> None:
    records = make_records(np.random.default_rng(seed), n=60)
    metas = [r.get("metadata") for r in records]
    postings = Postings(lambda row: metas[row])
    postings.add_rows(0, metas[:30])
    compiled = compile_filter(flt)
    first = postings.mask(compiled.filter, 30)  # fields indexed from the first 30 rows...
    postings.add_rows(30, metas[30:])  # ...then kept up to date as rows are appended
    assert list(first) == [ref_match(m, flt) for m in metas[:30]]
    assert list(postings.mask(compiled.filter, 60)) == [ref_match(m, flt) for m in metas]
    assert list(postings.mask(compiled.filter, 60)) == list(compiled.mask(metas))


def test_reopen_maps_the_sealed_files_and_keeps_the_graph(tmp_path: Path) -> None:
    c = spruce.Client(tmp_path / "data")
    c.create_index(name="v", dimension=DIM, metric="cosine")
    vecs = clustered(3000, 2)
    load(c.Index("v"), vecs)
    assert c.Index("v").wait_for_index(120)
    before = [m.id for m in c.Index("v").query(vector=vecs[7].tolist(), top_k=5).matches]
    c.close()
    state = json.loads((tmp_path / "data" / "indexes" / "v" / "vectors" / "state.json").read_text())
    assert state["namespaces"][""]["rows"] == 3000 and state["namespaces"][""]["graph"]["rows"] == 3000
    c = spruce.Client(tmp_path / "data")
    idx = c.Index("v")
    # counts without SQLite's count(*): the state committed at the current write sequence has them
    assert idx._index.vector_files.live_counts(state["seq"]) == {"": 3000}
    assert idx.describe_index_stats().total_vector_count == 3000 and not idx._index.loaded
    assert catalog.namespace_counts(tmp_path / "data", "v") == {"": 3000}
    idx.query(vector=vecs[7].tolist(), top_k=5)
    assert idx._index._committed_seq == state["seq"]  # loaded from the files, not from SQLite
    assert idx.search_status()[""]["mode"] == "ann"  # no rebuild needed
    assert [m.id for m in idx.query(vector=vecs[7].tolist(), top_k=5).matches] == before
    idx.upsert([("new", vecs[0].tolist())])  # the state is now one write behind: SQLite counts
    assert idx._index.vector_files.live_counts(state["seq"] + 1) is None
    assert catalog.namespace_counts(tmp_path / "data", "v") == {"": 3001}
    c.close()


@pytest.mark.parametrize("damage", ["truncate-dense", "stale-seq", "drop-graph", "garble-graph"])
def test_damaged_or_stale_files_are_rebuilt_from_sqlite(tmp_path: Path, damage: str) -> None:
    c = spruce.Client(tmp_path / "data")
    c.create_index(name="v", dimension=DIM, metric="cosine")
    vecs = clustered(2000, 4)
    load(c.Index("v"), vecs)
    assert c.Index("v").wait_for_index(120)
    c.close()
    root = tmp_path / "data" / "indexes" / "v" / "vectors"
    state = json.loads((root / "state.json").read_text())
    ns_dir = next(p for p in root.iterdir() if p.is_dir())
    graph = ns_dir / state["namespaces"][""]["graph"]["file"]
    if damage == "truncate-dense":
        os.truncate(ns_dir / "dense.f32", 4 * DIM * 10)
    elif damage == "stale-seq":
        state["seq"] -= 1
        (root / "state.json").write_text(json.dumps(state))
    elif damage == "drop-graph":
        graph.unlink()
    else:
        graph.write_bytes(b"\0" * 100)
    c = spruce.Client(tmp_path / "data")
    idx = c.Index("v")
    for i in (0, 999, 1999):
        assert idx.query(vector=vecs[i].tolist(), top_k=1).matches[0].id == f"r{i}"
    assert idx.describe_index_stats().total_vector_count == 2000
    assert idx.wait_for_index(120) and idx.search_status()[""]["mode"] == "ann"
    c.close()


WRITER = """
import sys, numpy as np, spruce
from spruce.records import RecordBatch
c = spruce.Client(sys.argv[1])
idx = c.Index("v")
rng = np.random.default_rng(int(sys.argv[2]))
for step in range(10_000):
    ids = [f"r{int(x)}" for x in rng.integers(0, 3000, 200)]
    vals = rng.standard_normal((200, int(sys.argv[3]))).astype(np.float32)
    idx._index.upsert_batch("", RecordBatch(ids=ids, values=vals, metadata=[{"s": step}] * 200))
    if step % 3 == 0:
        idx.delete(ids=ids[:20])
    if step % 5 == 0:
        idx._index.persist()
    print(step, flush=True)
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_during_writes_and_commits_never_serves_wrong_results(tmp_path: Path, seed: int) -> None:
    data = tmp_path / "data"
    c = spruce.Client(data)
    c.create_index(name="v", dimension=DIM, metric="cosine")
    load(c.Index("v"), clustered(3000, seed))
    c.Index("v").wait_for_index(120)
    c.close()
    env = {**os.environ, "SPRUCE_ANN_QUIET_SECONDS": "0.01"}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(data), str(seed), str(DIM)], stdout=subprocess.PIPE,
                            env=env)
    assert proc.stdout is not None
    for _ in range(5 + seed * 4):
        proc.stdout.readline()
    time.sleep(0.01 * seed)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    c = spruce.Client(data)
    idx = c.Index("v")
    truth: dict[str, np.ndarray] = {}
    with idx._index.snapshot() as snap:
        for batch in snap.iter_batches("", batch_size=10_000):
            truth.update({rid: batch.values[i].copy() for i, rid in enumerate(batch.ids)})
    assert idx.describe_index_stats().total_vector_count == len(truth)
    for q in clustered(20, seed + 10):
        got = idx.query(vector=q.tolist(), top_k=10, exact=True, include_values=True)
        assert [m.id for m in got.matches] == exact_top(truth, q, 10)
        for m in got.matches:
            assert np.array_equal(np.asarray(m.values, np.float32), truth[m.id])
    for rid in list(truth)[:50]:
        assert np.array_equal(np.asarray(idx.fetch(ids=[rid]).vectors[rid].values, np.float32), truth[rid])
    c.close()


def test_export_snapshot_stays_exact_while_the_graph_changes(tmp_path: Path) -> None:
    c = spruce.Client(tmp_path / "data")
    c.create_index(name="v", dimension=DIM, metric="cosine")
    idx = c.Index("v")
    vecs = clustered(3000, 6)
    load(idx, vecs)
    snap = idx._index.snapshot()
    load(idx, clustered(3000, 7), start=3000)  # more rows, a new graph, deletes: none of it in the snapshot
    idx.delete(ids=[f"r{i}" for i in range(100)])
    assert idx.wait_for_index(120)
    seen: dict[str, np.ndarray] = {}
    for batch in snap.iter_batches("", batch_size=500):
        seen.update({rid: batch.values[i] for i, rid in enumerate(batch.ids)})
    snap.close()
    assert seen.keys() == {f"r{i}" for i in range(3000)}
    assert all(np.array_equal(seen[f"r{i}"], vecs[i]) for i in range(3000))
    c.close()


def test_a_broad_filter_goes_through_the_graph(built_filtered: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from spruce.engine import search

    idx, records = built_filtered
    taken: list[bool] = []
    real = search._ann

    def spy(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(search, "_ann", spy)
    flt = {"n": {"$gte": 1}}
    allowed = {r["id"] for r in records if ref_match(r.get("metadata"), flt)}
    assert len(allowed) > search.FILTER_EXACT_ROWS
    for seed in range(20):
        q = np.random.default_rng(seed).standard_normal(4).astype(np.float32)
        got = idx.query(vector=q.tolist(), top_k=10, filter=flt)
        exact = idx.query(vector=q.tolist(), top_k=10, filter=flt, exact=True)
        assert {m.id for m in got.matches} <= allowed and len(got.matches) == 10
        assert [m.id for m in exact.matches][:1] == [m.id for m in got.matches][:1]
    assert any(taken)


def test_overwrites_are_compacted_in_the_background(built: Any) -> None:
    _, idx, vecs = built
    rng = np.random.default_rng(11)
    for _ in range(2):  # kill 3,000 rows twice: more than half the rows are dead
        new = clustered(3000, int(rng.integers(100, 1000)))
        load(idx, new)
    assert idx.wait_for_index(120)
    data = idx._index._ns[""]
    assert data.nrows == len(data) == N  # rebuilt from SQLite without the dead rows
    for i in (0, 2999, 3999):
        assert idx.query(vector=new[i].tolist() if i < 3000 else vecs[f"r{i}"].tolist(), top_k=1).matches[0].id == f"r{i}"


def test_rest_query_exact_and_search_mode(built: Any) -> None:
    import httpx

    from serverutil import start_server

    c, _, vecs = built
    with start_server(c._engine, api_key="k") as srv:
        h = srv.headers()
        stats = httpx.post(f"{srv.index_host('v')}/describe_index_stats", json={}, headers=h).json()
        assert stats["namespaces"][""]["searchMode"] == "ann"
        body = {"vector": vecs["r5"].tolist(), "topK": 3, "exact": True}
        got = httpx.post(f"{srv.index_host('v')}/query", json=body, headers=h).json()
        assert got["matches"][0]["id"] == "r5"
        assert httpx.post(f"{srv.index_host('v')}/query", json={**body, "exact": "yes"}, headers=h).status_code == 400


def test_a_state_from_before_counts_were_kept_still_loads(tmp_path: Path) -> None:
    """Files committed by an older spruce (no "live" counts in state.json) are checked against
    SQLite's counts instead, and served: an upgrade does not cost a rebuild of every graph."""
    c = spruce.Client(tmp_path / "data")
    c.create_index(name="v", dimension=DIM, metric="cosine")
    load(c.Index("v"), clustered(2000, 6))
    assert c.Index("v").wait_for_index(120)
    c.close()
    path = tmp_path / "data" / "indexes" / "v" / "vectors" / "state.json"
    state = json.loads(path.read_text())
    for ent in state["namespaces"].values():
        del ent["live"]
    path.write_text(json.dumps(state))
    c = spruce.Client(tmp_path / "data")
    idx = c.Index("v")
    assert idx.describe_index_stats().total_vector_count == 2000  # SQLite's count(*), as before
    idx.query(vector=clustered(1, 7)[0].tolist(), top_k=3)
    assert idx._index._committed_seq == state["seq"] and idx.search_status()[""]["mode"] == "ann"
    c.close()
