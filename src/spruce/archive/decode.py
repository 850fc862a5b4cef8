"""Turning decoded rows (JSON objects or Arrow batches) into validated RecordBatches.

Each batch first takes a fast, column-at-a-time path (dense values become one
numpy matrix in a single call, then ``records.validate_batch``). Only when that
path finds a problem is the batch redone record by record with
``records.parse_record``, which names the bad record's field; the error is then
located at its file and line (JSON Lines) or row (Parquet, reported as
``record``: the 0-based row in the file) and either raised or handed to
``on_error`` and the record skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import simdjson

from spruce.archive.jsonl import loads_metadata, loads_record
from spruce.archive.parquet import list_parts
from spruce.errors import ValidationError
from spruce.records import Record, RecordBatch, SparseValues, parse_record, validate_batch

OnError = Callable[[ValidationError], None]

_KEYS = frozenset({"id", "values", "sparse_values", "metadata"})
_STRING_TYPES = (pa.string(), pa.large_string())


class _Slow(Exception):
    """The fast path gives up; redo the batch record by record."""


class Shape:
    """The dimension and vector type records are held to; learnt from the first record when unknown."""

    __slots__ = ("dimension", "vector_type")

    def __init__(self, dimension: int | None = None, vector_type: str | None = None) -> None:
        self.dimension = None if vector_type == "sparse" else dimension
        self.vector_type = vector_type

    @property
    def known(self) -> bool:
        return self.vector_type == "sparse" or (self.vector_type == "dense" and self.dimension is not None)

    def learn(self, obj: Any) -> None:
        """Take the vector type (and dimension) from a record that shows them; ignore one that does not."""
        if not isinstance(obj, dict):
            return
        values = obj.get("values")
        if self.vector_type is None:
            sparse = obj.get("sparse_values", obj.get("sparseValues"))
            if isinstance(values, list) and values:
                self.vector_type = "dense"
            elif sparse is not None and not values:
                self.vector_type = "sparse"
            else:
                return
        if self.vector_type == "dense" and self.dimension is None and isinstance(values, list) and values:
            self.dimension = len(values)


class Assembler:
    """Builds RecordBatches for one file, applying the error policy."""

    def __init__(self, file: str, *, by_line: bool, shape: Shape, on_error: OnError | None) -> None:
        self.file = file
        self.by_line = by_line
        self.shape = shape
        self.on_error = on_error
        self.skipped = 0
        #: id -> where it was first seen in this file: a second record with the same id would
        #: silently replace the first, so it is an error (bounded: a file is one part).
        self.seen: dict[str, int] = {}

    # -- errors -----------------------------------------------------------------

    def fail(self, err: ValidationError, loc: int) -> None:
        """Locate ``err`` at ``loc``; raise it, or report it and let the caller skip the record."""
        located = err.located(file=self.file, line=loc) if self.by_line else err.located(
            file=self.file, record=loc)
        if self.on_error is None:
            raise located
        self.skipped += 1
        self.on_error(located)

    # -- JSON lines -------------------------------------------------------------

    def from_lines(self, lines: list[Any], locs: list[int]) -> RecordBatch | None:
        """A batch from raw JSON lines (bytes or memoryviews, none blank).

        simdjson parses each dense vector straight into a float64 buffer, four
        times cheaper than building Python floats; any line it cannot take as
        a plain record sends the batch to the orjson path, which decides.
        """
        if not lines:
            return None
        try:
            batch = self._fast_lines(lines)
        except Exception:  # simdjson's ValueError/RuntimeError, _Slow, a bad record: let orjson decide
            self._parser = None  # a parse that failed may leave proxies holding the parser
            return self.from_objects([_parse_line(line) for line in lines], locs)
        return self._unique(batch, locs)

    _parser: Any = None

    def _fast_lines(self, lines: list[Any]) -> RecordBatch:
        shape = self.shape
        if not shape.known:
            shape.learn(orjson.loads(lines[0]))
            if not shape.known:
                raise _Slow
        dense = shape.vector_type == "dense"
        n = len(lines)
        d = shape.dimension or 0
        # float64 rows land in one matrix by memcpy and are narrowed once at the end: a numpy
        # assignment per row would release the GIL per row, and with another thread busy each
        # release waits a whole switch interval (measured: 1000 rows went from 4 ms to 350 ms).
        wide = np.empty((n, d), dtype=np.float64) if dense else None
        dest = memoryview(wide).cast("B") if wide is not None else None
        row = d * 8
        ids: list[Any] = []
        sparse: list[Any] = []
        metadata: list[Any] = []
        parser = self._parser or simdjson.Parser()
        self._parser = None
        keys = _KEYS
        at = 0
        for line in lines:
            doc = parser.parse(line)
            names = list(doc.keys())
            if not keys.issuperset(names) or len(set(names)) != len(names):
                raise _Slow
            ids.append(doc["id"])
            vals = doc.get("values")
            if dest is not None:
                buf = memoryview(vals.as_buffer(of_type="d"))
                if buf.nbytes != row:
                    raise _Slow
                dest[at:at + row] = buf
                at += row
                del buf
            elif vals is not None and len(vals):
                raise _Slow
            sv = doc.get("sparse_values")
            sparse.append(sv.as_dict() if isinstance(sv, simdjson.Object) else sv)
            md = doc.get("metadata")
            metadata.append(md.as_dict() if isinstance(md, simdjson.Object) else md)
            del doc, vals, sv, md  # proxies pin the parser's document: drop them before the next parse
        self._parser = parser
        values = None
        if wide is not None:
            del dest
            with np.errstate(over="ignore"):  # an overflow becomes inf, which validate_batch names
                values = wide.astype(np.float32)
        batch = RecordBatch(ids=ids, values=values,
                            sparse=sparse if any(s is not None for s in sparse) else None, metadata=metadata)
        return validate_batch(batch, dimension=shape.dimension, vector_type=shape.vector_type or "dense")

    # -- JSON objects -----------------------------------------------------------

    def from_objects(self, objs: list[Any], locs: list[int]) -> RecordBatch | None:
        if not objs:
            return None
        try:
            batch = self._fast_objects(objs)
        except (_Slow, ValidationError, ValueError, TypeError, KeyError, OverflowError):
            return self._slow(objs, locs)
        return self._unique(batch, locs)

    def _fast_objects(self, objs: list[Any]) -> RecordBatch:
        for o in objs:
            if type(o) is not dict or not _KEYS.issuperset(o):
                raise _Slow
        shape = self.shape
        if not shape.known:
            shape.learn(objs[0])
            if not shape.known:
                raise _Slow
        ids = [o.get("id") for o in objs]
        values: np.ndarray | None
        if shape.vector_type == "dense":
            with np.errstate(all="ignore"):
                values = np.array([o["values"] for o in objs], dtype=np.float32)
            if values.ndim != 2 or values.shape[1] != shape.dimension:
                raise _Slow
        else:
            for o in objs:
                v = o.get("values")
                if v is not None and (type(v) is not list or v):
                    raise _Slow
            values = None
        sparse = [o.get("sparse_values") for o in objs]
        batch = RecordBatch(
            ids=ids,
            values=values,
            sparse=sparse if any(s is not None for s in sparse) else None,
            metadata=[o.get("metadata") for o in objs],
        )
        return validate_batch(batch, dimension=shape.dimension, vector_type=shape.vector_type or "dense")

    def _unique(self, batch: RecordBatch, locs: Sequence[int]) -> RecordBatch | None:
        """Refuse (or, under on_error, skip) records whose id came earlier in this file."""
        seen = self.seen
        if seen.keys().isdisjoint(batch.ids):
            seen.update(zip(batch.ids, locs, strict=True))
            return batch
        keep: list[int] = []
        for i, (rid, loc) in enumerate(zip(batch.ids, locs, strict=True)):
            if rid in seen:
                self.fail(self._duplicate(rid), loc)
            else:
                seen[rid] = loc
                keep.append(i)
        return batch.take(keep) if keep else None

    def _duplicate(self, rid: str) -> ValidationError:
        where = "line" if self.by_line else "record"
        return ValidationError(f"appears twice in this file (first at {where} {self.seen[rid]})",
                               field="id", record_id=rid)

    def _slow(self, objs: Sequence[Any], locs: Sequence[int]) -> RecordBatch | None:
        good: list[Record] = []
        seen = self.seen
        shape = self.shape
        for obj, loc in zip(objs, locs, strict=True):
            if type(obj) is BadJson:
                self.fail(ValidationError(f"is not valid JSON: {obj.reason}"), loc)
                continue
            try:
                if not shape.known:
                    shape.learn(obj)
                rec = _parse_row(obj, dimension=shape.dimension, vector_type=shape.vector_type or "dense")
                if rec.id in seen:
                    raise self._duplicate(rec.id)
            except ValidationError as e:
                self.fail(e, loc)
                continue
            seen[rec.id] = loc
            good.append(rec)
        if not good:
            return None
        batch = RecordBatch.from_records(good)
        if shape.vector_type == "sparse":
            batch.values = None
        return batch

    # -- Arrow ------------------------------------------------------------------

    def from_arrow(self, rb: pa.RecordBatch, row0: int) -> RecordBatch | None:
        if rb.num_rows == 0:
            return None
        try:
            batch = self._fast_arrow(rb)
        except (_Slow, ValidationError, ValueError, TypeError, OverflowError, pa.ArrowException):
            return self._slow(self._arrow_rows(rb), range(row0, row0 + rb.num_rows))
        return self._unique(batch, range(row0, row0 + rb.num_rows))

    def check_arrow_schema(self, schema: pa.Schema) -> None:
        """File-level checks a Parquet file must pass before any row is read."""
        names = schema.names
        if "id" not in names:
            raise ValidationError("the Parquet file has no 'id' column", file=self.file, field="id")
        if "metadata" in names and schema.field("metadata").type not in _STRING_TYPES:
            raise ValidationError(
                f"the 'metadata' column must be a string of JSON text, found {schema.field('metadata').type}",
                file=self.file, field="metadata")

    def _fast_arrow(self, rb: pa.RecordBatch) -> RecordBatch:
        n = rb.num_rows
        names = rb.schema.names
        shape = self.shape
        id_col = rb.column(names.index("id"))
        if id_col.null_count or id_col.type not in _STRING_TYPES:
            raise _Slow
        ids = id_col.to_pylist()

        values: np.ndarray | None = None
        if "values" in names:
            offsets, flat, nulls = list_parts(rb.column(names.index("values")))
            if nulls is not None:
                raise _Slow
            lengths = np.diff(offsets)
            if shape.vector_type is None:
                shape.vector_type = "dense" if lengths[0] > 0 else "sparse"
            if shape.vector_type == "dense":
                d = shape.dimension if shape.dimension is not None else int(lengths[0])
                if not (lengths == d).all() or d == 0:
                    raise _Slow
                shape.dimension = d
                if not pa.types.is_floating(flat.type) and not pa.types.is_integer(flat.type):
                    raise _Slow
                if flat.null_count:
                    raise _Slow
                values = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(n, d)
            elif lengths.any():
                raise _Slow
        elif shape.vector_type is None:
            shape.vector_type = "sparse"
        if shape.vector_type == "dense" and values is None:
            raise _Slow

        sparse: list[SparseValues | None] | None = None
        if "sparse_values" in names:
            col = rb.column(names.index("sparse_values"))
            if not pa.types.is_struct(col.type) or col.type.num_fields != 2 or {
                    col.type.field(0).name, col.type.field(1).name} != {"indices", "values"}:
                raise _Slow
            if col.null_count < n:
                sparse = self._arrow_sparse(col)

        metadata: list[Any] = [None] * n
        if "metadata" in names:
            md_col = rb.column(names.index("metadata"))
            if md_col.null_count < n:
                metadata = [None if s is None else loads_metadata(s) for s in md_col.to_pylist()]

        batch = RecordBatch(ids=ids, values=values, sparse=sparse, metadata=metadata)
        return validate_batch(batch, dimension=shape.dimension, vector_type=shape.vector_type or "dense")

    @staticmethod
    def _arrow_sparse(col: pa.StructArray) -> list[SparseValues | None]:
        children = {col.type.field(i).name: child for i, child in enumerate(col.flatten())}
        i_off, i_flat, i_nulls = list_parts(children["indices"])
        v_off, v_flat, v_nulls = list_parts(children["values"])
        struct_nulls = col.is_null().to_numpy(zero_copy_only=False)
        if not np.array_equal(i_off, v_off) or i_flat.null_count or v_flat.null_count:
            raise _Slow
        present = ~struct_nulls
        if (i_nulls is not None and (i_nulls & present).any()) or (
                v_nulls is not None and (v_nulls & present).any()):
            raise _Slow
        if not pa.types.is_integer(i_flat.type):
            raise _Slow
        idx = i_flat.to_numpy(zero_copy_only=False)
        val = v_flat.to_numpy(zero_copy_only=False)
        out: list[SparseValues | None] = []
        for k in range(len(col)):
            if struct_nulls[k]:
                out.append(None)
            else:
                a, b = i_off[k], i_off[k + 1]
                out.append(SparseValues(indices=idx[a:b], values=val[a:b]))
        return out

    def _arrow_rows(self, rb: pa.RecordBatch) -> list[Any]:
        """Rows as plain dicts for the record-by-record path (only the four known columns)."""
        keep = [c for c in ("id", "values", "sparse_values", "metadata") if c in rb.schema.names]
        rows = rb.select(keep).to_pylist()
        for row in rows:
            md = row.get("metadata")
            if isinstance(md, str):
                try:
                    row["metadata"] = loads_metadata(md)
                except (orjson.JSONDecodeError, ValueError) as e:
                    row["metadata"] = _BadMetadata(str(e))
            if row.get("sparse_values", 0) is None:
                del row["sparse_values"]
            if row.get("values", 0) is None:
                del row["values"]
        return rows


def _parse_line(seg: Any) -> Any:
    """A line's record, or BadJson when it is not JSON (the standard library has a second say)."""
    try:
        return loads_record(seg if type(seg) is bytes else bytes(seg))
    except ValueError as e:
        return BadJson(str(e))


class BadJson:
    """Stands in for a line that is not JSON, so its error is reported in line order."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _BadMetadata(dict):
    """Stands in for metadata text that is not JSON, so parse_record is never reached for it."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


def _parse_row(obj: Any, *, dimension: int | None, vector_type: str) -> Record:
    """records.parse_record, plus the metadata-is-not-JSON case of Parquet rows."""
    if isinstance(obj, dict) and isinstance(obj.get("metadata"), _BadMetadata):
        raise ValidationError(f"is not valid JSON text: {obj['metadata'].reason}", field="metadata",
                              record_id=obj.get("id") if isinstance(obj.get("id"), str) else None)
    return parse_record(obj, dimension=dimension, vector_type=vector_type)
