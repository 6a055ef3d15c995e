"""Tests for schemas.avro: parsing, canonical form, fingerprints, shipped schemas."""

from __future__ import annotations

import json

import fastavro.schema
import pyarrow as pa
import pytest

import schemas
from logstore.errors import SchemaError
from schemas.avro import expand, full_form

M64 = 2**64

# (canonical JSON, fingerprint as a signed Java long) from the Avro project's schema-tests.txt
SPEC_VECTORS = [
    ('"null"', 7195948357588979594),
    ('"boolean"', -6970731678124411036),
    ('"int"', 8247732601305521295),
    ('"long"', -3434872931120570953),
    ('"float"', 5583340709985441680),
    ('"double"', -8181574048448539266),
    ('"bytes"', 5746618253357095269),
    ('"string"', -8142146995180207161),
    ("[]", -1241056759729112623),
    ('["int"]', -5232228896498058493),
    ('["int","boolean"]', 5392556393470105090),
]


@pytest.mark.parametrize("text,expected", SPEC_VECTORS)
def test_crc64_matches_the_avro_spec_vectors(text, expected):
    """CRC-64-AVRO of the spec's canonical strings equals the published fingerprints."""
    assert schemas.fingerprint(json.loads(text)) == expected % M64


@pytest.mark.parametrize("name", schemas.names())
def test_canonical_form_and_fingerprint_agree_with_fastavro(name):
    """Our canonical form and fingerprint equal fastavro's for every shipped schema."""
    s = schemas.load(name)
    pcf = schemas.canonical_form(s)
    assert pcf == fastavro.schema.to_parsing_canonical_form(s)
    # fastavro prints the 8 fingerprint bytes little-endian, as Avro single-object encoding stores them
    fa = fastavro.schema.fingerprint(pcf, "CRC-64-AVRO")
    assert schemas.fingerprint(s) == int.from_bytes(bytes.fromhex(fa), "little")


def test_canonical_form_strips_attributes_and_qualifies_names():
    """Docs, defaults, aliases and logical types are stripped; names become full names; repeats are references."""
    s = {
        "type": "record",
        "name": "R",
        "namespace": "a.b",
        "doc": "d",
        "aliases": ["Old"],
        "fields": [
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X"]}, "default": "X", "doc": "e"},
            {"name": "e2", "type": "E"},
            {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "f", "type": {"type": "fixed", "name": "F", "namespace": "c", "size": "04"}},
        ],
    }
    assert schemas.canonical_form(s) == (
        '{"name":"a.b.R","type":"record","fields":['
        '{"name":"e","type":{"name":"a.b.E","type":"enum","symbols":["X"]}},'
        '{"name":"e2","type":"a.b.E"},'
        '{"name":"t","type":"long"},'
        '{"name":"f","type":{"name":"c.F","type":"fixed","size":4}}]}'
    )


def test_fingerprint_ignores_docs_but_full_form_does_not():
    """Two schemas differing only in a doc share a fingerprint but not a full form."""
    a = {"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}]}
    b = {"type": "record", "name": "R", "fields": [{"name": "x", "type": "int", "doc": "an x"}]}
    assert schemas.fingerprint(a) == schemas.fingerprint(b)
    assert full_form(a) != full_form(b)


def test_parse_accepts_every_input_kind(tmp_path):
    """parse takes a dict, JSON text, a .avsc path (str or Path), a shipped name or a pyarrow.Schema."""
    d = schemas.load("metric")
    path = tmp_path / "m.avsc"
    path.write_text(json.dumps(d))
    for source in (d, json.dumps(d), path, str(path), "metric"):
        assert full_form(schemas.parse(source)) == full_form(d)
    from_arrow = schemas.parse(pa.schema([pa.field("x", pa.int64(), nullable=False)]), name="Thing")
    assert from_arrow == {"type": "record", "name": "Thing", "fields": [{"name": "x", "type": "long"}]}


def test_parse_normalizes_primitive_objects_and_drops_fastavro_keys():
    """{"type": "int"} becomes "int" and fastavro's private keys never leak into the schema."""
    s = schemas.parse({"type": "record", "name": "R", "fields": [{"name": "x", "type": {"type": "int"}}]})
    assert s == {"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}]}


@pytest.mark.parametrize(
    "bad,message",
    [
        ("{not json", "does not parse"),
        ("no_such_schema", "neither a shipped schema"),
        ('"int"', "expected an Avro record"),
        ({"type": "record", "name": "R", "fields": [{"name": "x", "type": "nope"}]}, "invalid Avro schema"),
        ({"type": "record", "name": "R", "fields": [{"name": "next", "type": ["null", "R"]}]}, "recursive type 'R'"),
        (
            {"type": "record", "name": "R", "fields": [{"name": "x", "type": ["int", "null"], "default": None}]},
            'put "null" first',
        ),
        (
            {"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}, {"name": "x", "type": "int"}]},
            "appears twice",
        ),
    ],
)
def test_parse_refuses_invalid_or_unmappable_schemas(bad, message):
    """Invalid Avro, non-records, bad union defaults and recursion raise SchemaError saying why."""
    with pytest.raises(SchemaError, match=None) as info:
        schemas.parse(bad)
    assert message in str(info.value)


def test_parse_missing_file_is_a_schema_error(tmp_path):
    """A .avsc path that does not exist names the path."""
    with pytest.raises(SchemaError, match="cannot read schema file"):
        schemas.parse(str(tmp_path / "missing.avsc"))


def test_shipped_schemas_are_documented_and_have_event_time():
    """Every shipped record type documents each field and has a timestamp-micros event_time."""
    assert schemas.names() == ["control", "decision", "metric", "model_input", "model_score", "outcome"]
    for name in schemas.names():
        s = schemas.load(name)
        assert s["namespace"] == "logstore.rendezvous"
        assert all(f.get("doc") for f in s["fields"]), name
        event_time = {f["name"]: f for f in s["fields"]}["event_time"]
        assert event_time["type"] == {"type": "long", "logicalType": "timestamp-micros"}


def test_shipped_field_names_that_replay_relies_on():
    """model_score keeps request_id, event_time, model_id, model_version, score, latency_ms, label."""
    fields = {f["name"] for f in schemas.load("model_score")["fields"]}
    assert {"request_id", "event_time", "model_id", "model_version", "score", "latency_ms", "label"} <= fields
    assert {f["name"] for f in schemas.load("outcome")["fields"]} >= {"request_id", "event_time", "label", "reward"}


def test_load_returns_a_fresh_copy():
    """Mutating a loaded schema does not change the next load."""
    s = schemas.load("metric")
    s["fields"].clear()
    assert schemas.load("metric")["fields"]


def test_expand_inlines_references_with_full_names():
    """A named type used twice expands to the same definition, with its full name."""
    tree = expand(
        {
            "type": "record",
            "name": "R",
            "namespace": "n",
            "fields": [
                {"name": "a", "type": {"type": "fixed", "name": "F", "size": 2}},
                {"name": "b", "type": ["null", "F"]},
            ],
        }
    )
    assert tree["fields"][0]["type"]["name"] == "n.F"
    assert tree["fields"][1]["type"][1] is tree["fields"][0]["type"]
