"""Tests for schemas.arrow: the Avro <-> Arrow mapping, both directions."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

import schemas
from logstore.errors import SchemaError
from schemas.avro import expand, full_form
from tests.schemas.avro_strategies import avro_schemas


def _one(avro_type, nullable_union=False):
    t = ["null", avro_type] if nullable_union else avro_type
    s = {"type": "record", "name": "R", "fields": [{"name": "x", "type": t}]}
    return schemas.to_arrow(s).field("x")


@pytest.mark.parametrize(
    "avro_type,arrow_type",
    [
        ("boolean", pa.bool_()),
        ("int", pa.int32()),
        ("long", pa.int64()),
        ("float", pa.float32()),
        ("double", pa.float64()),
        ("bytes", pa.binary()),
        ("string", pa.string()),
        ({"type": "int", "logicalType": "date"}, pa.date32()),
        ({"type": "int", "logicalType": "time-millis"}, pa.time32("ms")),
        ({"type": "long", "logicalType": "time-micros"}, pa.time64("us")),
        ({"type": "long", "logicalType": "timestamp-millis"}, pa.timestamp("ms", tz="UTC")),
        ({"type": "long", "logicalType": "timestamp-micros"}, pa.timestamp("us", tz="UTC")),
        ({"type": "long", "logicalType": "local-timestamp-millis"}, pa.timestamp("ms")),
        ({"type": "long", "logicalType": "local-timestamp-micros"}, pa.timestamp("us")),
        ({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}, pa.decimal128(10, 2)),
        ({"type": "bytes", "logicalType": "decimal", "precision": 50, "scale": 2}, pa.decimal256(50, 2)),
        (
            {"type": "fixed", "name": "D", "size": 8, "logicalType": "decimal", "precision": 8, "scale": 1},
            pa.decimal128(8, 1),
        ),
        ({"type": "string", "logicalType": "uuid"}, pa.string()),
        ({"type": "long", "logicalType": "no-such-logical-type"}, pa.int64()),
        ({"type": "fixed", "name": "F", "size": 16}, pa.binary(16)),
        ({"type": "enum", "name": "E", "symbols": ["A", "B"]}, pa.dictionary(pa.int32(), pa.string())),
        ({"type": "array", "items": "int"}, pa.list_(pa.field("item", pa.int32(), nullable=False))),
        (
            {"type": "map", "values": "double"},
            pa.map_(pa.field("key", pa.string(), nullable=False), pa.field("value", pa.float64(), nullable=False)),
        ),
        (
            {"type": "record", "name": "S", "fields": [{"name": "a", "type": ["null", "int"]}]},
            pa.struct([pa.field("a", pa.int32())]),
        ),
    ],
)
def test_mapping_table(avro_type, arrow_type):
    """Each Avro type maps to the documented Arrow type; non-union fields are non-nullable."""
    f = _one(avro_type)
    assert f.type.equals(arrow_type)
    assert not f.nullable
    assert _one(avro_type, nullable_union=True).nullable


def test_metadata_keeps_what_arrow_cannot_say():
    """Docs, defaults, enum symbols, fixed names and uuid survive in field metadata."""
    s = {
        "type": "record",
        "name": "R",
        "namespace": "n",
        "doc": "top",
        "fields": [
            {
                "name": "e",
                "type": {"type": "enum", "name": "E", "symbols": ["A", "B"], "default": "A"},
                "doc": "an enum",
                "default": "B",
            },
            {"name": "u", "type": [{"type": "string", "logicalType": "uuid"}, "null"], "default": "x"},
        ],
    }
    a = schemas.to_arrow(s)
    e = a.field("e").metadata
    assert e[b"avro.doc"] == b"an enum" and e[b"avro.default"] == b'"B"'
    assert b'"symbols": ["A", "B"]' in e[b"avro.type"]
    assert a.field("u").metadata[b"avro.null"] == b"last"
    assert full_form(schemas.from_arrow(a)) == full_form(s)


def test_named_type_used_twice_round_trips_as_a_reference():
    """A record type referenced by two fields comes back defined once and referenced once."""
    s = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "a", "type": {"type": "record", "name": "P", "fields": [{"name": "x", "type": "int"}]}},
            {"name": "b", "type": ["null", "P"]},
        ],
    }
    back = schemas.from_arrow(schemas.to_arrow(s))
    assert back["fields"][1]["type"] == ["null", "P"]
    assert full_form(back) == full_form(s)


@pytest.mark.parametrize("name", schemas.names())
def test_shipped_schemas_round_trip(name):
    """from_arrow(to_arrow(s)) is s for every shipped record type."""
    s = schemas.load(name)
    assert full_form(schemas.from_arrow(schemas.to_arrow(s))) == full_form(s)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(avro_schemas())
def test_round_trip_generated_schemas(s):
    """from_arrow(to_arrow(s)) equals s for generated schemas, docs and defaults included."""
    parsed = schemas.parse(s)
    arrow = schemas.to_arrow(parsed)
    assert full_form(schemas.from_arrow(arrow)) == full_form(parsed)
    # without the schema-level metadata (e.g. a selected subset of columns) the field metadata
    # still gives the same canonical form
    plain = arrow.remove_metadata()
    full_name = expand(parsed)["name"]
    assert schemas.canonical_form(schemas.from_arrow(plain, name=full_name)) == schemas.canonical_form(parsed)


@pytest.mark.parametrize(
    "arrow_type,avro_type",
    [
        (pa.int8(), "int"),
        (pa.int16(), "int"),
        (pa.int32(), "int"),
        (pa.uint8(), "int"),
        (pa.uint16(), "int"),
        (pa.uint32(), "long"),
        (pa.int64(), "long"),
        (pa.float16(), "float"),
        (pa.float32(), "float"),
        (pa.float64(), "double"),
        (pa.string(), "string"),
        (pa.large_string(), "string"),
        (pa.binary(), "bytes"),
        (pa.large_binary(), "bytes"),
        (pa.bool_(), "boolean"),
        (pa.timestamp("ns", tz="UTC"), {"type": "long", "logicalType": "timestamp-micros"}),
        (pa.timestamp("us", tz="Europe/Paris"), {"type": "long", "logicalType": "timestamp-micros"}),
        (pa.timestamp("ms", tz="UTC"), {"type": "long", "logicalType": "timestamp-millis"}),
        (pa.timestamp("us"), {"type": "long", "logicalType": "local-timestamp-micros"}),
        (pa.date32(), {"type": "int", "logicalType": "date"}),
        (pa.decimal128(9, 2), {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}),
        (pa.list_(pa.int64()), {"type": "array", "items": ["null", "long"]}),
        (pa.large_list(pa.field("v", pa.string(), nullable=False)), {"type": "array", "items": "string"}),
        (pa.dictionary(pa.int8(), pa.string()), "string"),
        (pa.map_(pa.string(), pa.int32()), {"type": "map", "values": ["null", "int"]}),
    ],
)
def test_from_arrow_plain_types(arrow_type, avro_type):
    """Plain Arrow types map to the documented Avro types; non-nullable stays non-union."""
    s = schemas.from_arrow(pa.schema([pa.field("x", arrow_type, nullable=False)]), name="T")
    assert s["fields"][0]["type"] == avro_type


def test_from_arrow_nullable_and_struct_names():
    """Nullable columns become ["null", T] with default null; structs are records named after their path."""
    s = schemas.from_arrow(
        pa.schema(
            [
                pa.field("n", pa.int64()),
                pa.field("geo", pa.struct([pa.field("lat", pa.float64(), nullable=False)]), nullable=False),
            ]
        ),
        name="Row",
    )
    assert s["fields"][0] == {"name": "n", "type": ["null", "long"], "default": None}
    assert s["fields"][1]["type"]["name"] == "Row_geo"
    schemas.parse(s)  # valid Avro


@pytest.mark.parametrize(
    "arrow_type,message",
    [
        (pa.uint64(), "uint64 does not fit"),
        (pa.duration("s"), "no Avro equivalent"),
        (pa.map_(pa.int32(), pa.string()), "string keys"),
    ],
)
def test_from_arrow_refuses_what_avro_cannot_hold(arrow_type, message):
    """Types without an Avro equivalent raise SchemaError naming the column."""
    with pytest.raises(SchemaError, match=message):
        schemas.from_arrow(pa.schema([pa.field("col", arrow_type)]))


def test_from_arrow_refuses_invalid_field_names():
    """An Arrow column name that is not a valid Avro name is refused, not mangled."""
    with pytest.raises(SchemaError, match="not a valid Avro field name"):
        schemas.from_arrow(pa.schema([pa.field("my-col", pa.int32())]))
