"""Chroma: ``chroma:///ABS/PATH?collection=NAME`` (PersistentClient) and ``chroma://HOST:PORT/COLLECTION``
(HttpClient; a token from CHROMA_API_KEY when the server wants one).

Layout: the dense vector is the record's embedding; metadata is Chroma metadata, plus ``__id__``
(the original id) and ``__namespace__`` (absent for the default namespace); a record's document
(its text) travels as metadata ``__document__``, so it is never dropped. Chroma ids are unique
per collection, so the Chroma id is the original id in the default namespace and
``uuid5(NAMESPACE_URL, namespace NUL id)`` in others: two namespaces never collide.

``{namespace}`` in the collection name gives one collection per namespace: there the Chroma id is
the original id and records carry no ``__namespace__``. Chroma's names allow ``[A-Za-z0-9._-]``,
so the namespace is written with letters, digits and ``_`` as they are and every other character
as ``-XX`` (its UTF-8 bytes in upper-case hex); ``default`` is the default namespace's, so a
namespace literally named ``default`` is written ``-64efault``. Decoding is exact, and a name
Chroma would still refuse (3-512 characters, starting and ending with a letter or digit, no
``..``, not an IP address) is an InvalidArgument naming the namespace, raised by ``check`` and
``count`` before anything is written.

What Chroma cannot hold, reported as a loss (refused unless allow_lossy, then converted as said):
dense values bit for bit in a ``cosine`` collection (Chroma returns them rounded by about 1e-7
relative, unit vectors included; written as they are), sparse values (dropped: Chroma's local
and HTTP clients store none), nested metadata objects and empty lists (stored as their JSON
text), integers beyond 64 bits (stored as JSON text; Chroma would turn them into floats). Writes are ``upsert`` in batches of the client's ``get_max_batch_size()``
(atomic per batch, a replayed page converges). Chroma's upsert merges metadata keys, so a record
whose stored metadata has a key the new one lacks is deleted first: replaced, never merged.

Reading: Chroma has no cursor, only ``get(limit, offset)``, in the order records were first added
(an update keeps a record's place; a new id, or one deleted and added again, goes to the end).
The cursor is the offset plus the id of the last record read. A read (resumed in a new process
or not) asks from offset-1 and checks that this record is still that id: then nothing before it
moved and the read continues after it, skipping and repeating nothing. If it is not (records
before the cursor were deleted meanwhile), the namespace is read again from its start: replayed
records converge and none is skipped; after three such restarts the read fails (the collection
keeps changing under it). The default namespace is read with ``$nin`` over the other namespaces
(``$nin`` matches a missing key), and any tagged record still met is skipped.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from typing import Any

import numpy as np

from spruce.errors import InvalidArgument
from spruce.records import RecordBatch
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

API_KEY_ENV = "CHROMA_API_KEY"
#: Chroma's document text, carried in metadata (spruce records have no text field).
DOCUMENT_FIELD = "__document__"
_SPACES = {"cosine": "cosine", "dotproduct": "ip", "euclidean": "l2"}
_FROM_SPACE = {v: k for k, v in _SPACES.items()}
_INT64 = (-(2**63), 2**63 - 1)
#: Chroma's collection name rule (besides: no "..", not an IP address).
_NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]")
_TEMPLATE = re.compile(r"[A-Za-z0-9._-]*")
_RAW = re.compile(r"[A-Za-z0-9_]")
_ESCAPED = re.compile(r"-([0-9A-F]{2})")
_SCAN = 10_000  # ids/metadata per request when counting or listing namespaces
_RESTARTS = 3


class ChromaConnector(Connector):
    schemes = ("chroma",)
    kind = "chroma"
    page_size = 1000

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        p = parse_uri(uri, API_KEY_ENV)
        chromadb = require("chromadb", "Chroma")
        self._not_found: tuple[type[BaseException], ...] = tuple(
            t for t in (getattr(getattr(chromadb, "errors", None), "NotFoundError", None),) if t is not None)
        if p.host is None:
            path = local_path(p, "Chroma folder")
            name = p.query.get("collection", "")
        else:
            name = p.path.strip("/") or p.query.get("collection", "")
        if not name:
            raise InvalidArgument(f"{uri}: name the collection (chroma:///PATH?collection=NAME or "
                                  "chroma://HOST:PORT/COLLECTION)")
        head, _, tail = name.partition(NAMESPACE_PLACEHOLDER)
        self.per_namespace = NAMESPACE_PLACEHOLDER in name
        if not _TEMPLATE.fullmatch(head + tail) or NAMESPACE_PLACEHOLDER in tail or \
                (not self.per_namespace and not _chroma_name_ok(name)):
            raise InvalidArgument(f"{uri}: Chroma refuses the collection name {name!r} (3-512 characters of "
                                  "[A-Za-z0-9._-], starting and ending with a letter or digit, no '..')")
        self.template = self.name = self.label = name
        try:
            if p.host is None:
                self.client = chromadb.PersistentClient(path=path)
            else:
                key = os.environ.get(API_KEY_ENV)
                headers = {"x-chroma-token": key} if key else None
                self.client = chromadb.HttpClient(host=p.host, port=p.port or 8000, headers=headers)
        except Exception as exc:  # the HttpClient asks the server at once
            raise ConnectorError(f"{uri}: cannot open Chroma: {type(exc).__name__}: {exc}") from exc
        self._cols: dict[str, Any] = {}
        self._max_batch: int | None = None
        self._others: list[str] | None = None  # the non-default namespaces, for the default's $nin

    def close(self) -> None:
        self._cols.clear()

    # -- names and collections -------------------------------------------------------------
    def _name(self, namespace: str) -> str:
        """The collection of ``namespace``; refused when Chroma would refuse the name."""
        if not self.per_namespace:
            return self.template
        name = collection_for(self.template, _encode(namespace))
        if not _chroma_name_ok(name):
            raise InvalidArgument(
                f"{self.uri}: namespace {namespace!r} would be the collection {name!r}, which Chroma refuses "
                "(3-512 characters, starting and ending with a letter or digit, no '..'); put a prefix "
                f"and a suffix around {NAMESPACE_PLACEHOLDER} in the collection name")
        return name

    def _collection(self, name: str) -> Any:
        """The collection named ``name``, or None when it does not exist."""
        if name not in self._cols:
            try:
                self._cols[name] = self.client.get_collection(name, embedding_function=None)
            except Exception as exc:  # NotFoundError / ValueError, by version
                text = str(exc).lower()
                if isinstance(exc, self._not_found) or "not exist" in text or "not found" in text:
                    return None
                raise
        return self._cols[name]

    def _owned(self) -> dict[str, str]:
        """Namespace -> collection for every existing collection of this URI."""
        if not self.per_namespace:
            return {"": self.template} if self._collection(self.template) is not None else {}
        head, _, tail = self.template.partition(NAMESPACE_PLACEHOLDER)
        out: dict[str, str] = {}
        offset = 0
        while True:  # list_collections pages
            cols = self.client.list_collections(limit=1000, offset=offset)
            for col in cols:
                name = col if isinstance(col, str) else col.name
                mid = name[len(head):len(name) - len(tail)]
                if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
                    ns = _decode(mid)
                    if ns is not None:
                        out[ns] = name
            if not cols:
                return out
            offset += len(cols)

    def _batch_size(self) -> int:
        if self._max_batch is None:
            get = getattr(self.client, "get_max_batch_size", None)
            self._max_batch = max(1, int(get())) if get else 1000
        return self._max_batch

    def _where(self, namespace: str, *, fresh: bool = False) -> tuple[Any, dict[str, Any] | None]:
        """The collection and the ``where`` that select ``namespace``. A read keeps the default
        namespace's list of others for the whole read (its offsets must not shift); a count
        asks again (this connector may have written new namespaces since)."""
        col = self._collection(self._name(namespace))
        if col is None or self.per_namespace:
            return col, None
        if namespace:
            return col, {NAMESPACE_FIELD: namespace}
        if self._others is None or fresh:
            self._others = [ns for ns in self.namespaces() if ns]
        return col, {NAMESPACE_FIELD: {"$nin": self._others}} if self._others else None

    # -- reading ---------------------------------------------------------------------------
    def shape(self) -> Shape | None:
        owned = self._owned()
        if not owned:
            return None
        col = self._collection(sorted(owned.values())[0])
        md = col.metadata or {}
        space = md.get("hnsw:space") or _configured_space(col) or "l2"
        metric = md.get("spruce_metric") or _FROM_SPACE.get(space, "euclidean")
        dim = md.get("spruce_dimension")
        if dim is None:
            first = col.get(limit=1, include=["embeddings"])
            emb = first.get("embeddings")
            dim = len(emb[0]) if emb is not None and len(emb) else None
        return Shape(dimension=dim, metric=metric, vector_type="dense")

    def namespaces(self) -> list[str]:
        if self.per_namespace:
            return sorted(ns for ns, name in self._owned().items() if self._collection(name).count())
        col = self._collection(self.template)
        if col is None:
            return []
        seen: set[str] = set()
        offset = 0
        while True:
            page = col.get(limit=_SCAN, offset=offset, include=["metadatas"])
            if not page["ids"]:
                return sorted(seen)
            seen.update(str((md or {}).get(NAMESPACE_FIELD, "")) for md in page["metadatas"])
            offset += len(page["ids"])

    def count(self, namespace: str) -> int:
        col, where = self._where(namespace, fresh=True)
        if col is None:
            return 0
        if where is None:
            return int(col.count())
        n = 0
        while True:
            got = len(col.get(where=where, limit=_SCAN, offset=n, include=[])["ids"])
            if not got:
                return n
            n += got

    def total(self) -> int:
        return sum(int(self._collection(name).count()) for name in self._owned().values())

    def existing(self, namespace: str, ids: list[str]) -> int | None:
        col = self._collection(self._name(namespace))
        if col is None:
            return 0
        cids = [self._chroma_id(namespace, i) for i in ids]
        step = self._batch_size()
        return sum(len(col.get(ids=cids[i:i + step], include=[])["ids"]) for i in range(0, len(cids), step))

    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        col, where = self._where(namespace)
        if col is None:
            return Page(batch=RecordBatch(ids=[]), cursor=None)
        offset, last, restarts = _cursor(cursor)
        include = ["embeddings", "metadatas", "documents"]
        if last is None:
            got = _rows(col.get(where=where, limit=limit, offset=offset, include=include))
        else:  # one record back: is the last one read still where it was?
            got = _rows(col.get(where=where, limit=limit + 1, offset=offset - 1, include=include))
            if got[:1] and got[0][0] == last:
                got = got[1:]
            else:  # records before the cursor were deleted: start again (replays converge, none skipped)
                restarts += 1
                if restarts > _RESTARTS:
                    raise ConnectorError(f"{self.uri}: records before the read position were deleted {restarts} "
                                         "times during this copy; copy again when the collection stops changing")
                offset = 0
                got = _rows(col.get(where=where, limit=limit, offset=0, include=include))
        ids, values, metadata = [], [], []
        for cid, emb, md, doc in got:
            md = dict(md or {})
            if doc is not None:  # Chroma's document text: kept in metadata, a copy back restores it
                md[DOCUMENT_FIELD] = doc
            if not self.per_namespace and str(md.get(NAMESPACE_FIELD, "")) != namespace:
                continue  # a tagged record met while reading the default namespace
            ids.append(str(md.pop(ID_FIELD, cid)))
            md.pop(NAMESPACE_FIELD, None)
            values.append(emb)
            metadata.append(md or None)
        nxt = None
        if len(got) == limit:
            nxt = {"offset": offset + len(got), "last": got[-1][0], "restarts": restarts}
        vals = np.asarray(values, dtype=np.float32) if values else None
        return Page(batch=RecordBatch(ids=ids, values=vals, metadata=metadata), cursor=nxt)

    # -- writing ---------------------------------------------------------------------------
    def may_lose(self, shape: Shape) -> bool:
        return True  # sparse values and some metadata shapes

    def check(self, namespace: str, batch: RecordBatch, losses: Losses) -> RecordBatch:
        self._name(namespace)  # a namespace Chroma cannot name is refused before anything is written
        shape = self.expected or self.shape()
        if shape is not None and shape.metric == "cosine" and batch.values is not None and len(batch):
            losses.add("dense values in a cosine collection come back rounded (within about 1e-7 relative: "
                       "the direction and query results are kept, the bits are not)", batch.ids[0], len(batch))
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
        self.expected = shape
        shape.refuse_other(have, f"{self.uri}: the collection")
        if have is not None:
            return
        if shape.dimension is None:
            raise InvalidArgument(f"{self.uri}: Chroma needs dense vectors; the source is sparse-only")
        if not self.per_namespace:  # one collection per namespace: each is created by its first write
            self._create(self.template, shape)

    def _create(self, name: str, shape: Shape) -> Any:
        self._cols[name] = self.client.get_or_create_collection(
            name, embedding_function=None,
            metadata={"hnsw:space": _SPACES[shape.metric], "spruce_metric": shape.metric,
                      "spruce_dimension": shape.dimension})
        return self._cols[name]

    def write(self, namespace: str, batch: RecordBatch) -> None:
        name = self._name(namespace)
        col = self._collection(name)
        if col is None:
            shape = self.expected or self.shape()
            if shape is None or shape.dimension is None:
                raise ConnectorError(f"{self.uri}: collection {name!r} does not exist and its shape is unknown")
            col = self._create(name, shape)
        values = np.asarray(batch.values, dtype=np.float32)
        step = self._batch_size()
        for start in range(0, len(batch), step):
            rids = batch.ids[start:start + step]
            cids = [self._chroma_id(namespace, rid) for rid in rids]
            metadatas, documents = [], []
            for rid, md in zip(rids, batch.metadata[start:start + step], strict=True):
                out = {k: (json.dumps(v) if _unholdable(v) else v) for k, v in (md or {}).items()}
                doc = out.pop(DOCUMENT_FIELD, None)
                documents.append(doc if isinstance(doc, str) else None)
                if doc is not None and not isinstance(doc, str):
                    out[DOCUMENT_FIELD] = doc  # not text: an ordinary metadata value
                out[ID_FIELD] = rid
                if namespace and not self.per_namespace:
                    out[NAMESPACE_FIELD] = namespace
                metadatas.append(out)
            if not self.fresh(namespace):  # a namespace that was empty holds nothing to merge with
                # upsert merges metadata keys and keeps an old document: a record that would keep a
                # key or a document it no longer has goes first
                old = col.get(ids=cids, include=["metadatas", "documents"])
                new = dict(zip(cids, zip(metadatas, documents, strict=True), strict=True))
                stale = [cid for cid, md, doc in zip(old["ids"], old["metadatas"], old["documents"], strict=True)
                         if set(md or {}) - set(new[cid][0]) or (doc is not None and new[cid][1] is None)]
                if stale:
                    col.delete(ids=stale)
            col.upsert(ids=cids, embeddings=values[start:start + step], metadatas=metadatas,
                       documents=documents if any(d is not None for d in documents) else None)

    def _chroma_id(self, namespace: str, rid: str) -> str:
        return rid if not namespace or self.per_namespace else point_uuid(namespace, rid)


def _configured_space(col: Any) -> str | None:
    """The space of a collection made the Chroma 1.x way (``configuration``, no ``hnsw:space``)."""
    config = getattr(col, "configuration_json", None) or {}  # the raw JSON: ``configuration`` warns
    for index in ("hnsw", "spann"):
        space = (config.get(index) or {}).get("space") if isinstance(config, dict) else None
        if space:
            return str(space)
    return None


def _cursor(cursor: Any) -> tuple[int, str | None, int]:
    """(offset, last id read, restarts) from a stored cursor (a bare offset in older job states)."""
    if cursor is None:
        return 0, None, 0
    if isinstance(cursor, int):
        return cursor, None, 0
    return int(cursor["offset"]), cursor.get("last"), int(cursor.get("restarts", 0))


def _rows(got: dict[str, Any]) -> list[tuple[str, Any, Any, str | None]]:
    embs, mds, docs = got.get("embeddings"), got.get("metadatas"), got.get("documents")
    return [(cid, embs[i], mds[i] if mds is not None else None, docs[i] if docs is not None else None)
            for i, cid in enumerate(got["ids"])]


def _encode(namespace: str) -> str:
    """The namespace as a part of a collection name ("" for the default: collection_for says
    ``default``)."""
    if namespace == "default":
        return "-64efault"
    return "".join(c if _RAW.fullmatch(c) else "".join(f"-{b:02X}" for b in c.encode()) for c in namespace)


def _decode(part: str) -> str | None:
    """The namespace of a collection name's part, or None when spruce did not write it."""
    if part == "default":
        return ""
    try:
        ns = _ESCAPED.sub(lambda m: f"\x00{m.group(1)}", part)
        ns = re.sub(r"(?:\x00[0-9A-F]{2})+",
                    lambda m: bytes.fromhex(m.group(0).replace("\x00", "")).decode(), ns)
    except UnicodeDecodeError:
        return None
    return ns if ns and _encode(ns) == part else None


def _chroma_name_ok(name: str) -> bool:
    if not _NAME_RULE.fullmatch(name) or ".." in name:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return True
    return False


def _unholdable(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int):
        return not _INT64[0] <= value <= _INT64[1]
    if isinstance(value, list):
        return not value
    return isinstance(value, dict)
