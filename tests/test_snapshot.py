"""Snapshots are exact and isolated while writers run; readers never see a torn record or batch."""

from __future__ import annotations

import random
import threading
import time
import tracemalloc

import numpy as np
import pytest

import spruce
from spruce.engine import Index as EngineIndex
from spruce.engine import Snapshot

DIM = 16
NAMESPACES = ("", "alpha", "beta")
PER_NS = 1500


@pytest.fixture
def client(tmp_path):
    c = spruce.Client(data_dir=tmp_path / "data")
    yield c
    c.engine.close()


def fill(idx, per_ns: int = PER_NS, dim: int = DIM) -> None:
    rng = np.random.default_rng(0)
    for ns in NAMESPACES:
        values = rng.standard_normal((per_ns, dim)).astype(np.float32)
        records = [{"id": f"{ns or 'd'}-{i:05d}", "values": values[i],
                    "metadata": {"i": i, "ns": ns, "tags": ["x", f"m{i % 3}"]}} for i in range(per_ns)]
        for i in range(0, per_ns, 7):
            records[i]["sparse_values"] = {"indices": [i, i + 1], "values": [0.5, -0.25]}
        idx.upsert(records, namespace=ns, batch_size=500)


def live_state(idx) -> dict[str, dict[str, tuple]]:
    """The whole index content through the public API: ns -> id -> (value bytes, sparse, metadata)."""
    state: dict[str, dict[str, tuple]] = {}
    for ns in NAMESPACES:
        ids = [x for page in idx.list(namespace=ns, limit=1000) for x in page]
        got: dict[str, tuple] = {}
        for start in range(0, len(ids), 1000):
            for rid, v in idx.fetch(ids[start:start + 1000], namespace=ns).vectors.items():
                sp = None if v.sparse_values is None else (tuple(v.sparse_values.indices),
                                                           np.float32(v.sparse_values.values).tobytes())
                got[rid] = (np.float32(v.values).tobytes(), sp, v.metadata)
        state[ns] = got
    return state


def snapshot_state(snap: Snapshot, batch_size: int, sizes: list[int]) -> dict[str, dict[str, tuple]]:
    state: dict[str, dict[str, tuple]] = {}
    counts = snap.namespaces()
    for ns in NAMESPACES:
        got: dict[str, tuple] = {}
        last = ""
        for batch in snap.iter_batches(ns, batch_size=batch_size):
            sizes.append(len(batch))
            assert batch.values.dtype == np.float32 and batch.values.shape == (len(batch), DIM)
            assert batch.ids == sorted(batch.ids) and batch.ids[0] > last  # id order across batches
            last = batch.ids[-1]
            for k, rec in enumerate(batch.records()):
                sp = None if rec.sparse_values is None else (tuple(rec.sparse_values.indices.tolist()),
                                                             rec.sparse_values.values.tobytes())
                got[rec.id] = (batch.values[k].tobytes(), sp, rec.metadata)
            time.sleep(0.001)  # give the writers time to interleave
        assert counts.get(ns, 0) == len(got)
        state[ns] = got
    return state


class Writers:
    """Threads doing upserts (new and overwriting), updates and deletes until stopped."""

    def __init__(self, idx, n: int = 3) -> None:
        self.idx, self.stop, self.errors, self.ops = idx, threading.Event(), [], 0
        self.threads = [threading.Thread(target=self.run, args=(k,)) for k in range(n)]

    def run(self, k: int) -> None:
        rnd = random.Random(k)
        rng = np.random.default_rng(100 + k)
        try:
            while not self.stop.is_set():
                ns = rnd.choice(NAMESPACES)
                op = rnd.random()
                if op < 0.4:
                    ids = [f"{ns or 'd'}-{rnd.randrange(PER_NS + 500):05d}" for _ in range(50)]
                    ids = list(dict.fromkeys(ids))
                    vals = rng.standard_normal((len(ids), DIM)).astype(np.float32)
                    self.idx.upsert([{"id": i, "values": vals[j], "metadata": {"w": k}}
                                     for j, i in enumerate(ids)], namespace=ns)
                elif op < 0.7:
                    rid = f"{ns or 'd'}-{rnd.randrange(PER_NS):05d}"
                    try:
                        self.idx.update(id=rid, values=rng.standard_normal(DIM).astype(np.float32),
                                        set_metadata={"updated": k}, namespace=ns)
                    except spruce.errors.NotFound:
                        pass
                elif op < 0.95:
                    self.idx.delete(ids=[f"{ns or 'd'}-{rnd.randrange(PER_NS):05d}" for _ in range(20)],
                                    namespace=ns)
                else:
                    self.idx.delete(filter={"i": {"$lt": rnd.randrange(50)}}, namespace=ns)
                self.ops += 1
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.errors.append(exc)

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def test_snapshot_is_exact_while_writers_run(client):
    import spruce.errors  # noqa: F401 - used by the writer threads

    client.create_index("snap", dimension=DIM, metric="dotproduct")
    idx = client.Index("snap")
    assert isinstance(idx._index, EngineIndex)
    fill(idx)
    expected = live_state(idx)
    assert sum(len(v) for v in expected.values()) == PER_NS * len(NAMESPACES)

    snap = idx._index.snapshot()
    point = snap.point
    sizes: list[int] = []
    with Writers(idx) as writers:
        while writers.ops < 20:  # the snapshot must ignore writes made before the reading starts, too
            time.sleep(0.005)
        got = snapshot_state(snap, 128, sizes)
        got_again = snapshot_state(snap, 1000, [])  # a second pass over the same snapshot
        ops = writers.ops
    assert not writers.errors, writers.errors
    assert ops > 40, "writers barely ran; the test proves nothing"
    assert snap.point == point
    for ns in NAMESPACES:
        assert got[ns].keys() == expected[ns].keys(), ns
        assert got[ns] == expected[ns], ns  # bit-exact values, sparse values and metadata
        assert got_again[ns] == expected[ns], ns
    assert all(s == 128 for s in sizes if s != sizes[-1]) and max(sizes) == 128
    snap.close()

    after = live_state(idx)
    assert after != expected  # the writers did change the live index
    with idx._index.snapshot() as later:
        assert later.point > point
        assert snapshot_state(later, 500, []) == after  # a new snapshot sees the live state exactly


def test_snapshot_iterates_in_bounded_memory(client):
    dim = 256
    client.create_index("mem", dimension=dim)
    idx = client.Index("mem")
    rng = np.random.default_rng(1)
    n = 8000  # 8 MB of vectors
    for start in range(0, n, 1000):
        vals = rng.standard_normal((1000, dim)).astype(np.float32)
        idx.upsert([(f"r{start + i:05d}", vals[i]) for i in range(1000)])
    with idx._index.snapshot() as snap:
        tracemalloc.start()
        try:
            seen = 0
            for batch in snap.iter_batches("", batch_size=200):
                assert len(batch) == 200
                seen += len(batch)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert seen == n
    assert peak < 2_500_000, f"peak {peak} bytes while streaming 8 MB in 200-record batches"


def test_filtered_snapshot_iteration(client):
    client.create_index("fs", dimension=DIM)
    idx = client.Index("fs")
    fill(idx, per_ns=300)
    with idx._index.snapshot() as snap:
        ids = [i for b in snap.iter_batches("alpha", batch_size=64, filter={"tags": "m1"}) for i in b.ids]
    assert ids == [f"alpha-{i:05d}" for i in range(300) if i % 3 == 1]
    assert len(ids) == idx.describe_index_stats(filter={"tags": "m1"}).namespaces["alpha"].vector_count


def test_readers_never_see_torn_records_or_batches(client):
    """Writers rewrite groups of ids with one version; every read sees whole versions only."""
    client.create_index("torn", dimension=DIM, metric="dotproduct")
    idx = client.Index("torn")
    group = [f"g{i:03d}" for i in range(64)]

    def version_records(v: int):
        return [{"id": rid, "values": np.full(DIM, v, dtype=np.float32), "metadata": {"v": v},
                 "sparse_values": {"indices": [v % 1000], "values": [float(v)]}} for rid in group]

    idx.upsert(version_records(1))
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]
    version = [1]

    def writer():
        try:
            while not stop.is_set():
                v = version[0] + 1
                if v % 5 == 0:  # single-record updates too: values and metadata move together
                    for rid in group[:8]:
                        idx.update(id=rid, values=np.full(DIM, -v, dtype=np.float32), set_metadata={"v": -v})
                    idx.upsert(version_records(v))
                else:
                    idx.upsert(version_records(v))
                version[0] = v
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    def check_record(values, metadata):
        v = metadata["v"]
        assert values == [float(v)] * DIM, (values[:3], v)

    def reader(seed: int):
        rnd = random.Random(seed)
        try:
            while not stop.is_set():
                if rnd.random() < 0.5:
                    got = idx.fetch(group).vectors
                    assert len(got) == len(group)
                    versions = {g.metadata["v"] for g in got.values()}
                    for g in got.values():
                        check_record(g.values, g.metadata)
                    # one upsert is applied all at once: a fetch never straddles two batches,
                    # except for the 8 ids updated one by one before the batch
                    assert len({got[r].metadata["v"] for r in group[8:]}) == 1, versions
                else:
                    q = np.ones(DIM, dtype=np.float32)
                    res = idx.query(vector=q, top_k=64, include_values=True, include_metadata=True)
                    assert len(res.matches) == 64
                    for m in res.matches:
                        check_record(m.values, m.metadata)
                        assert m.score == pytest.approx(DIM * m.metadata["v"])
                    stats = idx.describe_index_stats()
                    assert stats.total_vector_count == 64
                reads[0] += 1
                time.sleep(0.0005)  # CPU-bound readers would otherwise starve the writer of the GIL
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while (version[0] < 30 or reads[0] < 200) and time.monotonic() < deadline and not errors:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[:3]
    assert version[0] >= 30 and reads[0] >= 200


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batched_reads_return_every_record_exactly_in_id_order(client, batch_size) -> None:
    """A snapshot reads a batch per SQL query (SQLite gathers the columns); ids that JSON must
    escape, records without metadata or sparse values next to records with them, an empty
    sparse vector and float32 bit patterns with zero bytes all come back as written, in
    UTF-8 byte order, across batch boundaries."""
    client.create_index("odd", dimension=4, metric="dotproduct")
    idx = client.Index("odd")
    ids = ['q"uote', "back\\slash", "ctl\x01\x1f", "line\u2028sep", "emoji 😀", "é", "z", "A", "ü" * 3,
           "tab\tnew\nline", "</script>", "0"]
    rng = np.random.default_rng(3)
    values = rng.standard_normal((len(ids), 4)).astype(np.float32)
    values[0] = [0.0, -0.0, 1e-45, 3.4028235e38]
    records = []
    for i, rid in enumerate(ids):
        rec = {"id": rid, "values": values[i]}
        if i % 3 == 0:
            rec["metadata"] = {"k": rid, "n": i}
        if i % 4 == 1:
            rec["sparse_values"] = {"indices": [i, 40 + i], "values": [0.5, -float(i)]}
        if i == 2:
            rec["sparse_values"] = {"indices": [], "values": []}
        records.append(rec)
    idx.upsert(records)
    with idx._index.snapshot() as snap:
        got = [r for b in snap.iter_batches("", batch_size=batch_size) for r in b.records()]
    assert [r.id for r in got] == sorted(ids, key=lambda s: s.encode())
    by_id = {r["id"]: r for r in records}
    for r in got:
        want = by_id[r.id]
        assert r.values.tobytes() == np.asarray(want["values"], np.float32).tobytes()
        assert r.metadata == want.get("metadata")
        sv = want.get("sparse_values")
        if sv is None:
            assert r.sparse_values is None
        else:
            assert r.sparse_values.indices.tolist() == sv["indices"]
            assert r.sparse_values.values.tolist() == sv["values"]
