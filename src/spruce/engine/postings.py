"""Inverted indexes over metadata, so a filter costs set operations rather than a Python
call per record.

Rows are append-only in a namespace (an overwrite appends a new row and kills the old
one, see memory.py), so posting lists only ever grow: a row's postings never change
after it is indexed, and liveness is applied separately. A field is indexed the first
time a filter names it; from then on every new row is added as it is written.

The semantics are exactly those of ``spruce.filters`` (a list value matches when any
element does; ``$ne``/``$nin``/``$exists: false`` match a record that lacks the field;
``1 == 1.0`` but ``True != 1`` and ``"1" != 1``); tests hold the two to each other.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

Key = tuple[str, Any]

_CMP: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le,
}


def _key(v: Any) -> Key | None:
    if isinstance(v, str):
        return ("s", v)
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, (int, float)):
        return ("n", v)  # ("n", 1) == ("n", 1.0), as 1 == 1.0 in a filter
    return None


class FieldIndex:
    """Postings of one metadata field: value -> rows, the rows that have it, numbers sorted."""

    def __init__(self) -> None:
        self._eq: dict[Key, list[int]] = {}
        self._present: list[int] = []
        self._num_vals: list[float] = []
        self._num_rows: list[int] = []
        self._inexact = False  # an int too big for float64 was indexed
        self._cache: dict[Any, np.ndarray] = {}

    def add(self, row: int, value: Any) -> None:
        if value is None:
            return
        self._present.append(row)
        for e in value if isinstance(value, (list, tuple)) else (value,):
            k = _key(e)
            if k is None:
                continue
            self._eq.setdefault(k, []).append(row)
            if k[0] == "n":
                self._num_vals.append(e)
                if isinstance(e, int) and abs(e) >= 2**53:
                    self._inexact = True
                self._num_rows.append(row)
        if self._cache:
            self._cache = {}

    def _rows(self, name: Any, source: list[int]) -> np.ndarray:
        arr = self._cache.get(name)
        if arr is None or arr.size != len(source):
            arr = np.fromiter(source, dtype=np.int64, count=len(source))
            self._cache[name] = arr
        return arr

    def eq_rows(self, keys: Iterable[Key]) -> list[np.ndarray]:
        return [self._rows(k, self._eq[k]) for k in keys if k in self._eq]

    def present_rows(self) -> np.ndarray:
        return self._rows("$present", self._present)

    def range_rows(self, op: str, operand: float) -> np.ndarray:
        sorted_pair = self._cache.get("$sorted")
        if sorted_pair is None or sorted_pair.shape[1] != len(self._num_vals):
            vals = np.asarray(self._num_vals, dtype=np.float64)
            rows = np.asarray(self._num_rows, dtype=np.float64)
            order = np.argsort(vals, kind="stable")
            sorted_pair = np.stack([vals[order], rows[order]])
            self._cache["$sorted"] = sorted_pair
        if self._inexact or (isinstance(operand, int) and abs(operand) >= 2**53):
            # an int past 2**53 has no exact float64: compare the Python numbers themselves
            cmp = _CMP[op]
            return np.asarray(sorted({r for v, r in zip(self._num_vals, self._num_rows, strict=True)
                                      if cmp(v, operand)}), dtype=np.int64)
        vals, rows = sorted_pair[0], sorted_pair[1]
        x = float(operand)
        if op == "$gt":
            lo, hi = np.searchsorted(vals, x, "right"), vals.size
        elif op == "$gte":
            lo, hi = np.searchsorted(vals, x, "left"), vals.size
        elif op == "$lt":
            lo, hi = 0, np.searchsorted(vals, x, "left")
        else:
            lo, hi = 0, np.searchsorted(vals, x, "right")
        return rows[lo:hi].astype(np.int64)


class Postings:
    """The indexed fields of one namespace; evaluates a validated filter to a row mask."""

    def __init__(self, metadata_of: Callable[[int], Mapping[str, Any] | None]) -> None:
        self._fields: dict[str, FieldIndex] = {}
        self._metadata_of = metadata_of
        self._rows = 0

    def add_rows(self, start: int, metadatas: Sequence[Mapping[str, Any] | None]) -> None:
        """New rows were appended (start is the first one's number)."""
        if self._fields:
            for i, md in enumerate(metadatas):
                if md:
                    for name, fi in self._fields.items():
                        v = md.get(name)
                        if v is not None:
                            fi.add(start + i, v)
        self._rows = start + len(metadatas)

    def _field(self, name: str, nrows: int) -> FieldIndex:
        fi = self._fields.get(name)
        if fi is None:
            fi = FieldIndex()
            for row in range(nrows):
                md = self._metadata_of(row)
                if md:
                    v = md.get(name)
                    if v is not None:
                        fi.add(row, v)
            self._fields[name] = fi
        return fi

    def mask(self, node: Mapping[str, Any], nrows: int) -> np.ndarray:
        """Rows 0..nrows-1 (dead ones included) that match the normalized filter ``node``."""
        out = np.ones(nrows, dtype=bool)
        for key, value in node.items():
            if key == "$and":
                for sub in value:
                    out &= self.mask(sub, nrows)
            elif key == "$or":
                any_ = np.zeros(nrows, dtype=bool)
                for sub in value:
                    any_ |= self.mask(sub, nrows)
                out &= any_
            else:
                fi = self._field(key, nrows)
                for op, operand in value.items():
                    out &= self._op_mask(fi, op, operand, nrows)
        return out

    @staticmethod
    def _op_mask(fi: FieldIndex, op: str, operand: Any, nrows: int) -> np.ndarray:
        m = np.zeros(nrows, dtype=bool)
        if op == "$exists":
            m[fi.present_rows()] = True
            return m if operand else ~m
        if op in _CMP:
            m[fi.range_rows(op, operand)] = True
            return m
        operands = operand if op in ("$in", "$nin") else [operand]
        keys = [k for k in map(_key, operands) if k is not None]
        for rows in fi.eq_rows(keys):
            m[rows] = True
        return ~m if op in ("$ne", "$nin") else m
