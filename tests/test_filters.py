"""Pinecone's metadata filter language: semantics, validation, and mask/__call__ agreement."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spruce.errors import InvalidArgument, InvalidFilter
from spruce.filters import MAX_IN_VALUES, Filter, compile_filter, validate_filter


def matches(flt: dict[str, Any] | None, metadata: dict[str, Any] | None) -> bool:
    return compile_filter(flt)(metadata)


# -- empty filters ------------------------------------------------------------------


@pytest.mark.parametrize("flt", [None, {}])
def test_empty_filter_matches_everything(flt):
    f = compile_filter(flt)
    assert f.matches_all is True
    assert f.filter is None
    assert validate_filter(flt) is None
    assert f(None) and f({}) and f({"a": 1})
    mask = f.mask([None, {}, {"a": 1}])
    assert mask.dtype == bool
    assert mask.tolist() == [True, True, True]


def test_non_empty_filter_does_not_match_all():
    assert compile_filter({"a": 1}).matches_all is False


# -- $eq / bare values -----------------------------------------------------------------


@pytest.mark.parametrize(("flt", "metadata", "expected"), [
    ({"genre": "drama"}, {"genre": "drama"}, True),
    ({"genre": "drama"}, {"genre": "comedy"}, False),
    ({"genre": {"$eq": "drama"}}, {"genre": "drama"}, True),
    ({"genre": "drama"}, {"genre": ["comedy", "drama"]}, True),
    ({"genre": "drama"}, {"genre": ["comedy", "action"]}, False),
    ({"genre": "drama"}, {"genre": []}, False),
    ({"genre": "drama"}, {"other": "drama"}, False),
    ({"genre": "drama"}, {}, False),
    ({"genre": "drama"}, None, False),
    ({"year": 2000}, {"year": 2000}, True),
    ({"year": 2000}, {"year": 2000.0}, True),
    ({"year": 2000.0}, {"year": 2000}, True),
    ({"year": 2000}, {"year": 2001}, False),
    ({"score": 0.5}, {"score": 0.5}, True),
    ({"flag": True}, {"flag": True}, True),
    ({"flag": True}, {"flag": False}, False),
    ({"flag": False}, {"flag": False}, True),
])
def test_eq(flt, metadata, expected):
    assert matches(flt, metadata) is expected


@pytest.mark.parametrize(("flt", "metadata"), [
    ({"x": 1}, {"x": True}),
    ({"x": True}, {"x": 1}),
    ({"x": 0}, {"x": False}),
    ({"x": False}, {"x": 0}),
    ({"x": 1.0}, {"x": True}),
    ({"x": "1"}, {"x": 1}),
    ({"x": 1}, {"x": "1"}),
    ({"x": "true"}, {"x": True}),
    ({"x": 1}, {"x": ["1"]}),
    ({"x": True}, {"x": ["True", "true"]}),
])
def test_eq_never_crosses_types(flt, metadata):
    assert matches(flt, metadata) is False
    op_form = {k: {"$eq": v} for k, v in flt.items()}
    assert matches(op_form, metadata) is False
    assert matches({k: {"$ne": v} for k, v in flt.items()}, metadata) is True


# -- $ne ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("metadata", "expected"), [
    ({"genre": "drama"}, False),
    ({"genre": "comedy"}, True),
    ({"genre": ["comedy", "action"]}, True),
    ({"genre": ["comedy", "drama"]}, False),
    ({"genre": []}, True),
    ({"genre": 3}, True),
    ({}, True),
    (None, True),
])
def test_ne_string(metadata, expected):
    assert matches({"genre": {"$ne": "drama"}}, metadata) is expected


def test_ne_number_and_bool():
    assert matches({"year": {"$ne": 2000}}, {"year": 2000.0}) is False
    assert matches({"year": {"$ne": 2000}}, {"year": 1999}) is True
    assert matches({"flag": {"$ne": True}}, {"flag": True}) is False
    assert matches({"flag": {"$ne": True}}, {"flag": False}) is True
    assert matches({"flag": {"$ne": True}}, {"flag": 1}) is True


# -- comparisons ------------------------------------------------------------------------


@pytest.mark.parametrize(("op", "value", "expected"), [
    ("$gt", 1999, True), ("$gt", 2000, False), ("$gt", 2000.5, False),
    ("$gte", 2000, True), ("$gte", 2000.0, True), ("$gte", 2001, False),
    ("$lt", 2001, True), ("$lt", 2000, False), ("$lt", 1999.5, False),
    ("$lte", 2000, True), ("$lte", 1999.999, False),
])
def test_comparisons_on_numbers(op, value, expected):
    assert matches({"year": {op: value}}, {"year": 2000}) is expected
    assert matches({"year": {op: value}}, {"year": 2000.0}) is expected


@pytest.mark.parametrize("op", ["$gt", "$gte", "$lt", "$lte"])
@pytest.mark.parametrize("metadata", [
    {"year": "2000"}, {"year": True}, {"year": False}, {"year": ["2000"]}, {}, None,
])
def test_comparisons_never_match_non_numbers_or_missing(op, metadata):
    # Operands chosen so every comparison would hold if the value were the number 2000 / 1 / 0.
    operand = {"$gt": -1, "$gte": -1, "$lt": 10_000, "$lte": 10_000}[op]
    assert matches({"year": {op: operand}}, metadata) is False


def test_range_is_anded():
    flt = {"year": {"$gte": 2000, "$lt": 2010}}
    assert [matches(flt, {"year": y}) for y in (1999, 2000, 2005.5, 2009, 2010)] == [
        False, True, True, True, False]


def test_float_comparison_precision():
    assert matches({"x": {"$gt": 0.1}}, {"x": 0.1000001}) is True
    assert matches({"x": {"$lt": -0.5}}, {"x": -0.25}) is False


# -- $in / $nin ----------------------------------------------------------------------------


@pytest.mark.parametrize(("metadata", "expected"), [
    ({"genre": "drama"}, True),
    ({"genre": "action"}, True),
    ({"genre": "horror"}, False),
    ({"genre": ["horror", "action"]}, True),
    ({"genre": ["horror", "scifi"]}, False),
    ({"genre": []}, False),
    ({}, False),
    (None, False),
])
def test_in_strings(metadata, expected):
    flt = {"genre": {"$in": ["drama", "action"]}}
    assert matches(flt, metadata) is expected
    assert matches({"genre": {"$nin": ["drama", "action"]}}, metadata) is (not expected)


def test_in_numbers_and_bools_keep_types_apart():
    nums = {"x": {"$in": [1, 2.5]}}
    assert matches(nums, {"x": 1}) is True
    assert matches(nums, {"x": 1.0}) is True
    assert matches(nums, {"x": 2.5}) is True
    assert matches(nums, {"x": True}) is False
    assert matches(nums, {"x": "1"}) is False
    bools = {"x": {"$in": [True]}}
    assert matches(bools, {"x": True}) is True
    assert matches(bools, {"x": 1}) is False
    assert matches(bools, {"x": 1.0}) is False
    strs = {"x": {"$in": ["1", "True"]}}
    assert matches(strs, {"x": 1}) is False
    assert matches(strs, {"x": True}) is False


def test_in_mixed_operand_types():
    flt = {"x": {"$in": ["a", 3, False]}}
    assert [matches(flt, {"x": v}) for v in ("a", 3, 3.0, False, "b", 0, True, ["q", "a"])] == [
        True, True, True, True, False, False, False, True]


def test_nin():
    flt = {"x": {"$nin": [1, "a"]}}
    assert matches(flt, {"x": 1}) is False
    assert matches(flt, {"x": 1.0}) is False
    assert matches(flt, {"x": "a"}) is False
    assert matches(flt, {"x": True}) is True
    assert matches(flt, {"x": 2}) is True
    assert matches(flt, {"x": ["b", "c"]}) is True
    assert matches(flt, {"x": ["b", "a"]}) is False
    assert matches(flt, {}) is True
    assert matches(flt, None) is True


# -- $exists ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("metadata", "present"), [
    ({"a": "x"}, True), ({"a": 0}, True), ({"a": False}, True), ({"a": ""}, True),
    ({"a": []}, True), ({"b": 1}, False), ({}, False), (None, False),
])
def test_exists(metadata, present):
    assert matches({"a": {"$exists": True}}, metadata) is present
    assert matches({"a": {"$exists": False}}, metadata) is (not present)


# -- missing fields --------------------------------------------------------------------------


@pytest.mark.parametrize(("condition", "expected"), [
    ({"$eq": "x"}, False), ({"$eq": 1}, False), ({"$eq": True}, False),
    ({"$ne": "x"}, True), ({"$ne": 1}, True), ({"$ne": False}, True),
    ({"$gt": 0}, False), ({"$gte": 0}, False), ({"$lt": 0}, False), ({"$lte": 0}, False),
    ({"$in": ["x", 1]}, False), ({"$nin": ["x", 1]}, True),
    ({"$exists": True}, False), ({"$exists": False}, True),
])
@pytest.mark.parametrize("metadata", [None, {}, {"other": "x"}])
def test_missing_field(condition, expected, metadata):
    assert matches({"field": condition}, metadata) is expected


# -- logic ---------------------------------------------------------------------------------


def test_multiple_keys_are_anded():
    flt = {"genre": "drama", "year": {"$gte": 2000}}
    assert matches(flt, {"genre": "drama", "year": 2001}) is True
    assert matches(flt, {"genre": "drama", "year": 1999}) is False
    assert matches(flt, {"genre": "comedy", "year": 2001}) is False


def test_multiple_operators_on_one_field_are_anded():
    flt = {"genre": {"$in": ["a", "b", "c"], "$ne": "b"}}
    assert [matches(flt, {"genre": g}) for g in "abcd"] == [True, False, True, False]


def test_and():
    flt = {"$and": [{"genre": "drama"}, {"year": {"$lt": 2000}}]}
    assert matches(flt, {"genre": "drama", "year": 1990}) is True
    assert matches(flt, {"genre": "drama", "year": 2000}) is False
    assert matches(flt, {"genre": "comedy", "year": 1990}) is False


def test_or():
    flt = {"$or": [{"genre": "drama"}, {"year": {"$lt": 2000}}]}
    assert matches(flt, {"genre": "drama", "year": 2010}) is True
    assert matches(flt, {"genre": "comedy", "year": 1990}) is True
    assert matches(flt, {"genre": "comedy", "year": 2010}) is False
    assert matches(flt, None) is False


def test_single_element_and_or():
    assert matches({"$and": [{"a": 1}]}, {"a": 1}) is True
    assert matches({"$or": [{"a": 1}]}, {"a": 2}) is False


def test_nested_and_or():
    flt = {"$or": [
        {"$and": [{"genre": "drama"}, {"year": {"$gte": 2000}}]},
        {"$and": [{"genre": "comedy"}, {"$or": [{"rating": {"$gt": 8}}, {"award": True}]}]},
    ]}
    assert matches(flt, {"genre": "drama", "year": 2005}) is True
    assert matches(flt, {"genre": "drama", "year": 1995}) is False
    assert matches(flt, {"genre": "comedy", "rating": 9}) is True
    assert matches(flt, {"genre": "comedy", "rating": 5, "award": True}) is True
    assert matches(flt, {"genre": "comedy", "rating": 5, "award": False}) is False
    assert matches(flt, {"genre": ["comedy", "drama"], "year": 1990, "award": True}) is True


def test_logical_and_field_keys_together_are_anded():
    flt = {"$or": [{"a": 1}, {"b": 1}], "c": "x"}
    assert matches(flt, {"a": 1, "c": "x"}) is True
    assert matches(flt, {"a": 1, "c": "y"}) is False
    assert matches(flt, {"c": "x"}) is False


def test_and_and_or_in_one_object():
    flt = {"$and": [{"a": 1}], "$or": [{"b": 1}, {"c": 1}]}
    assert matches(flt, {"a": 1, "c": 1}) is True
    assert matches(flt, {"a": 1}) is False
    assert matches(flt, {"b": 1}) is False


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(("flt", "named", "problem"), [
    ({"genre": ["a"]}, "genre", "bare list"),
    ({"genre": ("a",)}, "genre", "bare list"),
    ({"genre": {"$regex": "dr.*"}}, "genre", "$regex"),
    ({"year": {"$gt": "x"}}, "year", "number"),
    ({"year": {"$gte": True}}, "year", "number"),
    ({"year": {"$lt": None}}, "year", "number"),
    ({"year": {"$lte": [1]}}, "year", "number"),
    ({"year": {"$gt": math.nan}}, "year", "number"),
    ({"year": {"$lt": math.inf}}, "year", "number"),
    ({"a": {"$in": "x"}}, "a", "list"),
    ({"a": {"$nin": "x"}}, "a", "list"),
    ({"a": {"$in": []}}, "a", "non-empty"),
    ({"a": {"$nin": []}}, "a", "non-empty"),
    ({"a": {"$in": [["x"]]}}, "a", "$in"),
    ({"a": {"$in": [{"x": 1}]}}, "a", "$in"),
    ({"a": {"$in": [None]}}, "a", "$in"),
    ({"a": {"$in": list(range(MAX_IN_VALUES + 1))}}, "a", str(MAX_IN_VALUES)),
    ({"a": {"$exists": 1}}, "a", "$exists"),
    ({"a": {"$exists": "true"}}, "a", "$exists"),
    ({"a": {"$eq": ["x"]}}, "a", "$eq"),
    ({"a": {"$ne": {"x": 1}}}, "a", "$ne"),
    ({"a": {"$eq": None}}, "a", "$eq"),
    ({"a": {"$eq": math.nan}}, "a", "$eq"),
    ({"a": {}}, "a", "operator"),
    ({"a": {"nested": 1}}, "a", "nested"),
    ({"a": {"$and": [{"b": 1}]}}, "a", "$and"),
    ({"a": None}, "a", "null"),
    ({"a": math.inf}, "a", "number"),
    ({"$and": []}, "$and", "non-empty"),
    ({"$or": []}, "$or", "non-empty"),
    ({"$and": {"a": 1}}, "$and", "list"),
    ({"$or": "a"}, "$or", "list"),
    ({"$and": ["a"]}, "$and[0]", "filter object"),
    ({"$or": [{}]}, "$or[0]", "empty"),
    ({"$regex": "x"}, "$regex", "unknown operator"),
    ({"$not": {"a": 1}}, "$not", "unknown operator"),
    ({"$eq": 1}, "$eq", "field"),
    ({"$and": [{"ok": 1}, {"inner": ["x"]}]}, "inner", "$and[1]"),
    ({"$or": [{"$and": [{"deep": {"$gt": "x"}}]}]}, "deep", "$or[0].$and[0]"),
])
def test_invalid_filters_name_the_field(flt, named, problem):
    with pytest.raises(InvalidFilter) as exc:
        validate_filter(flt)
    message = str(exc.value)
    assert named in message
    assert problem in message
    with pytest.raises(InvalidFilter):
        compile_filter(flt)


def test_nested_object_as_bare_value_names_the_field():
    with pytest.raises(InvalidFilter, match=r"'meta'.*nested"):
        validate_filter({"meta": {"inner": "x"}})


@pytest.mark.parametrize("flt", [["a"], "genre", 3, ("a", 1)])
def test_filter_must_be_an_object(flt):
    with pytest.raises(InvalidFilter, match="must be an object"):
        validate_filter(flt)


def test_non_string_field_name():
    with pytest.raises(InvalidFilter, match="strings"):
        validate_filter({1: "x"})


def test_excessive_nesting_is_invalid_not_a_recursion_error():
    flt: dict[str, Any] = {"a": 1}
    for _ in range(500):
        flt = {"$and": [flt]}
    with pytest.raises(InvalidFilter, match="nested deeper"):
        validate_filter(flt)


def test_in_at_the_limit_is_valid():
    assert matches({"a": {"$in": list(range(MAX_IN_VALUES))}}, {"a": MAX_IN_VALUES - 1}) is True


def test_invalid_filter_is_a_400():
    with pytest.raises(InvalidFilter) as exc:
        validate_filter({"a": ["x"]})
    assert isinstance(exc.value, InvalidArgument)
    assert exc.value.status == 400
    assert exc.value.code == "INVALID_ARGUMENT"


# -- normalization --------------------------------------------------------------------------


def test_validate_normalizes_bare_values_and_copies():
    in_list = ["a", "b"]
    original = {"genre": "drama", "year": {"$gte": 2000}, "tag": {"$in": in_list},
                "$or": [{"x": True}, {"y": {"$exists": False}}]}
    normalized = validate_filter(original)
    assert normalized == {"genre": {"$eq": "drama"}, "year": {"$gte": 2000}, "tag": {"$in": ["a", "b"]},
                          "$or": [{"x": {"$eq": True}}, {"y": {"$exists": False}}]}
    assert normalized["tag"]["$in"] is not in_list
    assert original["genre"] == "drama"  # the input is untouched
    # Normalizing is idempotent: the output is itself a valid, equivalent filter.
    assert validate_filter(normalized) == normalized


def test_tuples_are_accepted_where_lists_are_and_become_lists():
    assert validate_filter({"a": {"$in": ("x", "y")}, "$and": ({"b": 1},)}) == {
        "a": {"$in": ["x", "y"]}, "$and": [{"b": {"$eq": 1}}]}


def test_filter_exposes_normalized_form():
    f = Filter({"a": 1})
    assert f.filter == {"a": {"$eq": 1}}
    assert "a" in repr(f)


# -- tuple-valued list fields (accepted by records.validate_metadata) -----------------------


def test_tuple_list_field_behaves_like_list():
    md = {"genre": ("comedy", "drama")}
    assert matches({"genre": "drama"}, md) is True
    assert matches({"genre": {"$ne": "drama"}}, md) is False
    assert matches({"genre": {"$in": ["x", "comedy"]}}, md) is True
    assert matches({"genre": {"$nin": ["x", "comedy"]}}, md) is False


# -- mask --------------------------------------------------------------------------------------


def test_mask_basic():
    f = compile_filter({"genre": "drama"})
    mds = [{"genre": "drama"}, None, {"genre": ["drama"]}, {}, {"genre": "comedy"}]
    mask = f.mask(mds)
    assert isinstance(mask, np.ndarray)
    assert mask.dtype == bool
    assert mask.tolist() == [True, False, True, False, False]


def test_mask_empty_input():
    assert compile_filter({"a": 1}).mask([]).shape == (0,)
    assert compile_filter(None).mask([]).shape == (0,)


# -- property: mask agrees with __call__ and with a straightforward reference ----------------

FIELDS = ["a", "b", "c"]
STRINGS = ["x", "y", "z", "1", "true"]

scalars = st.one_of(
    st.sampled_from(STRINGS),
    st.integers(-3, 3),
    st.sampled_from([-1.5, 0.0, 0.5, 1.0, 2.0]),
    st.booleans(),
)
metadata_values = st.one_of(scalars, st.lists(st.sampled_from(STRINGS), max_size=3))
metadatas = st.one_of(st.none(), st.dictionaries(st.sampled_from(FIELDS), metadata_values, max_size=3))
numbers = st.one_of(st.integers(-3, 3), st.sampled_from([-1.5, 0.0, 0.5, 1.0, 2.0]))

conditions = st.one_of(
    st.tuples(st.sampled_from(["$eq", "$ne"]), scalars),
    st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), numbers),
    st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(scalars, min_size=1, max_size=4)),
    st.tuples(st.just("$exists"), st.booleans()),
)
field_values = st.one_of(scalars, st.lists(conditions, min_size=1, max_size=3).map(dict))
leaf_filters = st.dictionaries(st.sampled_from(FIELDS), field_values, min_size=1, max_size=2)
filters = st.recursive(
    leaf_filters,
    lambda children: st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs, extra: {"$or": xs, **extra}, st.lists(children, min_size=1, max_size=2),
                  leaf_filters),
    ),
    max_leaves=6,
)


def _same(a: Any, b: Any) -> bool:
    """Pinecone equality on scalars: bools only equal bools, numbers compare numerically."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return a == b


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def reference(flt: dict[str, Any], md: dict[str, Any] | None) -> bool:
    """A deliberately naive evaluator, written from the spec, to check the compiled one against."""
    md = md or {}
    for key, value in flt.items():
        if key == "$and":
            ok = all(reference(sub, md) for sub in value)
        elif key == "$or":
            ok = any(reference(sub, md) for sub in value)
        else:
            ops = value if isinstance(value, dict) else {"$eq": value}
            ok = all(_reference_op(op, operand, key in md, md.get(key)) for op, operand in ops.items())
        if not ok:
            return False
    return True


def _reference_op(op: str, operand: Any, present: bool, value: Any) -> bool:
    if op == "$exists":
        return present == operand
    if not present:
        return op in ("$ne", "$nin")
    elements = value if isinstance(value, list) else [value]
    if op == "$eq":
        return any(_same(e, operand) for e in elements)
    if op == "$ne":
        return not any(_same(e, operand) for e in elements)
    if op == "$in":
        return any(_same(e, o) for e in elements for o in operand)
    if op == "$nin":
        return not any(_same(e, o) for e in elements for o in operand)
    compare = {"$gt": lambda e: e > operand, "$gte": lambda e: e >= operand,
               "$lt": lambda e: e < operand, "$lte": lambda e: e <= operand}[op]
    return any(_num(e) and compare(e) for e in elements)


@settings(max_examples=400, deadline=None)
@given(flt=filters, mds=st.lists(metadatas, max_size=20))
def test_compiled_filter_agrees_with_reference_and_mask(flt, mds):
    f = compile_filter(flt)
    one_by_one = [f(md) for md in mds]
    assert one_by_one == [reference(flt, md) for md in mds]
    mask = f.mask(mds)
    assert mask.dtype == bool
    assert mask.tolist() == one_by_one
    # The normalized form is equivalent to the original.
    assert compile_filter(validate_filter(flt)).mask(mds).tolist() == one_by_one
