"""LanceDB: ``lancedb:///ABS/PATH?table=NAME``.

Columns: ``namespace`` (string, '' for the default), ``id`` (string, as is), ``vector``
(fixed_size_list<float32>[d], values bit for bit), ``sparse`` (struct of ``indices``
list<uint32> and ``values`` list<float32>, where the index may hold sparse values), ``metadata``
(the record's metadata as JSON text: LanceDB has no free-form map type, and JSON text keeps
every metadata type exactly). The index's shape is kept in the table schema's metadata (key
``spruce``). ``{namespace}`` in the table name gives one table per namespace (same layout;
characters a table name cannot hold are written ``-XX``, their UTF-8 bytes in hex).

Reading is one scan per namespace, filtered on ``namespace``, streamed as Arrow batches in row
address order (``_rowaddr``: fragment id in the high 32 bits, row offset in the low 32). The
cursor is the last row address read. A new process resumes with ``_rowaddr > cursor``, which
Lance evaluates while scanning the small ``namespace`` column, reading the vectors of no row it
skips. Row addresses only grow: rows that an update or a compaction moves go to new fragments
with higher ids, so they are read (again) after the cursor and never skipped.

Writing is ``merge_insert`` on (namespace, id): matched rows are replaced whole, new ones
inserted, so a replayed page converges.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import numpy as np
import orjson

from spruce.errors import InvalidArgument
from spruce.records import RecordBatch, SparseValues
from spruce.sources.base import (
    NAMESPACE_PLACEHOLDER,
    Connector,
    ConnectorError,
    Losses,
    Page,
    Shape,
    local_path,
    parse_uri,
    require,
)

_META_KEY = b"spruce"
_NAME_OK = re.compile(r"[A-Za-z0-9_.]")
_LONG_NUMBER = re.compile(rb"[0-9]{19}")
_TEMPLATE = re.compile(r"[A-Za-z0-9_.\-]*")


class LanceDBConnector(Connector):
    schemes = ("lancedb",)
    kind = "lancedb"
    page_size = 1024  # pages of 1,024: as fast as 4,096 (Arrow batches stream), 100 MB less memory

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        p = parse_uri(uri, "the storage credentials of the LanceDB folder")
        self.lancedb = require("lancedb", "LanceDB")
        self.pa = require("pyarrow", "LanceDB")
        self.path = local_path(p, "LanceDB folder")
        self.template = p.query.get("table", "")
        head, _, tail = self.template.partition(NAMESPACE_PLACEHOLDER)
        if not self.template or not _TEMPLATE.fullmatch(head + tail) or NAMESPACE_PLACEHOLDER in tail:
            raise InvalidArgument(f"{uri}: name the table, as lancedb:///PATH?table=NAME (letters, digits, _ - .)")
        self.per_namespace = NAMESPACE_PLACEHOLDER in self.template
        self.label = self.template
        # a zero interval: every read sees the latest version, other processes' writes included
        self.db = self.lancedb.connect(self.path, read_consistency_interval=timedelta(0))
        self._streams: dict[str, tuple[int | None, Any]] = {}
        self._open: dict[str, Any] = {}

    def close(self) -> None:
        self._streams.clear()
        self._open.clear()

    # -- helpers ---------------------------------------------------------------------------
    def _names(self) -> list[str]:
        if hasattr(self.db, "list_tables"):
            out: list[str] = []
            token = None
            while True:  # list_tables pages (and returns a response object in recent versions)
                resp = self.db.list_tables(page_token=token) if token else self.db.list_tables()
                tables = getattr(resp, "tables", resp)
                out += list(tables)
                token = getattr(resp, "page_token", None)
                if not token or not tables:
                    return out
        return list(self.db.table_names(limit=1_000_000))

    def _tables(self) -> list[str]:
        """The existing tables of this URI (one, or one per namespace), in name order."""
        names = self._names()
        if not self.per_namespace:
            return [self.template] if self.template in names else []
        head, _, tail = self.template.partition(NAMESPACE_PLACEHOLDER)
        return sorted(n for n in names if n.startswith(head) and n.endswith(tail) and len(n) > len(head) + len(tail))

    def _table_name(self, namespace: str) -> str:
        if not self.per_namespace:
            return self.template
        ns = namespace or "default"
        return self.template.replace(NAMESPACE_PLACEHOLDER, "".join(
            c if _NAME_OK.fullmatch(c) else "".join(f"-{b:02X}" for b in c.encode()) for c in ns))

    def _table(self, name: str) -> Any:
        if name not in self._open:
            self._open[name] = self.db.open_table(name)
        return self._open[name]

    # -- reading ---------------------------------------------------------------------------
    def shape(self) -> Shape | None:
        tables = self._tables()
        if not tables:
            return None
        schema = self._table(tables[0]).schema
        meta = (schema.metadata or {}).get(_META_KEY)
        if meta:
            d = json.loads(meta)
            return Shape(dimension=d.get("dimension"), metric=d.get("metric", "cosine"),
                         vector_type=d.get("vector_type", "dense"), sparse=bool(d.get("sparse")))
        missing = [c for c in ("namespace", "id") if c not in schema.names]
        if missing:  # a table spruce did not create
            raise ConnectorError(f"{self.uri}: table {tables[0]!r} has no {' or '.join(missing)} column; spruce "
                                 "reads tables of the layout in docs/CONNECTORS.md")
        if "vector" not in schema.names:
            return Shape(dimension=None, metric="dotproduct", vector_type="sparse", sparse=True)
        return Shape(dimension=getattr(schema.field("vector").type, "list_size", None), metric="cosine",
                     sparse="sparse" in schema.names)

    def namespaces(self) -> list[str]:
        pc = require("pyarrow.compute", "LanceDB")
        seen: set[str] = set()
        for name in self._tables():
            for b in self._table(name).search().select(["namespace"]).limit(None).to_batches(65_536):
                seen.update(pc.unique(b.column(0)).to_pylist())
        return sorted(seen)

    def count(self, namespace: str) -> int:
        name = self._table_name(namespace)
        if name not in self._tables():
            return 0
        return int(self._table(name).count_rows(filter=_eq("namespace", namespace)))

    def total(self) -> int:
        return sum(int(self._table(n).count_rows()) for n in self._tables())

    def existing(self, namespace: str, ids: list[str]) -> int | None:
        name = self._table_name(namespace)
        if not ids or name not in self._tables():
            return 0
        in_list = ", ".join(_quote(i) for i in ids)
        return int(self._table(name).count_rows(filter=f"{_eq('namespace', namespace)} AND id IN ({in_list})"))

    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        after = None if cursor is None else int(cursor)
        stream = self._streams.get(namespace)
        if stream is None or stream[0] != after:  # a first read, or a resumed copy: a new scan from the cursor
            name = self._table_name(namespace)
            if name not in self._tables():
                return Page(batch=RecordBatch(ids=[]), cursor=None)
            stream = (after, _pages(self._scan(name, namespace, after), limit, after))
        page = next(stream[1], None)
        if page is None:
            self._streams.pop(namespace, None)
            return Page(batch=RecordBatch(ids=[]), cursor=None)
        last = int(page.column("_rowaddr")[-1].as_py())
        self._streams[namespace] = (last, stream[1])
        return Page(batch=_batch(page), cursor=last)

    def _scan(self, name: str, namespace: str, after: int | None) -> Any:
        t = self._table(name)
        cols = [c for c in ("id", "vector", "sparse", "metadata") if c in t.schema.names]
        where = _eq("namespace", namespace) + ("" if after is None else f" AND _rowaddr > {after}")
        q = t.search().where(where)
        if not hasattr(q, "with_row_address"):
            raise ConnectorError("the LanceDB connector needs a newer lancedb (Query.with_row_address): "
                                 "pip install -U lancedb")
        # Small batches bound memory: Lance reads several batches ahead, and at 4,096 rows of 768
        # dimensions that alone held 200 MB; at 256 it holds about 50, at the same speed.
        return q.with_row_address(True).select([*cols, "_rowaddr"]).limit(None).to_batches(256)

    # -- writing ---------------------------------------------------------------------------
    def ensure(self, shape: Shape) -> None:
        have = self.shape()
        shape.refuse_other(have, f"{self.uri}: the table")
        self.expected = shape
        if have is None and not self.per_namespace:
            self.db.create_table(self.template, schema=self._schema(shape), exist_ok=True)

    def may_lose(self, shape: Shape) -> bool:
        """Every spruce value has an exact column; only sparse values meeting an existing table
        without a sparse column (one spruce did not create) can be lost."""
        return shape.sparse and any("sparse" not in self._table(n).schema.names for n in self._tables())

    def check(self, namespace: str, batch: RecordBatch, losses: Losses) -> RecordBatch:
        name = self._table_name(namespace)
        if batch.sparse is not None and any(s is not None for s in batch.sparse) and name in self._tables() \
                and "sparse" not in self._table(name).schema.names:
            losses.add(f"sparse values dropped (table {name!r} has no sparse column)",
                       next(batch.ids[i] for i, s in enumerate(batch.sparse) if s is not None))
        return batch

    def write(self, namespace: str, batch: RecordBatch) -> None:
        pa = self.pa
        name = self._table_name(namespace)
        if name not in self._tables():
            shape = self.expected or self.shape()
            if shape is None:
                raise ConnectorError(f"{self.uri}: the table does not exist and its shape is unknown")
            self.db.create_table(name, schema=self._schema(shape), exist_ok=True)
        t = self._table(name)
        schema = t.schema
        n = len(batch)
        cols: dict[str, Any] = {"namespace": pa.array([namespace] * n, pa.string()),
                                "id": pa.array(batch.ids, pa.string())}
        if "vector" in schema.names:
            vec_type = schema.field("vector").type
            if batch.values is not None:
                flat = pa.array(np.ascontiguousarray(batch.values, dtype=np.float32).reshape(-1), type=pa.float32())
                cols["vector"] = pa.FixedSizeListArray.from_arrays(flat, vec_type.list_size)
            else:
                cols["vector"] = pa.nulls(n, type=vec_type)
        if "sparse" in schema.names:
            sv = batch.sparse or [None] * n
            cols["sparse"] = pa.array([None if s is None else {"indices": np.asarray(s.indices, np.uint32),
                                                               "values": np.asarray(s.values, np.float32)}
                                       for s in sv], type=schema.field("sparse").type)
        if "metadata" in schema.names:
            cols["metadata"] = pa.array([_dumps(m) if m else None for m in batch.metadata], pa.string())
        data = pa.Table.from_arrays([cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in schema],
                                    schema=schema)
        if self.fresh(namespace):
            try:
                t.add(data)  # the namespace was empty: an append is the upsert, without Lance's join
            except BaseException:
                self.not_fresh(namespace)
                raise
            return
        (t.merge_insert(["namespace", "id"]).when_matched_update_all().when_not_matched_insert_all()
         .execute(data))

    def _schema(self, shape: Shape) -> Any:
        pa = self.pa
        meta = json.dumps({"dimension": shape.dimension, "metric": shape.metric, "vector_type": shape.vector_type,
                           "sparse": shape.sparse}).encode()
        fields = [pa.field("namespace", pa.string(), nullable=False), pa.field("id", pa.string(), nullable=False)]
        if shape.dimension:
            fields.append(pa.field("vector", pa.list_(pa.float32(), shape.dimension)))
        if shape.sparse or shape.vector_type == "sparse":
            fields.append(pa.field("sparse", pa.struct([("indices", pa.list_(pa.uint32())),
                                                        ("values", pa.list_(pa.float32()))])))
        fields.append(pa.field("metadata", pa.string()))
        return pa.schema(fields, metadata={_META_KEY: meta})


def _pages(batches: Any, limit: int, after: int | None) -> Any:
    """Re-chunk a scan's record batches into pages of ``limit`` rows, checking that row addresses
    only grow (the cursor relies on it)."""
    import pyarrow as pa

    buf: list[Any] = []
    n = 0
    last = -1 if after is None else after
    for b in batches:
        if not b.num_rows:
            continue
        addr = b.column("_rowaddr").to_numpy()
        if addr[0] <= last or (len(addr) > 1 and bool(np.any(addr[1:] <= addr[:-1]))):
            raise ConnectorError("LanceDB returned rows out of row-address order; a resumable read relies on it")
        last = int(addr[-1])
        while b.num_rows:
            take = min(limit - n, b.num_rows)
            buf.append(b.slice(0, take))
            n += take
            b = b.slice(take)
            if n == limit:
                yield pa.Table.from_batches(buf)
                buf, n = [], 0
    if n:
        yield pa.Table.from_batches(buf)


def _batch(page: Any) -> RecordBatch:
    ids = page.column("id").to_pylist()
    names = page.column_names
    values = None
    if "vector" in names:
        vec = page.column("vector").combine_chunks()
        if vec.null_count == 0 and len(vec):
            values = vec.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(ids), -1)
        elif vec.null_count < len(vec):
            rid = ids[vec.is_null().to_pylist().index(True)]
            raise ConnectorError(f"record {rid!r} has no vector in a table of dense vectors")
    sparse = None
    if "sparse" in names:
        sparse = [None if s is None else SparseValues(indices=np.asarray(s["indices"], np.uint32),
                                                      values=np.asarray(s["values"], np.float32))
                  for s in page.column("sparse").to_pylist()]
        if all(s is None for s in sparse):
            sparse = None
    metadata = [None] * len(ids)
    if "metadata" in names:
        metadata = [None if m is None else _loads(m) for m in page.column("metadata").to_pylist()]
    return RecordBatch(ids=ids, values=values, sparse=sparse, metadata=metadata)


def _dumps(md: Any) -> str:
    try:
        return orjson.dumps(md).decode()
    except TypeError:  # an integer beyond 64 bits, a key that is not a string
        return json.dumps(md, ensure_ascii=False)


def _loads(text: str) -> Any:
    # orjson reads an integer beyond 64 bits as a float: a long run of digits goes the slow way
    raw = text.encode()
    return json.loads(text) if _LONG_NUMBER.search(raw) else orjson.loads(raw)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _eq(column: str, value: str) -> str:
    return f"{column} = {_quote(value)}"
