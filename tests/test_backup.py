"""Backup repositories: full and incremental snapshots, restore of a chain, check, forget.

The central property: restoring any snapshot gives the index exactly as it was at that moment,
deletions and re-inserts included, through every kind of edit the API allows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import spruce
from spruce.archive.repository import Repository, check_repository
from spruce.archive.retention import Policy
from spruce.errors import ChainBroken, ChecksumMismatch, ConflictError, InvalidArgument
from spruce.jobs.backup import start_backup
from spruce.jobs.chain import start_snapshot_restore
from spruce.storage import open_store

DIM = 8
ODD = "Ödd namespace / ☃"


def state(client: Any, name: str) -> dict[str, dict[str, tuple]]:
    """Everything an index holds, bit for bit: namespace -> id -> (values, sparse, metadata)."""
    out: dict[str, dict[str, tuple]] = {}
    with client.engine.index(name).snapshot() as snap:
        for ns in snap.namespaces():
            rows = out.setdefault(ns, {})
            for b in snap.iter_batches(ns, batch_size=500):
                for i, rid in enumerate(b.ids):
                    sp = None if b.sparse is None or b.sparse[i] is None else (
                        b.sparse[i].indices.tobytes(), b.sparse[i].values.tobytes())
                    rows[rid] = (b.values[i].tobytes(), sp, json.dumps(b.metadata[i], sort_keys=True))
        schemas = snap.schemas()
    return {"records": out, "schemas": {k: v for k, v in schemas.items() if v}}  # type: ignore[dict-item]


def recs(prefix: str, n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    x[0, 0] = -0.0
    out = []
    for i in range(n):
        r: dict[str, Any] = {"id": f"{prefix}{i:04d}", "values": x[i],
                             "metadata": {"i": i, "f": float(x[i, 1]), "s": f"v{i % 3}", "b": i % 2 == 0,
                                          "l": ["a", str(i)]}}
        if i % 4 == 0:
            r["sparse_values"] = {"indices": [i, i + 7], "values": [0.5, float(x[i, 2])]}
        out.append(r)
    return out


def backup(client: Any, repo: Path, **kw: Any) -> Any:
    job = start_backup(client.engine, "src", str(repo), sync=True, manager=client.jobs, **kw)
    assert job.status == "Completed", (job.error, job.notes)
    return Repository.open(open_store(str(repo))).resolve(job.options["snapshot_id"])


def restore(client: Any, repo: Path, snapshot: str, target: str) -> Any:
    job = start_snapshot_restore(client.engine, str(repo), target, snapshot=snapshot, manager=client.jobs)
    assert job.status == "Completed", (job.error, job.notes)
    return job


@pytest.fixture
def client(tmp_path):
    c = spruce.Client(tmp_path / "data")
    c.create_index("src", dimension=DIM, metric="dotproduct")
    yield c
    c.close()


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet"])
def test_every_snapshot_restores_exactly_its_moment(client, tmp_path, fmt):
    repo = tmp_path / "repo"
    ix = client.Index("src")
    ix.upsert(recs("d", 60, 1))
    ix.upsert(recs("o", 20, 2), namespace=ODD)
    ix.upsert(recs("g", 10, 3), namespace="gone-later")
    ix.upsert(recs("c", 10, 4), namespace="cleared")
    expected: dict[str, Any] = {}
    snaps = []

    def take(**kw: Any) -> None:
        snap = backup(client, repo, format=fmt, **kw)
        expected[snap.id] = state(client, "src")
        snaps.append(snap)

    take()
    ix.upsert(recs("d", 5, 9))  # overwrite five
    ix.delete(ids=["d0010", "d0011", "no-such-id"])
    ix.delete(filter={"s": {"$eq": "v1"}}, namespace=ODD)
    ix.delete(ids=["d0020"])
    ix.upsert([recs("d", 21, 5)[20]])  # deleted, then re-inserted with other values
    ix.delete(delete_all=True, namespace="cleared")
    take(tags=["after-edits"])
    client.Index("src").delete_namespace("gone-later")
    ix.upsert(recs("c", 3, 6), namespace="cleared")  # emptied, then refilled
    client.Index("src").create_namespace("schema-ns", schema={"fields": {"s": {"filterable": True}}})
    ix.upsert(recs("n", 5, 7), namespace="brand-new")
    take()
    take()  # nothing changed: an empty incremental

    assert [s.full for s in snaps] == [True, False, False, False]
    assert snaps[1].deleted == 2 + 7 + 1 - 1  # d0010, d0011, ODD's v1 records (7), d0020 came back
    assert snaps[3].records == 0 and snaps[3].deleted == 0
    assert [s.parent for s in snaps[1:]] == [s.id for s in snaps[:-1]]
    for k, snap in enumerate(snaps):
        restore(client, repo, snap.id, f"r{k}")
        assert state(client, f"r{k}") == expected[snap.id], f"snapshot {k}"
    assert check_repository(Repository.open(open_store(str(repo))), read_data=True).ok


def test_incremental_holds_only_the_changes(client, tmp_path):
    repo = tmp_path / "repo"
    ix = client.Index("src")
    ix.upsert(recs("d", 200, 1))
    full = backup(client, repo)
    ix.upsert(recs("d", 3, 2))
    ix.delete(ids=["d0100", "d0101"])
    inc = backup(client, repo)
    assert (full.records, inc.records, inc.deleted, inc.total_records) == (200, 3, 2, 198)
    assert inc.since == full.point and inc.bytes < full.bytes / 10
    # the tombstones are a checksummed file of the snapshot
    tomb = inc.manifest.namespaces[0].tombstones
    from spruce.archive.tombstones import read_tombstones
    assert read_tombstones(Repository.open(open_store(str(repo))).snapshot_store(inc.id), tomb) == ["d0100", "d0101"]


def test_full_when_no_exact_incremental_is_possible(client, tmp_path):
    repo = tmp_path / "repo"
    ix = client.Index("src")
    ix.upsert(recs("d", 10, 1))
    assert backup(client, repo).full
    assert backup(client, repo, full=True).full  # --full
    # the index deleted and re-created under the same name: another index
    client.delete_index("src")
    client.create_index("src", dimension=DIM, metric="dotproduct")
    client.Index("src").upsert(recs("d", 4, 2))
    snap = backup(client, repo)
    assert snap.full
    # the newest snapshot's parent is gone: its chain is broken, so the next is full
    inc = backup(client, repo)
    assert not inc.full
    r = Repository.open(open_store(str(repo)))
    r.snapshot_store(snap.id).delete("manifest.json")
    assert backup(client, repo).full


def test_forgetting_the_newest_snapshot_never_yields_an_incremental_missing_deletions(client, tmp_path):
    """Tombstones up to the newest snapshot's point were purged; its parent is older, so an
    incremental from that parent would miss deletions: the engine refuses, the backup is full."""
    repo = tmp_path / "repo"
    ix = client.Index("src")
    ix.upsert(recs("d", 10, 1))
    backup(client, repo)
    ix.delete(ids=["d0001"])
    newest = backup(client, repo)
    r = Repository.open(open_store(str(repo)))
    r.snapshot_store(newest.id).delete("manifest.json")  # forgotten by hand
    ix.delete(ids=["d0002"])
    job = start_backup(client.engine, "src", str(repo), sync=True, manager=client.jobs)
    snap = Repository.open(open_store(str(repo))).resolve(job.options["snapshot_id"])
    assert snap.full, job.notes
    assert any("deletion record" in n for n in job.notes)
    restore(client, repo, "latest", "r")
    assert state(client, "r") == state(client, "src")


def test_tombstones_are_purged_once_no_repository_needs_them(client, tmp_path):
    ix = client.Index("src")
    ix.upsert(recs("d", 10, 1))
    engine_index = client.engine.index("src")
    ix.delete(ids=["d0000"])  # not tracked before any backup: nothing is kept
    assert engine_index.tracking()["tombstones"] == 0
    backup(client, tmp_path / "a")
    backup(client, tmp_path / "b")
    ix.delete(ids=["d0001", "d0002"])
    assert engine_index.tracking()["tombstones"] == 2
    backup(client, tmp_path / "a")
    assert engine_index.tracking()["tombstones"] == 2  # repository b still needs them
    backup(client, tmp_path / "b")
    assert engine_index.tracking()["tombstones"] == 0


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["full", "middle", "last-tombstones"])
def test_a_damaged_file_anywhere_in_the_chain_is_reported_and_nothing_is_restored(client, tmp_path, where):
    repo = tmp_path / "repo"
    ix = client.Index("src")
    ix.upsert(recs("d", 300, 1))
    snaps = [backup(client, repo)]
    for k in range(3):
        ix.upsert(recs(f"e{k}", 20, k + 10))
        ix.delete(ids=[f"d{k:04d}"])
        snaps.append(backup(client, repo))
    snap = {"full": snaps[0], "middle": snaps[2], "last-tombstones": snaps[3]}[where]
    folder = repo / "snapshots" / snap.id
    victim = (folder / snap.manifest.namespaces[0].tombstones.path if where == "last-tombstones"
              else folder / snap.manifest.files[-1].path)
    _flip_byte(victim)
    report = check_repository(Repository.open(open_store(str(repo))), read_data=True)
    assert not report.ok
    assert [(p.snapshot, p.kind) for p in report.problems] == [(snap.id, "ChecksumMismatch")]
    assert str(victim.relative_to(repo)) in report.problems[0].path
    # the CLI says the same, exit code 1
    out = subprocess.run([sys.executable, "-m", "spruce", "check", str(repo), "--read-data"], capture_output=True,
                         text=True)
    assert out.returncode == 1 and snap.id in out.stdout and "ChecksumMismatch" in out.stdout
    # an existing empty target: not one write reaches it
    client.create_index("target", dimension=DIM, metric="dotproduct")
    before = client.engine.index("target").seq
    job = client.jobs.wait(start_snapshot_restore(client.engine, str(repo), "target", manager=client.jobs,
                                                  sync=False).id)
    assert job.status == "Failed"
    assert victim.name in job.error and "nothing was applied" in job.error
    assert client.engine.index("target").seq == before
    # and into a new index: it is removed again
    with pytest.raises(ChecksumMismatch):  # sync: the job's own error
        start_snapshot_restore(client.engine, str(repo), "new-target", manager=client.jobs)
    job = next(j for j in client.jobs.list() if j.index == "new-target")
    assert job.status == "Failed" and not client.has_index("new-target")


def test_check_reports_a_missing_parent_and_a_missing_file(client, tmp_path):
    repo = tmp_path / "repo"
    ix = client.Index("src")
    ix.upsert(recs("d", 10, 1))
    full = backup(client, repo)
    ix.upsert(recs("e", 2, 2))
    inc = backup(client, repo)
    r = Repository.open(open_store(str(repo)))
    assert check_repository(r).ok
    (repo / "snapshots" / inc.id / inc.manifest.files[0].path).unlink()
    shutil.rmtree(repo / "snapshots" / full.id)
    kinds = sorted((p.snapshot, p.kind) for p in check_repository(r).problems)
    assert kinds == sorted([(inc.id, "ChainBroken"), (inc.id, "MissingFile")])
    with pytest.raises(ChainBroken, match=r"parent .* is missing"):
        start_snapshot_restore(client.engine, str(repo), "t", snapshot=inc.id, manager=client.jobs)


def test_restore_needs_a_new_or_empty_index_and_an_incremental_alone_is_refused(client, tmp_path):
    repo = tmp_path / "repo"
    ix = client.Index("src")
    ix.upsert(recs("d", 10, 1))
    backup(client, repo)
    ix.upsert(recs("e", 2, 2))
    inc = backup(client, repo)
    with pytest.raises(ConflictError, match="already holds 12 record"):
        start_snapshot_restore(client.engine, str(repo), "src", manager=client.jobs)
    with pytest.raises(InvalidArgument, match="incremental backup snapshot"):
        client.Index("x").upsert_from_file(str(repo / "snapshots" / inc.id))
    assert not client.has_index("x")


def test_the_cli_words(client, tmp_path):
    repo = tmp_path / "repo"
    client.Index("src").upsert(recs("d", 10, 1))
    client.close()
    env = {**os.environ, "SPRUCE_DATA": str(tmp_path / "data")}

    def run(*args: str, code: int = 0) -> str:
        out = subprocess.run([sys.executable, "-m", "spruce", *args], capture_output=True, text=True, env=env)
        assert out.returncode == code, out.stderr
        return out.stdout

    run("backup", "src", str(repo), "--tag", "first")
    doc = json.loads(run("backup", "src", str(repo), "--json"))
    assert doc["type"] == "incremental" and doc["records"] == 0
    listing = json.loads(run("snapshots", str(repo), "--json"))["snapshots"]
    assert [s["type"] for s in listing] == ["full", "incremental"] and listing[0]["tags"] == ["first"]
    run("restore", str(repo), "copy", "--snapshot", "latest")
    assert "10" in run("stats", "copy")
    forgot = json.loads(run("forget", str(repo), "--keep-last", "1", "--prune", "--json"))
    assert forgot["remove"] == []  # the full one is the kept incremental's parent
    assert forgot["keep"][1]["reasons"] == [f"parent of kept {listing[1]['id']}"]
    run("check", str(repo), "--read-data")


PRUNE_WORKER = """
import os, signal, sys
from spruce.archive.repository import Repository
from spruce.archive.retention import Policy
from spruce.storage import open_store
from spruce.storage.local import LocalStore

repo, kill_at = sys.argv[1], int(sys.argv[2])
ops = 0

def counted(fn):
    def run(self, *a, **kw):
        global ops
        ops += 1
        if ops == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(self, *a, **kw)
    return run

LocalStore.delete = counted(LocalStore.delete)
LocalStore.put_bytes = counted(LocalStore.put_bytes)
r = Repository.open(open_store(repo))
r.forget(r.plan_forget(Policy(last=2)), prune=True)
print(ops)
"""


def test_a_prune_killed_anywhere_leaves_a_clean_repository(client, tmp_path):
    """kill -9 at every kind of point of `forget --prune`: check stays clean, every kept snapshot
    restores exactly, and the next prune finishes the job."""
    base = tmp_path / "repo-base"
    ix = client.Index("src")
    expected: dict[str, Any] = {}
    for k in range(6):  # two chains: full, inc, inc, then full, inc, inc
        ix.upsert(recs(f"r{k}-", 30, k), namespace="" if k % 2 else "other")
        ix.delete(ids=[f"r{k - 1}-0001"], namespace="" if (k - 1) % 2 else "other")
        snap = backup(client, base, full=k == 3)
        expected[snap.id] = state(client, "src")
    order = list(expected)  # oldest first
    kept = order[3:]  # the newest two, and their full parent
    total = int(subprocess.run([sys.executable, "-c", PRUNE_WORKER, str(shutil.copytree(base, tmp_path / "count")),
                                "0"], capture_output=True, text=True, check=True).stdout)
    points = range(1, total + 1)  # every write and delete of the prune
    print("prune ops", total)
    for n, kill_at in enumerate(points):
        repo = Path(shutil.copytree(base, tmp_path / f"kill-{kill_at}"))
        out = subprocess.run([sys.executable, "-c", PRUNE_WORKER, str(repo), str(kill_at)], capture_output=True)
        assert out.returncode == -9, out.stderr
        r = Repository.open(open_store(str(repo)))
        report = check_repository(r, read_data=True)
        assert report.ok, (kill_at, [p.message for p in report.problems])
        left = [s.id for s in r.snapshots()]
        assert set(kept) <= set(left)
        for sid in kept if n % 3 == 0 else kept[-1:]:  # every kept snapshot restores exactly
            restore(client, repo, sid, f"k{kill_at}-{sid[-8:]}")
            assert state(client, f"k{kill_at}-{sid[-8:]}") == expected[sid]
        r.forget(r.plan_forget(Policy(last=2)), prune=True)
        assert sorted(p.name for p in (repo / "snapshots").iterdir()) == sorted(kept)
        assert check_repository(r, read_data=True).ok and not check_repository(r).notes


def test_a_repository_on_s3(client, tmp_path, s3_server):
    """The same chain on a real S3 server (SeaweedFS, auth enforced): backups, listing, check,
    restore of the chain, forget --prune; the credentials never reach a manifest or job state."""
    s3_server.create_bucket("backups")
    repo = "s3://backups/team/repo"
    opts = s3_server.options()
    ix = client.Index("src")
    ix.upsert(recs("d", 50, 1))
    ix.upsert(recs("o", 10, 2), namespace=ODD)
    jobs = [start_backup(client.engine, "src", repo, storage_options=opts, sync=True, manager=client.jobs)]
    ix.delete(ids=["d0003"])
    ix.upsert(recs("e", 5, 3))
    jobs.append(start_backup(client.engine, "src", repo, storage_options=opts, sync=True, manager=client.jobs))
    assert [j.status for j in jobs] == ["Completed", "Completed"]
    expected = state(client, "src")
    r = Repository.open(open_store(repo, **opts))
    snaps = r.snapshots()
    assert [s.full for s in snaps] == [True, False] and snaps[1].deleted == 1
    assert check_repository(r, read_data=True).ok
    assert jobs[1].download_url.startswith("http") and "X-Amz-Signature" in jobs[1].download_url
    job = start_snapshot_restore(client.engine, repo, "back", storage_options=opts, manager=client.jobs)
    assert job.status == "Completed", job.error
    assert state(client, "back") == expected
    r.forget(r.plan_forget(Policy(last=1)), prune=True)  # the full one stays: the incremental needs it
    assert len(r.snapshots()) == 2 and check_repository(r).ok
    secret = opts["secret_access_key"]
    for j in client.jobs.list():
        assert secret not in json.dumps(j.to_dict())
    for s in snaps:
        assert secret not in json.dumps(s.manifest.to_dict())
