"""Response objects shaped like the official pinecone SDK's.

Attribute access (``fetch(...).vectors[id].values``) and dict access
(``resp["matches"]``) both work, so code written for the SDK moves over by
changing one import. ``to_dict()`` gives the snake_case JSON form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class _DictLike:
    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __contains__(self, key: str) -> bool:
        return key in {f.name for f in fields(self)}  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


def _plain(value: Any) -> Any:
    if isinstance(value, _DictLike):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass(slots=True, eq=True)
class SparseVector(_DictLike):
    indices: list[int]
    values: list[float]


@dataclass(slots=True)
class Vector(_DictLike):
    id: str
    values: list[float] = field(default_factory=list)
    sparse_values: SparseVector | None = None
    metadata: dict[str, Any] | None = None


@dataclass(slots=True)
class ScoredVector(_DictLike):
    id: str
    score: float
    values: list[float] = field(default_factory=list)
    sparse_values: SparseVector | None = None
    metadata: dict[str, Any] | None = None


@dataclass(slots=True)
class Usage(_DictLike):
    read_units: int = 0


@dataclass(slots=True)
class QueryResponse(_DictLike):
    matches: list[ScoredVector]
    namespace: str = ""
    usage: Usage | None = None


@dataclass(slots=True)
class FetchResponse(_DictLike):
    vectors: dict[str, Vector]
    namespace: str = ""
    usage: Usage | None = None


@dataclass(slots=True)
class UpsertResponse(_DictLike):
    upserted_count: int


@dataclass(slots=True)
class UpdateResponse(_DictLike):
    matched_records: int | None = None


@dataclass(slots=True)
class Pagination(_DictLike):
    next: str


@dataclass(slots=True)
class ListItem(_DictLike):
    id: str


@dataclass(slots=True)
class ListResponse(_DictLike):
    vectors: list[ListItem]
    pagination: Pagination | None = None
    namespace: str = ""
    usage: Usage | None = None


def iter_id_pages(list_paginated: Callable[..., ListResponse], *, pagination_token: str | None = None,
                  **kwargs: Any) -> Iterator[list[str]]:
    """Follow ``list_paginated`` to the end, yielding each page's ids, as the SDK's ``list`` does."""
    token = pagination_token
    while True:
        page = list_paginated(pagination_token=token, **kwargs)
        if page.vectors:
            yield [v.id for v in page.vectors]
        if page.pagination is None:
            return
        token = page.pagination.next


@dataclass(slots=True)
class NamespaceSummary(_DictLike):
    vector_count: int


@dataclass(slots=True)
class DescribeIndexStatsResponse(_DictLike):
    namespaces: dict[str, NamespaceSummary]
    dimension: int | None
    index_fullness: float
    total_vector_count: int
    metric: str
    vector_type: str


@dataclass(slots=True)
class NamespaceFieldConfig(_DictLike):
    """How one metadata field is indexed. Pinecone accepts only ``filterable: true``."""

    filterable: bool = True


@dataclass(slots=True)
class NamespaceSchema(_DictLike):
    """Which metadata fields a namespace indexes, as given to ``create_namespace``."""

    fields: dict[str, NamespaceFieldConfig] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NamespaceSchema:
        return cls(fields={k: NamespaceFieldConfig(filterable=bool(v.get("filterable", False)))
                           for k, v in (d.get("fields") or {}).items()})


@dataclass(slots=True)
class IndexedFields(_DictLike):
    fields: list[str] = field(default_factory=list)


@dataclass(slots=True)
class NamespaceDescription(_DictLike):
    """One namespace, shaped like the SDK's: ``schema`` and ``indexed_fields`` are None when the
    namespace was created without a schema (or by an upsert)."""

    name: str
    record_count: int
    schema: NamespaceSchema | None = None
    indexed_fields: IndexedFields | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> NamespaceDescription:
        """From the API's JSON (``record_count`` may be a string, as protobuf writes int64)."""
        schema = d.get("schema")
        indexed = d.get("indexed_fields")
        return cls(name=d.get("name", ""), record_count=int(d.get("record_count") or 0),
                   schema=NamespaceSchema.from_dict(schema) if isinstance(schema, Mapping) else None,
                   indexed_fields=IndexedFields(fields=list(indexed.get("fields") or []))
                   if isinstance(indexed, Mapping) else None)


@dataclass(slots=True)
class ListNamespacesResponse(_DictLike):
    namespaces: list[NamespaceDescription]
    pagination: Pagination | None = None
    total_count: int = 0


@dataclass(slots=True)
class IndexStatus(_DictLike):
    ready: bool = True
    state: str = "Ready"
    #: spruce's extension: the restore job filling an ``Initializing`` index
    spruce_job: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ready": self.ready, "state": self.state}
        if self.spruce_job is not None:
            d["spruce_job"] = self.spruce_job
        return d


@dataclass(slots=True)
class IndexModel(_DictLike):
    name: str
    dimension: int | None
    metric: str
    host: str
    spec: dict[str, Any]
    status: IndexStatus
    vector_type: str = "dense"
    deletion_protection: str = "disabled"
    tags: dict[str, str] | None = None


class IndexList(list):
    """A list of IndexModel with the SDK's ``names()`` helper."""

    def names(self) -> list[str]:
        return [i.name for i in self]

    @property
    def indexes(self) -> list[IndexModel]:
        return list(self)


# -- export and import jobs ----------------------------------------------------


@dataclass(slots=True)
class ExportResponse(_DictLike):
    """What ``export_index`` returns at once: poll ``describe_export(export_id)`` unless sync."""

    export_id: str
    status: str
    sync: bool


@dataclass(slots=True)
class ExportDescription(_DictLike):
    export_id: str
    index: str
    uri: str
    status: str
    percent_complete: float
    records_exported: int
    records_total: int | None
    bytes_written: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    download_url: str | None
    download_urls: dict[str, str] | None
    download_expires_at: str | None
    snapshot_point: int | None
    attempts: int = 0
    resumed_at: list[str] | None = None
    reason: str | None = None

    @property
    def id(self) -> str:
        return self.export_id


@dataclass(slots=True)
class ImportDescription(_DictLike):
    import_id: str
    index: str
    uri: str
    status: str
    percent_complete: float
    records_imported: int
    records_rejected: int
    records_total: int | None
    bytes_read: int
    files_done: int
    files_total: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    rejects_path: str | None
    notes: list[str]
    records_skipped: int = 0
    records_kept_newer: int = 0
    attempts: int = 0
    resumed_at: list[str] | None = None
    reason: str | None = None
    #: Records of the source a selective restore left out (namespaces, ids, filter).
    records_skipped_by_selection: int = 0
    #: A dry run's report: what the restore would do, per namespace (see spruce.jobs.dryrun).
    dry_run_report: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return self.import_id
