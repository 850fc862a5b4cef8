"""Restore from a backup repository: a snapshot's chain applied in order into a new index.

The chain is the full snapshot, then each incremental up to the one asked for. Every file
of every snapshot (data and tombstones) is checked against its manifest's size and sha256
before anything is committed: the checks run in the background while the first file is read,
and its commit waits for them, so a damaged chain writes nothing. Each incremental first
applies its deletions (namespaces deleted, namespaces reset, tombstones: one transaction with
its marker), then its files (one transaction per file, as any restore). At the end every
namespace must hold exactly the records the snapshot says it held.

Why a new or empty target: the result is the index *as it was*, deletions included, which
a merge into someone's live records cannot be. A resumed job skips what its markers say is
done, and is refused (Superseded) once someone else wrote to the target.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from spruce.archive import check_file_bytes, open_source
from spruce.archive.repository import Repository, SnapshotInfo
from spruce.archive.tombstones import read_tombstones
from spruce.errors import (
    ChainBroken,
    ConflictError,
    IntegrityError,
    JobCancelled,
    RecordCountMismatch,
    SpruceError,
    ValidationError,
)
from spruce.jobs.encryption import encryption_options, job_key
from spruce.jobs.manager import JobContext, JobManager
from spruce.jobs.restore import _apply, _own_seqs, _remove_created, _restore_namespaces, _target_index
from spruce.jobs.state import JobState
from spruce.records import DEFAULT_NAMESPACE_ALIAS, validate_index_name
from spruce.storage import open_store


def start_snapshot_restore(engine: Any, repository: str, index: str, *, snapshot: str = "latest",
                           source_index: str | None = None, storage_options: dict[str, Any] | None = None,
                           sync: bool = True, manager: JobManager | None = None,
                           encryption_key: Any = None) -> JobState:
    """Restore snapshot ``snapshot`` (an id, a unique prefix, or ``latest``) of ``repository``
    into ``index``, which must be new or empty. The chain is resolved now: a missing parent
    fails here, before any job."""
    from spruce.jobs.api import jobs_for, split_storage_options
    from spruce.jobs.state import new_job_id

    validate_index_name(index)
    store = open_store(repository, **dict(storage_options or {}))
    repo = Repository.open(store)
    snaps = repo.snapshots()
    target = repo.resolve(snapshot, index=source_index)
    chain = repo.chain(target, snaps)
    _refuse_nonempty(engine, index)
    for snap in chain:  # an encrypted chain without its key (or with another) fails now, no job
        open_source(repo.snapshot_store(snap.id), key=encryption_key).require_key()
    storage, secrets = split_storage_options(storage_options)
    options: dict[str, Any] = {"snapshot_id": target.id, "chain": [x.id for x in chain], "storage": storage}
    enc = encryption_options(encryption_key, writing=False)
    if enc:
        options["encryption"] = enc
    state = JobState(id=new_job_id("import"), kind="restore", index=index, uri=store.uri, options=options)
    return (manager or jobs_for(engine)).submit(state, sync=sync, secrets=secrets, key=encryption_key)


def _refuse_nonempty(engine: Any, index: str) -> None:
    if not engine.has_index(index):
        return
    stats = engine.index(index).describe_index_stats()["namespaces"]
    held = sum(v["vector_count"] for v in stats.values())
    if held:
        raise ConflictError(f"index {index!r} already holds {held} record(s): a snapshot restores an index "
                            "exactly as it was, deletions included, so it needs a new or empty index; restore "
                            "into a new name, or delete the index first (to merge a full snapshot into it, "
                            "restore its folder REPO/snapshots/ID as an archive)")


class _ChainCheck:
    """Size and sha256 of every file in the chain, checked two at a time in the background."""

    def __init__(self, ctx: JobContext, checks: list[tuple[str, Any]]) -> None:
        def run(fn: Any) -> None:
            ctx.check_cancel()
            fn()

        self.covered = frozenset(where for where, _ in checks)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spruce-chain-check")
        self._futures: list[tuple[str, Future[None]]] = [(where, self._pool.submit(run, fn)) for where, fn in checks]

    def wait(self) -> None:
        for where, fut in self._futures:
            try:
                fut.result()
            except IntegrityError as exc:
                msg = str(exc)
                err = type(exc)((msg if where in msg else f"{where}: {msg}") + "; nothing was applied")
                err.refused_whole = True  # type: ignore[attr-defined]
                raise err from exc

    def close(self) -> None:
        for _, fut in self._futures:
            fut.cancel()
        self._pool.shutdown(wait=True)


def run_snapshot_restore(ctx: JobContext) -> None:
    s = ctx.state
    repo = Repository.open(open_store(s.uri, **ctx.storage_options()))
    snaps = {x.id: x for x in repo.snapshots()}
    missing = [sid for sid in s.options["chain"] if sid not in snaps]
    if missing:
        raise ChainBroken(f"{s.uri}: snapshot(s) {', '.join(missing)} of the chain are gone (forgotten since the "
                          "job started?); nothing more is restored")
    chain = [snaps[sid] for sid in s.options["chain"]]
    key = job_key(ctx)
    sources = [open_source(repo.snapshot_store(x.id), key=key) for x in chain]
    for source in sources:
        source.require_key()
    if not ctx.engine.has_index(s.index):
        s.options["created_index"] = True
    check = None
    try:
        if s.target_seq is None:
            _refuse_nonempty(ctx.engine, s.index)  # written to since the job was submitted
        index = _target_index(ctx, sources[0])
        done = index.markers(f"import:{s.id}:")
        check = _ChainCheck(ctx, _checks(chain, sources, done, s.id))
        _account(ctx, chain, done)
        for k, (snap, source) in enumerate(zip(chain, sources, strict=True)):
            if k:
                _apply_deletions(ctx, index, snap, k, check, source.cipher)
            # every commit waits for the checks (a no-op once they passed)
            _apply(ctx, source, index, {}, "overwrite", "abort", check, part=f"{k}:", account=False)
        _restore_namespaces(ctx, sources[-1], index, {})
        _check_counts(index, chain[-1])
        index.mark_ready(s.id)
    except (JobCancelled, SpruceError, ValidationError) as exc:
        s.notes.extend(_remove_created(ctx.engine, s, "was cancelled" if isinstance(exc, JobCancelled) else "failed"))
        raise
    finally:
        if check is not None:
            check.close()


def _checks(chain: list[SnapshotInfo], sources: list[Any], done: dict[str, Any], job: str) -> list[tuple[str, Any]]:
    """Every file still to apply, except the very first (hashed while it is read)."""
    out: list[tuple[str, Any]] = []
    first = True
    for k, (snap, source) in enumerate(zip(chain, sources, strict=True)):
        store = source.store
        for t in snap.manifest.tombstone_files:
            if not done.get(f"import:{job}:{k}:deletions"):
                out.append((f"{store.uri.rstrip('/')}/{t.path}",
                            lambda store=store, t=t, c=source.cipher: read_tombstones(store, t, cipher=c)))
        for i, entry in enumerate(source.files):
            if done.get(f"import:{job}:{k}:file:{i}"):
                continue
            if first and k == 0:  # the first file applied is hashed as it is read, before its commit
                first = False
                continue
            out.append((f"{store.uri.rstrip('/')}/{entry.path}",
                        lambda store=store, entry=entry: check_file_bytes(store, entry)))
    return out


def _account(ctx: JobContext, chain: list[SnapshotInfo], done: dict[str, Any]) -> None:
    s = ctx.state
    s.files_total = sum(len(x.manifest.files) for x in chain)
    s.records_total = sum(x.records for x in chain)
    files = [m for k, m in done.items() if ":file:" in k and isinstance(m, dict)]
    s.files_done = len(files)
    s.records_done = sum(m.get("records", 0) for m in files)
    ctx.save()


def _apply_deletions(ctx: JobContext, index: Any, snap: SnapshotInfo, k: int, check: _ChainCheck | None,
                     cipher: Any = None) -> None:
    """An incremental's deletions, in one transaction with its marker: deleted namespaces,
    reset namespaces, then tombstones. Only the job's own records (or older) are deleted."""
    s = ctx.state
    key = f"import:{s.id}:{k}:deletions"
    if index.get_marker(key):
        return
    if check is not None:
        check.wait()  # nothing is deleted before every file of the chain checked out
    m = snap.manifest
    store = Repository.open(open_store(s.uri, **ctx.storage_options())).snapshot_store(snap.id)
    protect = (s.target_seq if s.target_seq is not None else index.seq, _own_seqs(index.markers(f"import:{s.id}:")))
    deleted = 0
    with index.transaction() as tx:
        for name in (m.backup or {}).get("deleted_namespaces", []):
            deleted += tx.delete(name, None, protect=protect, drop_namespace=True)
        for ns in m.namespaces:
            if ns.reset:
                deleted += tx.delete(ns.name, None, protect=protect)
            elif ns.tombstones is not None:
                deleted += tx.delete(ns.name, read_tombstones(store, ns.tombstones, cipher=cipher), protect=protect)
        tx.set_marker(key, {"seq": tx.seq, "deleted": deleted})
    ctx.check_cancel()


def _check_counts(index: Any, snap: SnapshotInfo) -> None:
    """The restored index holds exactly the snapshot's namespaces and record counts."""
    stats = index.describe_index_stats()["namespaces"]
    have = {("" if n == DEFAULT_NAMESPACE_ALIAS else n): v["vector_count"] for n, v in stats.items()}
    want = {ns.name: ns.total_records for ns in snap.manifest.namespaces}
    for name, n in have.items():
        if n and name not in want:
            raise RecordCountMismatch(f"after restoring snapshot {snap.id}, namespace "
                                      f"{name or DEFAULT_NAMESPACE_ALIAS!r} holds {n} records; the snapshot has "
                                      "no such namespace")
    for ns in snap.manifest.namespaces:
        if have.get(ns.name, 0) != ns.total_records:
            raise RecordCountMismatch(
                f"after restoring snapshot {snap.id}, namespace {ns.name or DEFAULT_NAMESPACE_ALIAS!r} holds "
                f"{have.get(ns.name, 0)} records, the snapshot says {ns.total_records}")


__all__ = ["run_snapshot_restore", "start_snapshot_restore"]
