"""The Python API, shaped like the official pinecone SDK.

``spruce.Client(data_dir=...)`` works on an embedded data folder (the default);
code written for ``pinecone.Pinecone`` moves over by changing the import.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from spruce import jobs, models
from spruce.engine import DataDirLocked, Engine
from spruce.engine.index import Index as EngineIndex
from spruce.errors import FailedPrecondition, InvalidArgument, NotFound
from spruce.jobs import JobManager, JobState, JobStatus
from spruce.records import IndexConfig, validate_index_name


def index_model(cfg: IndexConfig, host: str) -> models.IndexModel:
    return models.IndexModel(
        name=cfg.name,
        dimension=cfg.dimension,
        metric=cfg.metric,
        host=host,
        spec=cfg.spec,
        status=models.IndexStatus(ready=cfg.state == "Ready", state=cfg.state, spruce_job=cfg.initializing_job),
        vector_type=cfg.vector_type,
        deletion_protection=cfg.deletion_protection,
        tags=cfg.tags or None,
    )


class Client:
    """Entry point: manages indexes in a data folder (embedded mode), or, given ``host=``,
    a running ``spruce serve`` over HTTP (``spruce.remote.RemoteClient``, same methods and results)."""

    def __new__(cls, data_dir: str | os.PathLike[str] | None = None, *, host: str | None = None,
                api_key: str | None = None, **kwargs: Any) -> Any:
        if host is not None:
            if data_dir is not None:
                raise TypeError("Client() takes data_dir (embedded) or host (a server), not both")
            from spruce.remote import RemoteClient

            return RemoteClient(host, api_key, **kwargs)
        return super().__new__(cls)

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *, resume_jobs: bool = False,
                 host: str | None = None, api_key: str | None = None) -> None:
        """Open a data folder. Jobs a crashed process left unfinished are marked Interrupted and
        stay so: resume one with ``resume_job(id)``, or pass ``resume_jobs=True`` to resume them
        all now (each is refused, and Superseded, if its index was written since it stopped)."""
        try:
            self._engine = Engine.acquire(data_dir)
        except DataDirLocked as exc:
            tail = ("; use spruce.Client(host=...) against the `spruce serve` that owns it, or wait for "
                    f"job {exc.job} to finish" if exc.job else
                    "; close the client in that process, or run `spruce serve --data DIR` there and "
                    "connect with spruce.Client(host=...)")
            raise DataDirLocked(exc.data_dir, exc.pid, exc.job, advice=tail) from None
        self._resume_jobs = resume_jobs
        self._manager: JobManager | None = None
        self._closed = False
        _ = self.jobs  # marks jobs a crashed process left running Interrupted

    @property
    def engine(self) -> Engine:
        if self._closed:
            raise FailedPrecondition("this spruce.Client is closed; open a new one")
        return self._engine

    def close(self, timeout: float = 30.0) -> None:
        """Stop this client's running jobs at their next batch boundary (they become Interrupted:
        whole files kept, resumable with ``resume_job``), then release the data folder's lock.
        Calls after ``close`` raise FailedPrecondition. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if self._engine._users <= 1 and self._manager is not None:
            self._manager.close(timeout=timeout)  # the last client of this engine: its jobs stop
        self._engine.release()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resume_job(self, job_id: str, sync: bool = False) -> JobState:
        """Run an Interrupted job again: an export from a fresh snapshot, an import after its last
        committed file. Refused (JobSuperseded; the job becomes Superseded) when its target
        index was written after the job stopped."""
        import spruce.sources  # noqa: F401 - a connector's job kind needs its runner registered

        return self.jobs.resume(job_id, sync=sync)

    def copy(self, src: str, dst: str, *, allow_lossy: bool = False, namespaces: list[str] | None = None,
             format: str = "jsonl.gz", overwrite: bool = False, sync: bool = True) -> JobState:
        """Copy every record from ``src`` to ``dst`` as a job (see ``spruce copy --help``): each is an
        index of this data folder, an archive URI, or a connector URI (``qdrant://``, ``postgresql://``,
        ``chroma://``, ``milvus://``, ``lancedb://``). With ``sync`` it returns the finished job, and
        raises the job's error if it failed."""
        from spruce.sources.copy import start_copy

        return start_copy(self.engine, src, dst, allow_lossy=allow_lossy, namespaces=namespaces, format=format,
                          overwrite=overwrite, sync=sync, manager=self.jobs)

    def verify_archive(self, uri: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Re-read every byte of the archive at ``uri``; the report as a dict (``ok``, ``problems``,
        counts; see ``spruce verify --json``). A missing path is NotFound, never a crashed export."""
        from spruce.archive import verify_archive
        from spruce.storage import open_archive_store

        return verify_archive(open_archive_store(uri, **dict(storage_options or {}))).to_dict()

    def inspect_archive(self, uri: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The archive's manifest as a dict (reads only the manifest)."""
        from spruce.archive import ArchiveReader
        from spruce.storage import open_archive_store

        return ArchiveReader(open_archive_store(uri, **dict(storage_options or {}))).manifest.to_dict()

    def _model(self, cfg: IndexConfig) -> models.IndexModel:
        return index_model(cfg, f"embedded://{cfg.name}")

    def create_index(self, name: str, dimension: int | None = None, metric: str | None = None,
                     spec: Mapping[str, Any] | Any = None, vector_type: str | None = None,
                     deletion_protection: str | None = None,
                     tags: Mapping[str, str] | None = None, **_ignored: Any) -> models.IndexModel:
        """Create an index; spec is accepted for SDK compatibility and recorded as given."""
        spec_dict = _spec_dict(spec)
        idx = self.engine.create_index(name, dimension=dimension, metric=metric, vector_type=vector_type,
                                        spec=spec_dict, tags=dict(tags) if tags else None,
                                        deletion_protection=deletion_protection)
        return self._model(idx.config)

    def describe_index(self, name: str) -> models.IndexModel:
        return self._model(self.engine.describe_index(name))

    def list_indexes(self) -> models.IndexList:
        return models.IndexList(self._model(c) for c in self.engine.list_indexes())

    def has_index(self, name: str) -> bool:
        return self.engine.has_index(name)

    def delete_index(self, name: str, timeout: int | None = None) -> None:
        self.engine.delete_index(name)

    def configure_index(self, name: str, deletion_protection: str | None = None,
                        tags: Mapping[str, str] | None = None, **_ignored: Any) -> models.IndexModel:
        return self._model(self.engine.configure_index(name, deletion_protection=deletion_protection,
                                                        tags=dict(tags) if tags else None))

    def Index(self, name: str | None = None, host: str | None = None) -> Index:
        """A handle on an index; it may not exist yet (``upsert_from_file`` creates it)."""
        if name is None and host and host.startswith("embedded://"):
            name = host.removeprefix("embedded://")
        if name is None:
            raise TypeError("Index() needs a name")
        validate_index_name(name)  # "" is an invalid name (InvalidArgument), not a missing argument
        return Index(self, name)

    # -- jobs -----------------------------------------------------------------

    @property
    def jobs(self) -> JobManager:
        """The job manager; opening it resumes jobs a crashed process left behind."""
        engine = self.engine  # raises once closed
        if self._manager is None or self._manager.closed:
            if self._resume_jobs:
                import spruce.sources  # noqa: F401 - the connectors' job kinds, to resume them (heavy: only then)
            self._manager = jobs.jobs_for(engine, auto_resume=self._resume_jobs)
        return self._manager

    def describe_export(self, export_id: str) -> models.ExportDescription:
        return jobs.export_description(self._job(export_id, "export"))

    describe_export_status = describe_export  # the seed's spelling

    def list_exports(self) -> list[models.ExportDescription]:
        return [jobs.export_description(s) for s in self.jobs.list("export")]

    def cancel_export(self, export_id: str) -> models.ExportDescription:
        self._job(export_id, "export")
        return jobs.export_description(self.jobs.cancel(export_id))

    def wait_export(self, export_id: str, timeout: float | None = None) -> models.ExportDescription:
        return jobs.export_description(self.jobs.wait(export_id, timeout=timeout))

    def describe_import(self, import_id: str) -> models.ImportDescription:
        return jobs.import_description(self._job(import_id, "import"))

    def list_imports(self) -> list[models.ImportDescription]:
        return [jobs.import_description(s) for s in self.jobs.list("import")]

    def cancel_import(self, import_id: str) -> models.ImportDescription:
        self._job(import_id, "import")
        return jobs.import_description(self.jobs.cancel(import_id))

    def wait_import(self, import_id: str, timeout: float | None = None) -> models.ImportDescription:
        return jobs.import_description(self.jobs.wait(import_id, timeout=timeout))

    def _job(self, job_id: str, kind: str) -> JobState:
        state = self.jobs.describe(job_id)
        if state.kind != kind:
            raise NotFound(f"{kind} {job_id!r} not found")
        return state


def _spec_dict(spec: Any) -> dict[str, Any] | None:
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return dict(spec)
    if hasattr(spec, "to_dict"):
        return spec.to_dict()
    cloud, region = getattr(spec, "cloud", None), getattr(spec, "region", None)
    if cloud is not None:
        return {"serverless": {"cloud": str(getattr(cloud, "value", cloud)),
                               "region": str(region)}}
    return None


class Index:
    """One index's data operations, with the pinecone SDK's argument names and results."""

    def __init__(self, client: Client, name: str) -> None:
        self._client = client
        self.name = name

    @property
    def _index(self) -> EngineIndex:
        return self._client.engine.index(self.name)

    def export_index(self, storage_path: str, format: str = "jsonl.gz", namespaces: Sequence[str] | None = None,
                     filter: Mapping[str, Any] | None = None, sync: bool = False, *,
                     compression_level: int | None = None, part_max_bytes: int | None = None,
                     part_max_records: int | None = None, overwrite: bool = False,
                     storage_options: Mapping[str, Any] | None = None,
                     link_expiry_seconds: int | None = None, encryption_key: Any = None,
                     **_ignored: Any) -> models.ExportResponse:
        """Export one exact snapshot of this index to ``storage_path`` (a folder or s3/gs/az URI).

        The archive's manifest is written last: until the job is Completed there is no
        manifest, so a partial archive can never be mistaken for a whole one. With
        ``encryption_key`` (``spruce.archive.ArchiveKey.from_file(path)`` or ``.from_env()``
        for SPRUCE_ARCHIVE_PASSPHRASE) every data file is encrypted before it leaves the
        process (docs/FORMAT.md, "Encryption").
        """
        state = jobs.start_export(
            self._client.engine, self.name, storage_path, format=format, namespaces=namespaces, filter=filter,
            compression_level=compression_level, part_max_bytes=part_max_bytes,
            part_max_records=part_max_records, overwrite=overwrite, storage_options=storage_options,
            link_expiry_seconds=link_expiry_seconds, sync=sync, manager=self._client.jobs,
            encryption_key=encryption_key)
        return models.ExportResponse(export_id=state.id, status=JobStatus(state.status), sync=sync)

    def upsert_from_file(self, uri: str, sync: bool = True, *, on_conflict: str = "overwrite",
                         namespace_map: Mapping[str, str] | None = None, error_mode: str = "abort",
                         namespace: str | None = None, dimension: int | None = None, metric: str | None = None,
                         vector_type: str | None = None, storage_options: Mapping[str, Any] | None = None,
                         supersede: bool = False, allow_metric_change: bool = False,
                         namespaces: Sequence[str] | None = None, ids: Iterable[str] | None = None,
                         filter: Mapping[str, Any] | None = None, allow_empty: bool = False,
                         dry_run: bool = False, encryption_key: Any = None) -> models.ImportDescription:
        """Restore an archive (verified file by file) or plain JSONL/Parquet files into this index.

        Creates the index when missing; merges when present. With sync=True (the default)
        it returns when done and raises the job's error if it failed. ``on_conflict="overwrite"``
        replaces only records older than the job's start, never ones written since. While
        another restore writes this index it raises JobConflict, unless ``supersede`` cancels
        that one; the same restore run again resumes its own interrupted job.

        ``namespace`` is the namespace a single plain file (or the files at the top of a plain
        folder) is restored into: the CLI's ``--target-namespace``; it is refused for an archive,
        whose records keep their namespaces (rename them with ``namespace_map``).

        Selection (the CLI's ``--namespace``, ``--ids-file``, ``--filter``): ``namespaces`` restores
        only those namespaces of the source (its names, before ``namespace_map``), ``ids`` only
        those record ids, ``filter`` only the records whose metadata match it (Pinecone's filter
        language). A record is restored when it passes every part given; the description's
        ``records_skipped_by_selection`` counts the others. A selection that matches no record
        raises EmptySelection (an InvalidArgument) having written nothing, unless
        ``allow_empty=True``. A resumed job applies the same selection.

        ``dry_run=True`` reads and verifies the source as the restore would and writes nothing;
        the description's ``dry_run_report`` says per namespace what it would write, its conflicts
        (split by ``on_conflict``) and what the selection leaves out (see ``spruce.jobs.dryrun``).

        An encrypted archive needs ``encryption_key`` (``spruce.archive.ArchiveKey``): without it,
        or with another key, this raises at once and nothing is written.
        """
        state = jobs.start_import(
            self._client.engine, self.name, uri, on_conflict=on_conflict, namespace_map=namespace_map,
            error_mode=error_mode, namespace=namespace, dimension=dimension, metric=metric,
            vector_type=vector_type, storage_options=storage_options, sync=sync, manager=self._client.jobs,
            supersede=supersede, allow_metric_change=allow_metric_change, namespaces=namespaces, ids=ids,
            filter=filter, allow_empty=allow_empty, dry_run=dry_run, encryption_key=encryption_key)
        return jobs.import_description(state)

    def upsert(self, vectors: Iterable[Any], namespace: str | None = None, batch_size: int | None = None,
               show_progress: bool = False, **_ignored: Any) -> models.UpsertResponse:
        """Upsert records; each call (or each batch_size chunk) is atomic."""
        vectors = list(vectors)
        if not batch_size:
            return self._index.upsert(vectors, namespace=namespace)
        total = 0
        for start in range(0, len(vectors), batch_size):
            total += self._index.upsert(vectors[start:start + batch_size], namespace=namespace).upserted_count
        return models.UpsertResponse(upserted_count=total)

    def query(self, *, top_k: int = 10, vector: Sequence[float] | None = None, id: str | None = None,
              namespace: str | None = None, filter: Mapping[str, Any] | None = None,
              include_values: bool = False, include_metadata: bool = False,
              sparse_vector: Any = None, exact: bool = False, **_ignored: Any) -> models.QueryResponse:
        """``exact=True`` (a spruce extension) scans every record instead of asking the graph."""
        return self._index.query(top_k=top_k, vector=vector, id=id, namespace=namespace, filter=filter,
                                 include_values=include_values, include_metadata=include_metadata,
                                 sparse_vector=sparse_vector, exact=exact)

    def search_status(self) -> dict[str, dict[str, Any]]:
        """Per namespace, how queries are answered: "exact" (below the graph threshold), "building"
        (a graph is being built; queries scan what it does not cover) or "ann" (a spruce extension)."""
        return self._index.search_status()

    def wait_for_index(self, timeout: float = 600.0) -> bool:
        """Wait until background graph builds are done (queries never need to; benchmarks do)."""
        return self._index.wait_for_index(timeout)

    def fetch(self, ids: Sequence[str], namespace: str | None = None, **_ignored: Any) -> models.FetchResponse:
        return self._index.fetch(ids, namespace=namespace)

    def update(self, id: str, values: Sequence[float] | None = None,
               set_metadata: Mapping[str, Any] | None = None, namespace: str | None = None,
               sparse_values: Any = None, **_ignored: Any) -> models.UpdateResponse:
        return self._index.update(id, values=values, set_metadata=set_metadata, namespace=namespace,
                                  sparse_values=sparse_values)

    def delete(self, ids: Sequence[str] | None = None, delete_all: bool | None = None,
               namespace: str | None = None, filter: Mapping[str, Any] | None = None,
               **_ignored: Any) -> dict[str, Any]:
        return self._index.delete(ids=ids, delete_all=delete_all, namespace=namespace, filter=filter)

    def list_paginated(self, prefix: str | None = None, limit: int | None = None,
                       pagination_token: str | None = None, namespace: str | None = None,
                       **_ignored: Any) -> models.ListResponse:
        return self._index.list_paginated(prefix=prefix, limit=limit, pagination_token=pagination_token,
                                          namespace=namespace)

    def list(self, prefix: str | None = None, limit: int | None = None,
             pagination_token: str | None = None, namespace: str | None = None,
             **_ignored: Any) -> Iterator[list[str]]:
        return self._index.list(prefix=prefix, limit=limit, pagination_token=pagination_token,
                                namespace=namespace)

    def describe_index_stats(self, filter: Mapping[str, Any] | None = None,
                             **_ignored: Any) -> models.DescribeIndexStatsResponse:
        return self._index.describe_index_stats(filter=filter)

    def list_namespaces_paginated(self, prefix: str | None = None, limit: int | None = None,
                                  pagination_token: str | None = None) -> models.ListNamespacesResponse:
        return self._index.list_namespaces(prefix=prefix, limit=limit, pagination_token=pagination_token)

    def list_namespaces(self, prefix: str | None = None, limit: int | None = None) -> Iterator[
            models.NamespaceDescription]:
        token = None
        while True:
            page = self._index.list_namespaces(prefix=prefix, limit=limit, pagination_token=token)
            yield from page.namespaces
            if page.pagination is None:
                return
            token = page.pagination.next

    def create_namespace(self, name: str, schema: Mapping[str, Any] | None = None) -> models.NamespaceDescription:
        """Create an empty namespace, optionally with a metadata schema
        (``{"fields": {"genre": {"filterable": True}}}``), as the SDK's ``create_namespace``.
        AlreadyExists if the name is taken; the default namespace cannot be created."""
        return self._index.create_namespace(name, schema)

    def describe_namespace(self, namespace: str | None = None, *,
                           name: str | None = None) -> models.NamespaceDescription:
        """Record count (and schema) of a namespace; ``name=`` as SDK 9+ spells it."""
        return self._index.describe_namespace(_namespace_arg(namespace, name))

    def delete_namespace(self, namespace: str | None = None, *, name: str | None = None) -> dict[str, Any]:
        self._index.delete_namespace(_namespace_arg(namespace, name))
        return {}


def _namespace_arg(namespace: str | None, name: str | None) -> str:
    """SDKs up to 7 pass ``namespace=``, 9 and later ``name=``: take either, not both."""
    if namespace is not None and name is not None:
        raise InvalidArgument("pass either name= or namespace=, not both")
    return (name if name is not None else namespace) or ""


def copy(src: str, dst: str, *, data_dir: str | None = None, **options: Any) -> JobState:
    """``spruce.copy(src, dst)``: the copy job run to the end with an embedded client on ``data_dir``
    (needed only when an end is an index of that folder). Options as ``Client.copy``."""
    with Client(data_dir=data_dir) as c:
        return c.copy(src, dst, **options)
