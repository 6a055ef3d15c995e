"""Tests for schemas.compat: a table of evolution cases under every compatibility mode."""

from __future__ import annotations

import pytest

import schemas
from logstore.errors import SchemaError


def rec(*fields, name="R"):
    return {"type": "record", "name": name, "fields": list(fields)}


def f(name, t, **kw):
    return {"name": name, "type": t, **kw}


def enum(*symbols, **kw):
    return {"type": "enum", "name": "E", "symbols": list(symbols), **kw}


BASE = rec(f("id", "string"), f("n", "int"))

# (case, previous versions oldest first, new, mode, expected reasons)
CASES = [
    ("add field with default", [BASE], rec(f("id", "string"), f("n", "int"), f("x", "long", default=0)), "FULL", []),
    (
        "add nullable field with null default",
        [BASE],
        rec(f("id", "string"), f("n", "int"), f("x", ["null", "long"], default=None)),
        "FULL_TRANSITIVE",
        [],
    ),
    (
        "add field without default, BACKWARD",
        [BASE],
        rec(f("id", "string"), f("n", "int"), f("x", "long")),
        "BACKWARD",
        ["field 'x' added without a default (BACKWARD: old records have no value for it)"],
    ),
    (
        "add field without default, FORWARD",
        [BASE],
        rec(f("id", "string"), f("n", "int"), f("x", "long")),
        "FORWARD",
        [],
    ),
    ("remove field without default, BACKWARD", [BASE], rec(f("id", "string")), "BACKWARD", []),
    (
        "remove field without default, FORWARD",
        [BASE],
        rec(f("id", "string")),
        "FORWARD",
        [
            "field 'n' removed, and the previous schema has no default for it "
            "(FORWARD: the previous schema cannot read new records)"
        ],
    ),
    (
        "remove field with default, FULL",
        [rec(f("id", "string"), f("n", "int", default=1))],
        rec(f("id", "string")),
        "FULL",
        [],
    ),
    ("promote int to long, BACKWARD", [BASE], rec(f("id", "string"), f("n", "long")), "BACKWARD", []),
    (
        "promote int to long, FORWARD",
        [BASE],
        rec(f("id", "string"), f("n", "long")),
        "FORWARD",
        ["field 'n': type changed from int to long (FORWARD: the previous schema cannot read new long values as int)"],
    ),
    (
        "promote int to double, FULL",
        [BASE],
        rec(f("id", "string"), f("n", "double")),
        "FULL",
        [
            "field 'n': type changed from int to double "
            "(FORWARD: the previous schema cannot read new double values as int)"
        ],
    ),
    (
        "narrow long to int",
        [rec(f("n", "long"))],
        rec(f("n", "int")),
        "BACKWARD",
        ["field 'n': type changed from long to int (BACKWARD: the new schema cannot read old long values as int)"],
    ),
    ("float to double", [rec(f("v", "float"))], rec(f("v", "double")), "BACKWARD", []),
    ("string to bytes and back", [rec(f("v", "string"))], rec(f("v", "bytes")), "FULL", []),
    (
        "string to int",
        [rec(f("v", "string"))],
        rec(f("v", "int")),
        "BACKWARD",
        ["field 'v': type changed from string to int (BACKWARD: the new schema cannot read old string values as int)"],
    ),
    ("enum symbol added, BACKWARD", [rec(f("e", enum("A", "B")))], rec(f("e", enum("A", "B", "C"))), "BACKWARD", []),
    (
        "enum symbol added, FORWARD",
        [rec(f("e", enum("A", "B")))],
        rec(f("e", enum("A", "B", "C"))),
        "FORWARD",
        [
            "field 'e': enum symbol 'C' added and the previous enum has no default "
            "(FORWARD: the previous schema cannot read new records holding 'C')"
        ],
    ),
    (
        "enum symbol added, FORWARD, previous enum has a default",
        [rec(f("e", enum("A", "B", default="A")))],
        rec(f("e", enum("A", "B", "C", default="A"))),
        "FULL",
        [],
    ),
    (
        "enum symbol removed",
        [rec(f("e", enum("A", "B")))],
        rec(f("e", enum("A"))),
        "BACKWARD",
        [
            "field 'e': enum symbol 'B' removed and the enum has no default "
            "(BACKWARD: old records holding 'B' cannot be read)"
        ],
    ),
    (
        "enum symbol removed with reader default",
        [rec(f("e", enum("A", "B")))],
        rec(f("e", enum("A", default="A"))),
        "BACKWARD",
        [],
    ),
    (
        "enum renamed",
        [rec(f("e", enum("A")))],
        rec(f("e", {"type": "enum", "name": "G", "symbols": ["A"]})),
        "BACKWARD",
        ["field 'e': enum name changed from E to G; add 'E' to the new enum's aliases (BACKWARD)"],
    ),
    (
        "enum renamed with alias",
        [rec(f("e", enum("A")))],
        rec(f("e", {"type": "enum", "name": "G", "symbols": ["A"], "aliases": ["E"]})),
        "BACKWARD",
        [],
    ),
    (
        "nested record field added without default",
        [rec(f("p", rec(f("a", "int"), name="P")))],
        rec(f("p", rec(f("a", "int"), f("b", "string"), name="P"))),
        "BACKWARD",
        ["field 'p.b' added without a default (BACKWARD: old records have no value for it)"],
    ),
    (
        "nested record promotion",
        [rec(f("p", rec(f("a", "int"), name="P")))],
        rec(f("p", rec(f("a", "long"), name="P"))),
        "BACKWARD",
        [],
    ),
    (
        "record renamed",
        [rec(f("p", rec(f("a", "int"), name="P")))],
        rec(f("p", rec(f("a", "int"), name="Q"))),
        "BACKWARD",
        ["field 'p': record name changed from P to Q; add 'P' to the new record's aliases (BACKWARD)"],
    ),
    ("field renamed with alias", [BASE], rec(f("id", "string"), f("count", "int", aliases=["n"])), "BACKWARD", []),
    (
        "field renamed without alias",
        [BASE],
        rec(f("id", "string"), f("count", "int")),
        "BACKWARD",
        ["field 'count' added without a default (BACKWARD: old records have no value for it)"],
    ),
    ("make nullable", [BASE], rec(f("id", "string"), f("n", ["null", "int"], default=None)), "BACKWARD", []),
    (
        "make nullable, FORWARD",
        [BASE],
        rec(f("id", "string"), f("n", ["null", "int"], default=None)),
        "FORWARD",
        ["field 'n': type changed from int to [null, int]; new records may hold null, which int cannot (FORWARD)"],
    ),
    (
        "make non-nullable",
        [rec(f("n", ["null", "int"], default=None))],
        rec(f("n", "int")),
        "BACKWARD",
        ["field 'n': type changed from [null, int] to int; old records may hold null, which int cannot (BACKWARD)"],
    ),
    (
        "nullable with promotion",
        [rec(f("n", ["null", "int"], default=None))],
        rec(f("n", ["null", "long"], default=None)),
        "BACKWARD",
        [],
    ),
    (
        "nullable type change",
        [rec(f("n", ["null", "int"], default=None))],
        rec(f("n", ["null", "string"], default=None)),
        "BACKWARD",
        [
            "field 'n': type changed from [null, int] to [null, string]; old int values have no matching branch in "
            "[null, string] (BACKWARD)"
        ],
    ),
    (
        "array item promotion",
        [rec(f("a", {"type": "array", "items": "int"}))],
        rec(f("a", {"type": "array", "items": "long"})),
        "BACKWARD",
        [],
    ),
    (
        "array item narrowing",
        [rec(f("a", {"type": "array", "items": "long"}))],
        rec(f("a", {"type": "array", "items": "int"})),
        "BACKWARD",
        ["field 'a[]': type changed from long to int (BACKWARD: the new schema cannot read old long values as int)"],
    ),
    (
        "map value change",
        [rec(f("m", {"type": "map", "values": "string"}))],
        rec(f("m", {"type": "map", "values": "double"})),
        "BACKWARD",
        [
            "field 'm{}': type changed from string to double "
            "(BACKWARD: the new schema cannot read old string values as double)"
        ],
    ),
    (
        "array to map",
        [rec(f("a", {"type": "array", "items": "int"}))],
        rec(f("a", {"type": "map", "values": "int"})),
        "BACKWARD",
        [
            "field 'a': type changed from array<int> to map<int> "
            "(BACKWARD: the new schema cannot read old array<int> values as map<int>)"
        ],
    ),
    (
        "fixed size change",
        [rec(f("h", {"type": "fixed", "name": "H", "size": 16}))],
        rec(f("h", {"type": "fixed", "name": "H", "size": 32})),
        "BACKWARD",
        ["field 'h': fixed size changed from 16 to 32 (BACKWARD)"],
    ),
    (
        "timestamp millis to micros",
        [rec(f("t", {"type": "long", "logicalType": "timestamp-millis"}))],
        rec(f("t", {"type": "long", "logicalType": "timestamp-micros"})),
        "BACKWARD",
        [],
    ),
    (
        "long becomes a timestamp",
        [rec(f("t", "long"))],
        rec(f("t", {"type": "long", "logicalType": "timestamp-micros"})),
        "BACKWARD",
        [
            "field 't': logical type changed from none to timestamp-micros; "
            "stored values would change meaning (BACKWARD)"
        ],
    ),
    (
        "decimal widened",
        [rec(f("d", {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}))],
        rec(f("d", {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2})),
        "BACKWARD",
        [],
    ),
    (
        "decimal rescaled",
        [rec(f("d", {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}))],
        rec(f("d", {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 3})),
        "BACKWARD",
        [
            "field 'd': logical type changed from decimal(5, 2) to decimal(5, 3); "
            "stored values would change meaning (BACKWARD)"
        ],
    ),
    ("NONE accepts anything", [BASE], rec(f("z", "bytes")), "NONE", []),
    # transitive vs non-transitive: v1 {id}, v2 {id, n default}, v3 {id, n no default}
    (
        "non-transitive checks the latest only",
        [rec(f("id", "string")), rec(f("id", "string"), f("n", "int", default=0))],
        rec(f("id", "string"), f("n", "int")),
        "BACKWARD",
        [],
    ),
    (
        "transitive checks every previous version",
        [rec(f("id", "string")), rec(f("id", "string"), f("n", "int", default=0))],
        rec(f("id", "string"), f("n", "int")),
        "BACKWARD_TRANSITIVE",
        ["against version 1: field 'n' added without a default (BACKWARD: old records have no value for it)"],
    ),
    (
        "forward transitive",
        [rec(f("id", "string"), f("n", "int")), rec(f("id", "string"), f("n", "int", default=0))],
        rec(f("id", "string")),
        "FORWARD_TRANSITIVE",
        [
            "against version 1: field 'n' removed, and the previous schema has no default for it "
            "(FORWARD: the previous schema cannot read new records)"
        ],
    ),
    ("no previous version", [], rec(f("x", "int")), "FULL_TRANSITIVE", []),
]


@pytest.mark.parametrize("case,previous,new,mode,expected", CASES, ids=[c[0] for c in CASES])
def test_compatibility_table(case, previous, new, mode, expected):
    """Each evolution case gets the expected verdict and reason text."""
    assert schemas.check_compatibility(new, previous, mode) == expected


def test_full_reports_both_directions():
    """FULL lists the BACKWARD and the FORWARD problems of one change."""
    reasons = schemas.check_compatibility(rec(f("id", "string"), f("x", "int")), [BASE], "FULL")
    assert reasons == [
        "field 'x' added without a default (BACKWARD: old records have no value for it)",
        "field 'n' removed, and the previous schema has no default for it "
        "(FORWARD: the previous schema cannot read new records)",
    ]


def test_every_reason_is_listed():
    """Several breaking changes in one schema give one reason each."""
    reasons = schemas.check_compatibility(rec(f("id", "int"), f("n", "int"), f("a", "int"), f("b", "int")), [BASE])
    assert len(reasons) == 3


def test_mode_is_case_insensitive_and_validated():
    """Modes are Confluent's names in any case; an unknown mode is a SchemaError."""
    assert schemas.check_compatibility(BASE, [BASE], "backward") == []
    with pytest.raises(SchemaError, match="unknown compatibility mode"):
        schemas.check_compatibility(BASE, [BASE], "SIDEWAYS")


def test_shipped_schemas_are_compatible_with_themselves():
    """A schema is FULL_TRANSITIVE-compatible with itself."""
    for name in schemas.names():
        s = schemas.load(name)
        assert schemas.check_compatibility(s, [s, s], "FULL_TRANSITIVE") == []
