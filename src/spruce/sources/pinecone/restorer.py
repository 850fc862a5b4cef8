"""Restore: an archive (or plain JSONL/Parquet files) into an index behind the Pinecone API,
created when missing, by parallel upserts or the target's own bulk import; the proof is the
target's counts afterwards (``IncompleteRestore`` otherwise)."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from spruce.archive import open_source
from spruce.archive.jsonl import encode_lines
from spruce.errors import InvalidArgument, JobCancelled
from spruce.records import normalize_namespace, validate_index_name
from spruce.sources.pinecone.chunks import (
    MAX_UPSERT_RECORDS,
    MAX_UPSERT_RECORDS_TEXT,
    _upsert_body,
    _verified_lines,
    line_chunks,
    raw_line_chunks,
    upsert_chunks,
)
from spruce.sources.pinecone.common import (
    IncompleteRestore,
    Progress,
    _check_common,
    _Reporter,
    _Retrier,
    _take,
)
from spruce.sources.pinecone.sdk import IndexInfo, _Sdk
from spruce.sources.retry import RemoteError, classify
from spruce.storage import open_store


@dataclass
class RestoreSummary:
    index: str
    method: str  # "upsert" or "bulk_import"
    records: int
    namespaces: dict[str, int]
    created_index: bool
    seconds: float
    counts_after: dict[str, int] = field(default_factory=dict)
    verified: bool = False
    import_id: str | None = None
    retries: int = 0
    throttled: int = 0
    sdk_version: str = ""
    notes: list[str] = field(default_factory=list)


def encrypted_bulk_import(uri: str) -> str:
    return (f"{uri} is encrypted: Pinecone's bulk import reads the Parquet files itself and cannot decrypt "
            "them; restore without --bulk-import (spruce decrypts and upserts), or export without --encrypt")


def refuse_encrypted_bulk_import(store: Any) -> None:
    """Refused up front: an encrypted archive handed to Pinecone's bulk import (it cannot decrypt)."""
    from spruce.archive.reader import load_manifest

    if store.exists("manifest.json") and load_manifest(store).encryption is not None:
        raise InvalidArgument(encrypted_bulk_import(store.uri))


def _import_uri(store: Any) -> str:
    uri = str(store.uri).rstrip("/")
    scheme = uri.split("://", 1)[0].lower()
    if scheme not in ("s3", "gs", "az", "https"):
        raise InvalidArgument(f"bulk import reads from s3://, gs:// or Azure storage; {uri} is not there")
    if scheme == "az":
        account = getattr(getattr(store, "location", None), "account", None) or os.environ.get(
            "AZURE_STORAGE_ACCOUNT_NAME")
        if account:
            uri = f"https://{account}.blob.core.windows.net/{uri.split('://', 1)[1]}"
    return uri + "/"


def _restore(sdk: _Sdk, src_store: Any, index_name: str, reporter: _Reporter, *, cloud: str, region: str,
             bulk_import: bool, integration_id: str | None, parallelism: int, skip_files: int = 0,
             on_file_done: Callable[[int], None] | None = None,
             on_import_started: Callable[[str], None] | None = None,
             import_id: str | None = None) -> RestoreSummary:
    t0 = time.perf_counter()
    retrier = _Retrier(reporter)
    source = open_source(src_store)
    dimension, vector_type = source.infer()
    manifest = source.manifest
    if manifest is not None:
        manifest.refuse_incremental(src_store.uri)
    metric = (manifest.source.get("metric") if manifest else None) or (
        "dotproduct" if vector_type == "sparse" else "cosine")
    if bulk_import:
        if manifest is not None and manifest.encryption is not None:
            raise InvalidArgument(encrypted_bulk_import(src_store.uri))
        if manifest is None or manifest.file_format != "parquet":
            raise InvalidArgument("bulk import (start_import) reads Parquet: restore a Parquet archive "
                                  "(spruce export --format parquet), or restore without --bulk-import")
        uri = _import_uri(src_store)

    reporter.phase("restoring")
    created = False
    try:
        info = sdk.describe(index_name)
    except Exception as exc:
        if classify(exc).status != 404:
            info = retrier.call(f"describe index {index_name!r}", lambda: sdk.describe(index_name))
        else:
            info = None
    if info is None:
        def create() -> None:
            try:
                sdk.create(index_name, dimension=dimension, metric=metric, vector_type=vector_type, cloud=cloud,
                           region=region, tags=manifest.source.get("tags") if manifest else None)
            except Exception as exc:
                if classify(exc).status != 409:  # 409: an earlier attempt did create it
                    raise

        retrier.call(f"create index {index_name!r}", create)
        created = True
        info = _wait_ready(sdk, index_name, retrier, reporter)
    else:
        if vector_type != info.vector_type or (dimension is not None and info.dimension not in (None, dimension)):
            raise InvalidArgument(
                f"index {index_name!r} is {info.vector_type} with dimension {info.dimension}, but the data is "
                f"{vector_type} with dimension {dimension}")
        if not info.ready:
            info = _wait_ready(sdk, index_name, retrier, reporter)
    idx = sdk.index(info.host)
    before = {} if created else retrier.call("describe_index_stats", lambda: sdk.stats(idx))
    total = source.total_records
    reporter.total(total)
    per_ns: dict[str, int] = {}
    summary = RestoreSummary(index=index_name, method="bulk_import" if bulk_import else "upsert", records=0,
                             namespaces=per_ns, created_index=created, seconds=0.0, sdk_version=sdk.version)

    if bulk_import:
        assert manifest is not None
        if import_id is None:
            reporter.phase("importing")
            import_id = retrier.call("start_import", lambda: sdk.start_import(idx, uri, integration_id))
            if on_import_started is not None:
                on_import_started(import_id)
        summary.import_id = import_id
        _follow_import(sdk, idx, import_id, reporter, retrier)
        for ns in manifest.namespaces:
            per_ns[ns.name] = ns.record_count
        summary.records = manifest.totals["records"]
    else:
        max_records = MAX_UPSERT_RECORDS_TEXT if info.integrated else MAX_UPSERT_RECORDS
        try:
            _upsert_all(sdk, idx, source, reporter, retrier, max_records=max_records, parallelism=parallelism,
                        per_ns=per_ns, skip_files=skip_files, on_file_done=on_file_done)
        except BaseException:
            if created and not any(per_ns.values()) and not skip_files:
                # nothing landed in the index this run created (e.g. a damaged first file): remove it
                with contextlib.suppress(Exception):
                    sdk.delete(index_name)
            raise
        summary.records = sum(per_ns.values())

    # the proof: the target's counts. Pinecone's stats can lag writes, so poll a little.
    reporter.phase("checking")
    expected = {ns.name: ns.record_count for ns in manifest.namespaces} if manifest is not None else dict(per_ns)
    fresh = created or not any(before.values())
    after: dict[str, int] = {}
    def short(counts: Mapping[str, int]) -> list[str]:
        # a fresh index must hold exactly the archive; one that held records may hold more
        return [f"namespace {ns or '__default__'!r}: restored {n:,}, the index reports {counts.get(ns, 0):,}"
                for ns, n in expected.items() if n and (counts.get(ns, 0) != n if fresh else counts.get(ns, 0) < n)]

    after: dict[str, int] = {}
    for attempt in range(12):
        after = retrier.call("describe_index_stats", lambda: sdk.stats(idx))
        if not short(after):
            break
        reporter.sleep(min(4.0, 0.25 * 2 ** attempt))
    summary.counts_after = {ns: after.get(ns, 0) for ns in expected}
    bad = short(after)
    if bad:
        raise IncompleteRestore("after the restore, counts differ: " + "; ".join(bad))
    summary.verified = fresh
    if not fresh:
        summary.notes.append("the index held records before the restore: each namespace holds at least the "
                             "archive's count, which is all that can be checked")
    summary.retries, summary.throttled = reporter.p.retries, reporter.p.throttled
    summary.seconds = time.perf_counter() - t0
    reporter.phase("done")
    return summary


def _wait_ready(sdk: _Sdk, name: str, retrier: _Retrier, reporter: _Reporter, timeout: float = 900.0) -> IndexInfo:
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        info = retrier.call(f"describe index {name!r}", lambda: sdk.describe(name))
        if info.ready and info.host:
            return info
        if time.monotonic() > deadline:
            raise RemoteError(f"index {name!r} was not ready after {timeout:.0f}s")
        reporter.sleep(delay)
        delay = min(5.0, delay * 2)


def _follow_import(sdk: _Sdk, idx: Any, import_id: str, reporter: _Reporter, retrier: _Retrier) -> None:
    delay = 0.2
    last = 0
    while True:
        try:
            d = retrier.call(f"describe_import {import_id}", lambda: sdk.describe_import(idx, import_id))
        except JobCancelled:
            with contextlib.suppress(Exception):
                sdk.cancel_import(idx, import_id)
            raise
        records = int(d["records"] or 0)
        if records > last:
            reporter.advance(records - last, 0)
            last = records
        status = d["status"].replace("_", "").lower()
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise RemoteError(f"bulk import {import_id} {d['status']}: {d['error'] or 'no error given'}")
        try:
            reporter.sleep(delay)
        except JobCancelled:
            with contextlib.suppress(Exception):
                sdk.cancel_import(idx, import_id)
            raise
        delay = min(5.0, delay * 1.5)


def _upsert_all(sdk: _Sdk, idx: Any, source: Any, reporter: _Reporter, retrier: _Retrier, *, max_records: int,
                parallelism: int, per_ns: dict[str, int], skip_files: int,
                on_file_done: Callable[[int], None] | None) -> None:
    """Stage one file at a time, read whole, so its checksum is checked before any of it is sent
    (JSON Lines parts of an archive go as their own lines; Parquet and plain files are decoded
    and validated), reading the next file while this one's chunks are upserted in parallel."""
    files = list(source.files)
    staged: queue.Queue[Any] = queue.Queue(maxsize=1)
    done = threading.Event()

    def reader() -> None:
        try:
            for i, f in enumerate(files):
                if i < skip_files:
                    continue
                lines = _verified_lines(source.store, f) if source.kind == "archive" else None
                if not hand_over((i, f, lines if lines is not None else list(source.read(f)))):
                    return
            hand_over(None)
        except BaseException as exc:  # handed to the main thread, which raises it
            hand_over(exc)

    def hand_over(item: Any) -> bool:
        while not (done.is_set() or reporter.stop.is_set()):
            try:
                staged.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    for f in files[:skip_files]:
        ns = normalize_namespace(f.namespace)
        per_ns[ns] = per_ns.get(ns, 0) + (f.records or 0)
        reporter.advance(f.records or 0, 0)
    t = threading.Thread(target=reader, name="spruce-restore-reader", daemon=True)
    t.start()

    raw = sdk.can_upsert_raw(idx)

    def send(ns: str, vectors: list[Any]) -> int:
        label = ns or "__default__"
        what = f"upsert {len(vectors)} records into namespace {label!r}"
        if raw:
            body = _upsert_body(ns, vectors)
            return retrier.call(what, lambda: sdk.upsert_raw(idx, body, len(vectors)))
        return retrier.call(what, lambda: sdk.upsert(idx, ns, vectors))

    try:
        with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="spruce-upsert") as pool:
            while True:
                item = _take(staged, reporter)
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                i, f, content = item
                ns = normalize_namespace(f.namespace)
                pending: deque[tuple[Future[int], int, int]] = deque()
                if content and isinstance(content[0], bytes):
                    chunker: Callable[..., Iterator[Any]] = raw_line_chunks if raw else line_chunks
                    chunks: Iterable[Any] = chunker(content, max_records=max_records)
                elif raw:
                    chunks = (c for batch in content
                              for c in raw_line_chunks(encode_lines(batch), max_records=max_records))
                else:
                    chunks = (c for batch in content for c in upsert_chunks(batch, max_records=max_records))
                try:
                    for vectors, size in chunks:
                        reporter.check_cancel()
                        pending.append((pool.submit(send, ns, vectors), len(vectors), size))
                        while len(pending) > 2 * parallelism:
                            _finish(pending.popleft(), reporter, per_ns, ns)
                    while pending:
                        _finish(pending.popleft(), reporter, per_ns, ns)
                except BaseException:
                    reporter.stop.set()  # in-flight upserts stop retrying
                    for fut, _n, _size in pending:
                        fut.cancel()
                    raise
                if on_file_done is not None:
                    on_file_done(i + 1)
    finally:
        done.set()
        t.join(timeout=10)


def _finish(item: tuple[Future[int], int, int], reporter: _Reporter, per_ns: dict[str, int], ns: str) -> None:
    fut, n, size = item
    fut.result()
    per_ns[ns] = per_ns.get(ns, 0) + n
    reporter.advance(n, size)


def restore(src_uri: str, index_name: str, *, api_key: str | None, host: str | None = None, cloud: str = "aws",
            region: str = "us-east-1", bulk_import: bool = False, integration_id: str | None = None,
            storage_options: Mapping[str, Any] | None = None, parallelism: int = 4,
            on_progress: Callable[[Progress], None] | None = None) -> RestoreSummary:
    """Restore an archive (or plain JSONL/Parquet files) at ``src_uri`` into ``index_name`` behind the
    Pinecone API, creating the index when missing. ``bulk_import`` hands a Parquet archive in
    s3/gs/az storage to the target's ``start_import`` instead of upserting, and follows it to the end."""
    key = _check_common(api_key, host, parallelism)
    validate_index_name(index_name)
    store = open_store(src_uri, **dict(storage_options or {}))
    if bulk_import:
        _import_uri(store)  # refuse local paths now
        refuse_encrypted_bulk_import(store)
    sdk = _Sdk(key, host)
    return _restore(sdk, store, index_name, _Reporter(on_progress), cloud=cloud, region=region,
                    bulk_import=bulk_import, integration_id=integration_id, parallelism=parallelism)
