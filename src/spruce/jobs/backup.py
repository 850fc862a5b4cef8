"""The backup job: one snapshot of an index into a repository, full or incremental.

A full snapshot is an export of one engine snapshot. An incremental one holds only what
changed after its parent's point: the records written since (``records.seq``), the ids
deleted since (tombstones), namespaces emptied (resets) or deleted. The engine starts
tracking deletions for the repository *before* the snapshot is taken, so none slips between.

An incremental is written only when it can be exact: the parent is this very index (its
uid), its chain is whole, and the engine has tombstones back to the parent's point. Otherwise
the job writes a full snapshot and says why in a note. The manifest is written last: a backup
that dies leaves a folder that no listing, parent choice or restore ever takes for a snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spruce.archive import ArchiveReader, ArchiveWriter
from spruce.archive.keys import same_key
from spruce.archive.manifest import FORMATS, MANIFEST_NAME
from spruce.archive.repository import Repository, SnapshotInfo, new_snapshot_id
from spruce.errors import ChainBroken, InvalidArgument, SpruceError
from spruce.jobs.encryption import job_key
from spruce.jobs.export import _publish_links, discard_output, stream_into
from spruce.jobs.manager import JobContext, JobManager
from spruce.jobs.state import JobState
from spruce.storage import open_store

TAG_CHARS = "A-Za-z0-9_.:=-"


def start_backup(engine: Any, index: str, repository: str, *, full: bool = False, format: str = "jsonl.gz",
                 tags: Sequence[str] = (), storage_options: dict[str, Any] | None = None,
                 link_expiry_seconds: int | None = None, sync: bool = False,
                 manager: JobManager | None = None, run: bool = True, encryption_key: Any = None) -> JobState:
    """Start a backup of ``index`` into ``repository`` (created when missing); ``encryption_key``
    (spruce.archive.ArchiveKey) encrypts the snapshot, as for ``start_export``."""
    import re

    from spruce.jobs.api import jobs_for, split_storage_options
    from spruce.jobs.encryption import encryption_options
    from spruce.jobs.state import new_job_id

    engine.index(index)  # NotFound now, not as a failed job
    encryption = encryption_options(encryption_key, writing=True)
    if format not in FORMATS:
        raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if isinstance(tags, str):
        raise InvalidArgument("tags must be a list of strings")
    for t in tags:
        if not isinstance(t, str) or not re.fullmatch(f"[A-Za-z0-9][{TAG_CHARS}]{{0,127}}", t):
            raise InvalidArgument(f"tag {t!r}: a tag is 1 to 128 of the characters {TAG_CHARS}, "
                                  "starting with a letter or digit")
    store = open_store(repository, **dict(storage_options or {}))
    Repository.open(store, create=True)  # an unusable repository fails now, before any job
    storage, secrets = split_storage_options(storage_options)
    state = JobState(id=new_job_id("backup"), kind="backup", index=index, uri=store.uri, options={
        "full": bool(full), "format": format, "tags": list(dict.fromkeys(tags)), "storage": storage,
        "snapshot_id": new_snapshot_id(), "link_expiry_seconds": link_expiry_seconds,
    } | ({"encryption": encryption} if encryption else {}))
    return (manager or jobs_for(engine)).submit(state, sync=sync, run=run, secrets=secrets, key=encryption_key)


def run_backup(ctx: JobContext) -> None:
    s = ctx.state
    repo = Repository.open(open_store(s.uri, **ctx.storage_options()), create=True)
    sid = s.options["snapshot_id"]
    store = repo.snapshot_store(sid)
    try:
        _run(ctx, repo, store)
    except Exception:  # cancelled or failed: remove this run's files (never another snapshot's)
        s.notes.extend(discard_output(store, s))
        raise
    _publish_links(ctx, store)


def discard(manager: JobManager, s: JobState) -> list[str]:
    """A stopped backup that is cancelled: remove its unfinished snapshot folder."""
    try:
        store = open_store(s.uri, **{**s.options.get("storage", {}), **manager.secrets.get(s.id, {})})
    except SpruceError as exc:
        return [f"could not open {s.uri} to remove the unfinished snapshot: {exc}"]
    return discard_output(store.child(f"snapshots/{s.options['snapshot_id']}"), s)


def _parent(ctx: JobContext, repo: Repository, uid: str) -> tuple[SnapshotInfo | None, str | None]:
    """The newest whole-chain snapshot of this index, or None and why not."""
    snaps = repo.snapshots()
    mine = [x for x in snaps if x.index_uid == uid]
    if not mine:
        return None, "no earlier snapshot of this index in the repository: a full snapshot"
    newest = max(mine, key=lambda x: (x.point, x.time))
    try:
        repo.chain(newest, snaps)
    except ChainBroken as exc:
        return None, f"the newest snapshot's chain is broken ({exc}): a full snapshot"
    return newest, None


def _run(ctx: JobContext, repo: Repository, store: Any) -> None:
    s = ctx.state
    opts = s.options
    if store.exists(MANIFEST_NAME) and ArchiveReader(store).manifest.export_id == s.id:
        return  # committed before the job could record it
    index = ctx.engine.index(s.index)
    index.start_tracking(repo.id)  # before the snapshot: every later deletion leaves a tombstone
    key = job_key(ctx)
    parent, why = (None, "--full asked for a full snapshot") if opts.get("full") else _parent(ctx, repo, index.uid)
    if parent is not None and not same_key(parent.manifest, key):
        # one chain, one key: a restore of the chain then needs just the key it was given
        was = "not encrypted" if parent.manifest.encryption is None else "encrypted with another key"
        is_ = "this one is encrypted" if key is not None else "this one is not encrypted"
        parent, why = None, f"the newest snapshot {parent.id} is {was} and {is_}: a full snapshot"
    with index.snapshot() as snap:
        since = None
        if parent is not None:
            tracked = snap.tracking_from()
            if tracked is None or parent.point < tracked or parent.point > snap.point:
                why = (f"the engine has no complete deletion record back to the parent's point {parent.point} "
                       f"(it has from {tracked}): a full snapshot")
                parent = None
            else:
                since = parent.point
        if why and not opts.get("full"):
            s.notes.append(why)
        counts = snap.namespaces()
        s.snapshot_point = snap.point
        changed = {ns: snap.changed_rows(ns, since) for ns in counts} if since is not None else {}
        s.records_total = sum(len(r) for r in changed.values()) if since is not None else sum(counts.values())
        s.records_done = s.bytes_done = s.files_done = 0
        ctx.save()

        def on_progress(records: int, nbytes: int) -> None:
            ctx.progress(records=records, bytes=nbytes)

        writer = ArchiveWriter(store, format=opts.get("format", "jsonl.gz"), on_progress=on_progress, key=key)
        writer.begin()
        try:
            schemas = snap.schemas()
            before = {ns.name for ns in parent.manifest.namespaces} if parent is not None else set()
            for ns, total in counts.items():
                reset = since is not None and ns in before and snap.reset_after(ns, since)
                writer.add_namespace(ns, schema=schemas.get(ns), total_records=total, reset=reset)
                stream_into(ctx, writer, ns, lambda ns=ns: (
                    snap.iter_batches(ns, batch_size=2000, raw_metadata=True) if since is None
                    else snap.iter_changed(changed[ns], batch_size=2000, raw_metadata=True)))
                if since is not None and ns in before and not reset:
                    writer.write_tombstones(ns, snap.deleted_ids(ns, since))
            ctx.check_cancel()
            cfg = snap.config
            writer.commit(
                export_id=s.id,
                source={"kind": "spruce", "index": cfg.name, "dimension": cfg.dimension, "metric": cfg.metric,
                        "vector_type": cfg.vector_type, "spec": cfg.spec, "tags": cfg.tags,
                        "deletion_protection": cfg.deletion_protection, "uid": snap.uid()},
                consistency="snapshot",
                snapshot={"point": snap.point, "taken_at": s.started_at},
                selection={"namespaces": None, "filter": None},
                backup={"snapshot_id": opts["snapshot_id"], "parent": None if parent is None else parent.id,
                        "since": since, "index_uid": snap.uid(), "tags": list(opts.get("tags") or []),
                        "deleted_namespaces": sorted(before - counts.keys())},
            )
        except BaseException:
            writer.abort()
            raise
    purged = index.pin_backup(repo.id, s.snapshot_point)
    if purged:
        s.notes.append(f"purged {purged} tombstone(s) no snapshot needs any more")

