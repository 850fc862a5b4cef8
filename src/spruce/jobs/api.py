"""The jobs API: validated up front, persisted, progress-reporting, resumable.

Bad options fail at once with InvalidArgument; only the work itself runs as
a job, so a job never fails for a reason that was knowable when it started.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from spruce import models
from spruce.engine import Engine
from spruce.errors import InvalidArgument
from spruce.filters import validate_filter
from spruce.jobs.manager import JobContext, JobManager
from spruce.jobs.state import JobState, JobStatus, new_job_id
from spruce.records import normalize_namespace, validate_index_name
from spruce.storage import open_store

FORMATS = ("jsonl.gz", "jsonl", "parquet")
#: Storage options that are secrets: kept in this process's memory only, never in job state.
SECRET_OPTIONS = frozenset({"access_key_id", "secret_access_key", "session_token", "account_key", "sas_token"})
ON_CONFLICT = ("overwrite", "skip", "fail")
ERROR_MODES = ("abort", "continue")

__all__ = [
    "ERROR_MODES", "FORMATS", "ON_CONFLICT", "JobContext", "JobManager", "JobState", "JobStatus",
    "export_description", "import_description", "jobs_for", "split_storage_options", "start_export",
    "start_import",
]


def jobs_for(engine: Engine, *, auto_resume: bool = False, log: Any = None) -> JobManager:
    return JobManager.for_engine(engine, auto_resume=auto_resume, log=log)


def split_storage_options(options: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(persistable options, secrets). A resumed job in a new process gets secrets from the
    environment's credential chain instead."""
    opts = dict(options or {})
    secrets = {k: opts.pop(k) for k in list(opts) if k in SECRET_OPTIONS}
    return opts, secrets


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise InvalidArgument(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def start_export(engine: Engine, index: str, storage_path: str, *, format: str = "jsonl.gz",
                 namespaces: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None,
                 compression_level: int | None = None, part_max_bytes: int | None = None,
                 part_max_records: int | None = None, overwrite: bool = False,
                 storage_options: Mapping[str, Any] | None = None, link_expiry_seconds: int | None = None,
                 sync: bool = False, manager: JobManager | None = None, run: bool = True,
                 encryption_key: Any = None) -> JobState:
    """Start an export of one exact snapshot of ``index`` to ``storage_path``.

    ``encryption_key`` (spruce.archive.ArchiveKey, from a key file or a passphrase) encrypts every
    data file; the key stays in this process's memory, the job's state records only where it
    comes from (spruce.jobs.encryption)."""
    from spruce.jobs.encryption import encryption_options

    engine.index(index)  # NotFound now, not as a failed job
    encryption = encryption_options(encryption_key, writing=True)
    _choice("format", format, FORMATS)
    if namespaces is not None:
        if isinstance(namespaces, str):
            raise InvalidArgument("namespaces must be a list of namespace names")
        namespaces = list(dict.fromkeys(normalize_namespace(n) for n in namespaces))
    if compression_level is not None and format == "parquet":
        raise InvalidArgument("compression_level applies to jsonl.gz only: Parquet parts are written with "
                              "snappy, which has no levels")
    if compression_level is not None and format == "jsonl":
        raise InvalidArgument("compression_level applies to jsonl.gz only: jsonl is not compressed")
    if compression_level is not None and not (
            isinstance(compression_level, int) and not isinstance(compression_level, bool)
            and 0 <= compression_level <= 3):
        raise InvalidArgument(f"compression_level for jsonl.gz must be an integer from 0 to 3 (isal's levels), "
                              f"got {compression_level!r}")
    if link_expiry_seconds is not None and (
            isinstance(link_expiry_seconds, bool) or not isinstance(link_expiry_seconds, int)
            or not 1 <= link_expiry_seconds <= 7 * 24 * 3600):
        raise InvalidArgument(f"link_expiry_seconds must be an integer from 1 to 604800 (7 days, as S3's "
                              f"pre-signed URLs), got {link_expiry_seconds!r}")
    for name, v in (("part_max_bytes", part_max_bytes), ("part_max_records", part_max_records)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise InvalidArgument(f"{name} must be a positive integer, got {v!r}")
    store = open_store(storage_path, **dict(storage_options or {}))
    _check_local_destination(store)
    storage, secrets = split_storage_options(storage_options)
    state = JobState(
        id=new_job_id("export"), kind="export", index=index, uri=store.uri,
        options={
            "format": format, "namespaces": namespaces, "filter": validate_filter(filter),
            "compression_level": compression_level, "part_max_bytes": part_max_bytes,
            "part_max_records": part_max_records, "overwrite": overwrite,
            "storage": storage, "link_expiry_seconds": link_expiry_seconds,
        } | ({"encryption": encryption} if encryption else {}),  # absent when off: older jobs stay "the same command"
    )
    return (manager or jobs_for(engine)).submit(state, sync=sync, run=run, secrets=secrets, key=encryption_key)


def _check_local_destination(store: Any) -> None:
    """A local export folder that is a file, or cannot be created, is refused before any job."""
    import os
    from pathlib import Path

    from spruce.storage.local import make_dirs

    root = store.local_path("")
    if root is None:
        return
    if os.path.exists(root) and not os.path.isdir(root):
        raise InvalidArgument(f"{root} is a file; export to a folder (it is created when missing)")
    try:
        make_dirs(Path(root))  # owner-only inside a data folder, like everything in it
    except OSError as exc:
        raise InvalidArgument(f"cannot create the export folder {exc.filename or root}: "
                              f"{exc.strerror or exc}") from None


def start_import(engine: Engine, index: str, uri: str, *, on_conflict: str = "overwrite",
                 namespace_map: Mapping[str, str] | None = None, error_mode: str = "abort",
                 namespace: str | None = None, dimension: int | None = None, metric: str | None = None,
                 vector_type: str | None = None, storage_options: Mapping[str, Any] | None = None,
                 sync: bool = True, manager: JobManager | None = None, run: bool = True,
                 supersede: bool = False, allow_metric_change: bool = False,
                 namespaces: Sequence[str] | None = None, ids: Iterable[str] | None = None,
                 filter: Mapping[str, Any] | None = None, allow_empty: bool = False,
                 dry_run: bool = False, encryption_key: Any = None) -> JobState:
    """Start a restore of an archive, or of a user's plain JSONL/Parquet files, into ``index``.

    One job writes an index at a time: while another restore into ``index`` is running or
    interrupted this raises JobConflict, unless ``supersede`` cancels that one first. The same
    restore run again (same source, target and options) resumes its interrupted job instead.

    ``namespace`` is where a single plain file (or the files at the top of a plain folder) go.
    ``namespaces``, ``ids`` and ``filter`` select what is restored (``spruce.jobs.selection``);
    a selection that matches nothing is an error unless ``allow_empty``. ``dry_run`` reads and
    verifies as the restore would and writes nothing (``spruce.jobs.dryrun``).
    """
    from spruce.jobs.selection import IDS_SUFFIX, check_selection, load_selection, save_ids, selection_options

    validate_index_name(index)
    _choice("on_conflict", on_conflict, ON_CONFLICT)
    _choice("error_mode", error_mode, ERROR_MODES)
    nsmap = {}
    for old, new in (namespace_map or {}).items():
        nsmap[normalize_namespace(old)] = normalize_namespace(new)
    chosen, kept_ids = selection_options(namespaces=namespaces, ids=ids, filter=filter, allow_empty=allow_empty)
    store = open_store(uri, **dict(storage_options or {}))
    storage, secrets = split_storage_options(storage_options)
    options: dict[str, Any] = {
        "on_conflict": on_conflict, "namespace_map": nsmap, "error_mode": error_mode,
        "namespace": normalize_namespace(namespace), "dimension": dimension, "metric": metric,
        "vector_type": vector_type, "storage": storage,
    }
    if allow_metric_change:
        options["allow_metric_change"] = True  # only when set: same_command() still matches older jobs
    options.update(chosen)  # likewise: only the parts of a selection that were given
    if dry_run:
        options["dry_run"] = True
    from spruce.jobs.encryption import encryption_options

    enc = encryption_options(encryption_key, writing=False)
    if enc:
        options["encryption"] = enc  # where the key comes from, never the key
    # a mistake is refused now, not as a failed job (the job checks again when it runs)
    from spruce.archive import open_source
    from spruce.jobs.restore import check_source

    state = JobState(id=new_job_id("import"), kind="import", index=index, uri=store.uri, options=options)
    manager = manager or jobs_for(engine)
    path = manager.store.side_file(state.id, IDS_SUFFIX)
    if kept_ids is not None:
        save_ids(path, kept_ids)
    try:
        source = open_source(store, namespace=options["namespace"], key=encryption_key)
        source.require_key()  # an encrypted archive without its key: one line, no job
        state.notes.extend(check_selection(source, options, load_selection(state, path)))
        check_source(source, options, engine.describe_index(index) if engine.has_index(index) else None)
        out = manager.submit(state, sync=sync, run=run, secrets=secrets, supersede=supersede, key=encryption_key)
    except BaseException:
        if manager.store.side_file(state.id, ".json").exists():
            raise  # the job was recorded (and failed as a job): it keeps its ids
        path.unlink(missing_ok=True)
        raise
    if out.id != state.id:
        path.unlink(missing_ok=True)  # the same command's interrupted job was resumed: it has its own
    return out


def export_description(s: JobState) -> models.ExportDescription:
    return models.ExportDescription(
        export_id=s.id, index=s.index, uri=s.uri, status=JobStatus(s.status),
        percent_complete=s.percent_complete, records_exported=s.records_done, records_total=s.records_total,
        bytes_written=s.bytes_done, created_at=s.created_at, started_at=s.started_at,
        finished_at=s.finished_at, error=s.error, download_url=s.download_url,
        download_urls=s.download_urls, download_expires_at=s.download_expires_at,
        snapshot_point=s.snapshot_point, attempts=s.attempts, resumed_at=list(s.resumed_at), reason=s.reason,
    )


def import_description(s: JobState) -> models.ImportDescription:
    return models.ImportDescription(
        import_id=s.id, index=s.index, uri=s.uri, status=JobStatus(s.status),
        percent_complete=s.percent_complete, records_imported=s.records_done,
        records_rejected=s.records_rejected, records_total=s.records_total, bytes_read=s.bytes_done,
        files_done=s.files_done, files_total=s.files_total, created_at=s.created_at,
        started_at=s.started_at, finished_at=s.finished_at, error=s.error, rejects_path=s.rejects_path,
        notes=list(s.notes), records_skipped=s.records_skipped, records_kept_newer=s.records_kept_newer,
        attempts=s.attempts, resumed_at=list(s.resumed_at), reason=s.reason,
        records_skipped_by_selection=s.records_skipped_by_selection, dry_run_report=s.dry_run_report,
    )
