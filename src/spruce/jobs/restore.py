"""The import (restore) job: archive or plain files into an index, one atomic file at a time.

Each file is applied in one engine transaction that also records a marker
"file N done". A file whose checksum, count or records turn out bad is
rolled back whole, and a resumed job skips exactly the files whose markers
committed, so re-running is idempotent.
"""

from __future__ import annotations

from typing import Any

import orjson

from spruce.archive import open_source
from spruce.errors import ConflictError, IntegrityError, InvalidArgument, SpruceError, ValidationError
from spruce.jobs.manager import JobContext
from spruce.records import normalize_namespace
from spruce.storage import open_store

ERROR_MODES = ("abort", "continue")
ON_CONFLICT = ("overwrite", "skip", "fail")


def run_import(ctx: JobContext) -> None:
    s = ctx.state
    opts = s.options
    on_conflict = opts.get("on_conflict", "overwrite")
    error_mode = opts.get("error_mode", "abort")
    store = open_store(s.uri, **ctx.storage_options())
    source = open_source(store, namespace=normalize_namespace(opts.get("namespace")))
    nsmap = {normalize_namespace(k): normalize_namespace(v) for k, v in (opts.get("namespace_map") or {}).items()}
    created = not ctx.engine.has_index(s.index)
    index = _target_index(ctx, source)
    try:
        _apply(ctx, source, index, nsmap, on_conflict, error_mode)
    except BaseException:
        # An index this job created and that received nothing is removed: a failed restore
        # leaves the target as it found it.
        if created and s.attempts <= 1 and not any(
                index.get_marker(f"import:{s.id}:file:{i}") for i in range(s.files_total or 0)):
            ctx.engine.delete_index(s.index)
            s.notes.append(f"removed index {s.index!r}: this job created it and nothing was applied")
        raise


def _apply(ctx: JobContext, source: Any, index: Any, nsmap: dict[str, str], on_conflict: str,
           error_mode: str) -> None:
    s = ctx.state
    cfg = index.config
    entries = list(source.files)
    s.files_total = len(entries)
    known = [e.records for e in entries]
    s.records_total = sum(known) if all(n is not None for n in known) else None
    prefix = f"import:{s.id}:"

    done = {i: index.get_marker(f"{prefix}file:{i}") for i in range(len(entries))}
    s.records_done = sum(m["records"] for m in done.values() if m)
    s.records_rejected = sum(m["rejected"] for m in done.values() if m)
    s.files_done = sum(1 for m in done.values() if m)
    ctx.save()

    if on_conflict == "fail" and not index.get_marker(prefix + "precheck"):
        _precheck_conflicts(ctx, source, entries, nsmap, index)
        with index.transaction() as tx:
            tx.set_marker(prefix + "precheck", True)

    rejects_path = ctx.manager.store.side_file(s.id, ".rejects.jsonl")
    for i, entry in enumerate(entries):
        if done[i]:
            continue
        target_ns = nsmap.get(entry.namespace, entry.namespace)
        rejects: list[dict[str, Any]] = []
        applied = 0

        def on_error(err: ValidationError, _rejects: list[dict[str, Any]] = rejects) -> None:
            _rejects.append({"file": err.file, "line": err.line, "record": err.record, "id": err.record_id,
                             "field": err.field, "reason": err.reason})

        try:
            with index.transaction() as tx:
                for batch in source.read(entry, dimension=cfg.dimension, vector_type=cfg.vector_type,
                                         on_error=on_error if error_mode == "continue" else None):
                    ctx.check_cancel()
                    tx.upsert(target_ns, batch, on_conflict="overwrite" if on_conflict == "fail" else on_conflict,
                              validate=False)  # the reader validated against this index's shape
                    applied += len(batch)
                    ctx.progress(records=len(batch))
                tx.set_marker(f"{prefix}file:{i}", {"records": applied, "rejected": len(rejects)})
        except (IntegrityError, ValidationError) as exc:
            ctx.progress(records=-applied)
            if error_mode != "continue":
                where = f"{source.store.uri.rstrip('/')}/{entry.path}" if entry.path else source.store.uri
                raise type(exc)(_with_file(str(exc), entry.path, where)) if isinstance(exc, IntegrityError) else exc
            rejects = [{"file": entry.path, "line": None, "record": None, "id": None, "field": None,
                        "reason": f"whole file skipped: {exc}"}]
            with index.transaction() as tx:
                tx.set_marker(f"{prefix}file:{i}", {"records": 0, "rejected": 1, "skipped": True})
        except BaseException:
            ctx.progress(records=-applied)
            raise
        if rejects:
            with open(rejects_path, "ab") as f:
                for r in rejects:
                    f.write(orjson.dumps(r) + b"\n")
            s.rejects_path = str(rejects_path)
        ctx.progress(files=1, rejected=len(rejects), force=True)


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
        if vector_type == "dense" and not dimension:
            raise InvalidArgument(f"index {s.index!r} does not exist and the source does not say its "
                                  "dimension; pass dimension=")
        engine.create_index(s.index, dimension=dimension if vector_type == "dense" else None,
                            metric=metric, vector_type=vector_type)
        s.notes.append(f"created index {s.index!r} ({vector_type}, dimension {dimension}, {metric or 'default'})")
        ctx.save()
        return engine.index(s.index)
    index = engine.index(s.index)
    cfg = index.config
    if info.get("vector_type") and info["vector_type"] != cfg.vector_type:
        raise InvalidArgument(f"the source holds {info['vector_type']} vectors but index {s.index!r} is "
                              f"{cfg.vector_type}")
    if info.get("dimension") and cfg.dimension and info["dimension"] != cfg.dimension:
        raise InvalidArgument(f"the source has dimension {info['dimension']} but index {s.index!r} has "
                              f"{cfg.dimension}")
    return index


def _precheck_conflicts(ctx: JobContext, source: Any, entries: list[Any], nsmap: dict[str, str],
                        index: Any) -> None:
    """on_conflict='fail' refuses before applying anything, so nothing is half-applied."""
    conflicts: list[str] = []
    total = 0
    for entry in entries:
        target_ns = nsmap.get(entry.namespace, entry.namespace)
        cfg = index.config
        for batch in source.read(entry, dimension=cfg.dimension, vector_type=cfg.vector_type):
            ctx.check_cancel()
            found = index.existing_ids(target_ns, batch.ids)
            total += len(found)
            conflicts.extend(found[: max(0, 5 - len(conflicts))])
    if total:
        raise ConflictError(f"{total} record(s) in the source already exist in index {index.name!r} "
                            f"(on_conflict='fail'), e.g. {', '.join(map(repr, conflicts))}; nothing was applied")


__all__ = ["ERROR_MODES", "ON_CONFLICT", "SpruceError", "run_import"]
