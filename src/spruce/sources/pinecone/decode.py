"""Fetch responses, decoded: simdjson straight into a float32 matrix (``_fast_batch``), or the
general way (orjson, else the standard library) for whatever that does not take."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson

try:
    import simdjson
except ImportError:  # pragma: no cover - a dependency; without it fetches decode through orjson
    simdjson = None  # type: ignore[assignment]

from spruce.records import RecordBatch
from spruce.sources.retry import RemoteError


class _Unparsable(ValueError):
    """simdjson refused a response's JSON (integers beyond 64 bits, escaped lone surrogates...)."""


def _fetched_map(raw: bytes, *, exact: bool = False) -> dict[str, Any]:
    """A fetch response's ``vectors`` map, decoded the general way: orjson, or the standard library
    for what orjson refuses (escaped lone surrogates) and, when ``exact``, for all of it (orjson
    reads integers beyond 64 bits as floats; the standard library keeps them, so validation can
    name them)."""
    try:
        if exact:
            raise ValueError("exact")
        doc = orjson.loads(raw)
    except ValueError:  # orjson.JSONDecodeError included
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise RemoteError(f"the fetch response is not JSON ({exc})") from None
    vectors = doc.get("vectors") if isinstance(doc, dict) else None
    if vectors is None:
        return {}
    if not isinstance(vectors, dict):
        raise RemoteError(f"the fetch response's 'vectors' is a {type(vectors).__name__}, not an object")
    return vectors


def _fast_batch(raw: bytes, ids: list[str], dim: int | None) -> RecordBatch | None:
    """The records of a fetch response, in ``ids`` order, straight from its JSON bytes: dense values
    parsed by simdjson into float64 buffers and cast once to a float32 matrix (exact: the values
    were written as float32 text), metadata and sparse values as Python objects.

    ``dim`` is the dense dimension (None: a sparse index, no dense values). None when anything
    is not as expected (an id missing or repeated, a field of another type or length): the
    caller then decodes the same bytes the general way, which either accepts them or names the
    record and field at fault. Raises _Unparsable for JSON simdjson refuses.
    """
    if simdjson is None:
        return None
    parser = simdjson.Parser()  # one per call: a parser is not reusable while its proxies live
    try:
        try:
            doc = parser.parse(raw)
        except ValueError as exc:  # NUMBER_ERROR (beyond 64 bits), STRING_ERROR (lone surrogates)...
            raise _Unparsable(str(exc)) from None
        vecs = doc.get("vectors") if isinstance(doc, simdjson.Object) else None
        if not isinstance(vecs, simdjson.Object):
            return None
        n = len(ids)
        where = {rid: i for i, rid in enumerate(ids)}
        keys = list(vecs.keys())  # (items() and values() would build dicts of lists of floats)
        if len(where) != n or len(keys) != n or len(set(keys)) != n:
            return None  # an id missing or repeated: the general way sorts it out
        order: list[int] = []
        bufs: list[bytes] = []
        sparse: list[Any] = [None] * n
        metas: list[Any] = [None] * n
        any_sparse = False
        for rid in keys:
            i = where.get(rid, -1)
            v = vecs[rid]
            if i < 0 or not isinstance(v, simdjson.Object):
                return None
            order.append(i)
            fields = list(v.keys())  # (looking up a key that is absent costs ten times more)
            if dim:
                values = v["values"] if "values" in fields else None
                if not isinstance(values, simdjson.Array) or len(values) != dim:
                    return None
                bufs.append(values.as_buffer(of_type="d"))
            sv = v["sparseValues"] if "sparseValues" in fields else (
                v["sparse_values"] if "sparse_values" in fields else None)
            if sv is not None:
                if not isinstance(sv, simdjson.Object):
                    return None
                si, sx = sv.get("indices"), sv.get("values")
                if not isinstance(si, simdjson.Array) or not isinstance(sx, simdjson.Array):
                    return None
                if len(si) or not dim:
                    sparse[i] = {"indices": si.as_list(), "values": sx.as_list()}
                    any_sparse = True
            md = v["metadata"] if "metadata" in fields else None
            if md is not None:
                if not isinstance(md, simdjson.Object):
                    return None
                metas[i] = md.as_dict()
        matrix = None
        if dim:
            flat = np.frombuffer(b"".join(bufs), dtype=np.float64).reshape(n, dim)
            if order == list(range(n)):
                matrix = flat.astype(np.float32)
            else:
                matrix = np.empty((n, dim), dtype=np.float32)
                matrix[np.asarray(order)] = flat
        return RecordBatch(ids=list(ids), values=matrix, sparse=sparse if any_sparse else None, metadata=metas)
    except _Unparsable:
        raise
    except (ValueError, TypeError, KeyError, RuntimeError, OverflowError):
        return None  # e.g. as_buffer on an array holding something other than numbers
    finally:
        doc = vecs = v = values = sv = si = sx = md = None  # the parser's proxies go before it does
