"""``pinecone://INDEX``: an index behind the Pinecone API as one end of ``spruce copy``.

The key comes from PINECONE_API_KEY, never the URI; ``?host=URL`` points at another control
plane (a ``spruce serve``, for instance), and ``?cloud=&region=`` say where a created index goes
(default aws/us-east-1). Reading lists ids page by page (the list token is the stored cursor)
and fetches them; writing upserts within Pinecone's limits (1,000 records and 2 MB a request),
sending float32 values in their shortest exact decimal form, so they land bit for bit. The
calls are ``spruce.sources.pinecone``'s (SDK 7.3, 9.x and 10.x: ``sdk._Sdk``), with the retry
policy and failure classification every connector shares (``spruce.sources.retry``).

Pinecone cannot be frozen: a copy from it is live, like every connector read.
"""

from __future__ import annotations

import os
import time
from typing import Any

from spruce.errors import InvalidArgument, NotFound
from spruce.records import RecordBatch, parse_batch
from spruce.sources.base import Connector, ConnectorError, Page, Shape, parse_uri

READY_TIMEOUT = 600.0


class PineconeConnector(Connector):
    schemes = ("pinecone",)
    kind = "pinecone"
    page_size = 100  # Pinecone lists at most 100 ids a page

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        from spruce.sources.pinecone.common import API_KEY_ENV, _Reporter, _Retrier
        from spruce.sources.pinecone.sdk import _Sdk

        p = parse_uri(uri, API_KEY_ENV)
        name = (p.host or "") + p.path.rstrip("/")
        if not name or "/" in name.strip("/"):
            raise InvalidArgument(f"{uri}: name the index, as pinecone://INDEX")
        self.name = self.label = name.strip("/")
        key = os.environ.get(API_KEY_ENV)
        if not key:
            raise InvalidArgument(f"set {API_KEY_ENV} to the API key of the Pinecone project "
                                  "(it is never taken from a URI or a flag)")
        self.cloud, self.region = p.query.get("cloud", "aws"), p.query.get("region", "us-east-1")
        self.sdk = _Sdk(key, p.query.get("host"))
        self.retrier = _Retrier(_Reporter())
        self._idx: Any = None

    def _call(self, what: str, fn: Any) -> Any:
        return self.retrier.call(what, fn)

    def _index(self) -> Any:
        if self._idx is None:
            info = self._info()
            if info is None:
                raise NotFound(f"index {self.name!r} not found at {self.sdk.host}")
            self._idx = self.sdk.index(info.host)
        return self._idx

    def _info(self) -> Any:
        try:
            return self._call(f"describe index {self.name}", lambda: self.sdk.describe(self.name))
        except NotFound:  # the retrier's reading of a 404, whatever the SDK's exception for it
            return None

    def shape(self) -> Shape | None:
        info = self._info()
        if info is None:
            return None
        return Shape(dimension=info.dimension, metric=info.metric, vector_type=info.vector_type,
                     sparse=info.vector_type == "sparse" or info.metric == "dotproduct")

    def _stats(self) -> dict[str, int]:
        idx = self._index()
        return self._call("describe_index_stats", lambda: self.sdk.stats(idx))

    def namespaces(self) -> list[str]:
        return sorted(ns for ns, n in self._stats().items() if n)

    def count(self, namespace: str) -> int:
        if self._info() is None:
            return 0
        return self._stats().get(namespace, 0)

    def total(self) -> int:
        return sum(self._stats().values()) if self._info() is not None else 0

    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        idx = self._index()
        ids, nxt = self._call("list ids", lambda: self.sdk.list_page(idx, namespace, cursor))
        if not ids:
            return Page(batch=RecordBatch(ids=[]), cursor=nxt)
        got = self._call("fetch", lambda: self.sdk.fetch(idx, namespace, ids))
        records = [_plain(got[i]) for i in ids if i in got]  # deleted since listed: gone
        info = self._info()
        batch = parse_batch(records, dimension=info.dimension if info else None,
                            vector_type=info.vector_type if info else "dense")
        return Page(batch=batch, cursor=nxt)

    def may_lose(self, shape: Shape) -> bool:
        return True  # ids that are not ASCII, which Pinecone refuses

    def check(self, namespace: str, batch: RecordBatch, losses: Any) -> RecordBatch:
        """Pinecone takes only ASCII ids: such records are a loss (refused; with allow_lossy,
        skipped and listed)."""
        bad = [i for i, rid in enumerate(batch.ids) if not rid.isascii()]
        if not bad:
            return batch
        losses.add("records skipped: Pinecone takes only ASCII ids", batch.ids[bad[0]], len(bad))
        keep = sorted(set(range(len(batch))) - set(bad))
        return batch.take(keep)

    def existing(self, namespace: str, ids: list[str]) -> int | None:
        idx = self._index()
        return len(self._call("fetch", lambda: self.sdk.fetch(idx, namespace, ids)))

    def ensure(self, shape: Shape) -> None:
        info = self._info()
        if info is not None:
            if shape.dimension is not None and (info.dimension, info.metric) != (shape.dimension, shape.metric):
                raise InvalidArgument(f"{self.uri}: the index is dimension {info.dimension} {info.metric}; the source "
                                      f"is dimension {shape.dimension} {shape.metric}")
            return
        self._call(f"create index {self.name}", lambda: self.sdk.create(
            self.name, dimension=shape.dimension, metric=shape.metric, vector_type=shape.vector_type,
            cloud=self.cloud, region=self.region, tags=None))
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            info = self._info()
            if info is not None and info.ready:
                return
            time.sleep(1.0)
        raise ConnectorError(f"{self.uri}: the created index was not ready within {READY_TIMEOUT:.0f}s")

    def write(self, namespace: str, batch: RecordBatch) -> None:
        idx = self._index()
        from spruce.sources.pinecone.chunks import upsert_chunks

        for vectors, _size in upsert_chunks(batch):
            self._call("upsert", lambda v=vectors: self.sdk.upsert(idx, namespace, v))


def _plain(rec: Any) -> dict[str, Any]:
    """A fetched record (an SDK Vector or a plain dict) as an upsert-shaped dict."""
    if isinstance(rec, dict):
        return rec
    out: dict[str, Any] = {"id": rec.id}
    values = getattr(rec, "values", None)
    if values:
        out["values"] = values
    sparse = getattr(rec, "sparse_values", None)
    if sparse is not None:
        out["sparse_values"] = {"indices": list(getattr(sparse, "indices", sparse.get("indices") if isinstance(
            sparse, dict) else [])), "values": list(getattr(sparse, "values", sparse.get("values") if isinstance(
                sparse, dict) else []))}
    metadata = getattr(rec, "metadata", None)
    if metadata:
        out["metadata"] = dict(metadata)
    return out
