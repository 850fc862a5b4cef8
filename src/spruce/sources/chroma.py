"""Chroma: ``chroma:///ABS/PATH?collection=NAME`` (PersistentClient) and ``chroma://HOST:PORT/COLLECTION``
(HttpClient; a token from CHROMA_API_KEY when the server wants one).

Layout: the dense vector is the record's embedding; metadata is Chroma metadata, plus ``__id__``
(the original id) and ``__namespace__`` (absent for the default namespace). Chroma ids are unique
per collection, so the Chroma id is the original id in the default namespace and
``uuid5(NAMESPACE_URL, namespace NUL id)`` in others: two namespaces never collide.

What Chroma cannot hold, reported as a loss (refused unless allow_lossy, then converted as said):
sparse values (dropped: Chroma's local and HTTP clients store none), nested metadata objects and
empty lists (stored as their JSON text), integers beyond 64 bits (stored as JSON text; Chroma would
turn them into floats). Chroma's ``upsert`` merges metadata keys, so a write deletes the ids first
and adds them whole: a record is replaced, never merged, and a replayed page converges.

Reading pages with ``get(limit, offset)`` (Chroma has no cursor); the offset is the stored
cursor. The default namespace is read by scanning and keeping records without a tag, since
Chroma's ``where`` cannot ask for a missing key.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from spruce.errors import InvalidArgument
from spruce.records import RecordBatch
from spruce.sources.base import (
    ID_FIELD,
    NAMESPACE_FIELD,
    Connector,
    Losses,
    Page,
    Shape,
    local_path,
    parse_uri,
    point_uuid,
    require,
)

API_KEY_ENV = "CHROMA_API_KEY"
_SPACES = {"cosine": "cosine", "dotproduct": "ip", "euclidean": "l2"}
_FROM_SPACE = {v: k for k, v in _SPACES.items()}
_INT64 = (-(2**63), 2**63 - 1)


class ChromaConnector(Connector):
    schemes = ("chroma",)
    kind = "chroma"
    page_size = 1000

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        p = parse_uri(uri, API_KEY_ENV)
        chromadb = require("chromadb", "Chroma")
        if p.host is None:
            path = local_path(p, "Chroma folder")
            name = p.query.get("collection", "")
            self.client = chromadb.PersistentClient(path=path)
        else:
            name = p.path.strip("/") or p.query.get("collection", "")
            key = os.environ.get(API_KEY_ENV)
            headers = {"x-chroma-token": key} if key else None
            self.client = chromadb.HttpClient(host=p.host, port=p.port or 8000, headers=headers)
        if not name:
            raise InvalidArgument(f"{uri}: name the collection (chroma:///PATH?collection=NAME or "
                                  "chroma://HOST:PORT/COLLECTION)")
        self.name = self.label = name
        self._col: Any = None

    def _collection(self) -> Any:
        if self._col is None:
            try:
                self._col = self.client.get_collection(self.name, embedding_function=None)
            except Exception as exc:  # NotFoundError / ValueError, by version
                if "not exist" in str(exc).lower() or "not found" in str(exc).lower():
                    return None
                raise
        return self._col

    # -- reading ---------------------------------------------------------------------------
    def shape(self) -> Shape | None:
        col = self._collection()
        if col is None:
            return None
        md = col.metadata or {}
        metric = md.get("spruce_metric") or _FROM_SPACE.get(md.get("hnsw:space", "l2"), "euclidean")
        dim = md.get("spruce_dimension")
        if dim is None:
            first = col.get(limit=1, include=["embeddings"])
            emb = first.get("embeddings")
            dim = len(emb[0]) if emb is not None and len(emb) else None
        return Shape(dimension=dim, metric=metric, vector_type="dense")

    def namespaces(self) -> list[str]:
        col = self._collection()
        if col is None:
            return []
        seen: set[str] = set()
        offset = 0
        while True:
            page = col.get(limit=5000, offset=offset, include=["metadatas"])
            for md in page["metadatas"]:
                seen.add(str((md or {}).get(NAMESPACE_FIELD, "")))
            offset += len(page["ids"])
            if len(page["ids"]) < 5000:
                return sorted(seen)

    def count(self, namespace: str) -> int:
        col = self._collection()
        if col is None:
            return 0
        if namespace:
            return len(col.get(where={NAMESPACE_FIELD: namespace}, include=[])["ids"])
        return col.count() - sum(len(col.get(where={NAMESPACE_FIELD: ns}, include=[])["ids"])
                                 for ns in self.namespaces() if ns)

    def total(self) -> int:
        col = self._collection()
        return 0 if col is None else int(col.count())

    def existing(self, namespace: str, ids: list[str]) -> int | None:
        col = self._collection()
        return 0 if col is None else len(col.get(ids=[_chroma_id(namespace, i) for i in ids], include=[])["ids"])

    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        col = self._collection()
        offset = int(cursor or 0)
        where = {NAMESPACE_FIELD: namespace} if namespace else None
        got = col.get(where=where, limit=limit, offset=offset, include=["embeddings", "metadatas"])
        ids, values, metadata = [], [], []
        for i, cid in enumerate(got["ids"]):
            md = dict(got["metadatas"][i] or {})
            if not namespace and md.get(NAMESPACE_FIELD):
                continue  # the default namespace: records without a tag
            ids.append(str(md.pop(ID_FIELD, cid)))
            md.pop(NAMESPACE_FIELD, None)
            values.append(got["embeddings"][i])
            metadata.append(md or None)
        nxt = offset + len(got["ids"]) if len(got["ids"]) == limit else None
        vals = np.asarray(values, dtype=np.float32) if values else None
        return Page(batch=RecordBatch(ids=ids, values=vals, metadata=metadata), cursor=nxt)

    # -- writing ---------------------------------------------------------------------------
    def may_lose(self, shape: Shape) -> bool:
        return True  # sparse values and some metadata shapes

    def check(self, namespace: str, batch: RecordBatch, losses: Losses) -> RecordBatch:
        for i, sv in enumerate(batch.sparse or []):
            if sv is not None:
                losses.add("sparse values dropped (Chroma stores none)", batch.ids[i])
        for i, md in enumerate(batch.metadata):
            for value in (md or {}).values():
                if _unholdable(value):
                    losses.add("metadata values Chroma cannot hold (nested objects, empty lists, integers beyond "
                               "64 bits) stored as JSON text", batch.ids[i])
                    break
        return batch

    def ensure(self, shape: Shape) -> None:
        have = self.shape()
        if have is not None:
            if shape.dimension is not None and (have.dimension, have.metric) != (shape.dimension, shape.metric):
                raise InvalidArgument(f"{self.uri}: the collection holds dimension {have.dimension} {have.metric}; "
                                      f"the source is dimension {shape.dimension} {shape.metric}")
            return
        if shape.dimension is None:
            raise InvalidArgument(f"{self.uri}: Chroma needs dense vectors; the source is sparse-only")
        self._col = self.client.create_collection(
            self.name, embedding_function=None,
            metadata={"hnsw:space": _SPACES[shape.metric], "spruce_metric": shape.metric,
                      "spruce_dimension": shape.dimension})

    def write(self, namespace: str, batch: RecordBatch) -> None:
        col = self._collection()
        cids = [_chroma_id(namespace, rid) for rid in batch.ids]
        metadatas = []
        for i, rid in enumerate(batch.ids):
            md = {k: (json.dumps(v) if _unholdable(v) else v) for k, v in (batch.metadata[i] or {}).items()}
            md[ID_FIELD] = rid
            if namespace:
                md[NAMESPACE_FIELD] = namespace
            metadatas.append(md)
        # upsert would merge with the old metadata: replace whole
        col.delete(ids=cids)
        col.add(ids=cids, embeddings=np.asarray(batch.values, dtype=np.float32), metadatas=metadatas)


def _chroma_id(namespace: str, rid: str) -> str:
    return rid if not namespace else point_uuid(namespace, rid)


def _unholdable(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int):
        return not _INT64[0] <= value <= _INT64[1]
    if isinstance(value, list):
        return not value
    return isinstance(value, dict)
