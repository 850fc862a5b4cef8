"""Pinecone's metadata filter language: validation and fast evaluation.

Query, delete-by-filter, describe_index_stats, export and list all take the
same filter, so it is validated here once (every rejection is an InvalidFilter
naming the field) and compiled once into nested closures; evaluating a record
then never re-parses the filter.

Semantics follow Pinecone: a list-valued field matches when any element
matches, and `$ne`/`$nin` match when no element does; a missing field matches
only `$ne`, `$nin` and `$exists: false`; booleans are not numbers and strings
never equal numbers.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from spruce.errors import InvalidFilter

__all__ = ["FIELD_OPERATORS", "MAX_FILTER_DEPTH", "MAX_FILTER_NODES", "MAX_IN_VALUES", "Filter",
           "compile_filter", "validate_filter"]

MAX_IN_VALUES = 10_000
"""Pinecone's limit on the operand list of `$in`/`$nin`."""

MAX_FILTER_DEPTH = 100
"""Nesting limit for `$and`/`$or`, so a hostile filter is a 400, not a RecursionError."""

MAX_FILTER_NODES = 10_000
"""Total conditions and `$and`/`$or` branches in one filter: a 2-million-branch `$or` is a 400
at once, not minutes of CPU per query."""

FIELD_OPERATORS: tuple[str, ...] = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")
_LOGICAL = ("$and", "$or")
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le,
}

Predicate = Callable[[Any], bool]


# -- validation -----------------------------------------------------------------


def validate_filter(filter: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Check a filter and return a normalized copy, or None when it matches everything.

    Normalized means every field maps to an object of operators (a bare value
    becomes `{"$eq": value}`) and every list is a fresh list, so the result is
    still a valid Pinecone filter and safe to keep (e.g. in an export manifest).
    """
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise InvalidFilter(f"invalid filter: must be an object, got {_type_name(filter)}")
    if not filter:
        return None
    _check_size(filter)
    return _validate_node(filter, "", 0)


def _check_size(filter: Mapping[str, Any]) -> None:
    """Refuse a filter with more than MAX_FILTER_NODES nodes, counting without recursion and
    stopping as soon as the cap is passed (so the check itself stays cheap)."""
    nodes = 0
    stack: list[Any] = [filter]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                nodes += 1
                if key in _LOGICAL and isinstance(value, (list, tuple)):
                    stack.extend(value)
        if nodes > MAX_FILTER_NODES:
            raise InvalidFilter(f"invalid filter: more than {MAX_FILTER_NODES:,} conditions and branches; "
                                "split the query or use $in")


def _validate_node(node: Mapping[str, Any], where: str, depth: int) -> dict[str, Any]:
    if depth > MAX_FILTER_DEPTH:
        raise _error(f"nested deeper than {MAX_FILTER_DEPTH} levels", where=where)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if not isinstance(key, str):
            raise _error(f"field names must be strings, got {_type_name(key)} {key!r}", where=where)
        if key in _LOGICAL:
            out[key] = _validate_logical(key, value, where, depth)
        elif key.startswith("$"):
            if key in FIELD_OPERATORS:
                problem = f"operator {key!r} must be applied to a field, e.g. {{\"field\": {{{key!r}: ...}}}}"
            else:
                problem = f"unknown operator {key!r}; field names may not start with '$'"
            raise _error(problem, where=where)
        else:
            out[key] = _validate_field(key, value, where)
    return out


def _validate_logical(key: str, value: Any, where: str, depth: int) -> list[dict[str, Any]]:
    if not isinstance(value, (list, tuple)) or not value:
        raise _error(f"{key!r} must be a non-empty list of filters, got {_describe(value)}", where=where)
    subs: list[dict[str, Any]] = []
    for i, sub in enumerate(value):
        sub_where = f"{where}.{key}[{i}]" if where else f"{key}[{i}]"
        if not isinstance(sub, Mapping):
            raise _error(f"must be a filter object, got {_type_name(sub)}", where=sub_where)
        if not sub:
            raise _error("must not be an empty filter", where=sub_where)
        subs.append(_validate_node(sub, sub_where, depth + 1))
    return subs


def _validate_field(field: str, value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        if not value:
            raise _error("needs at least one operator, got an empty object", field, where)
        ops: dict[str, Any] = {}
        for op, operand in value.items():
            if op not in FIELD_OPERATORS:
                if isinstance(op, str) and op.startswith("$"):
                    problem = f"unknown operator {op!r}; use one of {', '.join(FIELD_OPERATORS)}"
                else:
                    problem = f"nested fields are not supported (got key {op!r}); use an operator"
                raise _error(problem, field, where)
            ops[op] = _validate_operand(field, op, operand, where)
        return ops
    if isinstance(value, (list, tuple)):
        raise _error('a bare list is not allowed; use {"$in": [...]}', field, where)
    if not _is_scalar(value):
        raise _error(f"must be a string, number or boolean, got {_describe(value)}", field, where)
    return {"$eq": value}


def _validate_operand(field: str, op: str, operand: Any, where: str) -> Any:
    if op in ("$eq", "$ne"):
        if not _is_scalar(operand):
            raise _error(f"{op} takes a string, number or boolean, got {_describe(operand)}", field, where)
        return operand
    if op in _COMPARISONS:
        if not _is_number(operand):
            raise _error(f"{op} takes a number, got {_describe(operand)}", field, where)
        return operand
    if op in ("$in", "$nin"):
        if not isinstance(operand, (list, tuple)):
            raise _error(f"{op} takes a list, got {_describe(operand)}", field, where)
        if not operand:
            raise _error(f"{op} takes a non-empty list", field, where)
        if len(operand) > MAX_IN_VALUES:
            raise _error(f"{op} takes at most {MAX_IN_VALUES} values, got {len(operand)}", field, where)
        for item in operand:
            if not _is_scalar(item):
                raise _error(f"{op} values must be strings, numbers or booleans, got {_describe(item)}",
                             field, where)
        return list(operand)
    # $exists
    if not isinstance(operand, bool):
        raise _error(f"$exists takes true or false, got {_describe(operand)}", field, where)
    return operand


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and math.isfinite(v)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (str, bool)) or _is_number(v)


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    return {dict: "object", list: "list", tuple: "list", str: "string", bool: "boolean",
            int: "number", float: "number"}.get(type(v), type(v).__name__)


def _describe(v: Any) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return f"non-finite number {v!r}"
    if isinstance(v, (str, bool, int, float)):
        return f"{_type_name(v)} {v!r}"
    return _type_name(v)


def _error(problem: str, field: str | None = None, where: str = "") -> InvalidFilter:
    parts = []
    if field is not None:
        parts.append(f"field {field!r}")
    if where:
        parts.append(f"in {where}" if field is not None else f"at {where}")
    return InvalidFilter("invalid filter: " + (" ".join(parts) + ": " if parts else "") + problem)


# -- compilation ------------------------------------------------------------------


class Filter:
    """A validated filter compiled to closures: build once, call per record."""

    __slots__ = ("_predicate", "filter", "matches_all")

    filter: dict[str, Any] | None
    """The normalized filter (see validate_filter); None when it matches everything."""
    matches_all: bool
    """True for an empty filter, so callers can skip evaluation entirely."""

    def __init__(self, filter: Mapping[str, Any] | None = None) -> None:
        self.filter = validate_filter(filter)
        self.matches_all = self.filter is None
        self._predicate: Callable[[Mapping[str, Any] | None], bool] = (
            _match_everything if self.filter is None else _compile_node(self.filter))

    def __call__(self, metadata: Mapping[str, Any] | None) -> bool:
        return self._predicate(metadata)

    def mask(self, metadatas: Sequence[Mapping[str, Any] | None]) -> np.ndarray:
        """Evaluate many records at once; a bool array aligned with metadatas."""
        n = len(metadatas)
        if self.matches_all:
            return np.ones(n, dtype=bool)
        return np.fromiter(map(self._predicate, metadatas), dtype=bool, count=n)

    def __repr__(self) -> str:
        return f"Filter({self.filter!r})"


def compile_filter(filter: Mapping[str, Any] | None) -> Filter:
    """Validate (raising InvalidFilter) and compile a filter for repeated evaluation."""
    return Filter(filter)


def _match_everything(metadata: Mapping[str, Any] | None) -> bool:
    return True


def _compile_node(node: Mapping[str, Any]) -> Callable[[Mapping[str, Any] | None], bool]:
    preds = []
    for key, value in node.items():
        if key == "$and":
            preds.append(_all_of([_compile_node(sub) for sub in value]))
        elif key == "$or":
            preds.append(_any_of([_compile_node(sub) for sub in value]))
        else:
            preds.append(_compile_field(key, value))
    return _all_of(preds)


def _all_of(preds: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds

        def both(x: Any) -> bool:
            return a(x) and b(x)
        return both
    frozen = tuple(preds)

    def every(x: Any) -> bool:
        for p in frozen:  # noqa: SIM110 - hot path; a generator is slower
            if not p(x):
                return False
        return True
    return every


def _any_of(preds: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    if len(preds) == 1:
        return preds[0]
    frozen = tuple(preds)

    def some(x: Any) -> bool:
        for p in frozen:  # noqa: SIM110 - hot path; a generator is slower
            if p(x):
                return True
        return False
    return some


def _compile_field(field: str, ops: Mapping[str, Any]) -> Callable[[Mapping[str, Any] | None], bool]:
    """Fetch the field once per record, then test it against every operator."""
    value_pred = _all_of([_compile_operator(op, operand) for op, operand in ops.items()])
    if all(op in _COMPARISONS for op in ops):
        return _compile_range(field, ops, value_pred)

    def field_pred(metadata: Mapping[str, Any] | None) -> bool:
        # A null value cannot be stored (records.validate_metadata), so None means missing.
        return value_pred(None if metadata is None else metadata.get(field))
    return field_pred


def _compile_range(field: str, ops: Mapping[str, Any],
                   value_pred: Predicate) -> Callable[[Mapping[str, Any] | None], bool]:
    """Fused numeric range ({"year": {"$gte": 2000, "$lt": 2010}}): one type check, no per-op calls."""
    checks = tuple((_COMPARISONS[op], operand) for op, operand in ops.items())

    def range_pred(metadata: Mapping[str, Any] | None) -> bool:
        v = None if metadata is None else metadata.get(field)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            for cmp, operand in checks:  # noqa: SIM110 - hot path; a generator is slower
                if not cmp(v, operand):
                    return False
            return True
        return value_pred(v)
    return range_pred


def _compile_operator(op: str, operand: Any) -> Predicate:
    """A predicate on the field's value, which is None when the field is missing."""
    if op == "$exists":
        if operand:
            return _is_present
        return _is_missing
    if op in ("$eq", "$ne"):
        positive = _eq_value(operand)
    elif op in ("$in", "$nin"):
        positive = _any_element(_in_scalar(operand))
    else:
        positive = _any_element(_compare_scalar(_COMPARISONS[op], operand))
    if op in ("$ne", "$nin"):
        def negated(v: Any) -> bool:
            return not positive(v)
        return negated
    return positive


def _is_present(v: Any) -> bool:
    return v is not None


def _is_missing(v: Any) -> bool:
    return v is None


def _any_element(scalar: Predicate) -> Predicate:
    """Lift a scalar test to a field value: a list matches when any element does."""
    def pred(v: Any) -> bool:
        if v is None:
            return False
        if isinstance(v, (list, tuple)):
            for e in v:  # noqa: SIM110 - hot path; a generator is slower
                if scalar(e):
                    return True
            return False
        return scalar(v)
    return pred


def _eq_value(operand: Any) -> Predicate:
    if isinstance(operand, str):
        # The hot path ({"genre": "drama"}): list elements are strings, so `in` is exact.
        def eq_str(v: Any) -> bool:
            if isinstance(v, str):
                return v == operand
            if isinstance(v, (list, tuple)):
                return operand in v
            return False
        return eq_str
    if isinstance(operand, bool):
        def eq_bool(x: Any) -> bool:
            return isinstance(x, bool) and x == operand
        return _any_element(eq_bool)

    def eq_num(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and x == operand
    return _any_element(eq_num)


def _in_scalar(operands: Sequence[Any]) -> Predicate:
    # Separate sets by type: True == 1 and hash(True) == hash(1), and "1" must not equal 1.
    strs = frozenset(v for v in operands if isinstance(v, str))
    bools = frozenset(v for v in operands if isinstance(v, bool))
    nums = frozenset(v for v in operands if _is_number(v))

    def in_set(x: Any) -> bool:
        if isinstance(x, str):
            return x in strs
        if isinstance(x, bool):
            return x in bools
        if isinstance(x, (int, float)):
            return x in nums
        return False
    return in_set


def _compare_scalar(cmp: Callable[[Any, Any], bool], operand: Any) -> Predicate:
    def compare(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and cmp(x, operand)
    return compare
