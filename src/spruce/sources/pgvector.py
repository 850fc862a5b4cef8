"""pgvector: ``postgresql://USER@HOST:PORT/DB?table=NAME`` (a socket: ``?host=/dir``).

The password comes from PGPASSWORD (or ~/.pgpass), as for psql; a password in the URI is
refused. Layout, as a psql user expects it::

    CREATE TABLE name (
        namespace text COLLATE "C" NOT NULL,   -- '' for the default namespace
        id        text COLLATE "C" NOT NULL,   -- the original id, as is
        embedding vector(d),                   -- float4: values round-trip bit for bit
        sparse    sparsevec,                   -- indices < 1e9, at most 16,000 non-zeros
        metadata  jsonb,
        PRIMARY KEY (namespace, id))

The index's metric, dimension and vector type are kept in the table's comment (JSON), so a
copy back knows them. Reading is keyset pagination on (namespace, id), never OFFSET; writing
COPYs each batch into a temporary table and upserts from it (ON CONFLICT replaces a row whole),
in one transaction per batch.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from spruce.errors import InvalidArgument
from spruce.records import RecordBatch, SparseValues
from spruce.sources.base import NAMESPACE_PLACEHOLDER, Connector, Losses, Page, Shape, parse_uri, require

PASSWORD_ENV = "PGPASSWORD"
MAX_SPARSE_INDEX = 1_000_000_000
MAX_SPARSE_NNZ = 16_000
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PgvectorConnector(Connector):
    schemes = ("postgresql", "postgres")
    kind = "pgvector"
    page_size = 2000

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        p = parse_uri(uri, PASSWORD_ENV)
        psycopg = require("psycopg", "pgvector")
        self.pgvector = require("pgvector.psycopg", "pgvector")
        table = p.query.get("table", "")
        if NAMESPACE_PLACEHOLDER in table:
            raise InvalidArgument(f"{uri}: one table per namespace ({NAMESPACE_PLACEHOLDER}) is not supported for "
                                  "pgvector yet; the namespace is a key column of one table")
        if not _NAME.fullmatch(table):
            raise InvalidArgument(f"{uri}: name the table as ?table=NAME (letters, digits and _, at most 63)")
        self.table = self.label = table
        kwargs: dict[str, Any] = {"dbname": p.path.strip("/") or None, "user": p.user, "autocommit": False}
        host = p.query.get("host") or p.host
        if host:
            kwargs["host"] = host
        if p.port:
            kwargs["port"] = p.port
        try:
            self.conn = psycopg.connect(**{k: v for k, v in kwargs.items() if v is not None}, connect_timeout=30)
        except psycopg.Error as exc:
            from spruce.sources.base import ConnectorError

            raise ConnectorError(f"{uri}: cannot connect: {str(exc).strip().splitlines()[0]}") from None
        with self.conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
        self.conn.commit()
        self.pgvector.register_vector(self.conn)

    def close(self) -> None:
        self.conn.close()

    def _q(self, sql: str, params: Any = None) -> list[Any]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
        self.conn.commit()
        return rows

    # -- reading ---------------------------------------------------------------------------
    def shape(self) -> Shape | None:
        rows = self._q("SELECT obj_description(to_regclass(%s), 'pg_class'), to_regclass(%s) IS NOT NULL",
                       (self.table, self.table))
        comment, exists = rows[0]
        if not exists:
            return None
        try:
            info = json.loads(comment or "{}").get("spruce") or {}
        except (ValueError, AttributeError):
            info = {}
        if not info:  # a table spruce did not create: the embedding column's dimension, cosine
            dim = self._q("SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                          "AND attname = 'embedding'", (self.table,))
            return Shape(dimension=dim[0][0] if dim and dim[0][0] > 0 else None, metric="cosine")
        return Shape(dimension=info.get("dimension"), metric=info.get("metric", "cosine"),
                     vector_type=info.get("vector_type", "dense"), sparse=bool(info.get("sparse")))

    def namespaces(self) -> list[str]:
        return [r[0] for r in self._q(f'SELECT DISTINCT namespace FROM "{self.table}" ORDER BY 1')]

    def count(self, namespace: str) -> int:
        if self.shape() is None:
            return 0
        return int(self._q(f'SELECT count(*) FROM "{self.table}" WHERE namespace = %s', (namespace,))[0][0])

    def total(self) -> int:
        if self.shape() is None:
            return 0
        return int(self._q(f'SELECT count(*) FROM "{self.table}"')[0][0])

    def existing(self, namespace: str, ids: list[str]) -> int | None:
        return int(self._q(f'SELECT count(*) FROM "{self.table}" WHERE namespace = %s AND id = ANY(%s)',
                           (namespace, ids))[0][0])

    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        sql = (f'SELECT id, embedding, sparse, metadata FROM "{self.table}" WHERE namespace = %s '
               + ("AND id > %s " if cursor is not None else "") + "ORDER BY id LIMIT %s")
        params = (namespace, cursor, limit) if cursor is not None else (namespace, limit)
        rows = self._q(sql, params)
        ids = [r[0] for r in rows]
        dense = [r[1] for r in rows]
        values = (np.stack([np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v, dtype=np.float32)
                            for v in dense]) if rows and dense[0] is not None else None)
        sparse: list[SparseValues | None] = []
        for r in rows:
            sv = r[2]
            sparse.append(None if sv is None else SparseValues(indices=[int(i) for i in sv.indices()],
                                                               values=[float(x) for x in sv.values()]))
        batch = RecordBatch(ids=ids, values=values, sparse=sparse if any(s is not None for s in sparse) else None,
                            metadata=[r[3] or None for r in rows])
        return Page(batch=batch, cursor=ids[-1] if len(rows) == limit else None)

    # -- writing ---------------------------------------------------------------------------
    def ensure(self, shape: Shape) -> None:
        have = self.shape()
        if have is not None:
            if shape.dimension is not None and (have.dimension, have.metric) != (shape.dimension, shape.metric):
                raise InvalidArgument(f"{self.uri}: table {self.table} holds dimension {have.dimension} {have.metric}; "
                                      f"the source is dimension {shape.dimension} {shape.metric}")
            return
        emb = f"embedding vector({shape.dimension})," if shape.dimension else "embedding vector,"
        self._q(f'CREATE TABLE IF NOT EXISTS "{self.table}" (namespace text COLLATE "C" NOT NULL, '
                f'id text COLLATE "C" NOT NULL, {emb} sparse sparsevec, metadata jsonb, PRIMARY KEY (namespace, id))')
        comment = json.dumps({"spruce": {"dimension": shape.dimension, "metric": shape.metric,
                                         "vector_type": shape.vector_type, "sparse": shape.sparse}})
        self._q(f'COMMENT ON TABLE "{self.table}" IS ' + _literal(comment))

    def may_lose(self, shape: Shape) -> bool:
        return True  # zeros in sparse values, NUL in metadata strings

    def check(self, namespace: str, batch: RecordBatch, losses: Losses) -> RecordBatch:
        for i, sv in enumerate(batch.sparse or []):
            if sv is None:
                continue
            if len(sv.indices) > MAX_SPARSE_NNZ or (len(sv.indices) and max(sv.indices) >= MAX_SPARSE_INDEX):
                raise InvalidArgument(f"record {batch.ids[i]!r} (namespace {namespace or '__default__'!r}): its sparse "
                                      f"values do not fit pgvector's sparsevec (indices below {MAX_SPARSE_INDEX:,}, "
                                      f"at most {MAX_SPARSE_NNZ:,} non-zeros)")
            if any(v == 0 for v in sv.values):
                losses.add("sparse values of 0 dropped (sparsevec stores only non-zeros)", batch.ids[i])
        for i, md in enumerate(batch.metadata):
            if md and "\\u0000" in json.dumps(md):
                losses.add("metadata strings with a NUL character (jsonb cannot hold them)", batch.ids[i])
        return batch

    def write(self, namespace: str, batch: RecordBatch) -> None:
        from pgvector import SparseVector
        from psycopg.types.json import Jsonb

        with self.conn.cursor() as cur:
            cur.execute(f'CREATE TEMP TABLE IF NOT EXISTS spruce_load (LIKE "{self.table}") ON COMMIT DELETE ROWS')
            with cur.copy("COPY spruce_load (namespace, id, embedding, sparse, metadata) FROM STDIN "
                          "WITH (FORMAT BINARY)") as copy:
                copy.set_types(["text", "text", "vector", "sparsevec", "jsonb"])
                for i, rid in enumerate(batch.ids):
                    sv = batch.sparse[i] if batch.sparse is not None else None
                    sparse = None if sv is None else SparseVector(
                        {int(k): float(v) for k, v in zip(sv.indices, sv.values, strict=True)}, MAX_SPARSE_INDEX)
                    md = batch.metadata[i]
                    copy.write_row((namespace, rid, None if batch.values is None else batch.values[i], sparse,
                                    None if md is None else Jsonb(md)))
            cur.execute(f'INSERT INTO "{self.table}" SELECT * FROM spruce_load ON CONFLICT (namespace, id) DO UPDATE '
                        "SET embedding = EXCLUDED.embedding, sparse = EXCLUDED.sparse, metadata = EXCLUDED.metadata")
        self.conn.commit()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
