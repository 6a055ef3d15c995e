"""Tests for the nesting limit: schemas Arrow IPC could not read back are refused at parse time."""

from __future__ import annotations

import pyarrow as pa
import pytest

import logstore
import schemas
from logstore.errors import SchemaError
from schemas.avro import MAX_NESTING


def record(t, name="R"):
    return {"type": "record", "name": name, "fields": [{"name": "a", "type": t}]}


def arrays(levels, leaf="long"):
    t, v = leaf, 7
    for _ in range(levels):
        t, v = {"type": "array", "items": t}, [v]
    return t, v


def records(levels):
    t, v = "long", 7
    for i in range(levels):
        t, v = {"type": "record", "name": f"N{i}", "fields": [{"name": "x", "type": t}]}, {"x": v}
    return t, v


def maps(n):
    t, v = "long", 7
    for _ in range(n):
        t, v = {"type": "map", "values": t}, [("k", v)]
    return t, v


def mixed(levels):
    """Alternating nullable arrays and records, `levels` Arrow levels deep."""
    t, v = {"type": "enum", "name": "E", "symbols": ["A", "B"]}, "B"
    for i in range(levels):
        if i % 2:
            t, v = {"type": "record", "name": f"M{i}", "fields": [{"name": "x", "type": t}]}, {"x": v}
        else:
            t, v = ["null", {"type": "array", "items": t}], [v, v]
    return t, v


def ipc_round_trip(arrow_schema: pa.Schema, value) -> list:
    """Write a 3-row batch of `arrow_schema` (value, null-ish, value) as an IPC stream, read it back."""
    field = arrow_schema.field("a")
    rows = [value, None if field.nullable else value, value]
    batch = pa.RecordBatch.from_pylist([{"a": r} for r in rows], schema=arrow_schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_batch(batch)
    back = pa.ipc.open_stream(sink.getvalue()).read_all()
    assert back.schema.equals(batch.schema)
    return back.to_pylist()


SHAPES = {
    "arrays": (arrays, MAX_NESTING),
    "records": (records, MAX_NESTING),
    "maps": (maps, MAX_NESTING // 2),  # a map is two Arrow levels (a list of key/value structs)
    "mixed": (mixed, MAX_NESTING),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_nesting_at_the_limit_is_accepted_and_round_trips_through_arrow_ipc(shape):
    """A field nested exactly MAX_NESTING levels parses, converts, and a batch of it survives IPC."""
    make, n = SHAPES[shape]
    t, v = make(n)
    parsed = schemas.parse(record(t))
    arrow = schemas.to_arrow(parsed)
    got = ipc_round_trip(arrow, v)
    assert got[0]["a"] == got[2]["a"] and got[0]["a"] is not None


@pytest.mark.parametrize("shape", SHAPES)
def test_nesting_one_past_the_limit_is_refused_naming_the_path_and_limit(shape):
    """One level more is refused by parse() and to_arrow() with the field path and the limit."""
    make, n = SHAPES[shape]
    t, _ = make(n + 1)
    for convert in (schemas.parse, schemas.to_arrow):
        with pytest.raises(SchemaError) as info:
            convert(record(t))
        msg = str(info.value)
        assert msg.startswith("field 'a") and f"limit of {MAX_NESTING}" in msg


def test_path_names_where_the_limit_is_crossed():
    """The path of a too-deep array names the level that crosses the limit."""
    t, _ = arrays(MAX_NESTING + 1)
    with pytest.raises(SchemaError) as info:
        schemas.parse(record(t))
    assert f"field 'a{'[]' * MAX_NESTING}'" in str(info.value)


@pytest.mark.parametrize("levels", [64, 5000])
def test_absurd_depths_are_a_schema_error_not_a_recursion_error(levels):
    """64 (the depth Arrow IPC cannot read) and 5000 levels are SchemaErrors at parse and to_arrow."""
    t, _ = arrays(levels)
    for convert in (schemas.parse, schemas.to_arrow):
        with pytest.raises(SchemaError, match=f"limit of {MAX_NESTING}"):
            convert(record(t))


def test_named_types_count_where_they_are_used():
    """A record referenced by name adds its own depth at each use: the expanded tree is checked."""
    inner, _ = arrays(20)
    deep, _ = arrays(12, leaf="N")
    s = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "a", "type": {"type": "record", "name": "N", "fields": [{"name": "x", "type": inner}]}},
            {"name": "b", "type": deep},  # 12 + 1 (record N) + 20 = 33 levels
        ],
    }
    with pytest.raises(SchemaError) as info:
        schemas.parse(s)
    assert "field 'b" in str(info.value) and f"limit of {MAX_NESTING}" in str(info.value)
    shallower, _ = arrays(11, leaf="N")
    s["fields"][1]["type"] = shallower  # 32 levels: accepted
    assert schemas.to_arrow(schemas.parse(s)).field("b") is not None


def test_too_deep_arrow_schema_is_refused_at_topic_creation(tmp_path):
    """create_topic() with a pyarrow schema nested 64 deep is refused before anything is created."""
    t = pa.int64()
    for _ in range(64):
        t = pa.list_(t)
    lg = logstore.open(tmp_path / "log")
    with pytest.raises(SchemaError, match=f"limit of {MAX_NESTING}"):
        lg.create_topic("deep", schema=pa.schema([pa.field("a", t)]))
    assert lg.topics() == []


def test_nesting_at_the_limit_is_written_and_read_back_by_the_log(tmp_path):
    """A topic whose field is nested MAX_NESTING deep takes appends and reads them back."""
    t, v = mixed(MAX_NESTING)
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("deep", schema=record(t, "Deep"))
    with lg.writer("deep") as w:
        w.append_batch([{"a": v}, {"a": v}])
    assert lg.read("deep")["a"].to_pylist() == [v, v]
