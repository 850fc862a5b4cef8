"""The import (restore) job: archive or plain files into an index, one atomic file at a time.

Each file is applied in one engine transaction that also records a marker
"file N done". A file whose checksum, count or records turn out bad is
rolled back whole, and a resumed job skips exactly the files whose markers
committed, so re-running is idempotent.

With a selection (``spruce.jobs.selection``) a file that selected nothing commits nothing (the
job's state remembers it), so a selection that matched nothing wrote nothing. Dry runs:
``spruce.jobs.dryrun``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from spruce.archive import check_file_bytes, open_source
from spruce.errors import (
    ConflictError,
    IntegrityError,
    InvalidArgument,
    JobCancelled,
    SpruceError,
    ValidationError,
)
from spruce.jobs.encryption import job_key
from spruce.jobs.manager import JobContext
from spruce.jobs.prefetch import Prefetch
from spruce.jobs.selection import IDS_SUFFIX, Selection, check_selection, load_selection
from spruce.records import DEFAULT_NAMESPACE_ALIAS, normalize_namespace
from spruce.storage import open_store

ERROR_MODES = ("abort", "continue")
ON_CONFLICT = ("overwrite", "skip", "fail")


def open_import(ctx: JobContext) -> tuple[Any, dict[str, str], Selection | None]:
    """What an import (or its dry run) reads: the source, opened with the job's key; the
    namespace map; the selection, checked against the source."""
    s, opts = ctx.state, ctx.state.options
    store = open_store(s.uri, **ctx.storage_options())
    source = open_source(store, namespace=normalize_namespace(opts.get("namespace")), key=job_key(ctx))
    source.require_key()
    nsmap = {normalize_namespace(k): normalize_namespace(v) for k, v in (opts.get("namespace_map") or {}).items()}
    selection = load_selection(s, ids_path(ctx))
    check_selection(source, opts, selection)
    return source, nsmap, selection


def run_import(ctx: JobContext) -> None:
    s = ctx.state
    opts = s.options
    if opts.get("dry_run"):
        from spruce.jobs.dryrun import run_dry_run

        run_dry_run(ctx)
        return
    on_conflict = opts.get("on_conflict", "overwrite")
    error_mode = opts.get("error_mode", "abort")
    source, nsmap, selection = open_import(ctx)
    preflight = None
    if source.kind == "archive" and error_mode == "abort":
        preflight = _Preflight(ctx, source, ctx.engine.index(s.index) if ctx.engine.has_index(s.index) else None,
                               selection)
    try:
        if not ctx.engine.has_index(s.index):
            opts["created_index"] = True  # persisted, so a resumed attempt still knows
        index = _target_index(ctx, source)
        _apply(ctx, source, index, nsmap, on_conflict, error_mode, preflight, selection=selection)
        _restore_namespaces(ctx, source, index, nsmap, selection=selection)  # empty ones, schemas: after
        index.mark_ready(s.id)  # an index this job created was Initializing until now
    except (JobCancelled, SpruceError, ValidationError) as exc:
        # A cancelled or failed restore leaves the target as it found it when it created the
        # target: an index holding part of an archive is worse than none.
        what = "was cancelled" if isinstance(exc, JobCancelled) else "failed"
        s.notes.extend(_remove_created(ctx.engine, s, what))
        raise
    finally:
        if preflight is not None:
            preflight.close()


def ids_path(ctx: JobContext) -> Any:
    """Where a selective restore keeps its ids (see spruce.jobs.selection)."""
    return ctx.manager.store.side_file(ctx.state.id, IDS_SUFFIX)


def _remove_created(engine: Any, s: Any, what: str) -> list[str]:
    """Remove the index job ``s`` created and never finished, unless someone else wrote to it
    meanwhile: then it is theirs, and it is kept (Ready) with a note."""
    if not (s.options.get("created_index") and engine.has_index(s.index)):
        return []
    index = engine.index(s.index)
    if index.config.initializing_job not in (None, s.id):
        return []  # another job's index now (this one was deleted and re-created)
    others = _foreign_writes(index, s)
    if others:
        index.mark_ready(s.id)
        last = index.last_write() or {}
        return [f"kept index {s.index!r}, which this job created and {what} before it completed: "
                f"{others} write(s) by others since (last by {last.get('by', 'an unknown writer')}); "
                "it holds only part of the source"]
    engine.delete_index(s.index)
    return [f"removed index {s.index!r}: this job created it and {what} before it completed"]


def _foreign_writes(index: Any, s: Any) -> int:
    """How many write transactions into ``index`` since the job started were not the job's own
    (each transaction takes the next sequence number, and each of the job's records its own)."""
    if s.target_seq is None:
        return index.seq
    own = {q for q in _own_seqs(index.markers(f"import:{s.id}:")) if q > s.target_seq}
    return max(0, index.seq - s.target_seq - len(own))


class _Preflight:
    """Checks every file's size and sha256 before any is committed, so a corrupt archive is
    refused whole ("nothing was applied"). Files a resumed job already committed are skipped.

    The first file to apply is left out: it is hashed while it is read, and nothing of it is
    committed before its end. The others are hashed two at a time (hashlib and file reads
    release the GIL) while that first file is applied, and its commit waits for the verdict
    (``wait``): the check costs no time of its own. The first bad file in archive order is
    reported.
    """

    def __init__(self, ctx: JobContext, source: Any, index: Any, selection: Selection | None = None) -> None:
        done = ctx.state.checkpoint | (index.markers(f"import:{ctx.state.id}:file:") if index is not None else {})
        todo = [entry for i, entry in enumerate(source.files)
                if (selection is None or selection.wants(entry.namespace))
                and f"import:{ctx.state.id}:file:{i}" not in done]
        self._source = source
        self._todo = todo[1:]
        self.covered = frozenset(_where(source, entry) for entry in self._todo)

        def check(entry: Any) -> None:
            ctx.check_cancel()
            check_file_bytes(source.store, entry)

        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spruce-preflight")
        self._futures = [self._pool.submit(check, entry) for entry in self._todo]

    def wait(self) -> None:
        """Return once every file checked out; else raise the first bad file's error."""
        for entry, fut in zip(self._todo, self._futures, strict=True):
            try:
                fut.result()
            except IntegrityError as exc:
                where = _where(self._source, entry)
                err = type(exc)(_with_file(str(exc), entry.path, where) + "; nothing was applied")
                err.refused_whole = True  # type: ignore[attr-defined]  # _apply passes it on as it is
                raise err from exc

    def close(self) -> None:
        for fut in self._futures:
            fut.cancel()
        self._pool.shutdown(wait=True)


class _NothingSelected(Exception):
    """A selective restore's file in which no record was selected: its transaction rolls back."""


def _apply(ctx: JobContext, source: Any, index: Any, nsmap: dict[str, str], on_conflict: str,
           error_mode: str, preflight: Any = None, *, part: str = "", account: bool = True,
           selection: Selection | None = None) -> None:
    """Apply every file not yet marked done. ``part`` keeps the markers of one archive of
    several apart (a snapshot chain: one per snapshot); ``account=False`` leaves the job's
    totals to the caller, which counts the whole chain. ``selection``: only its namespaces'
    files are read, and only its records applied."""
    s = ctx.state
    cfg = index.config
    entries = list(source.files)
    prefix = f"import:{s.id}:{part}"
    wanted = [selection is None or selection.wants(e.namespace) for e in entries]

    markers = index.markers(prefix)
    done = {i: markers.get(f"{prefix}file:{i}") or s.checkpoint.get(f"{prefix}file:{i}") for i in range(len(entries))}
    if account:
        s.files_total = sum(wanted)
        known = [e.records for e in entries]
        s.records_total = sum(known) if all(n is not None for n in known) else None
        s.records_done = sum(m["records"] for m in done.values() if m)
        s.records_rejected = sum(m["rejected"] for m in done.values() if m)
        s.records_skipped = sum(m.get("skipped_records", 0) for m in done.values() if m)
        s.records_kept_newer = sum(m.get("kept_newer", 0) for m in done.values() if m)
        # records of namespaces not selected count as left out (when the manifest says how many)
        s.records_skipped_by_selection = (sum(m.get("not_selected", 0) for m in done.values() if m)
                                          + sum(e.records or 0 for e, w in zip(entries, wanted, strict=True) if not w))
        s.files_done = sum(1 for m in done.values() if m)
        s.bytes_done = sum(_file_bytes(source.store, entries[i]) for i, m in done.items() if m)
    if s.target_seq is None:
        s.target_seq = index.seq  # before this job's first write: what is newer is not the job's
    ctx.save()
    # overwrite only what is older than the job's start, or the job's own writes (of any part)
    own_seqs = _own_seqs(index.markers(f"import:{s.id}:"))
    protect = (s.target_seq, own_seqs) if on_conflict in ("overwrite", "fail") else None

    if on_conflict == "fail" and not markers.get(prefix + "precheck"):
        matched = _precheck_conflicts(ctx, source, entries, nsmap, index, selection)
        if selection is not None and not matched and not selection.allow_empty:
            raise selection.empty_error()
        if selection is None or matched:  # nothing selected: nothing to commit
            with index.transaction() as tx:
                tx.set_marker(prefix + "precheck", {"seq": tx.seq})
            own_seqs.append(tx.seq)

    rejects_path = ctx.manager.store.side_file(s.id, ".rejects.jsonl")
    todo = [i for i in range(len(entries)) if not done[i] and wanted[i]]
    covered: frozenset[str] = getattr(preflight, "covered", frozenset())  # files it checks (sha256)

    def start(i: int) -> tuple[Prefetch, list[dict[str, Any]]]:
        """Read file i in a thread, a few batches ahead (decoding overlaps the engine's writes)."""
        rejects: list[dict[str, Any]] = []
        # a single plain file has no path inside its store: name it by its URI then
        where = _where(source, entries[i])

        def on_error(err: ValidationError) -> None:
            rejects.append({"file": err.file or where, "line": err.line, "record": err.record,
                            "id": err.record_id, "field": err.field, "reason": err.reason})

        entry = entries[i]
        if entry.cipher is not None and where in covered:
            # the preflight checks its sha256, and every segment's tag authenticates it as it is
            # decrypted: the reader need not hash it a second time (see archive/decrypting.py)
            entry = dataclasses.replace(entry, sha256=None)

        def read() -> Iterator[Any]:
            return source.read(entry, dimension=cfg.dimension, vector_type=cfg.vector_type,
                               on_error=on_error if error_mode == "continue" else None,
                               hash_alongside=True)  # a file commits only after its last batch

        return Prefetch(read, name="spruce-restore-read"), rejects

    upcoming: tuple[Prefetch, list[dict[str, Any]]] | None = None
    try:
        for k, i in enumerate(todo):
            entry = entries[i]
            target_ns = nsmap.get(entry.namespace, entry.namespace)
            reader, rejects = upcoming or start(i)
            upcoming = None
            applied = skipped = left = kept = out = 0
            try:
                with index.transaction() as tx:
                    for batch in reader:
                        ctx.check_cancel()
                        n_out = 0
                        if selection is not None:
                            batch, n_out = selection.apply(batch)
                            out += n_out
                        n = tx.upsert(target_ns, batch,
                                      on_conflict="overwrite" if on_conflict == "fail" else on_conflict,
                                      validate=False,  # the reader validated against this index's shape
                                      protect=protect) if len(batch) else 0
                        applied += n
                        if on_conflict == "skip":
                            left += len(batch) - n
                        else:
                            kept += len(batch) - n
                        ctx.progress(records=n, skipped=len(batch) - n if on_conflict == "skip" else 0,
                                     kept_newer=0 if on_conflict == "skip" else len(batch) - n, not_selected=n_out)
                        if upcoming is None and k + 1 < len(todo) and reader.finished.is_set():
                            # this file is all read: reading the next one (hash, first row group)
                            # overlaps the tail of this one's writes and its commit
                            upcoming = start(todo[k + 1])
                    if upcoming is None and k + 1 < len(todo):
                        upcoming = start(todo[k + 1])  # the next file's reading overlaps this commit
                    if selection is not None and not applied + left + kept:
                        raise _NothingSelected  # rolls back: a file that selected nothing writes nothing
                    if preflight is not None:
                        preflight.wait()  # no commit before every other file checked out
                        preflight = None
                    tx.set_marker(f"{prefix}file:{i}", {"records": applied, "rejected": len(rejects),
                                                        "skipped_records": left, "kept_newer": kept,
                                                        "not_selected": out, "seq": tx.seq})
                own_seqs.append(tx.seq)
            except _NothingSelected:
                s.checkpoint[f"{prefix}file:{i}"] = {"records": 0, "rejected": len(rejects), "not_selected": out}
            except (IntegrityError, ValidationError) as exc:
                ctx.progress(records=-applied, skipped=-left, kept_newer=-kept, not_selected=-out)
                if getattr(exc, "refused_whole", False):
                    raise  # the preflight's verdict on another file: it names that file
                where = _where(source, entry)
                if error_mode != "continue":
                    if isinstance(exc, IntegrityError):
                        # before the preflight's verdict nothing of this attempt is committed
                        tail = "; nothing was applied" if preflight is not None else ""
                        raise type(exc)(_with_file(str(exc), entry.path, where) + tail) from exc
                    raise exc if exc.file else exc.located(file=where)
                rejects = [{"file": entry.path or where, "line": None, "record": None, "id": None, "field": None,
                            "reason": f"whole file skipped: {exc}"}]
                skipped = (entry.records or 1) - 1  # the file's records count as rejected, not its one entry
                note = f"{_with_file(str(exc), entry.path, where)}: the whole file was skipped (error mode continue)"
                if note not in s.notes:
                    s.notes.append(note)
                mark = {"records": 0, "rejected": skipped + 1, "skipped": True}
                if selection is not None:  # a selective restore commits only files that wrote records
                    s.checkpoint[f"{prefix}file:{i}"] = mark
                else:
                    with index.transaction() as tx:
                        tx.set_marker(f"{prefix}file:{i}", {**mark, "seq": tx.seq})
                    own_seqs.append(tx.seq)
            except BaseException:
                ctx.progress(records=-applied, skipped=-left, kept_newer=-kept, not_selected=-out)
                raise
            finally:
                reader.close()
            if rejects:
                with os.fdopen(os.open(rejects_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as f:
                    for r in rejects:
                        f.write(orjson.dumps(r) + b"\n")
                s.rejects_path = str(rejects_path)
            ctx.progress(files=1, rejected=len(rejects) + skipped, bytes=_file_bytes(source.store, entry),
                         force=True)
    finally:
        if upcoming is not None:
            upcoming[0].close()
    if preflight is not None:
        preflight.wait()  # every file selected nothing, so no commit waited for the verdict
    if selection is not None and not selection.allow_empty and not any(
            m.get("records", 0) + m.get("skipped_records", 0) + m.get("kept_newer", 0)
            for m in index.markers(prefix + "file:").values()):
        raise selection.empty_error()  # and, since a file commits only when it selected something, none did


def _own_seqs(markers: dict[str, Any]) -> list[int]:
    """The sequence numbers of the transactions this job committed (each marker records its own)."""
    return [m["seq"] for m in markers.values() if isinstance(m, dict) and isinstance(m.get("seq"), int)]


def _restore_namespaces(ctx: JobContext, source: Any, index: Any, nsmap: dict[str, str], *,
                        selection: Selection | None = None) -> None:
    """Recreate what records cannot: the archive's empty namespaces, and its metadata schemas.

    Runs after every file committed, so a restore that is refused or fails earlier leaves no
    empty namespace behind. One transaction with a marker of its own: a resumed job does not repeat
    it, and its sequence number counts as the job's own write (resume_check, _foreign_writes).
    A namespace the target already has keeps its own schema (a note says when the archive's
    differs); one without a schema takes the archive's. Nothing is written when nothing is missing.
    A selective restore restores the namespaces it selected, or, selecting by ids or filter,
    those it wrote records into.
    """
    s = ctx.state
    key = f"import:{s.id}:namespaces"
    if source.manifest is None or index.get_marker(key):
        return
    entries = list(source.manifest.namespaces)
    if selection is not None and selection.by_records:
        files = f"import:{s.id}:file:"
        hit = {source.files[int(k[len(files):])].namespace for k in index.markers(files)}
        entries = [e for e in entries if e.name in hit]
    elif selection is not None:
        entries = [e for e in entries if selection.wants(e.name)]
    wanted: dict[str, dict[str, Any] | None] = {}
    for entry in entries:
        target = nsmap.get(entry.name, entry.name)
        if wanted.get(target) is None:  # two namespaces mapped into one: the first schema wins
            wanted[target] = entry.schema
    todo: dict[str, dict[str, Any] | None] = {}
    for name, schema in wanted.items():
        row = index.namespace_row(name)
        if row is None or (row.schema is None and schema is not None):
            todo[name] = schema
        elif schema is not None and row.schema != schema:
            s.notes.append(f"namespace {name or DEFAULT_NAMESPACE_ALIAS!r} kept its own metadata schema "
                           f"{row.schema}; the archive's was {schema}")
    if not todo:
        return
    with index.transaction() as tx:
        for name, schema in todo.items():
            tx.restore_namespace(name, schema)
        tx.set_marker(key, {"seq": tx.seq})


def resume_check(manager: Any, s: Any) -> str | None:
    """Why import ``s`` must not resume: its target was written after the job's last commit
    (by a user or another job), so re-applying its remaining files would undo that write."""
    engine = manager.engine
    if s.target_seq is None:
        return None  # it never wrote: a resume is a first run
    if not engine.has_index(s.index):
        return f"index {s.index!r} was deleted after this job stopped"
    index = engine.index(s.index)
    baseline = max([s.target_seq, *_own_seqs(index.markers(f"import:{s.id}:"))])
    current = index.seq
    if current <= baseline:
        return None
    last = index.last_write() or {}
    # the job ends Superseded: an index it created is now its writer's, whole or not
    index.mark_ready(s.id)
    return (f"index {s.index!r} was written after this job's last commit (write #{last.get('seq', current)} "
            f"by {last.get('by', 'an unknown writer')} at {last.get('at', 'an unknown time')}); resuming "
            "would undo it")


def discard(manager: Any, s: Any) -> list[str]:
    """A stopped import is cancelled: an index it created and never finished is removed."""
    return _remove_created(manager.engine, s, "was cancelled")


def _where(source: Any, entry: Any) -> str:
    return f"{source.store.uri.rstrip('/')}/{entry.path}" if entry.path else source.store.uri


def _file_bytes(store: Any, entry: Any) -> int:
    """A data file's stored size: the manifest's, or the local file's for plain files (else 0)."""
    if entry.bytes is not None:
        return entry.bytes
    local = store.local_path(entry.path)
    try:
        return os.path.getsize(local) if local else 0
    except OSError:
        return 0


def _with_file(message: str, path: str, where: str) -> str:
    """Name the file by its full URI, so the message says which archive it came from."""
    if path and message.startswith(f"{path}: "):
        return f"{where}: {message[len(path) + 2:]}"
    return message if where in message else f"{where}: {message}"


def _target_index(ctx: JobContext, source: Any) -> Any:
    """The target index: created from the manifest, the options or the data when missing."""
    s, opts, engine = ctx.state, ctx.state.options, ctx.engine
    dim, vtype = source.infer()  # from the manifest, or the first record of plain files
    info: dict[str, Any] = {"dimension": dim, "vector_type": vtype}
    if source.manifest is not None:
        info["metric"] = source.manifest.source.get("metric")
    dimension = opts.get("dimension") or info.get("dimension")
    vector_type = opts.get("vector_type") or info.get("vector_type") or "dense"
    metric = opts.get("metric") or info.get("metric")
    if not engine.has_index(s.index):
        check_source(source, opts, None)
        if vector_type == "dense" and not dimension:
            raise InvalidArgument(f"index {s.index!r} does not exist and the source does not say its "
                                  "dimension; pass dimension=")
        engine.create_index(s.index, dimension=dimension if vector_type == "dense" else None,
                            metric=metric, vector_type=vector_type, initializing_job=s.id)
        s.notes.append(f"created index {s.index!r} ({vector_type}, dimension {dimension}, {metric or 'default'})")
        ctx.save()
        return engine.index(s.index)
    index = engine.index(s.index)
    cfg = index.config
    check_source(source, opts, cfg)
    if info.get("vector_type") and info["vector_type"] != cfg.vector_type:
        raise InvalidArgument(f"the source holds {info['vector_type']} vectors but index {s.index!r} is "
                              f"{cfg.vector_type}")
    if info.get("dimension") and cfg.dimension and info["dimension"] != cfg.dimension:
        raise InvalidArgument(f"the source has dimension {info['dimension']} but index {s.index!r} has "
                              f"{cfg.dimension}")
    return index


def check_source(source: Any, opts: dict[str, Any], target: Any | None) -> None:
    """Refuse what is almost certainly a mistake before anything is written: a namespace map
    naming a namespace the source lacks, a dimension option the source contradicts, a metric
    other than the existing index's (unless allowed)."""
    if source.manifest is not None:
        source.manifest.refuse_incremental(source.store.uri)
    have = source.namespaces
    shown = ", ".join(repr(n or DEFAULT_NAMESPACE_ALIAS) for n in have) or "none"
    missing = [k for k in (opts.get("namespace_map") or {}) if normalize_namespace(k) not in have]
    if missing:
        raise InvalidArgument(f"--namespace-map names namespace(s) {', '.join(repr(k or DEFAULT_NAMESPACE_ALIAS) for k in missing)} "
                              f"that the source does not have; it has {shown}")
    what = "archive" if source.manifest is not None else "source"
    dim, vtype = source.infer()
    if opts.get("dimension") and dim and opts["dimension"] != dim:
        raise InvalidArgument(f"--dimension {opts['dimension']} does not match the {what}'s dimension {dim}; "
                              "drop --dimension (the archive says its own)" if source.manifest is not None else
                              f"--dimension {opts['dimension']} does not match the {what}'s dimension {dim} "
                              "(the length of its first record's values)")
    if target is None:
        return
    if vtype != target.vector_type:
        raise InvalidArgument(f"the {what} holds {vtype} vectors but index {target.name!r} is {target.vector_type}")
    if dim and target.dimension and dim != target.dimension:
        raise InvalidArgument(f"the {what} has dimension {dim} but index {target.name!r} has {target.dimension}")
    if opts.get("allow_metric_change"):
        return
    metric = opts.get("metric") or (source.manifest.source.get("metric") if source.manifest is not None else None)
    if metric and metric != target.metric:
        raise InvalidArgument(f"the {what}'s metric is {metric} but index {target.name!r} uses {target.metric}: "
                              "scores would change meaning; pass --allow-metric-change (allow_metric_change=True) "
                              "to restore anyway")


def _precheck_conflicts(ctx: JobContext, source: Any, entries: list[Any], nsmap: dict[str, str],
                        index: Any, selection: Selection | None = None) -> int:
    """on_conflict='fail' refuses before applying anything, so nothing is half-applied.
    Returns how many records were selected."""
    conflicts: list[str] = []
    total = matched = 0
    for entry in entries:
        if selection is not None and not selection.wants(entry.namespace):
            continue
        target_ns = nsmap.get(entry.namespace, entry.namespace)
        cfg = index.config
        for batch in source.read(entry, dimension=cfg.dimension, vector_type=cfg.vector_type):
            ctx.check_cancel()
            if selection is not None:
                batch, _ = selection.apply(batch)
            matched += len(batch)
            found = index.existing_ids(target_ns, batch.ids) if len(batch) else []
            total += len(found)
            conflicts.extend(found[: max(0, 5 - len(conflicts))])
    if total:
        raise ConflictError(f"{total} record(s) in the source already exist in index {index.name!r} "
                            f"(on_conflict='fail'), e.g. {', '.join(map(repr, conflicts))}; nothing was applied")
    return matched


__all__ = ["ERROR_MODES", "ON_CONFLICT", "SpruceError", "check_source", "discard", "resume_check", "run_import"]
