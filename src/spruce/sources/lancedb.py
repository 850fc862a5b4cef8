"""LanceDB: ``lancedb:///ABS/PATH?table=NAME``.

Columns: ``namespace`` (string, '' for the default), ``id`` (string, as is), ``vector``
(fixed_size_list<float32>[d], values bit for bit), ``sparse`` (struct of ``indices``
list<uint32> and ``values`` list<float32>), ``metadata`` (the record's metadata as JSON text:
LanceDB has no free-form map type, and JSON text keeps every metadata type exactly). The
index's shape is kept in the table schema's metadata (key ``spruce``).

Reading streams Arrow batches from one scan per namespace (filtered on ``namespace``); the
stored cursor is the number of that namespace's rows already copied, so a resumed copy skips
them in one pass (no deep OFFSET per page). Writing is ``merge_insert`` on (namespace, id):
matched rows are replaced whole, new ones inserted, so a replayed page converges.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from spruce.errors import InvalidArgument
from spruce.records import RecordBatch, SparseValues
from spruce.sources.base import NAMESPACE_PLACEHOLDER, Connector, Page, Shape, local_path, parse_uri, require

_META_KEY = b"spruce"


class LanceDBConnector(Connector):
    schemes = ("lancedb",)
    kind = "lancedb"
    page_size = 4096

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        p = parse_uri(uri, "the storage credentials of the LanceDB folder")
        self.lancedb = require("lancedb", "LanceDB")
        self.path = local_path(p, "LanceDB folder")
        table = p.query.get("table", "")
        if not table:
            raise InvalidArgument(f"{uri}: name the table, as lancedb:///PATH?table=NAME")
        if NAMESPACE_PLACEHOLDER in table:
            raise InvalidArgument(f"{uri}: one table per namespace ({NAMESPACE_PLACEHOLDER}) is not supported for "
                                  "LanceDB yet; the namespace is a column of one table")
        self.table_name = self.label = table
        self.db = self.lancedb.connect(self.path)
        self._streams: dict[str, Any] = {}

    def _table(self) -> Any:
        return self.db.open_table(self.table_name) if self._exists() else None

    def _exists(self) -> bool:
        names = self.db.table_names() if hasattr(self.db, "table_names") else list(self.db.list_tables())
        return self.table_name in names

    # -- reading ---------------------------------------------------------------------------
    def shape(self) -> Shape | None:
        t = self._table()
        if t is None:
            return None
        meta = (t.schema.metadata or {}).get(_META_KEY)
        if meta:
            d = json.loads(meta)
            return Shape(dimension=d.get("dimension"), metric=d.get("metric", "cosine"),
                         vector_type=d.get("vector_type", "dense"), sparse=bool(d.get("sparse")))
        vec = t.schema.field("vector").type if "vector" in t.schema.names else None
        return Shape(dimension=getattr(vec, "list_size", None), metric="cosine")

    def namespaces(self) -> list[str]:
        t = self._table()
        if t is None:
            return []
        col = t.search().select(["namespace"]).limit(None).to_arrow().column("namespace")
        return sorted(str(x) for x in col.unique().to_pylist())

    def count(self, namespace: str) -> int:
        t = self._table()
        return 0 if t is None else int(t.count_rows(filter=_eq("namespace", namespace)))

    def total(self) -> int:
        t = self._table()
        return 0 if t is None else int(t.count_rows())

    def existing(self, namespace: str, ids: list[str]) -> int | None:
        t = self._table()
        if t is None or not ids:
            return 0
        in_list = ", ".join(_quote(i) for i in ids)
        return int(t.count_rows(filter=f"{_eq('namespace', namespace)} AND id IN ({in_list})"))

    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        done = int(cursor or 0)
        stream = self._streams.get(namespace)
        if stream is None or stream[0] != done:
            t = self._table()
            reader = (t.search().where(_eq("namespace", namespace)).select(["id", "vector", "sparse", "metadata"])
                      .limit(None).to_batches(limit))
            stream = [0, _rows(reader, limit)]
            self._streams[namespace] = stream
            while stream[0] < done:  # a resumed copy: skip what an earlier attempt copied
                skipped = next(stream[1], None)
                if skipped is None:
                    break
                stream[0] += skipped.num_rows
        chunk = next(stream[1], None)
        if chunk is None:
            return Page(batch=RecordBatch(ids=[]), cursor=None)
        stream[0] += chunk.num_rows
        return Page(batch=_batch(chunk), cursor=stream[0])

    # -- writing ---------------------------------------------------------------------------
    def ensure(self, shape: Shape) -> None:
        have = self.shape()
        if have is not None:
            if shape.dimension is not None and (have.dimension, have.metric) != (shape.dimension, shape.metric):
                raise InvalidArgument(f"{self.uri}: the table holds dimension {have.dimension} {have.metric}; the "
                                      f"source is dimension {shape.dimension} {shape.metric}")
            return
        self.db.create_table(self.table_name, schema=_schema(shape))

    def write(self, namespace: str, batch: RecordBatch) -> None:
        import pyarrow as pa

        t = self._table()
        schema = t.schema
        n = len(batch)
        vec_type = schema.field("vector").type
        if batch.values is not None:
            flat = pa.array(np.ascontiguousarray(batch.values, dtype=np.float32).reshape(-1), type=pa.float32())
            vectors = pa.FixedSizeListArray.from_arrays(flat, vec_type.list_size)
        else:
            vectors = pa.nulls(n, type=vec_type)
        sparse = [None if batch.sparse is None or batch.sparse[i] is None else
                  {"indices": list(batch.sparse[i].indices), "values": list(batch.sparse[i].values)} for i in range(n)]
        data = pa.Table.from_arrays(
            [pa.array([namespace] * n, pa.string()), pa.array(batch.ids, pa.string()), vectors,
             pa.array(sparse, type=schema.field("sparse").type),
             pa.array([None if m is None else json.dumps(m, ensure_ascii=False) for m in batch.metadata], pa.string())],
            schema=schema)
        (t.merge_insert(["namespace", "id"]).when_matched_update_all().when_not_matched_insert_all()
         .execute(data))


def _schema(shape: Shape) -> Any:
    import pyarrow as pa

    dim = shape.dimension or 1
    meta = json.dumps({"dimension": shape.dimension, "metric": shape.metric, "vector_type": shape.vector_type,
                       "sparse": shape.sparse}).encode()
    return pa.schema([
        pa.field("namespace", pa.string(), nullable=False), pa.field("id", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), dim)),
        pa.field("sparse", pa.struct([("indices", pa.list_(pa.uint32())), ("values", pa.list_(pa.float32()))])),
        pa.field("metadata", pa.string()),
    ], metadata={_META_KEY: meta})


def _rows(batches: Any, limit: int) -> Any:
    """Re-chunk a scanner's record batches into pages of at most ``limit`` rows."""
    for b in batches:
        for start in range(0, b.num_rows, limit):
            yield b.slice(start, limit)


def _batch(chunk: Any) -> RecordBatch:
    ids = chunk.column("id").to_pylist()
    vec = chunk.column("vector")
    values = None
    if vec.null_count < len(vec):
        values = np.asarray(vec.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(ids), -1)
    sparse_col = chunk.column("sparse").to_pylist()
    sparse = [None if s is None else SparseValues(indices=[int(i) for i in s["indices"]],
                                                  values=[float(v) for v in s["values"]]) for s in sparse_col]
    metadata = [None if m is None else json.loads(m) for m in chunk.column("metadata").to_pylist()]
    return RecordBatch(ids=ids, values=values, sparse=sparse if any(s is not None for s in sparse) else None,
                       metadata=metadata)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _eq(column: str, value: str) -> str:
    return f"{column} = {_quote(value)}"
