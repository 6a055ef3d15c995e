"""Union compatibility verdicts: the cases of Confluent Schema Registry's AvroCompatibilityTest and of
Apache Avro's TestSchemaCompatibility (compatible pairs), TestSchemaCompatibilityMissingUnionBranch
and TestSchemaCompatibilityTypeMismatch (the union pairs), written as data with their verdicts.
The checks answer the Avro question only: a recursive or empty union type Arrow could not store
gets the same verdict as any other."""

from __future__ import annotations

import pytest

import schemas
from logstore.errors import SchemaError


def rec(t, name="R", **kw):
    """A record whose one field `f` has type `t` (the Java cases compare bare types)."""
    return {"type": "record", "name": name, "fields": [{"name": "f", "type": t, **kw}]}


def record(name, *fields):
    return {"type": "record", "name": name, "fields": [{"name": n, "type": t, **kw} for n, t, kw in fields]}


ENUM_AB = {"type": "enum", "name": "Enum1", "symbols": ["A", "B"]}
FIXED_4 = {"type": "fixed", "name": "Fixed", "size": 4}
RECORD1_INT = record("Record1", ("field1", "int", {}))
RECORD2_INT = record("Record2", ("field1", "int", {}))
INT_ARRAY = {"type": "array", "items": "int"}
INT_MAP = {"type": "map", "values": "int"}

# Confluent AvroCompatibilityTest (testBasicBackwardsCompatibility): (new, previous, BACKWARD compatible)
CONFLUENT = [
    ("evolving a field type to a union", rec(["null", "string"]), rec("string"), True),
    ("removing a type from a union", rec("string"), rec(["null", "string"]), False),
    ("adding a new type in union", rec(["null", "string", "int"]), rec(["null", "string"]), True),
    ("removing a type from a union (3 -> 2)", rec(["null", "string"]), rec(["null", "string", "int"]), False),
]

# Avro TestSchemaCompatibility, the union part of COMPATIBLE_READER_WRITER_TEST_CASES: (reader, writer)
COMPATIBLE = [
    ([], []),
    (["float"], []),
    (["float"], ["int"]),
    (["float"], ["long"]),
    (["float"], ["int", "long"]),
    (["int"], ["int"]),
    (["int", "string"], ["string", "int"]),
    (["int"], []),
    (["long"], []),
    (["long"], ["int"]),
    (["double"], ["int"]),
    (["double"], ["long"]),
    (["double"], ["float"]),
    (["string"], []),
    (["string"], ["bytes"]),
    (["bytes"], []),
    (["bytes"], ["string"]),
    (["double"], ["int", "float"]),
    # readers capable of reading all branches of a union
    ("float", ["int", "float"]),
    ("long", ["int", "long"]),
    ("double", ["int", "float"]),
    ("double", ["int", "long", "float", "double"]),
    # singleton unions
    ("float", ["float"]),
    (["int"], "int"),
    ("int", ["int"]),
    # beyond the Java table: a plain writer read by a union holding its type or a promotion
    (["null", "string", "long"], "int"),
    (["null", RECORD1_INT, "string"], RECORD1_INT),
    ({"type": "array", "items": ["null", "long"]}, {"type": "array", "items": "int"}),
]

# Avro TestSchemaCompatibilityMissingUnionBranch: (reader, writer, the writer branches missing)
MISSING_BRANCH = [
    (["int"], ["int", "string"], ["string"]),
    (["string"], ["int", "string"], ["int"]),
    (["int"], ["int", RECORD1_INT], ["record Record1"]),
    (["int"], ["int", RECORD2_INT], ["record Record2"]),
    (["int", RECORD1_INT], ["int", RECORD2_INT], ["record Record2"]),
    (["int"], ["int", ENUM_AB], ["enum Enum1"]),
    (["int"], ["int", FIXED_4], ["fixed Fixed"]),
    (["int"], ["int", "boolean"], ["boolean"]),
    (["int"], ["long"], ["long"]),
    (["int"], ["float"], ["float"]),
    (["int"], ["double"], ["double"]),
    (["int"], ["bytes"], ["bytes"]),
    (["int"], ["int", INT_ARRAY], ["array<int>"]),
    (["int"], ["int", INT_MAP], ["map<int>"]),
    (["int"], ["int", "null"], ["null"]),
    (["int"], ["int", "long", "float", "double"], ["long", "float", "double"]),
]

# Avro TestSchemaCompatibilityTypeMismatch, the union pairs: (reader, writer) incompatible
TYPE_MISMATCH = [
    ("float", ["int", "long", "float", "double"]),
    ("long", ["int", "float"]),
    ("int", ["int", "float"]),
]


@pytest.mark.parametrize("case,new,previous,ok", CONFLUENT, ids=[c[0] for c in CONFLUENT])
def test_confluent_union_verdicts(case, new, previous, ok):
    """Adding a branch (or making a type a union holding it) is BACKWARD compatible, removing one is not."""
    reasons = schemas.check_compatibility(new, [previous], "BACKWARD")
    assert (reasons == []) is ok, reasons
    # the same pair read the other way round: FORWARD of the swapped versions agrees
    assert (schemas.check_compatibility(previous, [new], "FORWARD") == []) is ok


@pytest.mark.parametrize("reader,writer", COMPATIBLE)
def test_avro_compatible_union_pairs(reader, writer):
    assert schemas.check_compatibility(rec(reader), [rec(writer)], "BACKWARD") == []
    assert schemas.check_compatibility(rec(writer), [rec(reader)], "FORWARD") == []


@pytest.mark.parametrize("reader,writer,missing", MISSING_BRANCH)
def test_avro_missing_union_branch(reader, writer, missing):
    """Each writer branch the reader union lacks is named, and only those."""
    reasons = schemas.check_compatibility(rec(reader), [rec(writer)], "BACKWARD")
    assert len(reasons) == len(missing), reasons
    for branch, reason in zip(missing, reasons):
        assert f"old {branch} values have no matching branch" in reason or (
            branch == "null" and "may hold null" in reason
        ), reason


@pytest.mark.parametrize("reader,writer", TYPE_MISMATCH)
def test_avro_union_type_mismatch(reader, writer):
    """A plain reader of a writer union must read every branch."""
    reasons = schemas.check_compatibility(rec(reader), [rec(writer)], "BACKWARD")
    assert reasons and all("type changed" in r for r in reasons), reasons


def test_union_in_a_record_field_of_a_union():
    """Avro's A_DINT_B_DINT_UNION_RECORD1 reading A_DINT_B_DINT_STRING_UNION_RECORD1: the nested
    union lacks the string branch (and the reverse is compatible)."""
    narrow = record("Record1", ("a", "int", {"default": 0}), ("b", ["int"], {"default": 0}))
    wide = record("Record1", ("a", "int", {"default": 0}), ("b", ["int", "string"], {"default": 0}))
    reasons = schemas.check_compatibility(narrow, [wide], "BACKWARD")
    assert len(reasons) == 1 and "field 'b'" in reasons[0] and "old string values" in reasons[0]
    assert schemas.check_compatibility(wide, [narrow], "BACKWARD") == []


def test_recursive_types_are_checked_as_avro_has_them():
    """Avro's INT_LIST_RECORD / LONG_LIST_RECORD: recursion Arrow cannot store still gets a verdict."""

    def linked(t):
        return record("List", ("head", t, {}), ("tail", ["null", "List"], {"default": None}))

    assert schemas.check_compatibility(linked("long"), [linked("int")], "BACKWARD") == []
    reasons = schemas.check_compatibility(linked("int"), [linked("long")], "BACKWARD")
    assert len(reasons) == 1 and "field 'head'" in reasons[0]
    with pytest.raises(SchemaError, match="recursive type"):
        schemas.parse(linked("int"))  # the log itself cannot store it


def test_union_modes_transitive():
    """string -> [null, string] -> [null, string, int]: BACKWARD_TRANSITIVE holds, FORWARD does not."""
    versions = [rec("string"), rec(["null", "string"])]
    new = rec(["null", "string", "int"])
    assert schemas.check_compatibility(new, versions, "BACKWARD_TRANSITIVE") == []
    forward = schemas.check_compatibility(new, versions, "FORWARD_TRANSITIVE")
    assert any("against version 1" in r for r in forward) and any("against version 2" in r for r in forward)
