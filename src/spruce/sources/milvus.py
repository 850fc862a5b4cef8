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

``{namespace}`` in the collection name gives one collection per namespace (same fields; ``pk``
is the id itself there). A collection name holds only ``[A-Za-z0-9_]``, so the namespace is
written with every other character, ``_`` included, as ``_xHH`` per UTF-8 byte (``Ödd!`` is
``_xC3_x96dd_x21``); the default namespace is ``default``, a namespace named "default" is
``_x64efault``, and a leading digit is escaped when the name would start with it. Every ``_``
starts an escape, so the encoding reverses exactly and two namespaces never share a collection.
A name beyond Milvus's 255 characters is refused, naming the namespace, before any write.

Reading uses ``query_iterator`` (which pages by primary key); the last primary key read is the
stored cursor, and a resumed copy starts a new iterator with ``pk > cursor``, never an OFFSET;
writing is ``upsert`` (a row replaced whole), so a replayed page converges. Counts are
``count(*)`` queries at Strong consistency: exact right after an upsert or a delete (a server's
``get_collection_stats`` may count replaced rows until a compaction).

Milvus Lite is a server process (``milvus_lite/lib/milvus``) that the opening Python process
starts, serving one file to one process; it blocks on the file's lock (``.NAME.db.lock``) and
exits when it gets it, i.e. when its parent is gone. After a kill -9 it still finishes the
request in flight before exiting, and a server started on the file meanwhile fails to load it
("database is locked") and reads the collections as empty. So opening waits for any server of
the file to exit (found in /proc), and refuses at once a file whose lock a live process holds;
``close`` stops this process's server when its last connector closes, releasing the file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import warnings
from typing import Any

import numpy as np

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
    point_uuid,
    require,
)

TOKEN_ENV = "MILVUS_TOKEN"
DEFAULT_NS = "__default__"
_METRICS = {"cosine": "COSINE", "dotproduct": "IP", "euclidean": "L2"}
_MAX_VARCHAR = 4096
_MAX_NAME = 255
_NAME = re.compile(r"[A-Za-z0-9_]*")
_ESCAPE = re.compile(r"_x([0-9A-F]{2})")
_DEFAULT_NAME = "default"
#: How long an opening waits for a killed process's Milvus Lite server to finish and exit.
LITE_WAIT = 60.0
_STRONG = {"consistency_level": "Strong"}


class MilvusConnector(Connector):
    schemes = ("milvus",)
    kind = "milvus"
    page_size = 1000

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        p = parse_uri(uri, TOKEN_ENV)
        with warnings.catch_warnings():  # milvus_lite imports pkg_resources, which warns on every run
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            pymilvus = require("pymilvus", "Milvus")
            if p.host is None:
                require("milvus_lite", "Milvus")
        # pymilvus logs every failed call to stderr; the copy reports its own one-line errors
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
        self.lite: str | None = None
        if p.host is None:
            self.lite = os.path.realpath(local_path(p, "Milvus Lite file"))
            template = p.query.get("collection", "")
        else:
            target = f"http://{p.host}:{p.port or 19530}"
            template = p.path.strip("/") or p.query.get("collection", "")
        if not template:
            raise InvalidArgument(f"{uri}: name the collection (milvus:///PATH.db?collection=NAME or "
                                  "milvus://HOST:PORT/COLLECTION)")
        head, _, tail = template.partition(NAMESPACE_PLACEHOLDER)
        if NAMESPACE_PLACEHOLDER in tail or not _NAME.fullmatch(head + tail) or head[:1].isdigit() \
                or len(head + tail) + (NAMESPACE_PLACEHOLDER in template) > _MAX_NAME:
            raise InvalidArgument(f"{uri}: a Milvus collection name holds letters, digits and _, starts with a "
                                  f"letter or _ and has at most {_MAX_NAME} characters (got {template!r})")
        self.template = self.name = self.label = template
        self.per_namespace = NAMESPACE_PLACEHOLDER in template
        self.DataType = pymilvus.DataType
        self._streams: dict[str, list[Any]] = {}
        self._sparse: dict[str, bool] = {}
        if self.lite is not None:
            self.client = _open_lite(pymilvus, self.lite)
        else:
            token = os.environ.get(TOKEN_ENV)
            self.client = pymilvus.MilvusClient(target, **({"token": token} if token else {}))

    def close(self) -> None:
        for stream in self._streams.values():
            stream[1].close()
        self._streams.clear()
        client, self.client = self.client, None
        if client is not None:
            client.close()
            if self.lite is not None:
                _release_lite(self.lite)

    # -- collections -----------------------------------------------------------------------
    def _collection(self, namespace: str) -> str:
        """The collection of ``namespace``; a name Milvus would refuse is an error naming it."""
        if not self.per_namespace:
            return self.template
        head, _, tail = self.template.partition(NAMESPACE_PLACEHOLDER)
        name = head + encode_namespace(namespace, leading=not head) + tail
        if len(name) > _MAX_NAME:
            raise InvalidArgument(f"namespace {namespace!r}: its collection name {name[:60]}... would be {len(name)} "
                                  f"characters; Milvus allows {_MAX_NAME} (use a shorter name around {{namespace}})")
        return name

    def _collections(self) -> dict[str, str]:
        """The existing collections of this URI, collection name -> namespace, in name order."""
        names = sorted(self.client.list_collections())
        if not self.per_namespace:
            return {self.template: ""} if self.template in names else {}
        head, _, tail = self.template.partition(NAMESPACE_PLACEHOLDER)
        out = {}
        for name in names:
            if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
                ns = decode_namespace(name[len(head):len(name) - len(tail)], leading=not head)
                if ns is not None:
                    out[name] = ns
        return out

    def _exists(self, name: str) -> bool:
        return bool(self.client.has_collection(name))

    def _where(self, namespace: str) -> str:
        """The filter of ``namespace`` in its collection (none when the collection is the namespace)."""
        return "" if self.per_namespace else f"namespace == {_q(namespace or DEFAULT_NS)}"

    def _pk(self, namespace: str, rid: str) -> str:
        return rid if self.per_namespace or not namespace else point_uuid(namespace, rid)

    def _has_sparse(self, name: str) -> bool:
        if name not in self._sparse:
            desc = self.client.describe_collection(name)
            self._sparse[name] = any(f.get("name") == "sparse" for f in desc.get("fields", []))
        return self._sparse[name]

    # -- reading ---------------------------------------------------------------------------
    def shape(self) -> Shape | None:
        names = list(self._collections())
        if not names:
            return None
        desc = self.client.describe_collection(names[0])
        try:
            info = json.loads(desc.get("description") or "{}").get("spruce") or {}
        except (ValueError, AttributeError):
            info = {}
        if info:
            return Shape(dimension=info.get("dimension"), metric=info.get("metric", "cosine"),
                         vector_type=info.get("vector_type", "dense"), sparse=bool(info.get("sparse")))
        dim = next((f.get("params", {}).get("dim") for f in desc.get("fields", []) if f.get("name") == "vector"), None)
        return Shape(dimension=int(dim) if dim else None, metric="cosine")

    def _count(self, name: str, flt: str) -> int:
        rows = self.client.query(name, filter=flt, output_fields=["count(*)"], **_STRONG)
        return int(rows[0]["count(*)"]) if rows else 0

    def namespaces(self) -> list[str]:
        if self.per_namespace:
            return sorted(ns for name, ns in self._collections().items() if self._count(name, ""))
        if not self._exists(self.template):
            return []
        seen: set[str] = set()
        last = None
        while True:  # distinct values by paging the primary key (Milvus has no DISTINCT)
            flt = f"pk > {_q(last)}" if last is not None else ""
            rows = self.client.query(self.template, filter=flt, output_fields=["pk", "namespace"], limit=16384,
                                     **_STRONG)
            seen.update(r["namespace"] for r in rows)
            if len(rows) < 16384:
                return sorted("" if ns == DEFAULT_NS else ns for ns in seen)
            last = max(r["pk"] for r in rows)

    def count(self, namespace: str) -> int:
        name = self._collection(namespace)
        return self._count(name, self._where(namespace)) if self._exists(name) else 0

    def total(self) -> int:
        return sum(self._count(name, "") for name in self._collections())

    def existing(self, namespace: str, ids: list[str]) -> int | None:
        name = self._collection(namespace)
        if not ids or not self._exists(name):
            return 0
        return len(self.client.get(name, ids=[self._pk(namespace, i) for i in ids], output_fields=["pk"], **_STRONG))

    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        stream = self._streams.get(namespace)
        if stream is None or stream[0] != cursor:  # (re)start after the cursor: a resumed copy
            if stream is not None:
                stream[1].close()
            name = self._collection(namespace)
            if not self._exists(name):
                return Page(batch=RecordBatch(ids=[]), cursor=None)
            flt = " and ".join(f for f in (self._where(namespace), "" if cursor is None else f"pk > {_q(cursor)}") if f)
            fields = ["pk", "id", "vector", "metadata"] + (["sparse"] if self._has_sparse(name) else [])
            stream = [cursor, self.client.query_iterator(name, batch_size=limit, filter=flt, output_fields=fields,
                                                         **_STRONG)]
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

    # -- writing ---------------------------------------------------------------------------
    def ensure(self, shape: Shape) -> None:
        have = self.shape()
        shape.refuse_other(have, f"{self.uri}: the collection")
        if shape.dimension is None:
            raise InvalidArgument(f"{self.uri}: sparse-only indexes are not supported for Milvus yet")
        self.expected = shape
        if have is None and not self.per_namespace:
            self._create(self.template, shape)

    def may_lose(self, shape: Shape) -> bool:
        """Only sparse values meeting an existing collection without a sparse field (one spruce
        did not create, or created for a dense-only index) can be lost."""
        return shape.sparse and any(not self._has_sparse(n) for n in self._collections())

    def check(self, namespace: str, batch: RecordBatch, losses: Losses) -> RecordBatch:
        name = self._collection(namespace)
        if batch.sparse is not None and any(s is not None for s in batch.sparse) and self._exists(name) \
                and not self._has_sparse(name):
            losses.add(f"sparse values dropped (collection {name!r} has no sparse field)",
                       next(batch.ids[i] for i, s in enumerate(batch.sparse) if s is not None))
        return batch

    def _create(self, name: str, shape: Shape) -> None:
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
        self.client.create_collection(name, schema=schema, index_params=index)
        self._sparse.pop(name, None)

    def write(self, namespace: str, batch: RecordBatch) -> None:
        name = self._collection(namespace)
        if not self._exists(name):
            shape = self.expected or self.shape()
            if shape is None:
                raise ConnectorError(f"{self.uri}: the collection does not exist and its shape is unknown")
            self._create(name, shape)
        sparse_field = self._has_sparse(name)
        rows = []
        for i, rid in enumerate(batch.ids):
            row: dict[str, Any] = {"pk": self._pk(namespace, rid), "namespace": namespace or DEFAULT_NS, "id": rid,
                                   "vector": batch.values[i].tolist() if batch.values is not None else None,
                                   "metadata": batch.metadata[i] or {}}
            if sparse_field:
                sv = batch.sparse[i] if batch.sparse is not None else None
                row["sparse"] = {} if sv is None else {int(k): float(v) for k, v in zip(sv.indices, sv.values,
                                                                                       strict=True)}
            rows.append(row)
        self.client.upsert(name, rows)


# -- the {namespace} encoding ---------------------------------------------------------------

def encode_namespace(namespace: str, *, leading: bool = False) -> str:
    """``namespace`` as collection-name characters: ``[A-Za-z0-9]`` as is, every other
    character (``_`` included) as ``_xHH`` per UTF-8 byte; "" is ``default``. ``leading``: the
    name starts here, so a digit (which Milvus refuses first) is escaped too."""
    if not namespace:
        return _DEFAULT_NAME
    out = "".join(c if c.isascii() and c.isalnum() else "".join(f"_x{b:02X}" for b in c.encode())
                  for c in namespace)
    if out == _DEFAULT_NAME or (leading and out[0].isdigit()):  # taken by "", or refused first
        out = f"_x{ord(out[0]):02X}{out[1:]}"
    return out


def decode_namespace(text: str, *, leading: bool = False) -> str | None:
    """The namespace ``encode_namespace`` wrote as ``text``; None when it did not write it (a
    collection of someone else that only looks like the template)."""
    if text == _DEFAULT_NAME:
        return ""
    raw, pos = bytearray(), 0
    while pos < len(text):
        m = _ESCAPE.match(text, pos)
        if m:
            raw.append(int(m.group(1), 16))
            pos = m.end()
        elif text[pos] != "_":
            raw += text[pos].encode()
            pos += 1
        else:
            return None
    try:
        namespace = raw.decode()
    except UnicodeDecodeError:
        return None
    return namespace if namespace and encode_namespace(namespace, leading=leading) == text else None


# -- Milvus Lite: one server per file, started by this process ---------------------------

_lite_lock = threading.Lock()
_lite_users: dict[str, int] = {}  # file -> open connectors of this process whose server spruce started


def _open_lite(pymilvus: Any, path: str) -> Any:
    """A client of the Milvus Lite file ``path``, starting its server in this process after any
    other server of the file has exited (see the module docstring)."""
    manager = require("milvus_lite.server_manager", "Milvus Lite").server_manager_instance

    with _lite_lock:
        ours = path in _lite_users
        if not ours and path not in getattr(manager, "_servers", {}):
            wait_for_servers(path)
            ours = True
        try:
            client = pymilvus.MilvusClient(path)
        except Exception as exc:
            raise ConnectorError(f"{path}: Milvus Lite could not open the file: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        if ours:
            _lite_users[path] = _lite_users.get(path, 0) + 1
        return client


def _release_lite(path: str) -> None:
    """Stop the server of ``path`` when the last connector that spruce started it for closes
    (a server someone else started in this process is left to them)."""
    manager = require("milvus_lite.server_manager", "Milvus Lite").server_manager_instance

    with _lite_lock:
        if path not in _lite_users:
            return
        _lite_users[path] -= 1
        if not _lite_users[path]:
            del _lite_users[path]
            manager.release_server(path)


def wait_for_servers(path: str) -> None:
    """Return once no Milvus Lite server serves ``path``: wait (up to LITE_WAIT) for a killed
    process's server to exit, refuse a file whose lock a live process keeps holding (a server
    that is exiting holds it for an instant only)."""
    lock = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")
    start = time.monotonic()
    held_since = None
    while True:
        now = time.monotonic()
        held_since = (held_since or now) if _lock_held(lock) else None
        if held_since is not None and now - held_since > 2:
            raise ConnectorError(f"{path} is open in another process, and Milvus Lite serves a file to one process "
                                 "at a time: close it there, or copy through a Milvus server")
        pids = _servers_of(path)
        if not pids and held_since is None:
            return
        if now - start > LITE_WAIT:
            raise ConnectorError(f"{path}: the Milvus Lite server of a stopped process (pid {pids[0] if pids else '?'}) "
                                 f"has not exited after {LITE_WAIT:.0f} s; stop it and try again")
        time.sleep(0.05)


def _lock_held(lock: str) -> bool:
    """Whether another process holds Milvus Lite's lock on ``lock`` (its live owner). Only asked
    when this process holds none: closing the probe drops all of this process's locks on it."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False  # no lock file: nobody opened the file, or they closed it cleanly
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _servers_of(path: str) -> list[int]:
    """The pids of Milvus Lite servers of ``path`` (``milvus PATH ADDRESS ...``), from /proc
    (Linux; elsewhere none are seen, and a resume relies on the server's own quick exit)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    out = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[0].endswith(b"/milvus") and os.fsdecode(argv[1]) == path:
            out.append(int(entry))
    return out


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a double-quoted string literal with escapes, as Milvus expressions take
