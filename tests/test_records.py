"""The data model: every rejection names the record and the field; float32 values are kept bit-exact."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spruce.errors import InvalidArgument, ValidationError
from spruce.records import (
    MAX_METADATA_BYTES,
    RecordBatch,
    SparseValues,
    coerce_dense,
    coerce_sparse,
    make_index_config,
    normalize_namespace,
    parse_batch,
    parse_records,
    validate_batch,
    validate_metadata,
)

DIM = 4


def good(i: int = 0, **over):
    rec = {"id": f"r{i}", "values": [0.5, 1.0, -2.0, 3.0]}
    rec.update(over)
    return rec


def reject(records, *, field: str, position: int, dimension: int | None = DIM, vector_type: str = "dense",
           record_id: str | None = None) -> ValidationError:
    """Parse `records` (bad one at `position`) both ways and check the error names record and field."""
    errors = []
    for parse in (parse_records, parse_batch):
        with pytest.raises(ValidationError) as info:
            parse(records, dimension=dimension, vector_type=vector_type)
        err = info.value
        assert err.field == field, str(err)
        assert err.record == position, str(err)
        assert f"record {position}" in str(err)
        assert f"field '{field}'" in str(err)
        if record_id is not None:
            assert err.record_id == record_id
            assert repr(record_id) in str(err)
        errors.append(str(err))
    assert errors[0] == errors[1]  # the bulk path reports exactly what the per-record path does
    return info.value


# -- ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["", "x" * 513, "a\x00b", 7, None, b"bytes", "lone\ud800", "\udc00"])
def test_bad_id_is_rejected_with_its_position(bad_id):
    reject([good(0), good(1), good(2, id=bad_id)], field="id", position=2)


def test_id_of_512_characters_is_fine():
    [rec] = parse_records([good(id="x" * 512)], dimension=DIM)
    assert rec.id == "x" * 512


def test_duplicate_id_in_one_batch():
    err = reject([good(0), good(1), good(0)], field="id", position=2, record_id="r0")
    assert "twice" in str(err)


# -- dense values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        [1.0, 2.0, 3.0],  # wrong dimension
        [1.0, 2.0, 3.0, 4.0, 5.0],
        [1.0, float("nan"), 3.0, 4.0],
        [1.0, float("inf"), 3.0, 4.0],
        [1.0, -float("inf"), 3.0, 4.0],
        [1.0, 1e39, 3.0, 4.0],  # finite as a double, overflows float32
        [1.0, -1e39, 3.0, 4.0],
        [1.0, 10**400, 3.0, 4.0],  # an int no float can hold
        ["a", "b", "c", "d"],
        ["1", "2", "3", "4"],  # numeric strings are still strings
        [True, False, True, False],
        [1.0, None, 3.0, 4.0],
        "1234",
        [[1.0, 2.0], [3.0, 4.0]],
        [[1.0], 2.0, 3.0, 4.0],
        [],
        {"a": 1},
        np.array([1, 2, 3, 4], dtype=np.complex64),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_bad_dense_values(values):
    err = reject([good(0), good(1, values=values)], field="values", position=1, record_id="r1")
    if isinstance(values, list) and len(values) in (3, 5):
        assert "dimensions" in str(err) and str(DIM) in str(err)


def test_missing_dense_values_on_a_dense_index():
    reject([good(0), {"id": "r1", "metadata": {"a": "b"}}], field="values", position=1, record_id="r1")


def test_dense_values_on_a_sparse_index():
    sv = {"indices": [1], "values": [1.0]}
    reject([{"id": "s0", "sparse_values": sv}, {"id": "s1", "values": [1.0], "sparse_values": sv}],
           field="values", position=1, dimension=None, vector_type="sparse", record_id="s1")


def test_dense_values_accept_lists_tuples_numpy_and_ints():
    for values in ([0, 1, 2, 3], (0.0, 1.0, 2.0, 3.0), np.arange(4, dtype=np.float64),
                   np.arange(4, dtype=np.float32), np.arange(4, dtype=np.int64)):
        arr = coerce_dense(values, DIM)
        assert arr.dtype == np.float32 and arr.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_float32_bits_round_trip_through_python_floats():
    rng = np.random.default_rng(7)
    special = np.array([0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, np.finfo(np.float32).max,
                        -np.finfo(np.float32).max, np.finfo(np.float32).tiny, 1 / 3, 0.1], dtype=np.float32)
    values = np.concatenate([special, rng.standard_normal(246).astype(np.float32) * 1e5])
    for source in (values, values.tolist(), [float(x) for x in values]):
        out = coerce_dense(source, values.size)
        assert out.dtype == np.float32
        assert out.tobytes() == values.tobytes()
    batch = parse_batch([{"id": "a", "values": values.tolist()}, ("b", values)], dimension=values.size)
    assert batch.values.dtype == np.float32
    assert batch.values[0].tobytes() == values.tobytes() == batch.values[1].tobytes()
    # -0.0 keeps its sign bit
    assert np.signbit(batch.values[0][1])


# -- sparse values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sparse",
    [
        {"indices": [1, 2, 1], "values": [0.1, 0.2, 0.3]},  # duplicate index
        {"indices": [1, -2], "values": [0.1, 0.2]},
        {"indices": [1, 2**32], "values": [0.1, 0.2]},  # beyond uint32
        {"indices": [1, 2**70], "values": [0.1, 0.2]},
        {"indices": [1.5, 2], "values": [0.1, 0.2]},
        {"indices": ["1", "2"], "values": [0.1, 0.2]},
        {"indices": [1, 2, 3], "values": [0.1, 0.2]},  # length mismatch
        {"indices": list(range(2049)), "values": [0.5] * 2049},  # too many non-zeros
        {"indices": [1, 2], "values": [float("nan"), 0.2]},
        {"indices": [1, 2], "values": [float("inf"), 0.2]},
        {"indices": [1, 2], "values": [1e39, 0.2]},
        {"indices": [1, 2], "values": ["0.1", "0.2"]},
        {"indices": [1, 2]},
        [1, 2],
    ],
    ids=lambda v: repr(v)[:40],
)
def test_bad_sparse_values(sparse):
    err = reject([good(0), good(1, sparse_values=sparse)], field="sparse_values", position=1, record_id="r1")
    if isinstance(sparse, dict) and len(sparse.get("indices", [])) == 2049:
        assert "2048" in str(err)


def test_sparse_limits_are_inclusive():
    sv = coerce_sparse({"indices": [*range(2047), 2**32 - 1], "values": [1.0] * 2048})
    assert sv.indices.dtype == np.uint32 and sv.indices[-1] == 2**32 - 1
    assert sv.values.dtype == np.float32


def test_sparse_index_requires_non_empty_sparse_values():
    reject([{"id": "s0", "sparse_values": {"indices": [1], "values": [1.0]}},
            {"id": "s1", "sparse_values": {"indices": [], "values": []}}],
           field="sparse_values", position=1, dimension=None, vector_type="sparse", record_id="s1")


def test_sparse_values_are_copied():
    """Mutating the caller's arrays after parsing must not change the parsed record."""
    vals = np.array([1.0, 2.0], dtype=np.float32)
    sv = coerce_sparse({"indices": np.array([3, 4], dtype=np.uint32), "values": vals})
    vals[0] = 99.0
    assert sv.values.tolist() == [1.0, 2.0]


# -- metadata ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"genre": None}, "metadata.genre"),
        ({"nested": {"a": 1}}, "metadata.nested"),
        ({"nums": [1, 2, 3]}, "metadata.nums"),
        ({"mixed": ["a", 1]}, "metadata.mixed"),
        ({"x": float("nan")}, "metadata.x"),
        ({"x": float("inf")}, "metadata.x"),
        ({"x": 2**70}, "metadata.x"),
        ({"x": b"bytes"}, "metadata.x"),
        ({"x": np.int64(3)}, "metadata.x"),
        ({"big": "x" * (MAX_METADATA_BYTES + 1)}, "metadata"),
        ({1: "a"}, "metadata"),
        ({"lone": "x\ud800"}, "metadata.lone"),  # no UTF-8 for a lone surrogate
        ({"tags": ["ok", "\udc00"]}, "metadata.tags"),
        ({"\ud800": "a"}, "metadata"),
        (["a", "b"], "metadata"),
        ("text", "metadata"),
        (42, "metadata"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_bad_metadata(metadata, field):
    err = reject([good(0), good(1, metadata=metadata)], field=field, position=1, record_id="r1")
    if field == "metadata" and isinstance(metadata, dict) and "big" in metadata:
        assert "bytes" in str(err) and str(MAX_METADATA_BYTES) in str(err)


def test_metadata_at_the_size_limit_is_fine():
    overhead = len(b'{"big":""}')
    md = validate_metadata({"big": "x" * (MAX_METADATA_BYTES - overhead)})
    assert md is not None and len(md["big"]) == MAX_METADATA_BYTES - overhead


def test_metadata_is_copied_and_normalized():
    tags = ["a", "b"]
    src = {"tags": tags, "tuple": ("x", "y"), "f": np.float64(1.5), "n": 3, "b": True, "s": "t"}
    md = validate_metadata(src)
    tags.append("c")
    assert md == {"tags": ["a", "b"], "tuple": ["x", "y"], "f": 1.5, "n": 3, "b": True, "s": "t"}
    assert type(md["f"]) is float and type(md["tuple"]) is list


def test_tuple_shapes():
    batch = parse_batch([("a", [1, 2, 3, 4]), ("b", [1, 2, 3, 4], {"k": "v"})], dimension=DIM)
    assert batch.ids == ["a", "b"] and batch.metadata == [None, {"k": "v"}]
    with pytest.raises(ValidationError) as info:
        parse_records([("a",)], dimension=DIM)
    assert info.value.record == 0


def test_unknown_record_field_is_rejected():
    with pytest.raises(ValidationError) as info:
        parse_batch([good(0), good(1, vector=[1])], dimension=DIM)
    assert info.value.record == 1 and "vector" in str(info.value)


def test_object_records_are_accepted():
    class Vec:
        def __init__(self, id, values, metadata=None):
            self.id, self.values, self.metadata = id, values, metadata
            self.sparse_values = None

    batch = parse_batch([Vec("a", [1, 2, 3, 4], {"k": "v"})], dimension=DIM)
    assert batch.ids == ["a"] and batch.values.tolist() == [[1, 2, 3, 4]]


# -- the columnar fast path ----------------------------------------------------------------------


def test_validate_batch_rejects_bad_rows_with_position():
    vals = np.ones((3, DIM), dtype=np.float32)
    vals[2, 1] = np.nan
    with pytest.raises(ValidationError) as info:
        validate_batch(RecordBatch(ids=["a", "b", "c"], values=vals), dimension=DIM, vector_type="dense")
    assert info.value.record == 2 and info.value.record_id == "c" and info.value.field == "values"
    with pytest.raises(ValidationError) as info:
        validate_batch(RecordBatch(ids=["a", "b"], values=np.ones((2, 3), np.float32)), dimension=DIM,
                       vector_type="dense")
    assert info.value.field == "values"
    with pytest.raises(ValidationError) as info:
        validate_batch(RecordBatch(ids=["a", ""], values=np.ones((2, DIM), np.float32)), dimension=DIM,
                       vector_type="dense")
    assert info.value.record == 1 and info.value.field == "id"
    with pytest.raises(ValidationError) as info:
        validate_batch(RecordBatch(ids=["a", "b"], values=np.ones((2, DIM), np.float32),
                                   metadata=[None, {"x": None}]), dimension=DIM, vector_type="dense")
    assert info.value.record == 1 and info.value.field == "metadata.x"


def test_validate_batch_rejects_ragged_columns():
    with pytest.raises(InvalidArgument):
        validate_batch(RecordBatch(ids=["a", "b"], values=np.ones((2, DIM), np.float32), metadata=[None]),
                       dimension=DIM, vector_type="dense")


# -- index configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Upper", "under_score", "x" * 46, "-lead", "trail-", "", "sp ace", "a.b"])
def test_bad_index_names(name):
    with pytest.raises(InvalidArgument) as info:
        make_index_config(name, dimension=8)
    assert "name" in str(info.value)


def test_good_index_names():
    for name in ("a", "x" * 45, "my-index-2", "0abc"):
        assert make_index_config(name, dimension=8).name == name


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"dimension": 8, "metric": "manhattan"}, "metric"),
        ({"dimension": 0}, "dimension"),
        ({"dimension": 20001}, "dimension"),
        ({}, "dimension"),
        ({"dimension": 8.0}, "dimension"),
        ({"dimension": True}, "dimension"),
        ({"vector_type": "sparse", "metric": "cosine"}, "dotproduct"),
        ({"vector_type": "sparse", "metric": "euclidean"}, "dotproduct"),
        ({"vector_type": "sparse", "dimension": 8}, "dimension"),
        ({"vector_type": "binary", "dimension": 8}, "vector_type"),
        ({"dimension": 8, "deletion_protection": "maybe"}, "deletion_protection"),
        ({"dimension": 8, "tags": {"bad key!": "v"}}, "tag"),
    ],
)
def test_bad_index_config(kwargs, word):
    with pytest.raises(InvalidArgument) as info:
        make_index_config("ok", **kwargs)
    assert word in str(info.value)


def test_index_config_defaults():
    assert make_index_config("d", dimension=20000).metric == "cosine"
    sparse = make_index_config("s", vector_type="sparse")
    assert (sparse.metric, sparse.dimension) == ("dotproduct", None)


# -- namespaces ----------------------------------------------------------------------------------


def test_namespaces():
    assert normalize_namespace("__default__") == normalize_namespace("") == normalize_namespace(None) == ""
    assert normalize_namespace("n" * 512) == "n" * 512
    with pytest.raises(ValidationError) as info:
        normalize_namespace("n" * 513)
    assert info.value.field == "namespace" and "512" in str(info.value)
    with pytest.raises(ValidationError):
        normalize_namespace(5)


def test_record_equality_is_bit_exact():
    a = parse_records([good(0)], dimension=DIM)[0]
    b = parse_records([good(0)], dimension=DIM)[0]
    assert a == b
    b.values = b.values.copy()
    b.values[0] = np.nextafter(b.values[0], np.float32(2))
    assert a != b
    assert SparseValues(np.array([1], np.uint32), np.array([0.0], np.float32)) != SparseValues(
        np.array([1], np.uint32), np.array([-0.0], np.float32))


# -- the bulk path packs JSON-born float lists itself: it must agree with numpy bit for bit ----------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.floats(width=64, allow_nan=True, allow_infinity=True), min_size=3, max_size=3),
                min_size=1, max_size=4))
def test_bulk_float_lists_match_the_per_record_path(rows):
    records = [{"id": f"r{i}", "values": row} for i, row in enumerate(rows)]
    try:
        expected = np.stack([r.values for r in parse_records(records, dimension=3)])
    except ValidationError as err:
        with pytest.raises(ValidationError) as info:
            parse_batch(records, dimension=3)
        assert str(info.value) == str(err)  # overflow past float32, NaN, infinity: the same error
        return
    got = parse_batch(records, dimension=3).values
    assert got.dtype == np.float32 and got.flags.writeable
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("odd", [True, False, 2, np.float64(0.25), np.float32(0.5), 10**40, "0.5", None,
                                 Decimal("0.5")])
def test_bulk_path_treats_odd_elements_as_the_per_record_path_does(odd):
    records = [good(0), {"id": "r1", "values": [0.5, odd, 1.0, 2.0]}]
    try:
        expected = RecordBatch.from_records(parse_records(records, dimension=DIM))
    except ValidationError as err:
        with pytest.raises(ValidationError) as info:
            parse_batch(records, dimension=DIM)
        assert str(info.value) == str(err)
        return
    assert parse_batch(records, dimension=DIM).values.tobytes() == expected.values.tobytes()
