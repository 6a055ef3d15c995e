"""Tests for schemas.resolve: old Arrow data read with a newer reader schema."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pytest

import schemas
from logstore.errors import SchemaError

UTC = dt.UTC


def rec(*fields, name="R"):
    return {"type": "record", "name": name, "fields": list(fields)}


def batch(schema, rows):
    return schemas.conform(rows, schema, schemas.to_arrow(schema))


def test_added_fields_get_defaults_and_removed_fields_are_dropped():
    """Reader-only fields take their defaults (of every kind); writer-only fields disappear."""
    w = rec({"name": "id", "type": "string"}, {"name": "gone", "type": "int"})
    r = rec(
        {"name": "id", "type": "string"},
        {"name": "n", "type": "long", "default": 7},
        {"name": "s", "type": ["null", "string"], "default": None},
        {"name": "b", "type": "bytes", "default": "\u00ff\u0001"},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}, "default": "B"},
        {"name": "a", "type": {"type": "array", "items": "int"}, "default": [1, 2]},
        {"name": "m", "type": {"type": "map", "values": "double"}, "default": {"k": 1.5}},
        {
            "name": "p",
            "type": rec({"name": "x", "type": "int"}, {"name": "y", "type": "string", "default": "d"}, name="P"),
            "default": {"x": 3},
        },
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}, "default": 1},
        {
            "name": "d",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2},
            "default": "\u0001\u0000",
        },
    )
    out = schemas.resolve(batch(w, [{"id": "a", "gone": 1}, {"id": "b", "gone": 2}]), w, r)
    assert out.schema.equals(schemas.to_arrow(r), check_metadata=True)
    row = out.to_pylist()[1]
    assert row == {
        "id": "b",
        "n": 7,
        "s": None,
        "b": b"\xff\x01",
        "e": "B",
        "a": [1, 2],
        "m": [("k", 1.5)],
        "p": {"x": 3, "y": "d"},
        "t": dt.datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        "d": decimal.Decimal("2.56"),
    }


def test_promotions_are_casts():
    """int -> long/float/double, float -> double, string <-> bytes and millis -> micros are resolved."""
    w = rec(
        {"name": "a", "type": "int"},
        {"name": "b", "type": "int"},
        {"name": "c", "type": "float"},
        {"name": "d", "type": "string"},
        {"name": "e", "type": "bytes"},
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    )
    r = rec(
        {"name": "a", "type": "long"},
        {"name": "b", "type": "double"},
        {"name": "c", "type": "double"},
        {"name": "d", "type": "bytes"},
        {"name": "e", "type": "string"},
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    )
    assert schemas.check_compatibility(r, [w]) == []
    when = dt.datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    out = schemas.resolve(batch(w, [{"a": 1, "b": 2, "c": 0.5, "d": "é", "e": b"ok", "t": when}]), w, r)
    assert out.to_pylist() == [{"a": 1, "b": 2.0, "c": 0.5, "d": "é".encode(), "e": "ok", "t": when}]
    assert out.schema.field("t").type == pa.timestamp("us", tz="UTC")


def test_bytes_to_string_refuses_invalid_utf8():
    """bytes that are not UTF-8 cannot become a string: a SchemaError names the field."""
    w, r = rec({"name": "e", "type": "bytes"}), rec({"name": "e", "type": "string"})
    with pytest.raises(SchemaError, match="field 'e'"):
        schemas.resolve(batch(w, [{"e": b"\xff"}]), w, r)


def test_enums_are_remapped_by_symbol():
    """Enum values keep their symbol when the reader reorders, adds or (with a default) drops symbols."""
    w = rec({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}})
    r = rec({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["Z", "C", "A"], "default": "Z"}})
    out = schemas.resolve(batch(w, [{"e": "A"}, {"e": "B"}, {"e": "C"}]), w, r)
    assert out.column("e").to_pylist() == ["A", "Z", "C"]
    strict = rec({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "C"]}})
    with pytest.raises(SchemaError, match="row 1 holds enum symbol 'B'"):
        schemas.resolve(batch(w, [{"e": "A"}, {"e": "B"}]), w, strict)


def test_nested_records_lists_and_maps_resolve_recursively():
    """Struct children, list items and map values are resolved, parent nulls kept."""
    inner_w = rec({"name": "x", "type": "int"}, {"name": "old", "type": "string"}, name="P")
    inner_r = rec({"name": "x", "type": "long"}, {"name": "new", "type": "string", "default": "n"}, name="P")
    w = rec(
        {"name": "p", "type": ["null", inner_w]},
        {"name": "l", "type": {"type": "array", "items": "P"}},
        {"name": "m", "type": {"type": "map", "values": ["null", "int"]}},
    )
    r = rec(
        {"name": "p", "type": ["null", inner_r]},
        {"name": "l", "type": {"type": "array", "items": "P"}},
        {"name": "m", "type": {"type": "map", "values": ["null", "double"]}},
    )
    rows = [
        {"p": {"x": 1, "old": "o"}, "l": [{"x": 2, "old": "q"}], "m": {"a": 1, "b": None}},
        {"p": None, "l": [], "m": {}},
    ]
    data = batch(w, rows).slice(0)
    out = schemas.resolve(pa.Table.from_batches([data, data.slice(1)]), w, r)
    assert isinstance(out, pa.Table)
    assert out.to_pylist() == [
        {"p": {"x": 1, "new": "n"}, "l": [{"x": 2, "new": "n"}], "m": [("a", 1.0), ("b", None)]},
        {"p": None, "l": [], "m": []},
        {"p": None, "l": [], "m": []},
    ]


def test_reader_aliases_match_renamed_fields():
    """A reader field finds its old column through its aliases."""
    w = rec({"name": "n", "type": "int"})
    r = rec({"name": "count", "type": "long", "aliases": ["n"]})
    assert schemas.resolve(batch(w, [{"n": 4}]), w, r).to_pylist() == [{"count": 4}]


def test_nulls_cannot_enter_a_non_nullable_reader_field():
    """["null", T] -> T is refused when a null is present, naming the row."""
    w, r = rec({"name": "n", "type": ["null", "int"]}), rec({"name": "n", "type": "int"})
    assert schemas.resolve(batch(w, [{"n": 1}]), w, r).to_pylist() == [{"n": 1}]
    with pytest.raises(SchemaError, match="row 1 is null"):
        schemas.resolve(batch(w, [{"n": 1}, {"n": None}]), w, r)


def test_missing_field_without_default_is_an_error():
    """A reader field with neither a writer column nor a default cannot be resolved."""
    w, r = rec({"name": "a", "type": "int"}), rec({"name": "a", "type": "int"}, {"name": "b", "type": "int"})
    with pytest.raises(SchemaError, match="field 'b'"):
        schemas.resolve(batch(w, [{"a": 1}]), w, r)


def test_same_schema_is_a_no_op():
    """Resolving with the writer's own schema returns the same values and the reader's Arrow schema."""
    s = schemas.load("model_score")
    b = batch(s, [{"request_id": "r", "event_time": 1, "model_id": "m", "model_version": "1", "score": 0.1}])
    out = schemas.resolve(b, s, schemas.load("model_score"))
    assert out.equals(b) and out.schema.equals(schemas.to_arrow(s), check_metadata=True)
