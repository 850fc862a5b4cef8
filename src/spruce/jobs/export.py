"""The export job: one engine snapshot streamed into an archive, manifest last.

The archive is exactly the index at the moment the job took its snapshot,
whatever is written meanwhile. If the job dies, no manifest exists, so the
partial archive is never mistaken for a complete one.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from spruce.archive import ArchiveReader, ArchiveWriter
from spruce.archive.manifest import MANIFEST_NAME
from spruce.archive.naming import PART_PATH_RE
from spruce.archive.tombstones import TOMBSTONE_PATH_RE
from spruce.errors import (
    AlreadyExists,
    ArchiveIncomplete,
    IntegrityError,
    InvalidArgument,
    NotAnArchive,
    NotFound,
    SpruceError,
)
from spruce.jobs.encryption import job_key
from spruce.jobs.manager import JobContext
from spruce.jobs.prefetch import Prefetch
from spruce.records import normalize_namespace
from spruce.storage import open_store

DEFAULT_LINK_EXPIRY = timedelta(hours=1)
#: Pre-signed links live at most 7 days (S3's limit; local links follow it).
MAX_LINK_EXPIRY_SECONDS = 7 * 24 * 3600


def run_export(ctx: JobContext) -> None:
    """Export, and on cancel or failure remove what this run wrote (an interrupted run's parts stay
    until the job is resumed or cancelled)."""
    store = open_store(ctx.state.uri, **ctx.storage_options())
    try:
        _run(ctx, store)
    except Exception:  # cancelled (JobCancelled) or failed; an interrupt (BaseException) keeps them
        ctx.state.notes.extend(discard_output(store, ctx.state))
        raise


def discard(manager: Any, s: Any) -> list[str]:
    """A stopped export is cancelled: remove the parts and temporary files it left behind."""
    secrets = manager.secrets.get(s.id, {})
    try:
        store = open_store(s.uri, **{**s.options.get("storage", {}), **secrets})
    except SpruceError as exc:
        return [f"could not open {s.uri} to remove the unfinished archive: {exc}"]
    return discard_output(store, s)


def discard_output(store: Any, s: Any) -> list[str]:
    """Remove an unfinished archive's data parts and half-written temp files, local or remote.

    Nothing goes while a manifest.json is there: then the folder holds a whole archive (this
    job's, committed before the job could record it, or another's), and its parts are its data.
    Only part files (``<namespace>/part-NNNNN.<ext>``, the names this writer gives) are removed;
    a commit would remove the same orphans. Other files in the folder are never touched.
    """
    try:
        if store.exists(MANIFEST_NAME):
            return []
        removed = 0
        for info in list(store.list("")):
            if PART_PATH_RE.fullmatch(info.path) or TOMBSTONE_PATH_RE.fullmatch(info.path):
                store.delete(info.path)
                removed += 1
        removed += store.remove_incomplete()
        _remove_empty_folders(store)
    except (SpruceError, OSError) as exc:
        return [f"could not remove the unfinished archive at {s.uri}: {exc}"]
    return [f"removed {removed} file(s) of the unfinished archive at {s.uri}"] if removed else []


def _remove_empty_folders(store: Any) -> None:
    """Local folders: the namespace folders the parts were in, and the archive folder when empty."""
    root = store.local_path("")
    if not root or not os.path.isdir(root):
        return
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda t: -len(t[0])):
        with contextlib.suppress(OSError):  # not empty: someone else's files are there
            os.rmdir(dirpath)


def _run(ctx: JobContext, store: Any) -> None:
    s = ctx.state
    opts = s.options
    _check_links(store, _link_expiry(s))  # a bad expiry fails now, not after the whole export
    if _already_committed(store, s.id):
        _publish_links(ctx, store)
        return
    if not opts.get("overwrite") and store.exists("manifest.json"):
        raise AlreadyExists(f"{s.uri} already holds a complete archive; export to a new path "
                            "or pass overwrite=True")
    index = ctx.engine.index(s.index)
    with index.snapshot() as snap:
        counts = snap.namespaces()
        wanted = opts.get("namespaces")
        if wanted is not None:
            wanted = [normalize_namespace(n) for n in wanted]
            missing = [n or "__default__" for n in wanted if n not in counts]
            if missing:
                raise NotFound(f"namespace(s) {', '.join(map(repr, missing))} not found in index {s.index!r}")
            counts = {n: counts[n] for n in wanted}
        s.snapshot_point = snap.point
        s.records_total = sum(counts.values())
        s.records_done = s.bytes_done = s.files_done = 0
        ctx.save()
        filt = opts.get("filter")
        key = job_key(ctx)  # None unless the export encrypts

        def on_progress(records: int, nbytes: int) -> None:
            ctx.progress(records=records, bytes=nbytes)

        sizes = {k: opts[k] for k in ("part_max_bytes", "part_max_records") if opts.get(k)}
        writer = ArchiveWriter(
            store,
            format=opts.get("format", "jsonl.gz"),
            compression_level=opts.get("compression_level"),
            on_progress=on_progress,
            key=key,
            **sizes,
        )
        writer.begin()
        try:
            schemas = snap.schemas()
            for ns in counts:
                # every selected namespace is listed, empty or filtered out, with its schema
                writer.add_namespace(ns, schema=schemas.get(ns))
                stream_into(ctx, writer, ns, lambda ns=ns: snap.iter_batches(
                    ns, batch_size=opts.get("batch_size", 2000), filter=filt, raw_metadata=True))
            ctx.check_cancel()
            cfg = snap.config
            writer.commit(
                export_id=s.id,
                source={
                    "kind": "spruce",
                    "index": cfg.name,
                    "dimension": cfg.dimension,
                    "metric": cfg.metric,
                    "vector_type": cfg.vector_type,
                    "spec": cfg.spec,
                },
                consistency="snapshot",
                snapshot={"point": snap.point, "taken_at": s.started_at},
                selection={"namespaces": wanted, "filter": filt},
            )
        except BaseException:
            writer.abort()
            raise
    _publish_links(ctx, store)


def stream_into(ctx: JobContext, writer: Any, ns: str, make: Any) -> None:
    """Write what ``make()`` yields into namespace ``ns``, read a batch or two ahead in a thread
    (SQLite releases the GIL), so reading the snapshot overlaps encoding."""
    batches = Prefetch(name="spruce-export-read", make=make)
    try:
        for batch in batches:
            ctx.check_cancel()
            writer.write(ns, batch)
    finally:
        batches.close()


def _already_committed(store: Any, export_id: str) -> bool:
    """A crash between the manifest's commit and the job's own save: the archive is whole."""
    if not store.exists("manifest.json"):
        return False
    try:
        return ArchiveReader(store).manifest.export_id == export_id
    except (ArchiveIncomplete, IntegrityError, FileNotFoundError, NotFound, NotAnArchive):
        return False


def _link_expiry(s: Any) -> timedelta:
    raw = s.options.get("link_expiry_seconds")
    if not raw:
        return DEFAULT_LINK_EXPIRY
    try:
        seconds = int(raw)
    except (TypeError, ValueError):
        seconds = 0
    if not 1 <= seconds <= MAX_LINK_EXPIRY_SECONDS:
        raise InvalidArgument(f"link_expiry_seconds must be from 1 to {MAX_LINK_EXPIRY_SECONDS} (7 days, as S3's "
                              f"pre-signed URLs), got {raw!r}")
    return timedelta(seconds=seconds)


def _check_links(store: Any, expiry: timedelta) -> None:
    """Sign once up front (signing is local, no request), so an expiry the store refuses
    (S3: at most 7 days) fails the job before any data is written."""
    try:
        store.signed_url("manifest.json", expiry)
    except InvalidArgument:
        raise
    except SpruceError:
        pass  # cannot sign at all (e.g. no key to sign with): _publish_links falls back


def _publish_links(ctx: JobContext, store: Any) -> None:
    """Download links: pre-signed URLs on object stores, a file:// URI on local folders.

    Signing needs no request; a store that cannot sign (e.g. GCS credentials from the metadata
    server, which hold no key) gets the plain URI and a note: the archive is complete anyway.
    """
    s = ctx.state
    expiry = _link_expiry(s)
    manifest = ArchiveReader(store).manifest
    paths = ["manifest.json"] + [f.path for ns in manifest.namespaces for f in ns.files]
    try:
        signed = store.signed_url("manifest.json", expiry)
        urls = {p: store.signed_url(p, expiry) for p in paths} if signed is not None else None
    except SpruceError as exc:
        signed = urls = None
        s.notes.append(f"no download links: {exc}")
    if signed is None or urls is None:
        local = store.local_path("manifest.json")
        s.download_url = f"file://{local}" if local else f"{store.uri.rstrip('/')}/manifest.json"
        s.download_urls = None
        s.download_expires_at = None
    else:
        s.download_url = signed
        s.download_urls = urls
        s.download_expires_at = (datetime.now(UTC) + expiry).isoformat(timespec="seconds").replace("+00:00", "Z")
    s.records_done = manifest.totals["records"]
    s.bytes_done = manifest.totals["bytes"]
    s.files_done = manifest.totals["files"]
    ctx.save()
