"""Export: every namespace, every id listed page by page and fetched in batches by a small thread
pool, written through the ArchiveWriter; committed only when each namespace's count equals
``describe_index_stats`` (and, with ``verify_after``, a second listing matches the archive)."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import numpy as np

from spruce.archive import ArchiveWriter, Manifest
from spruce.archive.manifest import MANIFEST_NAME
from spruce.errors import AlreadyExists, InvalidArgument, NotFound, ValidationError
from spruce.records import (
    MAX_FETCH_IDS,
    RecordBatch,
    normalize_namespace,
    validate_batch,
    validate_index_name,
)
from spruce.sources.pinecone.common import (
    FORMATS,
    IncompleteExport,
    Progress,
    _check_common,
    _now,
    _Reporter,
    _Retrier,
    _take,
)
from spruce.sources.pinecone.decode import _fast_batch, _fetched_map, _Unparsable
from spruce.sources.pinecone.sdk import _URL_SAFE, IndexInfo, _get, _Sdk
from spruce.sources.retry import RemoteError
from spruce.storage import open_store

#: Pages of ids the lister may hold ahead of the fetches (100 ids each: 200,000 ids)...
LIST_AHEAD_PAGES = 2000
#: ...and how long fetching waits for the lister to get ahead (or finish) before it starts.
LIST_HEAD_START_SECONDS = 2.0
#: Fetch batches are cut so the query string stays under this (ids travel in the URL)...
FETCH_URL_BUDGET = 12 * 1024
#: ...and the expected response under this (4 MB is Pinecone's query-response cap).
FETCH_RESPONSE_BUDGET = 4 * 1024 * 1024
#: Pauses before describe_index_stats is asked again when its counts differ from the export's.
STATS_SETTLE_SECONDS: tuple[float | None, ...] = (0.5, 1.0, 2.0, None)

_END = object()


def _fetch_cost(rid: str) -> int:
    """Bytes an id adds to a fetch URL: "&ids=" and the id, escaped."""
    return len(rid) + 5 if _URL_SAFE.fullmatch(rid) else len(quote(rid, safe="")) + 5


class _Exporter:
    def __init__(self, sdk: _Sdk, info: IndexInfo, idx: Any, reporter: _Reporter, *, parallelism: int,
                 retrier: _Retrier) -> None:
        self.sdk, self.info, self.idx, self.r = sdk, info, idx, reporter
        self.parallelism = parallelism
        self.retrier = retrier
        self.dim = info.dimension or 0
        self._avg_extra = 256.0  # bytes per record beyond the dense values (ids, sparse, metadata)
        self._est_lock = threading.Lock()

    # -- listing

    def namespaces(self, stats: Mapping[str, int]) -> list[str]:
        names: list[str] = []
        if self.sdk.has_namespace_listing(self.idx):
            token: str | None = None
            try:
                while True:
                    page, token = self.retrier.call(
                        "list namespaces", lambda t=token: self.sdk.namespace_page(self.idx, t))
                    names.extend(page)
                    if not token:
                        break
            except (RemoteError, NotFound, AttributeError, TypeError, NotImplementedError) as exc:
                self.r.note(f"list_namespaces unavailable ({exc}); namespaces taken from describe_index_stats")
                names = []
        seen = dict.fromkeys(names)
        for ns in stats:  # stats also count namespaces a listing might have missed
            seen.setdefault(ns, None)
        return list(seen)

    def list_ids(self, namespace: str) -> Iterator[list[str]]:
        token: str | None = None
        while True:
            ids, token = self.retrier.call(
                f"list ids of namespace {namespace or '__default__'!r}",
                lambda t=token: self.sdk.list_page(self.idx, namespace, t))
            if ids:
                yield ids
            if not token:
                return

    # -- fetching

    def batch_limit(self) -> int:
        with self._est_lock:
            per_record = 20 * self.dim + self._avg_extra + 64
        return max(1, min(MAX_FETCH_IDS, int(FETCH_RESPONSE_BUDGET // per_record)))

    def fetch(self, namespace: str, ids: list[str]) -> RecordBatch:
        what = f"fetch {len(ids)} ids from namespace {namespace or '__default__'!r}"
        raw = self.retrier.call(what, lambda: self.sdk.fetch_raw(self.idx, namespace, ids))
        if raw is not None:
            dense = self.info.vector_type != "sparse"
            try:
                fast = _fast_batch(raw, ids, self.dim if dense else None)
                exact = False
            except _Unparsable:
                fast, exact = None, True
            if fast is not None:
                if ids:
                    # what a record took beyond 16 bytes a value: batch_limit's 20 a value then
                    # keeps the next response's estimate above this one's size per record
                    with self._est_lock:
                        self._avg_extra = max(64.0, len(raw) / len(ids) - (16 * self.dim if dense else 0))
                return self._validated(namespace, fast)
            got = dict(_fetched_map(raw, exact=exact))  # the general way, which names whatever is wrong
        else:
            got = dict(self.retrier.call(what, lambda: self.sdk.fetch(self.idx, namespace, ids)))
        missing = [rid for rid in ids if rid not in got]
        if missing:
            # a record being deleted right now, or a lagging replica: ask once more, then give up
            self.r.sleep(0.2)
            again = self.retrier.call(what, lambda: self.sdk.fetch(self.idx, namespace, missing))
            got.update(again)
            missing = [rid for rid in ids if rid not in got]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise IncompleteExport(
                f"namespace {namespace or '__default__'!r}: id {missing[0]!r}{more} was listed but could not "
                "be fetched; the export is incomplete and was not committed")
        return self._batch(namespace, ids, got)

    def _batch(self, namespace: str, ids: list[str], got: Mapping[str, Any]) -> RecordBatch:
        rows: list[Any] = []
        sparse: list[Any] = []
        metas: list[Any] = []
        extra = 0
        dense = self.info.vector_type != "sparse"
        for rid in ids:
            v = got[rid]
            values = _get(v, "values")
            sv = _get(v, "sparse_values", "sparseValues")
            md = _get(v, "metadata")
            if dense:
                if values is None or len(values) != self.dim:
                    raise ValidationError(
                        f"has {0 if values is None else len(values)} dimensions, the index has {self.dim}",
                        field="values", record_id=rid)
                rows.append(values)
            if sv is not None:
                idx_ = _get(sv, "indices")
                val_ = _get(sv, "values")
                sv = {"indices": list(idx_ or []), "values": list(val_ or [])}
                if not sv["indices"] and dense:
                    sv = None
                else:
                    extra += 24 * len(sv["indices"])
            sparse.append(sv)
            if md is not None:
                md = dict(md)
                extra += 32 * len(md)
            metas.append(md)
            extra += len(rid)
        if ids:
            with self._est_lock:
                self._avg_extra = max(64.0, extra / len(ids))
        values = None
        if dense and rows:
            try:
                values = np.asarray(rows, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"values are not numbers ({exc})", field="values") from None
            if values.ndim != 2:
                raise ValidationError("values are not a matrix", field="values")
        batch = RecordBatch(ids=list(ids), values=values,
                            sparse=sparse if any(s is not None for s in sparse) else None, metadata=metas)
        return self._validated(namespace, batch)

    def _validated(self, namespace: str, batch: RecordBatch) -> RecordBatch:
        try:
            return validate_batch(batch, dimension=self.info.dimension, vector_type=self.info.vector_type)
        except ValidationError as exc:
            raise ValidationError(f"namespace {namespace or '__default__'!r}: {exc.reason}", field=exc.field,
                                  record_id=exc.record_id) from None

    # -- one namespace, pipelined: a lister thread pages through ids, the pool fetches,
    #    this thread writes the batches in list order

    def export_namespace(self, namespace: str, writer: ArchiveWriter, pool: ThreadPoolExecutor,
                         keep_ids: set[str] | None) -> int:
        # The id chain is sequential (each page's token comes from the last), and a list call
        # queues behind fetches on a busy server: let the lister run far ahead (ids are small),
        # and start fetching once it has a head start or is done.
        pages: queue.Queue[Any] = queue.Queue(maxsize=LIST_AHEAD_PAGES)
        halt = threading.Event()

        def hand_over(item: Any) -> bool:
            while not (halt.is_set() or self.r.stop.is_set()):
                try:
                    pages.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def lister() -> None:
            try:
                for page in self.list_ids(namespace):
                    if not hand_over(page):
                        return
                hand_over(_END)
            except BaseException as exc:  # raised on the writing thread
                hand_over(exc)

        pending: deque[Future[RecordBatch]] = deque()
        written = 0
        window = 2 * self.parallelism

        def submit(chunk: list[str]) -> None:
            nonlocal written
            pending.append(pool.submit(self.fetch, namespace, chunk))
            while len(pending) > window:
                written += self._write(writer, namespace, pending.popleft())

        writer.write(namespace, RecordBatch(ids=[]))  # listed in the manifest even when empty
        t = threading.Thread(target=lister, name="spruce-list", daemon=True)
        t.start()
        try:
            head_start = time.monotonic() + LIST_HEAD_START_SECONDS
            while t.is_alive() and pages.qsize() < LIST_AHEAD_PAGES // 2 and time.monotonic() < head_start:
                self.r.sleep(0.02)
            chunk: list[str] = []
            cost = 0
            limit = self.batch_limit()
            while (page := _take(pages, self.r)) is not _END:
                if isinstance(page, BaseException):
                    raise page
                if keep_ids is not None:
                    keep_ids.update(page)
                for rid in page:
                    c = _fetch_cost(rid)
                    if chunk and (len(chunk) >= limit or cost + c > FETCH_URL_BUDGET):
                        submit(chunk)
                        chunk, cost, limit = [], 0, self.batch_limit()
                    chunk.append(rid)
                    cost += c
            if chunk:
                submit(chunk)
            while pending:
                written += self._write(writer, namespace, pending.popleft())
        except BaseException:
            self.r.stop.set()
            for f in pending:
                f.cancel()
            raise
        finally:
            halt.set()
            t.join(timeout=10)
        return written

    def _write(self, writer: ArchiveWriter, namespace: str, fut: Future[RecordBatch]) -> int:
        batch = fut.result()
        self.r.check_cancel()
        writer.write(namespace, batch)
        return len(batch.ids)

    def recount(self, exported: Mapping[str, set[str]]) -> list[str]:
        problems = []
        for ns, ids in exported.items():
            self.r.phase("recount", ns)
            now: set[str] = set()
            for page in self.list_ids(ns):
                now.update(page)
            added, removed = sorted(now - ids), sorted(ids - now)
            label = ns or "__default__"
            if added:
                problems.append(f"namespace {label!r}: {len(added)} id(s) listed now were not exported "
                                f"(e.g. {', '.join(map(repr, added[:3]))})")
            if removed:
                problems.append(f"namespace {label!r}: {len(removed)} exported id(s) are no longer listed "
                                f"(e.g. {', '.join(map(repr, removed[:3]))})")
        return problems


def _export(sdk: _Sdk, index_name: str, store: Any, reporter: _Reporter, *, namespaces: Sequence[str] | None,
            format: str, verify_after: bool, parallelism: int, overwrite: bool,
            export_id: str | None = None) -> Manifest:
    retrier = _Retrier(reporter)
    if store.exists(MANIFEST_NAME) and not overwrite:
        if export_id is not None:
            with contextlib.suppress(Exception):
                from spruce.archive import ArchiveReader

                m = ArchiveReader(store).manifest
                if m.export_id == export_id:  # a resumed job whose commit already happened
                    return m
        raise AlreadyExists(f"{store.uri} already holds a complete archive; export to a new path "
                            "or pass overwrite=True (--overwrite)")
    reporter.phase("listing")
    info = retrier.call(f"describe index {index_name!r}", lambda: sdk.describe(index_name))
    if not info.host:
        raise RemoteError(f"index {index_name!r} has no host yet (is it still initializing?)")
    idx = sdk.index(info.host)
    ex = _Exporter(sdk, info, idx, reporter, parallelism=parallelism, retrier=retrier)
    stats = retrier.call("describe_index_stats", lambda: sdk.stats(idx))
    all_ns = ex.namespaces(stats)
    wanted: list[str] | None = None
    if namespaces is not None:
        wanted = list(dict.fromkeys(normalize_namespace(n) for n in namespaces))
        missing = [n or "__default__" for n in wanted if n not in all_ns]
        if missing:
            raise NotFound(f"namespace(s) {', '.join(map(repr, missing))} not found in index {index_name!r}")
        selected = wanted
    else:
        selected = all_ns
    reporter.total(sum(stats.get(ns, 0) for ns in selected))
    taken_at = _now()

    writer = ArchiveWriter(store, format=format, on_progress=reporter.advance)
    writer.begin()
    counts: dict[str, int] = {}
    kept: dict[str, set[str]] | None = {} if verify_after else None
    try:
        with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="spruce-fetch") as pool:
            for ns in selected:
                reporter.phase("exporting", ns)
                keep = kept.setdefault(ns, set()) if kept is not None else None
                counts[ns] = ex.export_namespace(ns, writer, pool, keep)
        reporter.phase("checking")
        for settle in STATS_SETTLE_SECONDS:  # Pinecone's stats can lag the last writes by a moment
            after = retrier.call("describe_index_stats", lambda: sdk.stats(idx))
            problems = []
            for ns in selected:
                if counts[ns] != after.get(ns, 0):
                    problems.append(f"namespace {ns or '__default__'!r}: exported {counts[ns]:,} records but "
                                    f"describe_index_stats reports {after.get(ns, 0):,}")
            if wanted is None:
                for ns, n in after.items():
                    if ns not in counts and n:
                        problems.append(f"namespace {ns or '__default__'!r} ({n:,} records) appeared during "
                                        "the export and was not exported")
            if not problems or settle is None:
                break
            reporter.sleep(settle)
        if problems:
            raise IncompleteExport("the export is incomplete and was not committed: " + "; ".join(problems))
        if kept is not None:
            diffs = ex.recount(kept)
            if diffs:
                raise IncompleteExport("recount after export (--verify-after) found differences, so the archive "
                                       "was not committed: " + "; ".join(diffs))
            reporter.note(f"recount: all {sum(len(v) for v in kept.values()):,} ids in {len(kept)} namespace(s) "
                          "were listed again and match the archive")
        reporter.check_cancel()
        source = {"kind": "pinecone", "index": info.name, "dimension": info.dimension, "metric": info.metric,
                  "vector_type": info.vector_type, "spec": info.spec or {}, "host": info.host}
        if info.tags:
            source["tags"] = info.tags
        manifest = writer.commit(
            source=source, consistency="live", snapshot={"point": None, "taken_at": taken_at},
            selection={"namespaces": wanted, "filter": None}, export_id=export_id)
    except BaseException:
        reporter.stop.set()
        writer.abort()
        raise
    reporter.note(f"exported {manifest.totals['records']:,} records from {len(selected)} namespace(s); "
                  f"every count matches describe_index_stats (SDK {sdk.version}; {reporter.p.retries} "
                  f"retries, {reporter.p.throttled} throttled)")
    reporter.phase("done")
    return manifest


def export(index_name: str, dest_uri: str, *, api_key: str | None, host: str | None = None,
           namespaces: Sequence[str] | None = None, format: str = "jsonl.gz",
           storage_options: Mapping[str, Any] | None = None, verify_after: bool = False, parallelism: int = 4,
           on_progress: Callable[[Progress], None] | None = None, overwrite: bool = False) -> Manifest:
    """Export ``index_name`` from the Pinecone API at ``host`` (default: Pinecone's own) to ``dest_uri``.

    Returns the committed manifest (``consistency: "live"``). Raises IncompleteExport when a
    namespace's count differs from describe_index_stats, when a listed id cannot be fetched,
    or (``verify_after``) when a second listing differs from the archive; RemoteError when
    the API keeps failing. In all those cases no manifest is written.
    """
    key = _check_common(api_key, host, parallelism)
    validate_index_name(index_name)
    if format not in FORMATS:
        raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if isinstance(namespaces, str):
        raise InvalidArgument("namespaces must be a list of namespace names")
    store = open_store(dest_uri, **dict(storage_options or {}))
    sdk = _Sdk(key, host)
    return _export(sdk, index_name, store, _Reporter(on_progress), namespaces=namespaces, format=format,
                   verify_after=verify_after, parallelism=parallelism, overwrite=overwrite)
