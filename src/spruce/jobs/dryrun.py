"""A restore's dry run: read and verify the source exactly as the restore would, write nothing.

It is an import job with the option ``dry_run``: the same checks up front, the same files
read (only the selected namespaces'), each checked as it is read (size, sha256, record count,
every record), the same error modes. Instead of writing, each selected record is compared with
the target, and the job's ``dry_run_report`` says per source namespace what the restore would do::

    {"onConflict": "overwrite", "targetExists": true, "wouldSucceed": true, "problem": null,
     "namespaces": {"films": {"target": "films", "selected": true, "records": 120,
                              "skippedBySelection": 20, "matched": 100, "rejected": 0,
                              "wouldWrite": 100, "new": 90, "conflicts": 10, "wouldOverwrite": 10,
                              "wouldSkip": 0, "wouldFail": 0, "wouldKeepNewer": 0}},
     "totals": {...the same counts, summed}}

``records``: the source namespace's records (read, or the manifest's count for a namespace not
selected; null for a plain file that was not read). ``conflicts``: selected records whose id the
target namespace already holds, or that an earlier file of the same restore writes there; they
split by ``--on-conflict``: overwrite replaces them (``wouldOverwrite``) except records written
to the target after the job started (``wouldKeepNewer``), skip keeps the target's
(``wouldSkip``), fail refuses the whole restore (``wouldFail``). ``wouldWrite`` is exactly what
the restore would write: 0 everywhere when it would fail. ``wouldSucceed`` is false (and
``problem`` says why) when the restore would fail after reading: conflicts with
``--on-conflict fail``, or a selection that matches nothing without ``--allow-empty``.
A source the restore would refuse up front, or a damaged file in error mode abort, fails the
dry run the same way.

The target is only read: its write sequence number is unchanged, and an index that does not
exist is not created.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import orjson

from spruce.errors import IntegrityError, InvalidArgument, ValidationError
from spruce.jobs.manager import JobContext
from spruce.jobs.restore import _where, _with_file, check_source, open_import
from spruce.records import DEFAULT_NAMESPACE_ALIAS

__all__ = ["COUNTS", "run_dry_run"]

COUNTS = ("records", "skippedBySelection", "matched", "rejected", "wouldWrite", "new", "conflicts",
          "wouldOverwrite", "wouldSkip", "wouldFail", "wouldKeepNewer")


def _shown(ns: str) -> str:
    return ns or DEFAULT_NAMESPACE_ALIAS


def run_dry_run(ctx: JobContext) -> None:
    s, opts = ctx.state, ctx.state.options
    on_conflict = opts.get("on_conflict", "overwrite")
    error_mode = opts.get("error_mode", "abort")
    source, nsmap, selection = open_import(ctx)
    engine = ctx.engine
    index = engine.index(s.index) if engine.has_index(s.index) else None
    check_source(source, opts, index.config if index is not None else None)
    if index is not None:
        dimension, vector_type = index.config.dimension, index.config.vector_type
    else:  # as _target_index would create it
        dim, vtype = source.infer()
        vector_type = opts.get("vector_type") or vtype or "dense"
        dimension = opts.get("dimension") or dim
        if vector_type == "dense" and not dimension:
            raise InvalidArgument(f"index {s.index!r} does not exist and the source does not say its "
                                  "dimension; pass dimension=")
    start = index.seq if index is not None else 0  # what is newer than this, overwrite keeps

    entries = list(source.files)
    wanted = [selection is None or selection.wants(e.namespace) for e in entries]
    # each attempt starts over: a dry run keeps nothing between attempts
    s.records_done = s.records_rejected = s.records_skipped = s.records_kept_newer = 0
    s.records_skipped_by_selection = s.files_done = s.bytes_done = 0
    s.records_total, s.files_total, s.percent_complete = None, sum(wanted), 0.0
    s.dry_run_report = None
    ctx.save()

    report: dict[str, dict[str, Any]] = {}
    for ns in source.namespaces:
        row: dict[str, Any] = {"target": _shown(nsmap.get(ns, ns)),
                               "selected": selection is None or selection.wants(ns), **dict.fromkeys(COUNTS, 0)}
        report[ns] = row
    for e, w in zip(entries, wanted, strict=True):
        if not w:  # not read: the manifest's count, when there is one
            row = report[e.namespace]
            for key in ("records", "skippedBySelection"):
                row[key] = None if e.records is None or row[key] is None else row[key] + e.records
    # ids an earlier file writes into the same target namespace (tracked only where it can happen)
    sources_of: dict[str, set[str]] = {}
    files_into: dict[str, int] = {}
    for e, w in zip(entries, wanted, strict=True):
        if w:
            t = nsmap.get(e.namespace, e.namespace)
            sources_of.setdefault(t, set()).add(e.namespace)
            files_into[t] = files_into.get(t, 0) + 1
    written: dict[str, set[str]] = {t: set() for t in files_into
                                    if len(sources_of[t]) > 1 or (source.kind == "plain" and files_into[t] > 1)}
    rejects_path = ctx.manager.store.side_file(s.id, ".rejects.jsonl")
    rejects_path.unlink(missing_ok=True)

    for i, entry in enumerate(entries):
        if not wanted[i]:
            continue
        ctx.check_cancel()
        target_ns = nsmap.get(entry.namespace, entry.namespace)
        counts = dict.fromkeys(COUNTS, 0)
        mine: list[str] = []
        rejects: list[dict[str, Any]] = []
        where = _where(source, entry)

        def on_error(err: ValidationError, rejects: list[dict[str, Any]] = rejects, where: str = where) -> None:
            rejects.append({"file": err.file or where, "line": err.line, "record": err.record,
                            "id": err.record_id, "field": err.field, "reason": err.reason})

        try:
            for batch in source.read(entry, dimension=dimension, vector_type=vector_type,
                                     on_error=on_error if error_mode == "continue" else None, hash_alongside=True):
                ctx.check_cancel()
                counts["records"] += len(batch)
                if selection is not None:
                    batch, out = selection.apply(batch)
                    counts["skippedBySelection"] += out
                if len(batch):
                    _classify(index, target_ns, batch.ids, on_conflict, start, written.get(target_ns), mine, counts)
        except (IntegrityError, ValidationError) as exc:
            if error_mode != "continue":
                if isinstance(exc, IntegrityError):
                    raise type(exc)(_with_file(str(exc), entry.path, where)) from exc
                raise exc if exc.file else exc.located(file=where)
            rejects = [{"file": entry.path or where, "line": None, "record": None, "id": None, "field": None,
                        "reason": f"whole file skipped: {exc}"}]
            counts = dict.fromkeys(COUNTS, 0)
            counts["rejected"] = entry.records or 1
            mine = []
            note = f"{_with_file(str(exc), entry.path, where)}: the whole file would be skipped (error mode continue)"
            if note not in s.notes:
                s.notes.append(note)
        else:
            counts["rejected"] = len(rejects)
        if target_ns in written:
            written[target_ns].update(mine)
        row = report[entry.namespace]
        for key in COUNTS:
            if row[key] is not None:
                row[key] += counts[key]
        if rejects:
            with os.fdopen(os.open(rejects_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as f:
                for r in rejects:
                    f.write(orjson.dumps(r) + b"\n")
            s.rejects_path = str(rejects_path)
        ctx.progress(files=1, rejected=counts["rejected"], not_selected=counts["skippedBySelection"],
                     bytes=_size(source, entry), force=True)

    s.records_skipped_by_selection = sum(r["skippedBySelection"] or 0 for r in report.values())
    s.dry_run_report = _finish(report, selection, on_conflict, index is not None)
    ctx.save()


def _classify(index: Any, target_ns: str, ids: Sequence[str], on_conflict: str, start: int,
              written: set[str] | None, mine: list[str], counts: dict[str, int]) -> None:
    """Count what the restore would do with these selected records (see the module's doc)."""
    seqs = _existing(index, target_ns, ids) if index is not None else {}
    counts["matched"] += len(ids)
    for rid in ids:
        seq = seqs.get(rid)
        earlier = written is not None and (rid in written)
        if seq is None and not earlier:
            counts["new"] += 1
            counts["wouldWrite"] += 1
            mine.append(rid)
            continue
        counts["conflicts"] += 1
        if on_conflict == "skip":
            counts["wouldSkip"] += 1
        elif seq is not None and on_conflict == "fail":
            counts["wouldFail"] += 1
        elif seq is not None and seq > start:
            counts["wouldKeepNewer"] += 1  # written after the job started: overwrite keeps it
        else:
            counts["wouldOverwrite"] += 1
            counts["wouldWrite"] += 1
            mine.append(rid)


def _existing(index: Any, ns: str, ids: Sequence[str]) -> dict[str, int]:
    """id -> the write sequence number of the target's record, for the ids it holds."""
    conn = index._reader()
    found: dict[str, int] = {}
    for k in range(0, len(ids), 500):
        chunk = list(ids[k:k + 500])
        q = f"SELECT id, seq FROM records WHERE ns = ? AND id IN ({','.join('?' * len(chunk))})"
        found.update((rid, seq) for rid, seq in conn.execute(q, (ns, *chunk)))
    return found


def _finish(report: dict[str, dict[str, Any]], selection: Any, on_conflict: str, exists: bool) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    for key in COUNTS:
        values = [r[key] for r in report.values()]
        totals[key] = None if any(v is None for v in values) else sum(values)
    problem = None
    if on_conflict == "fail" and totals["wouldFail"]:
        problem = (f"{totals['wouldFail']} selected record(s) already exist in the target (--on-conflict fail): "
                   "the restore would fail before writing anything")
    elif selection is not None and not selection.allow_empty and not totals["matched"]:
        problem = str(selection.empty_error()).replace("nothing was written", "the restore would fail and write nothing")
    if problem is not None:
        for row in [*report.values(), totals]:
            row["wouldWrite"] = 0
    return {"onConflict": on_conflict, "targetExists": exists, "wouldSucceed": problem is None,
            "problem": problem, "namespaces": {_shown(ns): row for ns, row in report.items()}, "totals": totals}


def _size(source: Any, entry: Any) -> int:
    from spruce.jobs.restore import _file_bytes

    return _file_bytes(source.store, entry)
