"""General Avro unions: the Arrow mapping (dense unions), the branch rules for Python values, the
fast and slow validation paths, Arrow input, defaults, resolution across versions, row codec,
Avro files, JSON lines and the Parquet form; a property test over generated union schemas."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from logstore.errors import RecordValidationError, SchemaError
from logstore.jsonvalues import json_default, json_rows, record_reader
from schemas import avrofile, rowcodec, unions
from schemas.avro import branch_name, expand, full_form
from schemas.validate import choose, first_error
from tests.schemas.avro_strategies import _Names, _type, values

UTC = dt.UTC
P = {"type": "record", "name": "P", "fields": [{"name": "x", "type": "long"}]}
Q = {"type": "record", "name": "Q", "fields": [{"name": "y", "type": ["null", "string"]}, {"name": "z", "type": "int"}]}
E = {"type": "enum", "name": "E", "symbols": ["A", "B"]}
F = {"type": "fixed", "name": "F", "size": 2}


def rec(*fields, name="R", namespace="n"):
    return {"type": "record", "name": name, "namespace": namespace, "fields": list(fields)}


def fld(name, t, **kw):
    return {"name": name, "type": t, **kw}


SCHEMA = schemas.parse(
    rec(
        fld("a", ["null", "string", "long"], default=None),
        fld("b", [P, Q]),
        fld("c", {"type": "array", "items": ["null", "P", E, "double"]}),
        fld("d", {"type": "map", "values": ["E", {"type": "array", "items": "string"}]}),
        fld("e", ["string", "long"], default="none"),
        fld("g", {"type": "record", "name": "S", "fields": [fld("u", ["null", "int", "string"]), fld("v", "int")]}),
        fld("h", ["null", "S"], default=None),
    )
)
ARROW = schemas.to_arrow(SCHEMA)
ROWS = [
    {
        "a": "x",
        "b": {"x": 1},
        "c": [None, {"x": 2}, "A", 1.5],
        "d": {"k": "B", "l": ["s"]},
        "e": 3,
        "g": {"u": 1, "v": 2},
    },
    {"a": 7, "b": {"z": 3}, "c": [], "d": {}, "g": {"v": 3}, "h": {"u": "w", "v": 1}},
    {"a": None, "b": {"y": "q", "z": 9}, "c": [3], "d": {"m": []}, "e": ("string", "s"), "g": {"u": "z", "v": 4}},
]


# --------------------------------------------------------------------------- mapping
def test_a_union_is_a_dense_union_with_one_child_per_branch_in_avro_order():
    a = ARROW.field("a")
    assert a.type == pa.dense_union(
        [pa.field("null", pa.null()), pa.field("string", pa.string(), False), pa.field("long", pa.int64(), False)],
        [0, 1, 2],
    )
    assert a.nullable and json.loads(a.metadata[b"avro.union"]) == ["null", "string", "long"]
    b = ARROW.field("b")
    assert not b.nullable and [f.name for f in b.type] == ["n.P", "n.Q"] and list(b.type.type_codes) == [0, 1]
    items = ARROW.field("c").type.value_field
    assert [f.name for f in items.type] == ["null", "n.P", "n.E", "double"] and items.nullable
    assert pa.types.is_dictionary(items.type.field(2).type)  # an enum branch is an enum, named by reference
    assert ARROW.field("h").type == ARROW.field("g").type  # ["null", S]: nullable S, as before


def test_one_non_null_branch_keeps_the_nullable_mapping():
    """["null", T], [T, "null"] and [T] are not unions in Arrow: existing logs read as before."""
    s = schemas.parse(rec(fld("x", ["null", "long"]), fld("y", ["long", "null"], default=1), fld("z", ["long"])))
    arrow = schemas.to_arrow(s)
    assert [f.type for f in arrow] == [pa.int64()] * 3
    assert [f.nullable for f in arrow] == [True, True, False]


def test_from_arrow_inverts_to_arrow_with_unions():
    assert full_form(schemas.from_arrow(ARROW)) == full_form(SCHEMA)


def test_from_arrow_takes_plain_arrow_unions():
    t = pa.dense_union([pa.field("0", pa.null()), pa.field("1", pa.string()), pa.field("2", pa.int32())], [5, 6, 7])
    s = schemas.from_arrow(pa.schema([pa.field("x", t)]), name="T")
    assert s["fields"] == [{"name": "x", "type": ["null", "string", "int"], "default": None}]


def test_a_union_counts_one_nesting_level():
    deep = "long"
    for _ in range(17):
        deep = ["null", "string", {"type": "array", "items": deep}]  # two levels each
    with pytest.raises(SchemaError, match="nested 33 levels deep"):
        schemas.parse(rec(fld("x", deep)))
    schemas.parse(rec(fld("x", deep[2]["items"])))  # 32 levels: fine


def test_union_branch_limits():
    many = [{"type": "enum", "name": f"E{i}", "symbols": ["A"]} for i in range(128)]
    with pytest.raises(SchemaError, match="at most 127"):
        schemas.parse(rec(fld("x", many)))


# --------------------------------------------------------------------------- branch rules
CHOICES = [
    (True, ["long", "boolean"], "boolean"),
    (5, ["null", "double", "long"], "long"),  # an int takes int/long first
    (5, ["null", "string", "double"], "double"),  # then a double
    (2**40, ["int", "long"], "long"),  # int out of range: long
    (7, ["int", "long"], "int"),  # ambiguity: the first in declaration order
    (1.5, ["long", "float", "double"], "float"),
    ("A", ["string", E], "string"),
    ("A", [E, "string"], "n.E"),
    ("C", [E, "string"], "string"),
    (b"ab", ["bytes", F], "bytes"),
    (b"ab", [F, "bytes"], "n.F"),
    (b"abc", [F, "bytes"], "bytes"),
    ({"x": 1}, [{"type": "map", "values": "long"}, P], "n.P"),  # a record fitting its keys first
    ({"w": 1}, [{"type": "map", "values": "long"}, P], "map"),
    ({"z": 1}, [P, Q], "n.Q"),
    ([1, 2], [{"type": "map", "values": "long"}, {"type": "array", "items": "long"}], "array"),
    ([("k", 1)], ["null", {"type": "map", "values": "long"}], "map"),  # pairs for a map
    (None, ["string", "null"], "null"),
    (
        dt.datetime(2026, 1, 1, tzinfo=UTC),
        ["null", "string", {"type": "long", "logicalType": "timestamp-micros"}],
        "long",
    ),
    (
        decimal.Decimal("1.5"),
        ["string", {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 1}],
        "bytes",
    ),
    (("long", 7), ["int", "long"], "long"),  # the explicit (branch, value) form
    ({"long": 7}, ["null", "string", "long"], "long"),  # Avro's JSON form
    ({"n.P": {"x": 1}}, ["null", P, "string"], "n.P"),
]


@pytest.mark.parametrize("value,union,branch", CHOICES)
def test_a_value_takes_its_branch_by_the_rules(value, union, branch):
    tree = expand(rec(fld("u", union)))["fields"][0]["type"]
    i, _, why = choose(value, tree, "u")
    assert why is None and branch_name(tree[i]) == branch


@pytest.mark.parametrize(
    "row,field,words",
    [
        ({**ROWS[0], "a": 1.5}, "a", ["no branch of union [null, string, long] takes float 1.5"]),
        ({**ROWS[0], "a": 2**70}, "a", ["tried long", "out of range"]),
        ({**ROWS[0], "b": {"x": 1, "w": 2}}, "b", ["tried n.P: b.w: unknown field 'w'", "n.Q"]),
        ({**ROWS[0], "c": [2.5, "Z"]}, "c[1]", ["no branch of union [null, record n.P, enum n.E, double] takes str"]),
        ({**ROWS[0], "e": None}, "e", ["null is not allowed", "no null branch"]),
        ({**ROWS[0], "d": {"k": 3}}, "d['k']", ["takes int 3"]),
        ({**ROWS[0], "g": {"u": 2.5, "v": 1}}, "g.u", ["takes float 2.5"]),
        ({**ROWS[0], "a": ("long", "x")}, "a", ["the value given for branch long"]),
    ],
)
def test_errors_name_the_record_the_field_path_and_the_branches_tried(row, field, words):
    with pytest.raises(RecordValidationError) as err:
        schemas.conform([ROWS[1], row], SCHEMA, ARROW)
    assert err.value.index == 1 and err.value.field == field
    for w in words:
        assert w in str(err.value)


def test_rows_build_the_union_columns_and_fill_defaults():
    batch = schemas.conform(ROWS, SCHEMA, ARROW)
    assert batch.schema == ARROW
    assert batch.column("a").type_codes.to_pylist() == [1, 2, 0]
    assert batch.column("e").to_pylist() == [3, "none", "s"]  # a missing field takes its default (branch 0)
    assert batch.column("b").to_pylist() == [{"x": 1}, {"y": None, "z": 3}, {"y": "q", "z": 9}]
    assert batch.column("c").to_pylist() == [[None, {"x": 2}, "A", 1.5], [], [3.0]]
    assert batch.column("h").to_pylist() == [None, {"u": "w", "v": 1}, None]
    assert first_error(ROWS, expand(SCHEMA)) is None  # the slow path agrees


def test_a_null_struct_over_a_union_without_null_branch():
    """Under a null record the union child holds a placeholder; the checks accept it."""
    s = schemas.parse(rec(fld("o", ["null", {"type": "record", "name": "O", "fields": [fld("u", ["int", "string"])]}])))
    arrow = schemas.to_arrow(s)
    batch = schemas.conform([{"o": None}, {"o": {"u": "x"}}], s, arrow)
    assert batch.column("o").to_pylist() == [None, {"u": "x"}]
    assert schemas.conform(pa.Table.from_batches([batch]), s, arrow).equals(batch)


# --------------------------------------------------------------------------- Arrow input
def test_arrow_input_of_the_same_schema_is_kept():
    batch = schemas.conform(ROWS, SCHEMA, ARROW)
    assert schemas.conform(pa.Table.from_batches([batch]), SCHEMA, ARROW).equals(batch)
    assert schemas.conform(batch.replace_schema_metadata(None), SCHEMA, ARROW).equals(batch)


def test_arrow_input_unions_plain_columns_and_the_parquet_form_convert():
    s = schemas.parse(
        rec(fld("a", ["null", "string", "long"]), fld("l", {"type": "array", "items": ["long", "string"]}))
    )
    arrow = schemas.to_arrow(s)
    want = schemas.conform([{"a": "x", "l": [1, "y"]}, {"a": 5, "l": []}, {"a": None, "l": ["z"]}], s, arrow)
    other = pa.dense_union([pa.field("long", pa.int32()), pa.field("string", pa.string())], [3, 9])
    a = pa.UnionArray.from_dense(
        pa.array([9, 3, 9], pa.int8()),
        pa.array([0, 0, 1], pa.int32()),
        [pa.array([5], pa.int32()), pa.array(["x", None])],
        ["long", "string"],
        [3, 9],
    )
    assert a.type == other
    sparse = pa.UnionArray.from_sparse(
        pa.array([1, 2, 0], pa.int8()),
        [pa.nulls(3), pa.array(["x", None, None]), pa.array([None, 5, None], pa.int64())],
        ["null", "string", "long"],
    )
    for column in (want.column("a"), sparse, unions.storable(want.column("a"))):
        got = schemas.conform(pa.table({"a": column, "l": want.column("l")}), s, arrow)
        assert got.equals(want), column.type
    plain = schemas.conform(
        pa.table({"a": pa.array(["x", None]), "l": pa.array([[1], []], pa.list_(pa.int32()))}), s, arrow
    )
    assert plain.column("a").type_codes.to_pylist() == [1, 0] and plain.column("l").to_pylist() == [[1], []]
    # a null in a non-null branch's child is a null: stored as the null branch
    got = schemas.conform(pa.table({"a": a, "l": want.column("l")}), s, arrow)
    assert got.column("a").to_pylist() == ["x", 5, None] and got.column("a").type_codes.to_pylist() == [1, 2, 0]


def test_arrow_input_without_a_null_branch_refuses_nulls():
    s = schemas.parse(rec(fld("a", ["string", "long"])))
    with pytest.raises(RecordValidationError, match="null is not allowed") as err:
        schemas.conform(pa.table({"a": pa.array(["x", None])}), s, schemas.to_arrow(s))
    assert err.value.index == 1 and err.value.field == "a"


# --------------------------------------------------------------------------- resolution
def _one(t, values_, reader):
    w = schemas.parse(rec(fld("f", t)))
    batch = schemas.conform([{"f": v} for v in values_], w, schemas.to_arrow(w))
    return schemas.resolve(batch, w, schemas.parse(rec(fld("f", reader)))).column(0)


def test_resolution_writer_union_into_reader_union_by_first_matching_branch():
    col = _one(["null", "string", "int"], ["a", 1, None], ["null", "long", "string", "double"])
    assert col.to_pylist() == ["a", 1, None] and col.type_codes.to_pylist() == [2, 1, 0]
    col = _one(
        ["string", P], ["s", {"x": 3}], ["null", {**P, "fields": P["fields"] + [fld("k", "int", default=7)]}, "string"]
    )
    assert col.to_pylist() == ["s", {"x": 3, "k": 7}] and col.type_codes.to_pylist() == [2, 1]


def test_resolution_plain_writer_into_a_union():
    col = _one(["null", "int"], [1, None], ["null", "string", "long"])
    assert col.to_pylist() == [1, None] and col.type_codes.to_pylist() == [2, 0]
    with pytest.raises(SchemaError, match="row 1 is null"):
        _one(["null", "int"], [1, None], ["string", "long"])


def test_resolution_union_writer_to_a_plain_reader_fails_only_for_values_of_other_branches():
    assert _one(["int", "long"], [1, ("long", 5)], "long").to_pylist() == [1, 5]
    assert _one(["int", "string"], [1, 2], "long").to_pylist() == [1, 2]
    with pytest.raises(SchemaError, match="row 1 holds a value of branch string"):
        _one(["int", "string"], [1, "x"], "long")
    assert _one(["null", "string", "int"], ["x", None], ["null", "string"]).to_pylist() == ["x", None]


def test_resolution_of_nested_unions_and_defaults():
    col = _one(
        {"type": "array", "items": ["string", "int"]},
        [["a", 1], []],
        {"type": "array", "items": ["null", "long", "string"]},
    )
    assert col.to_pylist() == [["a", 1], []]
    w = schemas.parse(rec(fld("x", "int")))
    r = schemas.parse(rec(fld("x", "int"), fld("u", ["string", "long"], default="d")))
    batch = schemas.conform([{"x": 1}], w, schemas.to_arrow(w))
    assert schemas.resolve(batch, w, r).to_pylist() == [{"x": 1, "u": "d"}]


# --------------------------------------------------------------------------- other forms
def test_avro_file_round_trip_keeps_branches(tmp_path):
    batch = schemas.conform(ROWS, SCHEMA, ARROW)
    avrofile.write(tmp_path / "u.avro", SCHEMA, [batch])
    _, table = avrofile.read(tmp_path / "u.avro")
    assert table.equals(pa.Table.from_batches([batch]))


def test_json_lines_round_trip_by_the_branch_rules():
    s = schemas.parse(
        rec(
            fld("a", ["null", "bytes", "long"]),
            fld("b", ["null", "string", "bytes"]),
            fld("t", ["null", {"type": "long", "logicalType": "timestamp-micros"}, "boolean"]),
            fld("m", [{"type": "map", "values": "long"}, {"type": "array", "items": "long"}]),
        )
    )
    arrow = schemas.to_arrow(s)
    rows = [
        {"a": b"hi", "b": "text", "t": dt.datetime(2026, 1, 1, tzinfo=UTC), "m": {}},
        {"a": 3, "b": None, "t": True, "m": []},
    ]
    batch = schemas.conform(rows, s, arrow)
    text = [json.dumps(r, default=json_default) for r in json_rows(batch)]
    assert json.loads(text[0]) == {"a": "aGk=", "b": "text", "t": "2026-01-01T00:00:00+00:00", "m": {}}
    decode = record_reader(arrow)
    back = schemas.conform([decode(json.loads(t)) for t in text], s, arrow)
    assert back.equals(batch)
    # bytes in a union with a string branch come back as the string (plain JSON cannot tell)
    assert decode({"b": "aGk="})["b"] == "aGk="
    assert decode({"b": {"bytes": "aGk="}})["b"] == ("bytes", b"hi")  # unless given in Avro's JSON form


def test_parquet_form_round_trips():
    batch = schemas.conform(ROWS, SCHEMA, ARROW)
    stored = unions.map_columns(batch, unions.storable)
    assert not any(unions.contains_union(t) for t in stored.schema.types)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_batches([stored]), buf)
    buf.seek(0)
    assert schemas.conform(pq.read_table(buf), SCHEMA, ARROW).equals(batch)


def test_row_codec_writes_the_chosen_branch_and_decodes_the_same_batch():
    s = schemas.parse(
        rec(
            fld("a", ["null", "string", "long", "double"]),
            fld("b", ["null", "int", {"type": "long", "logicalType": "timestamp-micros"}]),
        )
    )
    arrow = schemas.to_arrow(s)
    codec = rowcodec.RowCodec(s, arrow)
    rows = [{"a": 5, "b": 7}, {"a": 2.5, "b": dt.datetime(2026, 1, 1, tzinfo=UTC)}, {"a": "x"}]
    encoded = codec.encode(rows)
    assert encoded is not None
    assert encoded[0][0] == bytes([4, 10, 2, 14])  # branch 2 (long) 5, branch 1 (int) 7: zigzag varints
    decoded = codec.batch(codec.rows(b"".join(encoded[0]), 3))
    assert decoded.equals(schemas.conform(rows, s, arrow))
    # values the decoded form would put in another branch, and explicit forms, take the batch path
    assert codec.encode([{"a": ("long", 1)}]) is None
    assert codec.encode([{"b": dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)}]) is None  # 10**6 fits the int branch


# --------------------------------------------------------------------------- property
_FAMILY = {"int": "int", "long": "int", "float": "float", "double": "float"}


def _union(draw, names):
    branches, seen = (["null"] if draw(st.booleans()) else []), set()
    for _ in range(draw(st.integers(2, 4))):
        b = _type(draw, names, 1)
        family = _FAMILY.get(branch_name(b), branch_name(b))
        if family not in seen:  # one of int/long, float/double: an Avro file then reads back exactly
            seen.add(family)
            branches.append(b)
    for extra in ("string", "boolean"):
        if len(branches) - ("null" in branches) >= 2:
            break
        if extra not in seen:
            branches.append(extra)
    return branches


@st.composite
def union_schemas(draw):
    names = _Names()
    fields = []
    for i in range(draw(st.integers(1, 4))):
        u = _union(draw, names)
        where = draw(st.sampled_from(["field", "array", "map", "record"]))
        t = {
            "field": u,
            "array": {"type": "array", "items": u},
            "map": {"type": "map", "values": u},
            "record": {"type": "record", "name": names("Holder"), "fields": [fld("u", u), fld("n", "int")]},
        }[where]
        fields.append(fld(f"f{i}", t))
    s = schemas.parse(rec(*fields, name="Top", namespace=draw(st.sampled_from([None, "p.q"]))))
    return s, draw(st.lists(values(expand(s)), max_size=5))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(union_schemas())
def test_generated_union_schemas_and_values(tmp_path, case):
    """Every generated value is accepted (slow path agreeing), and the batch reads back the same from
    an Avro file, the Parquet form and (when the row codec takes the rows) Avro binary rows."""
    s, records = case
    arrow = schemas.to_arrow(s)
    assert full_form(schemas.from_arrow(arrow)) == full_form(s)
    assert first_error(records, expand(s)) is None
    batch = schemas.conform(records, s, arrow)
    table = pa.Table.from_batches([batch])
    avrofile.write(tmp_path / "g.avro", s, [batch])
    assert avrofile.read(tmp_path / "g.avro")[1].equals(table)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_batches([unions.map_columns(batch, unions.storable)]), buf)
    buf.seek(0)
    assert schemas.conform(pq.read_table(buf), s, arrow).equals(batch)
    codec = rowcodec.RowCodec(s, arrow)
    encoded = codec.encode(records) if codec.supported else None
    if encoded is not None:
        assert codec.batch(codec.rows(b"".join(encoded[0]), len(records))).equals(batch)
    assert schemas.conform(table, s, arrow).equals(batch)
    assert np.array_equal(batch.column(0).is_null(), table.column(0).is_null())
