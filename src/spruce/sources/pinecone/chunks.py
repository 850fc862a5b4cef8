"""Upsert requests within Pinecone's limits (records and bytes per request), built from archive
lines, and JSON Lines archive parts read whole and checked against their manifest entry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from isal import igzip

from spruce.archive.jsonl import encode_lines
from spruce.errors import ChecksumMismatch, MissingFile, RecordCountMismatch, ValidationError
from spruce.records import RecordBatch

# -- Pinecone's limits ---------------------------------------------------------------------
MAX_UPSERT_RECORDS = 1000
MAX_UPSERT_RECORDS_TEXT = 96  # indexes with integrated embedding
MAX_UPSERT_BYTES = 2 * 1000 * 1000  # "2 MB" per request; we stay under the smaller reading
_UPSERT_ENVELOPE = 1024  # {"vectors": [...], "namespace": "..."} around the records


def _request_size(line: bytes) -> int:
    # The SDK re-serializes each record: 7.3 (json.dumps) adds a space after every ',' and ':'.
    return len(line) + line.count(b",") + line.count(b":") + 2


def upsert_chunks(batch: RecordBatch, *, max_records: int = MAX_UPSERT_RECORDS,
                  max_bytes: int = MAX_UPSERT_BYTES) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """(records as upsert dicts, request bytes) chunks within Pinecone's per-request limits.

    Records are the archive's JSON (float32 in its shortest exact decimal form, so the
    server's float32 parse gives back the same bits), measured as the SDK will send them.
    """
    return line_chunks(encode_lines(batch), max_records=max_records, max_bytes=max_bytes)


def line_chunks(lines: Iterable[bytes], *, max_records: int = MAX_UPSERT_RECORDS,
                max_bytes: int = MAX_UPSERT_BYTES) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Chunks of upsert records from JSON lines in the archive's record shape."""
    budget = max_bytes - _UPSERT_ENVELOPE
    out: list[dict[str, Any]] = []
    size = 0
    for line in lines:
        n = _request_size(line)
        if out and (len(out) >= max_records or size + n > budget):
            yield out, size
            out, size = [], 0
        rec = _loads(line)
        if n > budget:
            raise ValidationError(f"is about {n:,} bytes as JSON, more than one upsert request may carry "
                                  f"({max_bytes:,})", record_id=rec.get("id"))
        out.append(rec)
        size += n
    if out:
        yield out, size


def raw_line_chunks(lines: Iterable[bytes], *, max_records: int = MAX_UPSERT_RECORDS,
                    max_bytes: int = MAX_UPSERT_BYTES) -> Iterator[tuple[list[bytes], int]]:
    """Chunks of upsert records as JSON texts, for a request body built around them as they are.

    Lines in the archive's record shape already are upsert records, dense values in their
    shortest float32 text; only ``sparse_values`` is renamed to the API's ``sparseValues``
    (re-encoding that line). The size is the body's, exactly.
    """
    budget = max_bytes - _UPSERT_ENVELOPE
    out: list[bytes] = []
    size = 0
    for line in lines:
        line = line.strip()
        if b'"sparse_values"' in line:
            rec = _loads(line)
            if "sparse_values" in rec:
                rec["sparseValues"] = rec.pop("sparse_values")
                line = orjson.dumps(rec)
        n = len(line) + 1
        if out and (len(out) >= max_records or size + n > budget):
            yield out, size
            out, size = [], 0
        if n > budget:
            raise ValidationError(f"is about {n:,} bytes as JSON, more than one upsert request may carry "
                                  f"({max_bytes:,})", record_id=_loads(line).get("id"))
        out.append(line)
        size += n
    if out:
        yield out, size


def _upsert_body(namespace: str, lines: list[bytes]) -> bytes:
    body = b'{"vectors":[' + b",".join(lines) + b"]"
    if namespace:
        body += b',"namespace":' + orjson.dumps(namespace)
    return body + b"}"


def _loads(line: bytes) -> dict[str, Any]:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:  # integers beyond 64 bits, escaped lone surrogates
        return json.loads(line)


def _verified_lines(store: Any, f: Any) -> list[bytes] | None:
    """A JSON Lines archive part as its lines, after checking its size, sha256 and record count
    against the manifest (None for parts this does not apply to: Parquet, plain files).

    Its lines already are upsert records; sending them as they are spares decoding every
    float into a matrix only to encode it again.
    """
    if f.sha256 is None or f.records is None or f.format not in ("jsonl.gz", "jsonl"):
        return None
    where = f"{store.uri.rstrip('/')}/{f.path}"
    try:
        data = store.get_bytes(f.path)
    except FileNotFoundError:
        raise MissingFile(f"{where}: listed in the manifest but missing") from None
    if len(data) != f.bytes or hashlib.sha256(data).hexdigest() != f.sha256:
        raise ChecksumMismatch(f"{where}: {len(data):,} bytes with a sha256 different from the manifest's "
                               f"({f.bytes:,} bytes, {f.sha256})")
    if f.format == "jsonl.gz":
        try:
            data = igzip.decompress(data)
        except Exception as exc:
            raise ChecksumMismatch(f"{where}: not a gzip stream ({exc})") from None
    lines = [line for line in data.split(b"\n") if line.strip()]
    if len(lines) != f.records:
        raise RecordCountMismatch(f"{where}: holds {len(lines):,} records, the manifest says {f.records:,}")
    return lines
