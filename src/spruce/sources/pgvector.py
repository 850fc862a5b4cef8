"""pgvector: ``postgresql://USER@HOST:PORT/DB?table=NAME`` (a socket: ``?host=/dir``; ``&schema=S``).

The password comes from PGPASSWORD (or ~/.pgpass), as for psql; a password in the URI is
refused. Other query parameters (``sslmode=require``, ...) go to libpq as they are. Layout, as
a psql user expects it::

    CREATE TABLE name (
        namespace text COLLATE "C" NOT NULL,   -- '' for the default namespace
        id        text COLLATE "C" NOT NULL,   -- the original id, as is
        embedding vector(d),                   -- float4: values round-trip bit for bit
        sparse    sparsevec,                   -- only where the index may hold sparse values
        metadata  jsonb,
        PRIMARY KEY (namespace, id));
    CREATE INDEX ON name USING hnsw (embedding vector_cosine_ops);   -- the metric's opclass

The index's metric, dimension and vector type are kept in the table's comment (JSON), so a
copy back knows them. ``{namespace}`` in the table name gives one table per namespace (same
layout). Reading is keyset pagination on (namespace, id), never OFFSET; writing COPYs each page
(binary) into a temporary table and upserts from it (ON CONFLICT replaces a row whole), one
transaction per page. Vectors travel in pgvector's binary format, encoded with numpy.
"""

from __future__ import annotations

import json
import math
import re
import struct
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
    collection_for,
    parse_uri,
    require,
)

PASSWORD_ENV = "PGPASSWORD"
MAX_DIMENSION = 16_000          # vector(d)
MAX_HNSW_DIMENSION = 2_000      # an HNSW index on vector
MAX_SPARSE_INDEX = 1_000_000_000
MAX_SPARSE_NNZ = 16_000
MAX_NAME_BYTES = 63             # longer identifiers are truncated by PostgreSQL, silently
OPCLASS = {"cosine": "vector_cosine_ops", "dotproduct": "vector_ip_ops", "euclidean": "vector_l2_ops"}
_FROM_OPCLASS = {v: k for k, v in OPCLASS.items()}
_OWN_PARAMS = ("table", "schema", "index", "host")
_EXPONENT = re.compile(rb"[0-9]e")
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


class PgvectorConnector(Connector):
    schemes = ("postgresql", "postgres")
    kind = "pgvector"
    page_size = 2000

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        p = parse_uri(uri, PASSWORD_ENV)
        psycopg = require("psycopg", "pgvector")
        self.sql = require("psycopg.sql", "pgvector")
        self.template = p.query.get("table", "")
        if not self.template or "\x00" in self.template:
            raise InvalidArgument(f"{uri}: name the table as ?table=NAME")
        self.per_namespace = NAMESPACE_PLACEHOLDER in self.template
        head, _, tail = self.template.partition(NAMESPACE_PLACEHOLDER)
        if len((head + tail).encode()) >= MAX_NAME_BYTES:
            raise InvalidArgument(f"{uri}: table names have at most {MAX_NAME_BYTES} bytes in PostgreSQL")
        self.label = self.template
        index = p.query.get("index", "none")
        if index not in ("hnsw", "none"):
            raise InvalidArgument(f"{uri}: index={index!r}: say index=none (the default) or index=hnsw")
        self.hnsw = index == "hnsw"
        kwargs: dict[str, Any] = {k: v for k, v in p.query.items() if k not in _OWN_PARAMS}
        kwargs.update({"dbname": p.path.strip("/") or None, "user": p.user, "host": p.query.get("host") or p.host,
                       "port": p.port, "autocommit": True})
        kwargs.setdefault("connect_timeout", 30)
        try:
            self.conn = psycopg.connect(**{k: v for k, v in kwargs.items() if v is not None})
        except psycopg.Error as exc:
            raise ConnectorError(f"{uri}: cannot connect: {_first_line(exc)}") from None
        try:
            self._oids = self._vector_types(psycopg)
            self.schema = p.query.get("schema") or self._q("SELECT current_schema()")[0][0]
        except BaseException:
            self.conn.close()
            raise
        if not self.schema:
            raise InvalidArgument(f"{uri}: no schema to use (the search_path names none that exists): add ?schema=")
        self._columns: dict[str, dict[str, int]] = {}
        self._temps: dict[str, str] = {}
        self._conflicted: set[str] = set()  # tables where a page met an existing id
        self.UniqueViolation = psycopg.errors.UniqueViolation
        self._total: int | None = None

    def close(self) -> None:
        self.conn.close()

    # -- helpers ---------------------------------------------------------------------------
    def _vector_types(self, psycopg: Any) -> dict[str, int]:
        """The oids of pgvector's types, creating the extension if it is missing."""
        find = ("SELECT t.typname, t.oid FROM pg_type t JOIN pg_depend d ON d.objid = t.oid AND d.deptype = 'e' "
                "JOIN pg_extension e ON e.oid = d.refobjid WHERE e.extname = 'vector' "
                "AND t.typname IN ('vector', 'sparsevec')")
        oids = dict(self._q(find))
        if not oids:
            try:
                self._q("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as exc:
                raise ConnectorError(f"{self.uri}: the pgvector extension is not installed in this database and "
                                     f"could not be created ({_first_line(exc)}); a superuser can run "
                                     "CREATE EXTENSION vector") from None
            oids = dict(self._q(find))
        if "sparsevec" not in oids:
            raise ConnectorError(f"{self.uri}: pgvector is older than 0.7 (no sparsevec); ALTER EXTENSION vector UPDATE")
        return oids

    def _q(self, query: Any, params: Any = None) -> list[Any]:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def _ident(self, table: str) -> Any:
        return self.sql.Identifier(self.schema, table)

    def _f(self, template: str, table: str) -> Any:
        """SQL ``template`` with ``{t}`` as the quoted, schema-qualified ``table``."""
        return self.sql.SQL(template).format(t=self._ident(table))

    def _tables(self) -> list[str]:
        """The existing tables of this URI (one, or one per namespace), in name order."""
        rows = self._q("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')"
                       + ("" if self.per_namespace else " AND c.relname = %s"),
                       (self.schema,) if self.per_namespace else (self.schema, self.template))
        names = sorted(r[0] for r in rows)
        if not self.per_namespace:
            return names
        head, _, tail = self.template.partition(NAMESPACE_PLACEHOLDER)
        return [n for n in names if n.startswith(head) and n.endswith(tail) and len(n) > len(head) + len(tail)]

    def _table(self, namespace: str) -> str:
        if not self.per_namespace:
            return self.template
        name = collection_for(self.template, namespace)
        if len(name.encode()) > MAX_NAME_BYTES:
            raise InvalidArgument(f"namespace {namespace!r}: its table name {name!r} is longer than PostgreSQL's "
                                  f"{MAX_NAME_BYTES} bytes")
        return name

    def _regclass(self, table: str) -> int | None:
        return self._q("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))::oid", (self.schema, table))[0][0]

    def _cols(self, table: str) -> dict[str, int]:
        """The table's columns → their type modifier (a vector column's dimension)."""
        if table not in self._columns:
            rows = self._q("SELECT attname, atttypmod FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
                           "AND NOT attisdropped", (self._regclass(table),))
            self._columns[table] = dict(rows)
        return self._columns[table]

    # -- reading ---------------------------------------------------------------------------
    def shape(self) -> Shape | None:
        tables = self._tables()
        if not tables:
            return None
        oid = self._regclass(tables[0])
        comment = self._q("SELECT obj_description(%s, 'pg_class')", (oid,))[0][0]
        try:
            info = json.loads(comment or "{}").get("spruce") or {}
        except (ValueError, AttributeError):
            info = {}
        if info:
            return Shape(dimension=info.get("dimension"), metric=info.get("metric", "cosine"),
                         vector_type=info.get("vector_type", "dense"), sparse=bool(info.get("sparse")))
        cols = self._cols(tables[0])  # a table spruce did not create: its columns and its index say
        missing = [c for c in ("namespace", "id") if c not in cols]
        if missing:
            raise ConnectorError(f"{self.uri}: table {tables[0]!r} has no {' or '.join(missing)} column; spruce "
                                 "reads tables of the layout in docs/CONNECTORS.md")
        opc = self._q("SELECT o.opcname FROM pg_index i JOIN pg_opclass o ON o.oid = i.indclass[0] "
                      "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                      "WHERE i.indrelid = %s AND a.attname = 'embedding'", (oid,))
        metric = next((_FROM_OPCLASS[r[0]] for r in opc if r[0] in _FROM_OPCLASS), "cosine")
        dim = cols.get("embedding", -1)
        if "embedding" not in cols:
            return Shape(dimension=None, metric="dotproduct", vector_type="sparse", sparse=True)
        return Shape(dimension=dim if dim > 0 else None, metric=metric, sparse="sparse" in cols)

    def namespaces(self) -> list[str]:
        out: set[str] = set()
        for table in self._tables():  # a loose index scan: one probe of the primary key per namespace
            out.update(r[0] for r in self._q(self._f(
                "WITH RECURSIVE ns AS ((SELECT namespace FROM {t} ORDER BY namespace LIMIT 1) UNION ALL "
                "SELECT (SELECT namespace FROM {t} WHERE namespace > ns.namespace ORDER BY namespace LIMIT 1) "
                "FROM ns WHERE ns.namespace IS NOT NULL) SELECT namespace FROM ns WHERE namespace IS NOT NULL",
                table)))
        return sorted(out)

    def count(self, namespace: str) -> int:
        table = self._table(namespace)
        if table not in self._tables():
            return 0
        return int(self._q(self._f("SELECT count(*) FROM {t} WHERE namespace = %s", table), (namespace,))[0][0])

    def total(self) -> int:
        """Counted once, then kept up to date from this connector's own upserts (RETURNING says
        which rows were new): count(*) reads the whole table, and the copy asks after every page."""
        if self._total is None:
            self._total = sum(int(self._q(self._f("SELECT count(*) FROM {t}", t))[0][0]) for t in self._tables())
        return self._total

    def existing(self, namespace: str, ids: list[str]) -> int | None:
        table = self._table(namespace)
        if table not in self._tables():
            return 0
        return int(self._q(self._f("SELECT count(*) FROM {t} WHERE namespace = %s AND id = ANY(%s)", table),
                           (namespace, ids))[0][0])

    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        table = self._table(namespace)
        cols = self._cols(table)
        dense, sparse = "embedding" in cols, "sparse" in cols
        select = ["id", "embedding" if dense else "NULL", "sparse" if sparse else "NULL",
                  "metadata" if "metadata" in cols else "NULL"]
        query = self._f(f"SELECT {', '.join(select)} FROM {{t}} WHERE namespace = %s "
                        + ("AND id > %s " if cursor is not None else "") + "ORDER BY id LIMIT %s", table)
        params = (namespace, cursor, limit) if cursor is not None else (namespace, limit)
        with self.conn.cursor(binary=True) as cur:
            _raw_loaders(cur, self._oids)
            cur.execute(query, params)
            rows = cur.fetchall()
        ids = [r[0] for r in rows]
        values = None
        if dense and rows:
            if any(r[1] is None for r in rows):
                rid = next(r[0] for r in rows if r[1] is None)
                raise ConnectorError(f"{self.uri}: record {rid!r} (namespace {namespace!r}) has no embedding")
            flat = np.frombuffer(b"".join(r[1] for r in rows), dtype=">f4")
            values = flat.reshape(len(rows), -1)[:, 1:].astype(np.float32)  # each row: a 4-byte header, then d
        sv = [None if r[2] is None else _sparse_from(r[2]) for r in rows]
        batch = RecordBatch(ids=ids, values=values, sparse=sv if any(s is not None for s in sv) else None,
                            metadata=[r[3] or None for r in rows])
        return Page(batch=batch, cursor=ids[-1] if len(rows) == limit else None)

    # -- writing ---------------------------------------------------------------------------
    def ensure(self, shape: Shape) -> None:
        if shape.metric not in OPCLASS:
            raise InvalidArgument(f"pgvector has no {shape.metric!r} distance")
        if shape.dimension and shape.dimension > MAX_DIMENSION:
            raise InvalidArgument(f"{self.uri}: pgvector's vector holds at most {MAX_DIMENSION:,} dimensions; the "
                                  f"source has {shape.dimension:,}")
        have = self.shape()
        shape.refuse_other(have, f"{self.uri}: table {self.template}")
        self.expected = shape
        if not self.per_namespace and have is None:
            self._create(self.template, shape)

    def _create(self, table: str, shape: Shape) -> None:
        cols = ['namespace text COLLATE "C" NOT NULL', 'id text COLLATE "C" NOT NULL']
        if shape.dimension:
            cols.append(f"embedding vector({int(shape.dimension)})")
        if shape.sparse or shape.vector_type == "sparse":
            cols.append("sparse sparsevec")
        cols += ["metadata jsonb", "PRIMARY KEY (namespace, id)"]
        comment = json.dumps({"spruce": {"dimension": shape.dimension, "metric": shape.metric,
                                         "vector_type": shape.vector_type, "sparse": shape.sparse}})
        with self.conn.transaction():
            self._q(self._f(f"CREATE TABLE IF NOT EXISTS {{t}} ({', '.join(cols)})", table))
            self._q(self.sql.SQL("COMMENT ON TABLE {t} IS {c}").format(t=self._ident(table),
                                                                        c=self.sql.Literal(comment)))
            if self.hnsw and shape.dimension and shape.dimension <= MAX_HNSW_DIMENSION:
                # pgvector's HNSW index for the metric: what a psql user queries with <=>, <#>, <->
                self._q(self.sql.SQL(f"CREATE INDEX IF NOT EXISTS {{i}} ON {{t}} USING hnsw (embedding "
                                     f"{OPCLASS[shape.metric]})").format(
                    t=self._ident(table), i=self.sql.Identifier(f"{table[:MAX_NAME_BYTES - 14]}_embedding_idx")))
        self._columns.pop(table, None)

    def may_lose(self, shape: Shape) -> bool:
        """Sparse values are checked before anything is written (zeros are a loss, sparsevec's
        limits a refusal). Metadata losses (a NUL character, -0.0) are found page by page: they are
        rare, and a whole pass over the source to look for them would double every copy's reads."""
        return shape.sparse or shape.vector_type == "sparse"

    def check(self, namespace: str, batch: RecordBatch, losses: Losses) -> RecordBatch:
        table = self._table(namespace)  # a per-namespace table name PostgreSQL cannot hold: refused now
        no_sparse = table in self._tables() and "sparse" not in self._cols(table)
        for i, sv in enumerate(batch.sparse or []):
            if sv is None or not len(sv.indices):
                continue
            if no_sparse:
                losses.add(f"sparse values dropped (table {table!r} has no sparse column)", batch.ids[i])
                continue
            if len(sv.indices) > MAX_SPARSE_NNZ or int(np.max(sv.indices)) >= MAX_SPARSE_INDEX:
                raise InvalidArgument(f"record {batch.ids[i]!r} (namespace {namespace or '__default__'!r}): its sparse "
                                      f"values do not fit pgvector's sparsevec (indices below {MAX_SPARSE_INDEX:,}, "
                                      f"at most {MAX_SPARSE_NNZ:,} non-zeros); nothing was written")
            if not np.all(np.asarray(sv.values)):
                losses.add("sparse values of 0 dropped (sparsevec stores only non-zeros)", batch.ids[i])
        for i, md in enumerate(batch.metadata):
            if md:
                for kind in _metadata_losses(md):
                    losses.add(kind, batch.ids[i])
        return batch

    def write(self, namespace: str, batch: RecordBatch) -> None:
        table = self._table(namespace)
        if self.per_namespace and table not in self._tables():
            shape = self.expected or self.shape()
            if shape is None:
                raise ConnectorError(f"{self.uri}: the table does not exist and its shape is unknown")
            self._create(table, shape)
        cols = self._cols(table)
        names = ["namespace", "id"] + [c for c in ("embedding", "sparse", "metadata") if c in cols]
        n = len(batch)
        vectors: list[Any] = [None] * n
        if "embedding" in cols and batch.values is not None:
            head = struct.pack(">HH", batch.values.shape[1], 0)
            big = np.ascontiguousarray(batch.values, dtype=">f4")
            vectors = [head + row.tobytes() for row in big]
        rows = []
        for i, rid in enumerate(batch.ids):
            row: list[Any] = [namespace, rid]
            if "embedding" in cols:
                row.append(vectors[i])
            if "sparse" in cols:
                sv = batch.sparse[i] if batch.sparse is not None else None
                row.append(None if sv is None else _sparse_to(sv))
            if "metadata" in cols:
                md = batch.metadata[i]
                row.append(_jsonb(md) if md else None)
            rows.append(row)
        types = ["text", "text"] + [{"embedding": self._oids["vector"], "sparse": self._oids["sparsevec"],
                                     "metadata": "jsonb"}[c] for c in names[2:]]
        update = ", ".join(f"{c} = EXCLUDED.{c}" for c in names[2:]) or "id = EXCLUDED.id"
        col_list = self.sql.SQL(", ").join(self.sql.Identifier(c) for c in names)
        with self.conn.transaction(), self.conn.cursor(binary=True) as cur:
            _raw_dumpers(cur, self._oids)
            inserted = None
            if table not in self._conflicted:
                # Straight into the table while no page has met an existing id: half the server's
                # work of the upsert below. The first conflict (a replayed page, a merge into a
                # filled table) rolls this page back to its savepoint and switches to the upsert.
                try:
                    with self.conn.transaction():
                        self._copy_in(cur, self._ident(table), col_list, types, rows)
                    inserted = n
                except self.UniqueViolation:
                    self._conflicted.add(table)
            if inserted is None:
                temp = self.sql.Identifier(self._temps.setdefault(table, f"spruce_load_{len(self._temps)}"))
                cur.execute(self.sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {tmp} (LIKE {t}) ON COMMIT DELETE ROWS")
                            .format(tmp=temp, t=self._ident(table)))
                self._copy_in(cur, temp, col_list, types, rows)
                # ON CONFLICT replaces the row whole; xmax = 0 marks the rows that were new
                cur.execute(self.sql.SQL(f"WITH up AS (INSERT INTO {{t}} ({{c}}) SELECT {{c}} FROM {{tmp}} ON "
                                         f"CONFLICT (namespace, id) DO UPDATE SET {update} RETURNING (xmax = 0) "
                                         "AS new) SELECT count(*) FILTER (WHERE new) FROM up")
                            .format(t=self._ident(table), c=col_list, tmp=temp))
                inserted = int(cur.fetchone()[0])
        if self._total is not None:
            self._total += inserted

    def _copy_in(self, cur: Any, dest: Any, col_list: Any, types: list[Any], rows: list[list[Any]]) -> None:
        with cur.copy(self.sql.SQL("COPY {d} ({c}) FROM STDIN WITH (FORMAT BINARY)").format(d=dest, c=col_list)) as cp:
            cp.set_types(types)
            for row in rows:
                cp.write_row(row)


# -- pgvector's binary formats and jsonb text ---------------------------------------------------

def _raw_dumpers(cur: Any, oids: dict[str, int]) -> None:
    """Dumpers that pass pre-encoded binary values through (vectors encoded a page at a time)."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    for name in ("vector", "sparsevec", "jsonb"):
        oid = oids.get(name) or cur.adapters.types[name].oid
        cls = type(f"Raw_{name}", (Dumper,), {"format": Format.BINARY, "oid": oid, "dump": lambda self, obj: obj})
        cur.adapters.register_dumper(type(f"_Raw_{name}", (bytes,), {}), cls)


def _raw_loaders(cur: Any, oids: dict[str, int]) -> None:
    """Vectors as their raw bytes (a page decoded at once by numpy), jsonb by orjson."""
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    for name in ("vector", "sparsevec"):
        cls = type(f"Raw_{name}", (Loader,), {"format": Format.BINARY, "load": lambda self, data: bytes(data)})
        cur.adapters.register_loader(oids[name], cls)
    cur.adapters.register_loader("jsonb", type("Jsonb", (Loader,), {"format": Format.BINARY,
                                                                    "load": lambda self, data: _loads(data)}))


def _loads(data: Any) -> Any:
    """jsonb's binary form (a version byte, then JSON text) → Python, by orjson when it can."""
    text = bytes(data)[1:]
    # orjson reads an integer beyond 64 bits as a float: a long run of digits goes the slow way
    return json.loads(text) if _LONG_NUMBER.search(text) else orjson.loads(text)


def _sparse_to(sv: SparseValues) -> bytes:
    """sparsevec's binary form: dim, nnz, 0, then the sorted indices and their non-zero values."""
    idx = np.asarray(sv.indices, dtype=np.int64)
    val = np.asarray(sv.values, dtype=np.float32)
    keep = val != 0
    idx, val = idx[keep], val[keep]
    order = np.argsort(idx, kind="stable")
    return (struct.pack(">iii", MAX_SPARSE_INDEX, len(idx), 0) + idx[order].astype(">i4").tobytes()
            + val[order].astype(">f4").tobytes())


def _sparse_from(data: bytes) -> SparseValues:
    _dim, nnz, _ = struct.unpack_from(">iii", data)
    idx = np.frombuffer(data, dtype=">i4", count=nnz, offset=12).astype(np.uint32)
    val = np.frombuffer(data, dtype=">f4", count=nnz, offset=12 + 4 * nnz).astype(np.float32)
    return SparseValues(indices=idx, values=val)


def _metadata_losses(md: Any) -> list[str]:
    text = _dumps(md)
    out = []
    if b"\\u0000" in text and _has(md, _is_nul):
        out.append("metadata strings with a NUL character (jsonb cannot hold it: the character is dropped)")
    if b"-0.0" in text and _has(md, _is_negative_zero):
        out.append("metadata -0.0 stored as 0.0 (jsonb numbers have no negative zero)")
    return out


def _jsonb(md: Any) -> bytes:
    """jsonb's binary form (version 1, then JSON text) of ``md``. Floats keep a decimal point:
    jsonb stores numbers as numeric, which prints ``1e16`` back as ``10000000000000000``, an
    integer, while ``10000000000000000.0`` stays a float. NUL characters are dropped (jsonb
    refuses them; check() reports it)."""
    text = _dumps(md)
    if _EXPONENT.search(text) or b"\\u0000" in text:
        text = _json_text(md).encode()
    return b"\x01" + text


def _dumps(md: Any) -> bytes:
    try:
        return orjson.dumps(md)
    except TypeError:  # an integer beyond 64 bits, a key that is not a string: the slow way
        return json.dumps(md, ensure_ascii=False).encode()


def _json_text(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ",".join(_json_text(str(k)) + ":" + _json_text(x) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_json_text(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v.replace("\x00", ""), ensure_ascii=False)
    if type(v) is float and math.isfinite(v):
        text = repr(v)
        return np.format_float_positional(v, unique=True, trim="0") if "e" in text else text
    return json.dumps(v, ensure_ascii=False)


def _has(v: Any, test: Any) -> bool:
    if isinstance(v, dict):
        return any(test(k) or _has(x, test) for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return any(_has(x, test) for x in v)
    return test(v)


def _is_nul(v: Any) -> bool:
    return isinstance(v, str) and "\x00" in v


def _is_negative_zero(v: Any) -> bool:
    return type(v) is float and v == 0 and math.copysign(1.0, v) < 0


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
