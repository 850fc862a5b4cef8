"""Milvus: ``milvus:///ABS/PATH.db?collection=NAME`` (Milvus Lite) and ``milvus://HOST:PORT/COLLECTION``
(a server; a token from MILVUS_TOKEN). The same code path: ``pymilvus.MilvusClient``.

Schema (no dynamic fields): ``pk`` VARCHAR primary key (the id in the default namespace, else
``uuid5(NAMESPACE_URL, namespace NUL id)``: two namespaces never collide), ``namespace`` VARCHAR
(``__default__`` for the default one: Milvus Lite refuses to compare with an empty string),
``id`` VARCHAR (the original id), ``vector`` FLOAT_VECTOR(d), ``sparse`` SPARSE_FLOAT_VECTOR
(dotproduct and sparse indexes), ``metadata`` JSON. The shape is kept in the collection's
description (JSON). Milvus Lite 2.5 supports neither nullable fields nor filters on partition
keys, so ``namespace`` is a plain field and a record without metadata or sparse values stores
``{}``; reading maps both back to "none".

Reading uses ``query_iterator`` (which pages by primary key); the last primary key read is the
stored cursor, and a resumed copy starts a new iterator with ``pk > cursor``, never an OFFSET;
writing is ``upsert`` (a row replaced whole), so a replayed page converges.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from spruce.errors import InvalidArgument
from spruce.records import RecordBatch, SparseValues
from spruce.sources.base import Connector, Page, Shape, local_path, parse_uri, point_uuid, require

TOKEN_ENV = "MILVUS_TOKEN"
DEFAULT_NS = "__default__"
_METRICS = {"cosine": "COSINE", "dotproduct": "IP", "euclidean": "L2"}
_MAX_VARCHAR = 4096


class MilvusConnector(Connector):
    schemes = ("milvus",)
    kind = "milvus"
    page_size = 1000

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        p = parse_uri(uri, TOKEN_ENV)
        pymilvus = require("pymilvus", "Milvus")
        if p.host is None:
            target = local_path(p, "Milvus Lite file")
            name = p.query.get("collection", "")
        else:
            target = f"http://{p.host}:{p.port or 19530}"
            name = p.path.strip("/") or p.query.get("collection", "")
        if not name:
            raise InvalidArgument(f"{uri}: name the collection (milvus:///PATH.db?collection=NAME or "
                                  "milvus://HOST:PORT/COLLECTION)")
        self.name = self.label = name
        token = os.environ.get(TOKEN_ENV)
        self.client = pymilvus.MilvusClient(target, **({"token": token} if token else {}))
        self.DataType = pymilvus.DataType
        self._streams: dict[str, list[Any]] = {}

    def close(self) -> None:
        self.client.close()

    def _exists(self) -> bool:
        return bool(self.client.has_collection(self.name))

    # -- reading ---------------------------------------------------------------------------
    def shape(self) -> Shape | None:
        if not self._exists():
            return None
        desc = self.client.describe_collection(self.name)
        try:
            info = json.loads(desc.get("description") or "{}").get("spruce") or {}
        except (ValueError, AttributeError):
            info = {}
        if info:
            return Shape(dimension=info.get("dimension"), metric=info.get("metric", "cosine"),
                         vector_type=info.get("vector_type", "dense"), sparse=bool(info.get("sparse")))
        dim = next((f.get("params", {}).get("dim") for f in desc.get("fields", []) if f.get("name") == "vector"), None)
        return Shape(dimension=int(dim) if dim else None, metric="cosine")

    def _count(self, flt: str) -> int:
        rows = self.client.query(self.name, filter=flt, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def namespaces(self) -> list[str]:
        if not self._exists():
            return []
        seen: set[str] = set()
        last = None
        while True:  # distinct values by paging the primary key (Milvus has no DISTINCT)
            flt = f"pk > {_q(last)}" if last is not None else ""
            rows = self.client.query(self.name, filter=flt, output_fields=["pk", "namespace"], limit=16384)
            seen.update(r["namespace"] for r in rows)
            if len(rows) < 16384:
                return sorted("" if ns == DEFAULT_NS else ns for ns in seen)
            last = max(r["pk"] for r in rows)

    def count(self, namespace: str) -> int:
        return self._count(f"namespace == {_q(namespace or DEFAULT_NS)}") if self._exists() else 0

    def total(self) -> int:
        return self._count("") if self._exists() else 0

    def existing(self, namespace: str, ids: list[str]) -> int | None:
        if not self._exists() or not ids:
            return 0
        return len(self.client.get(self.name, ids=[_pk(namespace, i) for i in ids], output_fields=["pk"]))

    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        stream = self._streams.get(namespace)
        if stream is None or stream[0] != cursor:  # (re)start after the cursor: a resumed copy
            flt = f"namespace == {_q(namespace or DEFAULT_NS)}"
            if cursor is not None:
                flt += f" and pk > {_q(cursor)}"
            fields = ["pk", "id", "vector", "metadata"] + (["sparse"] if self._has_sparse() else [])
            stream = [cursor, self.client.query_iterator(self.name, batch_size=limit, filter=flt,
                                                         output_fields=fields)]
            self._streams[namespace] = stream
        rows = stream[1].next()
        if not rows:
            stream[1].close()
            self._streams.pop(namespace, None)
            return Page(batch=RecordBatch(ids=[]), cursor=None)
        rows = sorted(rows, key=lambda r: r["pk"])  # query_iterator pages by primary key
        ids = [r["id"] for r in rows]
        values = np.asarray([r["vector"] for r in rows], dtype=np.float32)
        sparse: list[SparseValues | None] = []
        for r in rows:
            sv = r.get("sparse") or {}
            items = sorted((int(k), float(v)) for k, v in sv.items())
            sparse.append(SparseValues(indices=[k for k, _ in items], values=[v for _, v in items]) if items else None)
        batch = RecordBatch(ids=ids, values=values, sparse=sparse if any(s is not None for s in sparse) else None,
                            metadata=[r.get("metadata") or None for r in rows])
        stream[0] = rows[-1]["pk"]
        return Page(batch=batch, cursor=stream[0])

    def _has_sparse(self) -> bool:
        desc = self.client.describe_collection(self.name)
        return any(f.get("name") == "sparse" for f in desc.get("fields", []))

    # -- writing ---------------------------------------------------------------------------
    def ensure(self, shape: Shape) -> None:
        have = self.shape()
        if have is not None:
            if shape.dimension is not None and (have.dimension, have.metric) != (shape.dimension, shape.metric):
                raise InvalidArgument(f"{self.uri}: the collection holds dimension {have.dimension} {have.metric}; "
                                      f"the source is dimension {shape.dimension} {shape.metric}")
            return
        if shape.dimension is None:
            raise InvalidArgument(f"{self.uri}: sparse-only indexes are not supported for Milvus yet")
        dt = self.DataType
        desc = json.dumps({"spruce": {"dimension": shape.dimension, "metric": shape.metric,
                                      "vector_type": shape.vector_type, "sparse": shape.sparse}})
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False, description=desc)
        schema.add_field("pk", dt.VARCHAR, is_primary=True, max_length=_MAX_VARCHAR)
        schema.add_field("namespace", dt.VARCHAR, max_length=_MAX_VARCHAR)
        schema.add_field("id", dt.VARCHAR, max_length=_MAX_VARCHAR)
        schema.add_field("vector", dt.FLOAT_VECTOR, dim=shape.dimension)
        if shape.sparse:
            schema.add_field("sparse", dt.SPARSE_FLOAT_VECTOR)
        schema.add_field("metadata", dt.JSON)
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type=_METRICS[shape.metric])
        if shape.sparse:
            index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        self.client.create_collection(self.name, schema=schema, index_params=index)
        self.expected = shape

    def write(self, namespace: str, batch: RecordBatch) -> None:
        sparse_field = self._has_sparse()
        rows = []
        for i, rid in enumerate(batch.ids):
            row: dict[str, Any] = {"pk": _pk(namespace, rid), "namespace": namespace or DEFAULT_NS, "id": rid,
                                   "vector": batch.values[i].tolist() if batch.values is not None else None,
                                   "metadata": batch.metadata[i] or {}}
            if sparse_field:
                sv = batch.sparse[i] if batch.sparse is not None else None
                row["sparse"] = {} if sv is None else {int(k): float(v) for k, v in zip(sv.indices, sv.values,
                                                                                       strict=True)}
            rows.append(row)
        self.client.upsert(self.name, rows)


def _pk(namespace: str, rid: str) -> str:
    return rid if not namespace else point_uuid(namespace, rid)


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a double-quoted string literal with escapes, as Milvus expressions take
