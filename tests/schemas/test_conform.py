"""Tests for schemas.conform: validation of appended rows and Arrow data."""

from __future__ import annotations

import datetime as dt
import pathlib

import numpy as np
import pyarrow as pa
import pytest

import schemas
from logstore.errors import RecordValidationError

UTC = dt.UTC
# model_score as first shipped (score required, no runner fields): the fixtures below are built on it
SCORE = schemas.parse(pathlib.Path(__file__).parent / "data" / "model_score.v1.avsc")
SCORE_ARROW = schemas.to_arrow(SCORE)
NESTED = schemas.parse(
    {
        "type": "record",
        "name": "N",
        "fields": [
            {"name": "id", "type": "int"},
            {
                "name": "p",
                "type": [
                    "null",
                    {
                        "type": "record",
                        "name": "P",
                        "fields": [
                            {"name": "a", "type": "string"},
                            {"name": "b", "type": ["null", "long"], "default": None},
                        ],
                    },
                ],
                "default": None,
            },
            {"name": "l", "type": {"type": "array", "items": "P"}},
            {"name": "m", "type": {"type": "map", "values": "int"}},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}},
            {"name": "f", "type": {"type": "fixed", "name": "F", "size": 2}},
            {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}},
        ],
    }
)
NESTED_ARROW = schemas.to_arrow(NESTED)


def score(**kw):
    row = {
        "request_id": "r1",
        "event_time": dt.datetime(2024, 1, 1, tzinfo=UTC),
        "model_id": "m",
        "model_version": "1",
        "score": 0.5,
    }
    row.update(kw)
    return row


def nested(**kw):
    row = {
        "id": 1,
        "p": {"a": "x"},
        "l": [{"a": "y", "b": 2}],
        "m": {"k": 1},
        "e": "X",
        "f": b"ab",
        "d": __import__("decimal").Decimal("1.25"),
    }
    row.update(kw)
    return row


def fails(rows, schema=SCORE, arrow=SCORE_ARROW, **kw):
    with pytest.raises(RecordValidationError) as info:
        schemas.conform(rows, schema, arrow, **kw)
    return info.value


def test_valid_rows_become_one_batch_with_the_exact_schema():
    """Valid dicts come back as one RecordBatch carrying the target schema and metadata."""
    b = schemas.conform([score(), score(label="cat", scores=[0.1, 0.9])], SCORE, SCORE_ARROW)
    assert isinstance(b, pa.RecordBatch) and b.num_rows == 2
    assert b.schema.equals(SCORE_ARROW, check_metadata=True)
    assert b.column("scores").to_pylist() == [None, [0.1, 0.9]]


def test_wrong_type_names_record_field_expected_and_found():
    """A str for a timestamp names the record (with offset_index), the field and both types."""
    e = fails([score(), score(event_time="2024-01-01")], offset_index=100, topic="scores")
    assert (e.index, e.field, e.topic) == (101, "event_time", "scores")
    assert e.reason == "expected a timestamp (datetime or int microseconds), found str '2024-01-01'"
    assert "topic 'scores', record 101, field 'event_time'" in str(e)


def test_missing_required_field():
    """A row without a non-nullable field is refused; a missing nullable field is fine."""
    row = score()
    del row["model_id"]
    e = fails([score(), row])
    assert (e.index, e.field, e.reason) == (1, "model_id", "missing required field (expected a string)")


def test_explicit_null_in_required_field():
    """None for a non-nullable field says null is not allowed."""
    e = fails([score(score=None)])
    assert (e.index, e.field) == (0, "score") and e.reason.startswith("null is not allowed")


def test_unknown_field_with_suggestion():
    """An unknown key names itself and suggests the closest field."""
    e = fails([score(), score(), score(scroe=1.0)])
    assert (e.index, e.field) == (2, "scroe")
    assert e.reason == "unknown field 'scroe' not in schema (did you mean 'score'?)"


def test_float_in_int_field_is_not_truncated():
    """pyarrow would store 1.5 as 1 in an int column: conform refuses it instead."""
    e = fails([nested(id=1.5)], NESTED, NESTED_ARROW)
    assert (e.index, e.field) == (0, "id") and "found float 1.5" in e.reason


def test_int_out_of_range():
    """2**31 does not fit an Avro int."""
    e = fails([nested(), nested(id=2**31)], NESTED, NESTED_ARROW)
    assert (e.index, e.field) == (1, "id") and "out of range" in e.reason


def test_nested_errors_name_the_dotted_path():
    """Errors inside records, lists and maps name the full path."""
    cases = [
        (nested(p={"a": 1}), "p.a", "expected a string, found int 1"),
        (nested(p={"b": 1}), "p.a", "missing required field (expected a string)"),
        (nested(p={"a": "x", "zz": 1}), "p.zz", "unknown field 'zz' not in schema"),
        (nested(l=[{"a": "ok"}, {"a": None}]), "l[1].a", "null is not allowed (expected a string)"),
        (nested(l=[{"a": "ok", "c": 3}]), "l[0].c", "unknown field 'c' not in schema"),
        (nested(m={"k": "v"}), "m['k']", "expected an int (32-bit integer), found str 'v'"),
        (nested(e="Z"), "e", "expected one of the enum symbols ['X', 'Y'], found str 'Z'"),
        (nested(f=b"abc"), "f", "expected 2 bytes (fixed F), found 3 bytes"),
        (nested(d=__import__("decimal").Decimal("1.255")), "d", "more than 2 decimal places"),
        (nested(l="not a list"), "l", "expected a list, found str 'not a list'"),
    ]
    for row, field, reason in cases:
        e = fails([nested(), row], NESTED, NESTED_ARROW)
        assert (e.index, e.field) == (1, field), (row, e)
        assert reason in e.reason, (row, e.reason)


def test_row_that_is_not_a_dict():
    """A row that is not a dict is named as a whole."""
    e = fails([score(), ["r1"]])
    assert e.index == 1 and e.field is None and "expected a record (dict)" in e.reason


def test_numpy_integers_are_accepted():
    """numpy integers leave the fast path but are valid values."""
    b = schemas.conform([nested(id=np.int64(3))], NESTED, NESTED_ARROW)
    assert b.column("id").to_pylist() == [3]


def test_empty_and_generator_input():
    """An empty list gives an empty batch; any iterable of dicts is accepted."""
    assert schemas.conform([], SCORE, SCORE_ARROW).num_rows == 0
    assert schemas.conform((score() for _ in range(3)), SCORE, SCORE_ARROW).num_rows == 3


# --------------------------------------------------------------------------- Arrow input
def test_arrow_input_with_the_same_schema_passes_through():
    """A Table of the target schema (chunked, metadata ignored) becomes one batch with the target schema."""
    b = schemas.conform([score(), score()], SCORE, SCORE_ARROW)
    t = pa.Table.from_batches([b, b]).replace_schema_metadata(None)
    out = schemas.conform(t, SCORE, SCORE_ARROW)
    assert isinstance(out, pa.RecordBatch) and out.num_rows == 4
    assert out.schema.equals(SCORE_ARROW, check_metadata=True)


def test_arrow_input_is_cast_where_avro_allows():
    """Reordered columns, int32 -> long, float64 for float, large_string, ns timestamps, missing nullable columns."""
    schema = schemas.parse(
        {
            "type": "record",
            "name": "R",
            "fields": [
                {"name": "n", "type": "long"},
                {"name": "x", "type": "double"},
                {"name": "s", "type": "string"},
                {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                {"name": "opt", "type": ["null", "string"], "default": None},
            ],
        }
    )
    arrow = schemas.to_arrow(schema)
    t = pa.table(
        {
            "t": pa.array([1_000, 2_000], pa.timestamp("ns")),
            "s": pa.array(["a", "b"], pa.large_string()),
            "x": pa.array([1.5, 2.5], pa.float32()),
            "n": pa.array([1, 2], pa.int32()),
        }
    )
    out = schemas.conform(t, schema, arrow)
    assert out.schema.equals(arrow, check_metadata=True)
    assert out.column("n").to_pylist() == [1, 2] and out.column("opt").null_count == 2


def test_arrow_cast_failure_names_the_first_failing_row():
    """A value that does not convert exactly names its row (plus offset_index)."""
    schema = schemas.parse(
        {
            "type": "record",
            "name": "R",
            "fields": [
                {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                {"name": "i", "type": "int"},
            ],
        }
    )
    arrow = schemas.to_arrow(schema)
    t = pa.table(
        {"t": pa.array([1000, 2000, 3001, 4000], pa.timestamp("ns", tz="UTC")), "i": pa.array([1, 2, 3, 4], pa.int64())}
    )
    e = fails(t, schema, arrow, offset_index=10)
    assert (e.index, e.field) == (12, "t") and "does not convert exactly" in e.reason
    t2 = pa.table({"t": pa.array([0] * 4, pa.timestamp("us", tz="UTC")), "i": pa.array([1, 2, 3, 2**40])})
    e = fails(t2, schema, arrow)
    assert (e.index, e.field) == (3, "i")


def test_arrow_unknown_missing_and_incompatible_columns():
    """Unknown columns, missing required columns and unconvertible types name the column, no row."""
    base = pa.table(
        {
            "request_id": ["r"],
            "event_time": pa.array([0], pa.timestamp("us", tz="UTC")),
            "model_id": ["m"],
            "model_version": ["1"],
            "score": [0.5],
        }
    )
    e = fails(base.append_column("extra", pa.array([1])))
    assert (e.index, e.field) == (None, "extra") and "unknown column 'extra'" in e.reason
    e = fails(base.drop_columns(["score"]))
    assert (e.index, e.field) == (None, "score") and "missing required column" in e.reason
    e = fails(base.set_column(4, "score", pa.array(["high"])))
    assert (e.index, e.field) == (None, "score") and "found a column of Arrow type string" in e.reason


def test_arrow_nulls_and_enum_symbols_are_checked():
    """Nulls in non-nullable columns and unknown enum symbols in Arrow input name the row and field."""
    good = schemas.conform([nested(), nested()], NESTED, NESTED_ARROW)
    with_null = good.set_column(0, pa.field("id", pa.int32()), pa.array([1, None], pa.int32()))
    e = fails(with_null, NESTED, NESTED_ARROW)
    assert (e.index, e.field) == (1, "id")
    bad_enum = good.set_column(4, good.schema.field("e"), pa.array(["X", "Q"], pa.dictionary(pa.int32(), pa.string())))
    e = fails(bad_enum, NESTED, NESTED_ARROW)
    assert (e.index, e.field) == (1, "e") and "found str 'Q'" in e.reason


DEFAULTED = schemas.parse(
    {
        "type": "record",
        "name": "D",
        "fields": [
            {"name": "id", "type": "int"},
            {"name": "status", "type": "string", "default": "ok"},
            {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
            {"name": "weights", "type": {"type": "map", "values": "double"}, "default": {"a": 1.0}},
            {"name": "kind", "type": {"type": "enum", "name": "K", "symbols": ["x", "y"]}, "default": "y"},
        ],
    }
)
DEFAULTED_ARROW = schemas.to_arrow(DEFAULTED)


def test_missing_fields_with_a_default_get_it():
    """A row (or an Arrow input) lacking a non-nullable field that has a default gets the default,
    as a producer built against an older schema version expects; given values are kept."""
    b = schemas.conform(
        [{"id": 1}, {"id": 2, "status": "error", "tags": ["t"], "kind": "x"}], DEFAULTED, DEFAULTED_ARROW
    )
    assert b.schema.equals(DEFAULTED_ARROW)
    assert b.to_pylist() == [
        {"id": 1, "status": "ok", "tags": [], "weights": [("a", 1.0)], "kind": "y"},
        {"id": 2, "status": "error", "tags": ["t"], "weights": [("a", 1.0)], "kind": "x"},
    ]
    t = pa.table({"id": pa.array([3], pa.int32())})
    assert schemas.conform(t, DEFAULTED, DEFAULTED_ARROW).to_pylist() == [
        {"id": 3, "status": "ok", "tags": [], "weights": [("a", 1.0)], "kind": "y"}
    ]


def test_explicit_null_in_a_defaulted_field_is_refused():
    e = fails([{"id": 1}, {"id": 2, "status": None}], DEFAULTED, DEFAULTED_ARROW)
    assert (e.index, e.field) == (1, "status") and "null is not allowed" in e.reason
