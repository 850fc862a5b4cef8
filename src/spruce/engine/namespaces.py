"""Namespaces as things of their own: created (with an optional metadata schema), listed,
described and deleted, as Pinecone's API 2025-10 has them.

Why a table: before that API a namespace was only the records in it, so an empty one could not
exist. Now a namespace can be created before any record lands in it, and it carries a schema,
so each index's SQLite database keeps one row per namespace (``namespaces``: name, schema JSON,
created_at). Records stay where they were; the row only says the namespace exists.

The rules (docs/DESIGN.md, "Namespaces"):

* A namespace exists from ``create_namespace`` or from the first upsert into it, until
  ``delete_namespace``. ``delete(delete_all=True)``, or deleting its records one by one,
  empties it and keeps it, as the official SDK documents ("to empty a namespace but keep it,
  use delete with delete_all=True"). One kind of namespace, however it was created, so an
  export and a restore need no flag to say which kind each one was.
* The default namespace ("", alias ``__default__``) always exists: it cannot be created
  (400, as the SDK refuses it), describing it works while it is empty, and deleting it removes
  its records. It is listed once something has been written to it.
* The schema is stored and returned. spruce indexes every metadata field whatever the schema
  says, so a filter on a field outside it still works: a superset of Pinecone's behaviour.
* ``describe_index_stats`` lists namespaces that hold records, as before and as Pinecone's
  stats do; ``list_namespaces`` and ``describe_namespace`` show empty ones too.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from spruce import models
from spruce.engine import changes
from spruce.engine.paging import decode_token, encode_token
from spruce.errors import AlreadyExists, InvalidArgument, NotFound, ValidationError
from spruce.records import DEFAULT_NAMESPACE_ALIAS, IndexConfig, normalize_namespace

if TYPE_CHECKING:
    from spruce.engine.memory import NamespaceData
    from spruce.engine.rwlock import RWLock

__all__ = ["NamespaceOps", "NamespaceRow", "checked_name", "ensure", "get", "restore_row", "rows",
           "validate_schema"]

DEFAULT_LIST_LIMIT = 100


@dataclass(frozen=True, slots=True)
class NamespaceRow:
    name: str  # "" for the default namespace
    schema: dict[str, Any] | None
    created_at: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _row(r: tuple[Any, ...]) -> NamespaceRow:
    return NamespaceRow(name=r[0], schema=None if r[1] is None else orjson.loads(r[1]), created_at=r[2])


# -- SQL (each runs on the caller's connection, inside the caller's transaction) ----------------


def rows(conn: sqlite3.Connection) -> list[NamespaceRow]:
    """Every namespace of the index, in name order."""
    return [_row(r) for r in conn.execute("SELECT name, schema, created_at FROM namespaces ORDER BY name")]


def get(conn: sqlite3.Connection, ns: str) -> NamespaceRow | None:
    r = conn.execute("SELECT name, schema, created_at FROM namespaces WHERE name = ?", (ns,)).fetchone()
    return None if r is None else _row(r)


def ensure(conn: sqlite3.Connection, ns: str) -> None:
    """An upsert into a namespace creates it (no schema) unless it exists."""
    conn.execute("INSERT OR IGNORE INTO namespaces (name, schema, created_at) VALUES (?, NULL, ?)", (ns, _now()))


def _insert(conn: sqlite3.Connection, ns: str, schema: dict[str, Any] | None) -> bool:
    """Create ``ns``; False when it exists already (left as it is)."""
    before = conn.total_changes
    conn.execute("INSERT OR IGNORE INTO namespaces (name, schema, created_at) VALUES (?, ?, ?)",
                 (ns, None if schema is None else orjson.dumps(schema).decode(), _now()))
    return conn.total_changes > before


def restore_row(conn: sqlite3.Connection, ns: str, schema: dict[str, Any] | None) -> str:
    """Make ``ns`` exist with ``schema`` as an archive lists it, without undoing the target's own
    choice. Returns what happened: "created"; "adopted" (it existed without a schema and takes the
    archive's); "kept" (nothing to do); "differs" (it has another schema, which is kept)."""
    row = get(conn, ns)
    if row is None:
        _insert(conn, ns, schema)
        return "created"
    if schema is None or row.schema == schema:
        return "kept"
    if row.schema is None:
        conn.execute("UPDATE namespaces SET schema = ? WHERE name = ?", (orjson.dumps(schema).decode(), ns))
        return "adopted"
    return "differs"


# -- validation -------------------------------------------------------------------------------


def checked_name(namespace: Any, *, field: str = "namespace") -> str:
    """A namespace name as stored ("" for the default). Refuses what no namespace can be called:
    a name over 512 characters, or one holding a NUL (which C clients and paths cannot carry)."""
    ns = normalize_namespace(namespace)
    if "\x00" in ns:
        raise ValidationError("must not contain the NUL character", field=field)
    return ns


def _new_name(name: Any) -> str:
    if not isinstance(name, str):
        raise ValidationError(f"must be a string, got {type(name).__name__}", field="name")
    if name in ("", DEFAULT_NAMESPACE_ALIAS):
        raise ValidationError(f"{name!r} is the default namespace, which always exists and cannot be "
                              "created; pick another name", field="name")
    return checked_name(name, field="name")


def validate_schema(schema: Any) -> dict[str, Any] | None:
    """The schema in its stored form, ``{"fields": {name: {"filterable": true}}}``, or None.

    Pinecone 2025-10 accepts exactly this: every listed field filterable, ``filterable: false``
    refused (to leave a field out of the index, omit it). Refused here too, so that an archive
    of a spruce namespace can always be restored into Pinecone.
    """
    if schema is None:
        return None
    if isinstance(schema, models.NamespaceSchema):
        schema = schema.to_dict()
    if not isinstance(schema, Mapping):
        raise InvalidArgument(f"schema must be an object like {{\"fields\": {{\"genre\": {{\"filterable\": true}}}}}}, "
                              f"got {type(schema).__name__}")
    unknown = sorted(str(k) for k in schema if k != "fields")
    if unknown:
        raise InvalidArgument(f"schema has unknown key(s) {', '.join(map(repr, unknown))}; it takes 'fields'")
    fields = schema.get("fields")
    if not isinstance(fields, Mapping):
        raise InvalidArgument("schema.fields is required: an object mapping each metadata field to "
                              "{\"filterable\": true}")
    out: dict[str, Any] = {}
    for name, cfg in fields.items():
        if not isinstance(name, str) or not name or name.startswith("$") or "\x00" in name:
            raise InvalidArgument(f"schema.fields: {name!r} is not a metadata field name")
        if isinstance(cfg, models.NamespaceFieldConfig):
            cfg = cfg.to_dict()
        if not isinstance(cfg, Mapping) or any(k != "filterable" for k in cfg):
            raise InvalidArgument(f"schema.fields[{name!r}] must be {{\"filterable\": true}}, got {cfg!r}")
        if cfg.get("filterable") is not True:
            raise InvalidArgument(f"Field '{name}' is set to filterable: false. Only filterable: true is "
                                  "supported. To avoid indexing the field, omit it from the list of fields.")
        out[name] = {"filterable": True}
    return {"fields": out}


def describe(name: str, count: int, schema: dict[str, Any] | None) -> models.NamespaceDescription:
    """The SDK-shaped description; ``indexed_fields`` are the schema's fields (spruce indexes
    every field, but reports what the namespace was asked to index)."""
    return models.NamespaceDescription(
        name=name or DEFAULT_NAMESPACE_ALIAS, record_count=count,
        schema=None if schema is None else models.NamespaceSchema.from_dict(schema),
        indexed_fields=None if schema is None else models.IndexedFields(fields=sorted(schema["fields"])))


# -- the Index's namespace operations ---------------------------------------------------------


class NamespaceOps:
    """Namespace operations of ``Index`` (a mixin: it uses the index's connections and locks).

    Reads come from SQLite (the source of truth) without loading the index into memory; record
    counts come from memory when it is loaded (constant time), else from SQLite.
    """

    if TYPE_CHECKING:
        _config: IndexConfig
        _ns: dict[str, NamespaceData]
        _loaded: bool
        _rw: RWLock
        _write_mutex: threading.RLock
        _pending_seq: int

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _reader(self) -> sqlite3.Connection: ...

    def _counts(self, names: Iterable[str]) -> dict[str, int]:
        if self._loaded:
            with self._rw.read():
                return {n: len(self._ns[n]) if n in self._ns else 0 for n in names}
        conn = self._reader()
        return {n: conn.execute("SELECT count(*) FROM records WHERE ns = ?", (n,)).fetchone()[0] for n in names}

    def namespace_row(self, namespace: str | None) -> NamespaceRow | None:
        """The stored row of a namespace: None when it does not exist (or, for the default
        namespace, before anything was written to it)."""
        return get(self._reader(), checked_name(namespace))

    def create_namespace(self, name: str, schema: Mapping[str, Any] | None = None) -> models.NamespaceDescription:
        """Create an empty namespace, optionally with a metadata schema. AlreadyExists (409) if a
        namespace of that name exists, with records or not."""
        ns = _new_name(name)
        stored = validate_schema(schema)
        with self._write() as conn:
            if not _insert(conn, ns, stored):  # raising rolls back: no write is recorded
                raise AlreadyExists(f"namespace {name!r} already exists in index {self._config.name!r}")
        return describe(ns, 0, stored)

    def describe_namespace(self, namespace: str | None) -> models.NamespaceDescription:
        ns = checked_name(namespace)
        row = get(self._reader(), ns)
        if row is None and ns:
            raise NotFound(f"namespace {namespace!r} not found in index {self._config.name!r}")
        return describe(ns, self._counts([ns])[ns], None if row is None else row.schema)

    def list_namespaces(self, prefix: str | None = None, limit: int | None = None,
                        pagination_token: str | None = None) -> models.ListNamespacesResponse:
        """Namespaces in bitwise order of their API names (the default one as ``__default__``)."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidArgument(f"limit must be a positive integer, got {limit!r}")
        limit = limit or DEFAULT_LIST_LIMIT
        named = sorted((r.name or DEFAULT_NAMESPACE_ALIAS, r) for r in rows(self._reader()))
        if prefix:
            named = [x for x in named if x[0].startswith(prefix)]
        total = len(named)
        if pagination_token:
            after = decode_token(pagination_token)
            named = [x for x in named if x[0] > after]
        page = named[:limit]
        counts = self._counts(r.name for _, r in page)
        return models.ListNamespacesResponse(
            namespaces=[describe(r.name, counts[r.name], r.schema) for _, r in page],
            pagination=models.Pagination(next=encode_token(page[-1][0])) if len(named) > limit else None,
            total_count=total,
        )

    def delete_namespace(self, namespace: str | None) -> None:
        """Delete a namespace and its records. The default namespace always exists: deleting it
        removes its records (nothing to do when it has none)."""
        ns = checked_name(namespace)
        with self._write_mutex:  # writers are serialized, so what the reader sees stays true
            reader = self._reader()
            if get(reader, ns) is None:
                if ns:
                    raise NotFound(f"namespace {namespace!r} not found in index {self._config.name!r}")
                if reader.execute("SELECT 1 FROM records WHERE ns = '' LIMIT 1").fetchone() is None:
                    return
            with self._write() as conn:
                changes.record_reset(conn, ns, self._pending_seq)
                conn.execute("DELETE FROM records WHERE ns = ?", (ns,))
                conn.execute("DELETE FROM namespaces WHERE name = ?", (ns,))
            with self._rw.write():
                self._ns.pop(ns, None)
