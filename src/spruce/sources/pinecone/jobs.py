"""The connector as jobs: "remote-export" and "remote-import" runners for the JobManager
(``spruce jobs list`` shows them; progress and cancellation as for local jobs), and the
functions that start them. The API key stays in this process's memory."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from spruce.archive.manifest import MANIFEST_NAME
from spruce.errors import InvalidArgument, JobCancelled
from spruce.jobs import split_storage_options
from spruce.jobs.manager import register_runner
from spruce.records import normalize_namespace, validate_index_name
from spruce.sources.pinecone.common import API_KEY_ENV, FORMATS, _check_common, _now, _Reporter
from spruce.sources.pinecone.exporter import _export
from spruce.sources.pinecone.restorer import _import_uri, _restore, refuse_encrypted_bulk_import
from spruce.sources.pinecone.sdk import _Sdk
from spruce.storage import open_store


class _JobReporter(_Reporter):
    def __init__(self, ctx: Any) -> None:
        super().__init__(None)
        self.ctx = ctx

    def total(self, n: int | None) -> None:
        super().total(n)
        self.ctx.state.records_total = n
        self.ctx.save()

    def advance(self, records: int, nbytes: int) -> None:
        super().advance(records, nbytes)
        self.ctx.progress(records=records, bytes=nbytes)

    def note(self, text: str) -> None:
        super().note(text)
        self.ctx.state.notes.append(f"{_now()}: {text}")

    def check_cancel(self) -> None:
        try:
            self.ctx.check_cancel()
        except JobCancelled:
            self.stop.set()
            raise
        super().check_cancel()

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + max(0.0, seconds)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            if self.stop.wait(min(left, 0.2)):
                raise JobCancelled("cancelled")
            self.check_cancel()


def _job_key(ctx: Any) -> str:
    key = ctx.manager.secrets.get(ctx.state.id, {}).get("pinecone_api_key") or os.environ.get(API_KEY_ENV)
    if not key:
        raise InvalidArgument(f"no Pinecone API key for job {ctx.state.id}: set {API_KEY_ENV} (keys are never "
                              "stored with a job)")
    return key


def _job_storage(ctx: Any) -> dict[str, Any]:
    return {k: v for k, v in ctx.storage_options().items() if k != "pinecone_api_key"}


def run_remote_export(ctx: Any) -> None:
    """JobManager runner for kind "remote-export". A re-run starts over (like local exports)."""
    s = ctx.state
    o = s.options
    s.records_done = s.bytes_done = s.files_done = 0
    s.percent_complete = 0.0
    ctx.save()
    reporter = _JobReporter(ctx)
    sdk = _Sdk(_job_key(ctx), o.get("pinecone_host"))
    store = open_store(s.uri, **_job_storage(ctx))
    try:
        manifest = _export(sdk, s.index, store, reporter, namespaces=o.get("namespaces"),
                           format=o.get("format", "jsonl.gz"), verify_after=bool(o.get("verify_after")),
                           parallelism=int(o.get("parallelism") or 4), overwrite=bool(o.get("overwrite")),
                           export_id=s.id)
    finally:
        reporter.stop.set()
    s.records_done = manifest.totals["records"]
    s.bytes_done = manifest.totals["bytes"]
    s.files_done = s.files_total = manifest.totals["files"]
    local = store.local_path(MANIFEST_NAME)
    s.download_url = f"file://{local}" if local else f"{store.uri.rstrip('/')}/{MANIFEST_NAME}"
    ctx.save()


def run_remote_import(ctx: Any) -> None:
    """JobManager runner for kind "remote-import". A resumed job skips the files it finished
    (upserts are idempotent anyway) or keeps following the bulk import it started."""
    s = ctx.state
    o = s.options
    reporter = _JobReporter(ctx)
    sdk = _Sdk(_job_key(ctx), o.get("pinecone_host"))
    store = open_store(s.uri, **_job_storage(ctx))
    skip = int(s.files_done or 0) if s.attempts > 1 else 0
    s.records_done = 0
    ctx.save()

    def file_done(n: int) -> None:
        s.files_done = n
        ctx.save()

    def import_started(import_id: str) -> None:
        o["import_id"] = import_id
        s.notes.append(f"{_now()}: bulk import {import_id} started on the target")
        ctx.save()

    try:
        summary = _restore(sdk, store, s.index, reporter, cloud=o.get("cloud") or "aws",
                           region=o.get("region") or "us-east-1", bulk_import=bool(o.get("bulk_import")),
                           integration_id=o.get("integration_id"), parallelism=int(o.get("parallelism") or 4),
                           skip_files=skip, on_file_done=file_done, on_import_started=import_started,
                           import_id=o.get("import_id"))
    finally:
        reporter.stop.set()
    s.records_done = summary.records
    s.notes.append(f"{_now()}: restored {summary.records:,} records by {summary.method} (SDK {summary.sdk_version}; "
                   f"{summary.retries} retries, {summary.throttled} throttled); counts "
                   f"{'equal the archive' if summary.verified else 'at least the archive'}'s: {summary.counts_after}")
    ctx.save()


def start_remote_export(manager: Any, index_name: str, dest_uri: str, *, api_key: str | None,
                        host: str | None = None, namespaces: Sequence[str] | None = None,
                        format: str = "jsonl.gz", storage_options: Mapping[str, Any] | None = None,
                        verify_after: bool = False, parallelism: int = 4, overwrite: bool = False,
                        sync: bool = False, run: bool = True) -> Any:
    """Start a "remote-export" job in ``manager`` (a JobManager). The key stays in memory only."""
    from spruce.jobs.state import JobState, new_job_id

    key = _check_common(api_key, host, parallelism)
    validate_index_name(index_name)
    if format not in FORMATS:
        raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if isinstance(namespaces, str):
        raise InvalidArgument("namespaces must be a list of namespace names")
    nss = None if namespaces is None else list(dict.fromkeys(normalize_namespace(n) for n in namespaces))
    store = open_store(dest_uri, **dict(storage_options or {}))
    storage, secrets = split_storage_options(storage_options)
    state = JobState(
        id=new_job_id("export"), kind="remote-export", index=index_name, uri=store.uri,
        options={"source": "pinecone", "pinecone_host": host, "namespaces": nss, "format": format,
                 "verify_after": verify_after, "parallelism": parallelism, "overwrite": overwrite,
                 "storage": storage},
    )
    return manager.submit(state, sync=sync, run=run, secrets={**secrets, "pinecone_api_key": key})


def start_remote_import(manager: Any, src_uri: str, index_name: str, *, api_key: str | None,
                        host: str | None = None, cloud: str = "aws", region: str = "us-east-1",
                        bulk_import: bool = False, integration_id: str | None = None,
                        storage_options: Mapping[str, Any] | None = None, parallelism: int = 4,
                        sync: bool = False, run: bool = True) -> Any:
    """Start a "remote-import" job in ``manager`` (a JobManager). The key stays in memory only."""
    from spruce.jobs.state import JobState, new_job_id

    key = _check_common(api_key, host, parallelism)
    validate_index_name(index_name)
    store = open_store(src_uri, **dict(storage_options or {}))
    if bulk_import:
        _import_uri(store)
        refuse_encrypted_bulk_import(store)
    storage, secrets = split_storage_options(storage_options)
    state = JobState(
        id=new_job_id("import"), kind="remote-import", index=index_name, uri=store.uri,
        options={"target": "pinecone", "pinecone_host": host, "cloud": cloud, "region": region,
                 "bulk_import": bulk_import, "integration_id": integration_id, "parallelism": parallelism,
                 "storage": storage},
    )
    return manager.submit(state, sync=sync, run=run, secrets={**secrets, "pinecone_api_key": key})


register_runner("remote-export", run_remote_export)
register_runner("remote-import", run_remote_import)
