"""Parquet parts in Pinecone bulk import's schema, built straight from numpy.

    id             string, not null
    values         list<float32>, not null (an empty list for sparse-only records)
    sparse_values  struct<indices: list<uint32>, values: list<float32>>, nullable
    metadata       string (JSON text), nullable
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spruce.archive.jsonl import dumps_metadata
from spruce.records import RecordBatch

VALUES_TYPE = pa.list_(pa.float32())
SPARSE_TYPE = pa.struct([("indices", pa.list_(pa.uint32())), ("values", pa.list_(pa.float32()))])
IMPORT_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("values", VALUES_TYPE, nullable=False),
    pa.field("sparse_values", SPARSE_TYPE, nullable=True),
    pa.field("metadata", pa.string(), nullable=True),
])

#: Parquet codecs a writer may choose; "snappy" is the default because every
#: Parquet reader, Pinecone's import included, reads it.
CODECS: tuple[str, ...] = ("snappy", "zstd", "lz4", "gzip", "brotli", "none")
_MAX_VALUES_PER_ARRAY = 2**31 - 1  # list<> uses int32 offsets


def schema_matches(schema: pa.Schema) -> bool:
    """True when ``schema`` is exactly the import schema (names, types, order, nullability)."""
    return schema.remove_metadata().equals(IMPORT_SCHEMA)


def _list_array(offsets: np.ndarray, flat: np.ndarray, typ: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), pa.array(flat), type=typ)


def batch_to_table(batch: RecordBatch) -> tuple[pa.Table, np.ndarray]:
    """The batch as an import-schema table, and each row's approximate uncompressed size.

    Dense values become one ListArray over the flattened matrix (no Python floats).
    """
    n = len(batch.ids)
    ids = pa.array(batch.ids, type=pa.string())
    sizes = np.fromiter((len(i) for i in batch.ids), dtype=np.int64, count=n) + 16

    if batch.values is not None:
        # A copy: the table is encoded later, in a worker, and the caller may reuse its buffer.
        x = np.array(batch.values, dtype=np.float32, order="C", copy=True)
        if x.ndim != 2 or x.shape[0] != n:
            raise ValueError(f"values must be an (n, d) matrix with n={n}, got shape {x.shape}")
        d = x.shape[1]
        if n * d > _MAX_VALUES_PER_ARRAY:
            raise ValueError("batch too large for one Parquet list array; split it")
        values = _list_array(np.arange(0, n * d + 1, d, dtype=np.int32), x.reshape(-1), VALUES_TYPE)
        sizes += 4 * d
    else:
        values = _list_array(np.zeros(n + 1, dtype=np.int32), np.zeros(0, dtype=np.float32), VALUES_TYPE)

    if batch.sparse is not None and any(s is not None for s in batch.sparse):
        present = [s for s in batch.sparse if s is not None]
        lengths = np.fromiter((0 if s is None else len(s.indices) for s in batch.sparse),
                              dtype=np.int64, count=n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if offsets[-1] > _MAX_VALUES_PER_ARRAY:
            raise ValueError("batch too large for one Parquet list array; split it")
        offsets32 = offsets.astype(np.int32)
        idx = np.concatenate([np.asarray(s.indices, dtype=np.uint32) for s in present])
        val = np.concatenate([np.asarray(s.values, dtype=np.float32) for s in present])
        mask = pa.array(np.fromiter((s is None for s in batch.sparse), dtype=bool, count=n))
        sparse = pa.StructArray.from_arrays(
            [_list_array(offsets32, idx, pa.list_(pa.uint32())), _list_array(offsets32, val, VALUES_TYPE)],
            fields=list(SPARSE_TYPE), mask=mask)
        sizes += 8 * lengths
    else:
        sparse = pa.nulls(n, type=SPARSE_TYPE)

    md_json: list[Any] = [None if m is None else dumps_metadata(m) for m in batch.metadata]
    sizes += np.fromiter((0 if m is None else len(m) for m in md_json), dtype=np.int64, count=n)
    metadata = pa.array(md_json, type=pa.string())
    return pa.Table.from_arrays([ids, values, sparse, metadata], schema=IMPORT_SCHEMA), sizes


def list_parts(arr: pa.Array) -> tuple[np.ndarray, pa.Array, np.ndarray | None]:
    """(offsets from 0, flat child values, null mask or None) of a list-like array."""
    if pa.types.is_fixed_size_list(arr.type):
        size = arr.type.list_size
        offsets = np.arange(0, (len(arr) + 1) * size, size, dtype=np.int64)
        flat = arr.flatten() if arr.null_count == 0 else arr.values.slice(arr.offset * size, len(arr) * size)
    else:
        offsets = arr.offsets.to_numpy().astype(np.int64, copy=False)
        base = offsets[0]
        offsets = offsets - base
        flat = arr.values.slice(int(base), int(offsets[-1]))
    nulls = None
    if arr.null_count:
        nulls = arr.is_null().to_numpy(zero_copy_only=False)
    return offsets, flat, nulls


#: Parquet row groups are cut at about this much uncompressed data.
ROW_GROUP_BYTES = 16 * 1024 * 1024


def write_parquet_part(items: Iterable[tuple[pa.Table, int, int]], sink: Any, *, compression: str,
                       compression_level: int | None, progress: Callable[[int, int], None]) -> int:
    """Write one part from ``(table, records, payload bytes)`` items to the file object ``sink``
    (which has ``size``): row groups of about ROW_GROUP_BYTES, ``progress(records, bytes)`` after
    each. Returns the records written."""
    pw = pq.ParquetWriter(sink, IMPORT_SCHEMA, compression=compression, compression_level=compression_level,
                          use_dictionary=False, write_statistics=False)
    records = 0
    reported = 0
    pending: list[pa.Table] = []
    rows = size = 0

    def flush() -> None:
        nonlocal rows, size, reported, records
        if pending:
            table = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
            pw.write_table(table, row_group_size=rows)
            records += rows
            progress(rows, sink.size - reported)
            reported = sink.size
            pending.clear()
            rows = size = 0

    try:
        for table, k, payload in items:
            pending.append(table)
            rows += k
            size += payload
            if size >= ROW_GROUP_BYTES:
                flush()
        flush()
    except BaseException:
        try:
            pw.close()
        except Exception:
            pass
        raise
    pw.close()
    progress(0, sink.size - reported)
    return records
