"""Very wide schemas: every path of `schemas` runs once on a 20k-field record.

No timings are asserted (the machine is shared); the point is that each path completes, which the
quadratic versions (list scans per field) did only after seconds to minutes.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

import schemas
from logstore.errors import RecordValidationError
from schemas import Registry

N = 20_000
KINDS = ["string", "long", "double", ["null", "long"], "int", "boolean"]
VALUES = {"string": "x", "long": 1, "double": 1.5, "int": 2, "boolean": True}


def wide(n=N, extra=()):
    fields = []
    for i in range(n):
        t = KINDS[i % len(KINDS)]
        f = {"name": f"f{i}", "type": t}
        if isinstance(t, list):
            f["default"] = None
        fields.append(f)
    return {"type": "record", "name": "Wide", "fields": fields + list(extra)}


def row(n=N):
    return {
        f"f{i}": (None if isinstance(KINDS[i % len(KINDS)], list) else VALUES[KINDS[i % len(KINDS)]]) for i in range(n)
    }


@pytest.fixture(scope="module")
def v1():
    s = schemas.parse(wide())
    return s, schemas.to_arrow(s)


def test_wide_schema_converts_conforms_and_round_trips(v1):
    """A 20k-field schema converts to Arrow and back, and 10 rows conform (rows and Arrow input,
    in schema order and reversed)."""
    s, arrow = v1
    assert len(arrow) == N and schemas.parse(schemas.from_arrow(arrow)) == s
    batch = schemas.conform([row() for _ in range(10)], s, arrow)
    assert batch.num_rows == 10 and batch.schema.equals(arrow)
    assert schemas.conform(batch, s, arrow).num_columns == N
    reversed_batch = pa.RecordBatch.from_arrays(batch.columns[::-1], names=batch.schema.names[::-1])
    assert schemas.conform(reversed_batch, s, arrow).equals(batch)
    assert schemas.conform(reversed_batch, s, arrow, keep_dictionaries=True).equals(batch)


def test_wide_schema_bad_row_is_found(v1):
    """The slow path names the bad record and field of a 20k-field batch."""
    s, arrow = v1
    rows = [row() for _ in range(10)]
    rows[7]["zzz"] = 1
    with pytest.raises(RecordValidationError) as info:
        schemas.conform(rows, s, arrow)
    assert info.value.index == 7 and info.value.field == "zzz"
    rows = [row() for _ in range(10)]
    rows[5][f"f{N - 5}"] = "nope"  # a nullable long field, near the end of the record
    with pytest.raises(RecordValidationError) as info:
        schemas.conform(rows, s, arrow)
    assert info.value.index == 5 and info.value.field == f"f{N - 5}"


def test_wide_schema_resolves_and_checks_compatibility(v1):
    """Data of a 20k-field version resolves to the next version (one field added with a default),
    which is BACKWARD compatible; a removed default is reported once."""
    s, arrow = v1
    s2 = schemas.parse(wide(extra=[{"name": "added", "type": "long", "default": 5}]))
    batch = schemas.conform([row() for _ in range(10)], s, arrow)
    out = schemas.resolve(batch, s, s2)
    assert out.num_columns == N + 1 and out.column(N).to_pylist() == [5] * 10
    assert schemas.check_compatibility(s2, [s], "FULL") == []
    broken = wide(extra=[{"name": "added", "type": "long"}])
    assert schemas.check_compatibility(broken, [s], "BACKWARD") == [
        "field 'added' added without a default (BACKWARD: old records have no value for it)"
    ]


def test_wide_schema_registers_and_reloads(tmp_path, v1):
    """A 20k-field schema is registered, then a compatible successor; both load back."""
    s, _ = v1
    reg = Registry(tmp_path)
    reg.register(s)
    reg.register(wide(extra=[{"name": "added", "type": ["null", "long"], "default": None}]))
    assert [len(v.schema["fields"]) for v in Registry(tmp_path).versions()] == [N, N + 1]


def test_wide_enum_compatibility():
    """Removed symbols of a 20k-symbol enum are each reported (a set lookup, not a list scan)."""
    old = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "e", "type": {"type": "enum", "name": "E", "symbols": [f"S{i}" for i in range(N)]}}],
    }
    new = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "e", "type": {"type": "enum", "name": "E", "symbols": [f"S{i}" for i in range(2, N)]}}],
    }
    reasons = schemas.check_compatibility(new, [old], "BACKWARD")
    assert len(reasons) == 2 and "'S0'" in reasons[0] and "'S1'" in reasons[1]
