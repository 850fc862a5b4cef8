"""The two ends of a copy that are spruce's own: an index of this data folder, and an archive.

They speak the Connector interface, so ``spruce.sources.copy`` moves records between any two
ends with one loop. What ``spruce copy SRC DST`` accepts:

* a plain index name: an index of this data folder;
* ``pinecone://INDEX``: an index behind the Pinecone API (``spruce.sources.pinecone``);
* a connector URI (``qdrant://``, ``postgresql://``, ``chroma://``, ``milvus://``, ``lancedb://``);
* anything else: an archive in storage (a folder, ``file://``, ``s3://``, ``gs://``, ``az://``).
"""

from __future__ import annotations

from typing import Any

from spruce.errors import AlreadyExists, InvalidArgument, NotFound
from spruce.records import RecordBatch, normalize_namespace
from spruce.sources.base import Connector, Page, Shape


def may_hold_sparse(vector_type: str, metric: str) -> bool:
    """Sparse values occur in sparse indexes and beside dense ones only under dotproduct
    (Pinecone's hybrid rule), so only those need a sparse field in the target."""
    return vector_type == "sparse" or metric == "dotproduct"


class SpruceIndexEnd(Connector):
    """An index of this data folder. As a source it reads one snapshot per attempt (id order;
    the cursor is the last id read). As a target each page commits in one transaction together
    with the job's marker, so a resumed job knows exactly what landed."""

    def __init__(self, engine: Any, name: str, job_id: str | None = None) -> None:
        super().__init__(name)
        self.engine, self.name, self.job_id = engine, name, job_id
        self._snap: Any = None
        self._iters: dict[str, Any] = {}

    def _index(self) -> Any:
        return self.engine.index(self.name)

    def shape(self) -> Shape | None:
        if not self.engine.has_index(self.name):
            return None
        c = self._index().config
        return Shape(dimension=c.dimension, metric=c.metric, vector_type=c.vector_type,
                     sparse=may_hold_sparse(c.vector_type, c.metric))

    def _snapshot(self) -> Any:
        if self._snap is None:
            self._snap = self._index().snapshot()
        return self._snap

    def namespaces(self) -> list[str]:
        return [ns for ns, n in self._snapshot().namespaces().items() if n]

    def count(self, namespace: str) -> int:
        if not self.engine.has_index(self.name):
            return 0
        if self._snap is not None:
            return self._snap.namespaces().get(namespace, 0)
        stats = self._index().describe_index_stats()
        return stats.namespaces[namespace].vector_count if namespace in stats.namespaces else 0

    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        it = self._iters.get(namespace)
        if it is None or cursor is None:  # None: from the start (a preflight pass read it once already)
            it = self._iters[namespace] = self._snapshot().iter_batches(namespace, batch_size=limit)
            self._skip_to = cursor
        for batch in it:
            if self._skip_to is not None:  # a resumed attempt: skip what an earlier one copied
                keep = [i for i, rid in enumerate(batch.ids) if rid > self._skip_to]
                if not keep:
                    continue
                self._skip_to = None
                batch = batch.take(keep) if len(keep) < len(batch) else batch
            return Page(batch=batch, cursor=batch.ids[-1] if batch.ids else cursor)
        return Page(batch=RecordBatch(ids=[]), cursor=None)

    def ensure(self, shape: Shape) -> None:
        if self.engine.has_index(self.name):
            c = self._index().config
            if (c.dimension, c.metric) != (shape.dimension, shape.metric):
                raise InvalidArgument(f"index {self.name!r} is dimension {c.dimension} {c.metric}; the source is "
                                      f"dimension {shape.dimension} {shape.metric}")
            return
        self.engine.create_index(self.name, dimension=shape.dimension, metric=shape.metric,
                                 vector_type=shape.vector_type, initializing_job=self.job_id)

    def write(self, namespace: str, batch: RecordBatch, marker: tuple[str, Any] | None = None) -> None:
        index = self._index()
        with index.transaction() as tx:
            tx.upsert(normalize_namespace(namespace), batch)
            if marker is not None:
                tx.set_marker(marker[0], {**marker[1], "seq": tx.seq})

    def close(self) -> None:
        if self._snap is not None:
            self._snap.close()
            self._snap = None
        self._iters.clear()


class ArchiveSourceEnd(Connector):
    """A committed archive, checked file by file against its manifest as it is read. The
    cursor is ``[file number, records of it already read]``."""

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None) -> None:
        from spruce.archive import ArchiveReader
        from spruce.storage import open_store

        store = open_store(uri, **(storage_options or {}))
        super().__init__(store.uri)
        self.reader = ArchiveReader(store)
        self.manifest = self.reader.manifest  # NotFound/ArchiveIncomplete now, not mid-copy
        self.manifest.refuse_incremental(store.uri)
        self._open: tuple[str, Any] | None = None

    def shape(self) -> Shape | None:
        m = self.manifest
        metric = m.source.get("metric") or "cosine"
        return Shape(dimension=m.dimension, metric=metric, vector_type=m.vector_type,
                     sparse=may_hold_sparse(m.vector_type, metric))

    def namespaces(self) -> list[str]:
        return [ns.name for ns in self.manifest.namespaces if ns.record_count]

    def count(self, namespace: str) -> int:
        return sum(ns.record_count for ns in self.manifest.namespaces if ns.name == namespace)

    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        entry = next(ns for ns in self.manifest.namespaces if ns.name == namespace)
        file_no, done = cursor or (0, 0)
        key = f"{namespace}\x00{file_no}"
        if self._open is None or self._open[0] != key:
            if file_no >= len(entry.files):
                return Page(batch=RecordBatch(ids=[]), cursor=None)
            it = self.reader.iter_batches(entry.files[file_no], batch_size=limit)
            skip = done
            self._open = (key, _skipping(it, skip))
        for batch in self._open[1]:
            return Page(batch=batch, cursor=[file_no, done + len(batch)])
        self._open = None  # this file is done: the next page starts the next file
        nxt = [file_no + 1, 0]
        return Page(batch=RecordBatch(ids=[]), cursor=nxt if file_no + 1 < len(entry.files) else None)

    def ensure(self, shape: Shape) -> None:
        raise InvalidArgument("an archive is written by an export, not by a copy into it")

    def write(self, namespace: str, batch: RecordBatch) -> None:
        raise InvalidArgument("an archive is written by an export, not by a copy into it")


def _skipping(it: Any, n: int) -> Any:
    """Skip the first ``n`` records of a file's batches (a resumed attempt)."""
    for batch in it:
        if n >= len(batch):
            n -= len(batch)
            continue
        if n:
            batch = batch.take(range(n, len(batch)))
            n = 0
        yield batch


class ArchiveTargetEnd(Connector):
    """A new archive. It is not resumable mid-way: an interrupted copy into an archive starts
    again from the beginning (parts of the earlier attempt are replaced), and the manifest is
    written last, so a partial archive never looks complete."""

    def __init__(self, uri: str, *, format: str = "jsonl.gz", overwrite: bool = False,
                 storage_options: dict[str, Any] | None = None) -> None:
        from spruce.archive import ArchiveWriter
        from spruce.storage import open_store

        self.store = open_store(uri, **(storage_options or {}))
        super().__init__(self.store.uri)
        if not overwrite and self.store.exists("manifest.json"):
            raise AlreadyExists(f"{self.store.uri} already holds a complete archive; pass --overwrite")
        self.writer = ArchiveWriter(self.store, format=format)
        self._shape: Shape | None = None

    def shape(self) -> Shape | None:
        return self._shape

    def namespaces(self) -> list[str]:
        raise NotFound("an archive being written has no namespaces to read yet")

    def count(self, namespace: str) -> int:
        return self.writer.records(namespace) if hasattr(self.writer, "records") else 0

    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        raise InvalidArgument("an archive being written cannot be read")

    def ensure(self, shape: Shape) -> None:
        self._shape = shape
        self.writer.begin()

    def add_namespace(self, namespace: str) -> None:
        self.writer.add_namespace(namespace)

    def write(self, namespace: str, batch: RecordBatch) -> None:
        self.writer.write(namespace, batch)

    def commit(self, source: dict[str, Any], job_id: str) -> Any:
        return self.writer.commit(source=source, consistency="live", export_id=job_id)

    def close(self) -> None:
        if getattr(self.writer, "_state", None) == "open":
            self.writer.abort()
