"""Qdrant: ``qdrant:///ABS/PATH?collection=NAME`` (local mode) and ``qdrant://HOST:PORT/COLLECTION``
(``qdrants://`` for TLS; the key from QDRANT_API_KEY).

Layout, as a Qdrant user expects it: the dense vector is the collection's unnamed vector, sparse
values the named sparse vector ``sparse``, metadata the payload. Point ids must be UUIDs or
unsigned ints, so the original string id is kept in the payload field ``__id__`` and the point id
is derived (``spruce.sources.base.point_uuid``: qdrant/migration's uuid5 rule in the default
namespace). The namespace is the payload field ``__namespace__`` (absent for the default one).
Reading uses ``scroll`` with ``next_page_offset``, filtered by namespace.

Cosine collections store vectors normalized: a vector that is not unit length comes back with
the same direction but other values. That is reported as a loss (refused without allow_lossy).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from spruce.errors import InvalidArgument
from spruce.records import RecordBatch, SparseValues
from spruce.sources.base import (
    ID_FIELD,
    NAMESPACE_FIELD,
    NAMESPACE_PLACEHOLDER,
    Connector,
    ConnectorError,
    Losses,
    Page,
    Shape,
    collection_for,
    local_path,
    parse_uri,
    point_uuid,
    require,
)

API_KEY_ENV = "QDRANT_API_KEY"
SPARSE_NAME = "sparse"
_METRICS = {"cosine": "Cosine", "dotproduct": "Dot", "euclidean": "Euclid"}
_FROM_QDRANT = {v: k for k, v in _METRICS.items()}


class QdrantConnector(Connector):
    schemes = ("qdrant", "qdrants")
    kind = "qdrant"
    page_size = 1000
    write_batch = 256

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        p = parse_uri(uri, API_KEY_ENV)
        qc = require("qdrant_client", "Qdrant")
        self.local = p.host is None
        if self.local:
            path = local_path(p, "Qdrant storage folder")
            self.collection = p.query.get("collection") or ""
            self.client = qc.QdrantClient(path=path)
            # local mode scans every point on each scroll: fewer, larger pages (1.6x at 20k points)
            self.page_size = 4096
        else:
            self.collection = p.path.strip("/") or p.query.get("collection", "")
            self.client = qc.QdrantClient(host=p.host, port=p.port or 6333, https=p.scheme == "qdrants",
                                          api_key=os.environ.get(API_KEY_ENV) or None, timeout=60)
        if not self.collection:
            raise InvalidArgument(f"{uri}: name the collection (qdrant:///PATH?collection=NAME or "
                                  "qdrant://HOST:PORT/COLLECTION)")
        self.models = require("qdrant_client.models", "Qdrant")
        self.label = self.collection
        self.per_namespace = NAMESPACE_PLACEHOLDER in self.collection

    def close(self) -> None:
        self.client.close()

    # -- helpers ---------------------------------------------------------------------------
    def _collections(self) -> list[str]:
        names = [c.name for c in self.client.get_collections().collections]
        if not self.per_namespace:
            return [self.collection] if self.collection in names else []
        head, _, tail = self.collection.partition(NAMESPACE_PLACEHOLDER)
        return [n for n in names if n.startswith(head) and n.endswith(tail) and len(n) > len(head) + len(tail)]

    def _target(self, namespace: str) -> str:
        return collection_for(self.collection, namespace) if self.per_namespace else self.collection

    def _ns_filter(self, namespace: str) -> Any:
        m = self.models
        if self.per_namespace:
            return None
        if namespace:
            return m.Filter(must=[m.FieldCondition(key=NAMESPACE_FIELD, match=m.MatchValue(value=namespace))])
        return m.Filter(must=[m.IsEmptyCondition(is_empty=m.PayloadField(key=NAMESPACE_FIELD))])

    # -- reading ---------------------------------------------------------------------------
    def shape(self) -> Shape | None:
        names = self._collections()
        if not names:
            return None
        params = self.client.get_collection(names[0]).config.params
        vectors = params.vectors
        sparse = bool(params.sparse_vectors and SPARSE_NAME in params.sparse_vectors)
        if isinstance(vectors, dict):
            vectors = vectors.get("")
        if not vectors:
            return Shape(dimension=None, metric="dotproduct", vector_type="sparse", sparse=True)
        metric = _FROM_QDRANT.get(getattr(vectors.distance, "value", str(vectors.distance)))
        if metric is None:
            raise ConnectorError(f"{self.uri}: distance {vectors.distance} has no Pinecone metric")
        return Shape(dimension=vectors.size, metric=metric, sparse=sparse)

    def namespaces(self) -> list[str]:
        if self.per_namespace:
            head, _, tail = self.collection.partition(NAMESPACE_PLACEHOLDER)
            out = []
            for name in self._collections():
                ns = name[len(head):len(name) - len(tail)]
                out.append("" if ns == "default" else ns)
            return sorted(out)
        seen: set[str] = set()
        m = self.models
        try:  # a facet over the tag is one request; older servers lack it
            hits = self.client.facet(self.collection, key=NAMESPACE_FIELD, limit=100_000, exact=True).hits
            seen.update(str(h.value) for h in hits)
            counted = sum(h.count for h in hits)
        except Exception:
            counted = None
            offset = None
            while True:
                points, offset = self.client.scroll(self.collection, limit=1000, offset=offset,
                                                    with_payload=m.PayloadSelectorInclude(include=[NAMESPACE_FIELD]),
                                                    with_vectors=False)
                seen.update(str(p.payload[NAMESPACE_FIELD]) for p in points if p.payload and
                            NAMESPACE_FIELD in p.payload)
                if offset is None:
                    break
        total = self.client.count(self.collection, exact=True).count
        if (counted is None or total > counted) and self.count(""):
            seen.add("")
        return sorted(seen)

    def total(self) -> int:
        return sum(self.client.count(name, exact=True).count for name in self._collections())

    def existing(self, namespace: str, ids: list[str]) -> int | None:
        target = self._target(namespace)
        if target not in self._collections():
            return 0
        ns = "" if self.per_namespace else namespace
        return len(self.client.retrieve(target, ids=[point_uuid(ns, i) for i in ids], with_payload=False,
                                        with_vectors=False))

    def count(self, namespace: str) -> int:
        target = self._target(namespace)
        if target not in self._collections():
            return 0
        return self.client.count(target, count_filter=self._ns_filter(namespace), exact=True).count

    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        points, nxt = self.client.scroll(self._target(namespace), scroll_filter=self._ns_filter(namespace),
                                         limit=limit, offset=cursor, with_payload=True, with_vectors=True)
        ids: list[str] = []
        dense: list[Any] = []
        sparse: list[SparseValues | None] = []
        metadata: list[dict[str, Any] | None] = []
        for p in points:
            payload = dict(p.payload or {})
            ids.append(str(payload.pop(ID_FIELD, p.id)))
            payload.pop(NAMESPACE_FIELD, None)
            metadata.append(payload or None)
            vec = p.vector
            if isinstance(vec, dict):
                d, s = vec.get(""), vec.get(SPARSE_NAME)
            else:
                d, s = vec, None
            dense.append(d)
            sparse.append(SparseValues(indices=list(s.indices), values=list(s.values)) if s is not None else None)
        has_dense = any(d is not None for d in dense)
        values = np.asarray(dense, dtype=np.float32) if has_dense and ids else None
        batch = RecordBatch(ids=ids, values=values, sparse=sparse if any(sparse) else None, metadata=metadata)
        return Page(batch=batch, cursor=_cursor(nxt))

    # -- writing ---------------------------------------------------------------------------
    def may_lose(self, shape: Shape) -> bool:
        return shape.metric == "cosine" and bool(shape.dimension)

    def accept_namespaces(self, namespaces: list[str]) -> None:
        if self.per_namespace and "default" in namespaces:  # its collection would read back as ""
            raise InvalidArgument(f"{self.uri}: a namespace named 'default' cannot have its own collection: the "
                                  "default namespace's collection has that name; drop {namespace} from the "
                                  "collection name to keep every namespace in one collection")

    def ensure(self, shape: Shape) -> None:
        metric = _METRICS.get(shape.metric)
        if metric is None:
            raise InvalidArgument(f"Qdrant has no {shape.metric!r} distance")
        have = self.shape()
        shape.refuse_other(have, f"{self.uri}: the collection")
        if have is not None:
            return
        self.expected = shape

    def _create(self, name: str, shape: Shape) -> None:
        m = self.models
        vectors = (m.VectorParams(size=shape.dimension, distance=m.Distance(_METRICS[shape.metric]))
                   if shape.dimension else {})
        sparse = {SPARSE_NAME: m.SparseVectorParams()} if shape.sparse or shape.vector_type == "sparse" else None
        self.client.create_collection(name, vectors_config=vectors, sparse_vectors_config=sparse)
        if not self.per_namespace and not self.local:  # local mode scans; it has no payload indexes
            self.client.create_payload_index(name, NAMESPACE_FIELD, m.PayloadSchemaType.KEYWORD)
            self.client.create_payload_index(name, ID_FIELD, m.PayloadSchemaType.KEYWORD)

    def check(self, namespace: str, batch: RecordBatch, losses: Losses) -> RecordBatch:
        shape = self.expected or self.shape()
        if shape is not None and shape.metric == "cosine" and batch.values is not None and len(batch):
            norms = np.linalg.norm(batch.values.astype(np.float64), axis=1)
            off = np.flatnonzero(np.abs(norms - 1.0) > 1e-6)
            if len(off):
                losses.add("cosine vectors stored normalized (values change, direction kept)",
                           batch.ids[int(off[0])], len(off))
        return batch

    def write(self, namespace: str, batch: RecordBatch) -> None:
        m = self.models
        target = self._target(namespace)
        if target not in self._collections():
            shape = self.expected or self.shape()
            if shape is None:
                raise ConnectorError(f"{self.uri}: the collection does not exist and its shape is unknown")
            self._create(target, shape)
        points = []
        for i, rid in enumerate(batch.ids):
            payload = dict(batch.metadata[i] or {})
            payload[ID_FIELD] = rid
            if namespace and not self.per_namespace:
                payload[NAMESPACE_FIELD] = namespace
            vector: dict[str, Any] = {}
            if batch.values is not None:
                vector[""] = batch.values[i].tolist()
            sv = batch.sparse[i] if batch.sparse is not None else None
            if sv is not None:
                vector[SPARSE_NAME] = m.SparseVector(indices=list(sv.indices), values=list(sv.values))
            points.append(m.PointStruct(id=point_uuid("" if self.per_namespace else namespace, rid),
                                        vector=vector, payload=payload))
        # upsert replaces a point whole (vector and payload): a replayed batch converges
        self.client.upsert(target, points=points, wait=True)


def _cursor(offset: Any) -> Any:
    """Qdrant's next_page_offset as JSON: a UUID string or an int (or None at the end)."""
    if offset is None:
        return None
    return offset if isinstance(offset, int) else str(offset)
