"""JSON Lines records: encoding a RecordBatch into lines, and exact JSON decoding.

One record per line, keys in the order ``id``, ``values``, ``sparse_values``,
``metadata``; absent parts are omitted. float32 numbers are written in the
shortest form that parses back to the same float32 (orjson's numpy float32
formatting), so a dense vector survives a round trip bit for bit.

orjson cannot write integers beyond 64 bits or strings holding lone
surrogates, nor read escaped lone surrogates; for such records both directions
fall back to the standard library, so nothing valid is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import orjson
from isal import isal_zlib

from spruce.records import RawJson, RecordBatch

_DUMPS_OPT = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def _slow_line(rec: dict[str, Any]) -> bytes:
    """Standard-library encoding for what orjson refuses (big ints, lone surrogates)."""
    out: dict[str, Any] = {}
    for key, value in rec.items():
        if key == "values":
            # float32 -> Python float is exact, and repr() of that double round-trips.
            out[key] = value.tolist()
        elif key == "sparse_values":
            out[key] = {"indices": value["indices"].tolist(), "values": value["values"].tolist()}
        else:
            out[key] = value
    return json.dumps(out, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii") + b"\n"


def _sparse_dict(sv: Any) -> dict[str, np.ndarray]:
    return {
        "indices": np.ascontiguousarray(sv.indices, dtype=np.uint32),
        "values": np.ascontiguousarray(sv.values, dtype=np.float32),
    }


def encode_lines(batch: RecordBatch) -> list[bytes]:
    """One newline-terminated JSON line per record of ``batch``."""
    ids = batch.ids
    n = len(ids)
    rows: list[Any] | None = None
    if batch.values is not None:
        values = np.ascontiguousarray(batch.values, dtype=np.float32)
        if values.ndim != 2 or values.shape[0] != n:
            raise ValueError(f"values must be an (n, d) matrix with n={n}, got shape {values.shape}")
        rows = list(values)  # row views, made in one call
    sparse = batch.sparse
    metadata = batch.metadata
    dumps = orjson.dumps
    opt = _DUMPS_OPT
    out: list[bytes] = []
    append = out.append
    for i in range(n):
        rec: dict[str, Any] = {"id": ids[i]}
        if rows is not None:
            rec["values"] = rows[i]
        if sparse is not None and (sv := sparse[i]) is not None:
            rec["sparse_values"] = _sparse_dict(sv)
        if (md := metadata[i]) is not None:
            rec["metadata"] = orjson.Fragment(bytes(md)) if type(md) is RawJson else md
        try:
            append(dumps(rec, option=opt))
        except (orjson.JSONEncodeError, TypeError):
            if type(md) is RawJson:
                rec["metadata"] = orjson.loads(md)
            append(_slow_line(rec))
    return out


def dumps_metadata(md: dict[str, Any]) -> bytes:
    """Metadata as compact JSON text (the Parquet ``metadata`` column)."""
    if type(md) is RawJson:
        return md
    try:
        return orjson.dumps(md)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(md, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")


#: A run of 19+ digits may be an integer orjson cannot hold (beyond 2**64 - 1, or below -2**63,
#: which has 19), which it would silently read as a float; such text goes to the standard
#: library, which keeps it exact (validation then names it).
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_STR = re.compile(r"[0-9]{19}")


def loads_record(raw: bytes | str) -> Any:
    """Parse one record's JSON exactly: integers beyond 64 bits stay integers (for validation to
    refuse by name, rather than arrive as rounded floats), lone surrogate escapes are read."""
    long_digits = _LONG_DIGITS_STR if isinstance(raw, str) else _LONG_DIGITS
    if long_digits.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return _stdlib_loads(raw)


#: Past this magnitude a float may be an integer orjson could not hold (it reads integers
#: beyond 64 bits, and below -2**63, as rounded floats).
_EXACT_BOUND = 2.0**63


def loads_metadata(raw: bytes | str) -> Any:
    """loads_record for a metadata object, with a cheaper guard than its regex: a metadata
    value holds a number only at the top level (lists hold strings, objects do not nest), so
    only a top-level float beyond 2**63 can be a rounded integer, and then the text is read
    again exactly. Anything else nested is refused by validation whatever its numbers."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _stdlib_loads(raw)
    if type(obj) is dict:
        bound = _EXACT_BOUND
        for v in obj.values():
            if type(v) is float and not -bound < v < bound:
                return _stdlib_loads(raw)
    return obj


def _stdlib_loads(raw: bytes | str) -> Any:
    """What orjson rejects but is still JSON (escaped lone surrogates); else orjson's error."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        pass
    return orjson.loads(raw)  # raises orjson's (clearer) error


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


_SPACE = frozenset(b" \t\r\n\f\v")


def jsonl_batches(pipe: Iterable[bytes], asm: Any, batch_size: int,
                   counter: list[int]) -> Iterator[RecordBatch]:
    """Split decompressed chunks into lines (memoryview slices: no copy per line), skip blank
    ones, and hand them to the assembler ``batch_size`` at a time."""
    lines: list[Any] = []
    locs: list[int] = []
    line = 0
    pending = b""
    space = _SPACE

    def take(seg: Any) -> None:
        if seg[0] in space and bytes(seg).isspace():
            return
        lines.append(seg)
        locs.append(line)

    for chunk in pipe:
        pos = 0
        if pending:
            end = chunk.find(b"\n")
            if end < 0:
                pending += chunk
                continue
            line += 1
            take(pending + chunk[:end])
            pending = b""
            pos = end + 1
        find = chunk.find
        mv = memoryview(chunk)
        while True:
            end = find(b"\n", pos)
            if end < 0:
                break
            line += 1
            if end > pos:
                take(mv[pos:end])
                if len(lines) >= batch_size:
                    counter[0] += len(lines)
                    batch = asm.from_lines(lines, locs)
                    lines, locs = [], []
                    if batch is not None:
                        yield batch
            pos = end + 1
        pending = chunk[pos:]
    if pending:
        line += 1
        take(pending)
    if lines:
        counter[0] += len(lines)
        batch = asm.from_lines(lines, locs)
        if batch is not None:
            yield batch


def write_jsonl_part(items: Iterable[tuple[bytes, int, int]], sink: Any, *, gzip_level: int | None,
                     progress: Callable[[int, int], None]) -> int:
    """Write one part from ``(lines, records, payload bytes)`` items to ``sink``, gzipped at
    ``gzip_level`` (isal) unless None; ``progress(records, bytes written)``. Returns the records."""
    comp = None if gzip_level is None else isal_zlib.compressobj(gzip_level, isal_zlib.DEFLATED, 31)
    records = 0
    for data, k, _payload in items:
        out = comp.compress(data) if comp is not None else data
        sink.write(out)
        records += k
        progress(k, len(out))
    if comp is not None:
        tail = comp.flush()
        sink.write(tail)
        progress(0, len(tail))
    return records
