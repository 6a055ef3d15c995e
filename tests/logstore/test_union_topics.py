"""Topics with Avro unions end to end: batches and one-record commits (row frames) read back as the
same dense union columns, a column subset, schema evolution across union versions, SQL over the
view (DuckDB's UNION: union_tag, union_extract), and export/import through Avro, JSON lines and
Parquet back to identical records."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

import logstore
from logstore.frame import HEADER_SIZE, parse_header
from logstore.interchange import export_topic, import_file
from logstore.sql import query
from schemas import unions

P = {"type": "record", "name": "Point", "fields": [{"name": "x", "type": "long"}, {"name": "y", "type": "long"}]}
SCHEMA = {
    "type": "record",
    "name": "Event",
    "namespace": "ev",
    "fields": [
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "id", "type": "string"},
        {"name": "value", "type": ["null", "string", "long", "double"], "default": None},
        {
            "name": "shape",
            "type": [
                P,
                {"type": "record", "name": "Label", "fields": [{"name": "text", "type": "string"}]},
                {"type": "enum", "name": "Kind", "symbols": ["EMPTY", "FULL"]},
            ],
        },
        {"name": "points", "type": {"type": "array", "items": ["null", "Point", "string"]}},
        {"name": "tags", "type": {"type": "map", "values": ["boolean", "long"]}},
    ],
}
T0 = datetime(2026, 3, 1, tzinfo=UTC)
ROWS = [
    {
        "event_time": T0,
        "id": "a",
        "value": "high",
        "shape": {"x": 1, "y": 2},
        "points": [None, {"x": 0, "y": 0}],
        "tags": {"ok": True},
    },
    {"event_time": T0, "id": "b", "value": 7, "shape": {"text": "hi"}, "points": ["origin"], "tags": {"n": 3}},
    {"event_time": T0, "id": "c", "value": 0.5, "shape": "FULL", "points": [], "tags": {}},
    {"event_time": T0, "id": "d", "shape": "EMPTY", "points": [], "tags": {"n": -1, "ok": False}},
]


def _frames(lg: logstore.Log, topic: str) -> list:
    out = []
    for seg in sorted((lg.path / "topics" / topic / "00000").glob("*.seg")):
        data = seg.read_bytes()
        pos = 0
        while pos < len(data):
            h = parse_header(data[pos : pos + HEADER_SIZE])
            assert not isinstance(h, str), h
            out.append(h)
            pos += h.size
    return out


def _user(table: pa.Table) -> pa.Table:
    return table.drop_columns([n for n in table.schema.names if n.startswith("_")])


@pytest.fixture
def lg(tmp_path):
    log = logstore.open(tmp_path / "log")
    log.create_topic("events", schema=SCHEMA)
    with log.writer("events", linger_ms=None) as w:
        for r in ROWS:  # one-record commits: row frames
            w.append(r)
            w.flush()
        w.append_batch(ROWS * 20)  # an Arrow frame
    yield log
    log.close()


def test_row_frames_and_arrow_frames_read_back_the_same_union_columns(lg):
    assert [h.rows for h in _frames(lg, "events")] == [True] * len(ROWS) + [False]
    table = lg.read("events")
    assert table.schema.field("value").type == pa.dense_union(
        [pa.field("null", pa.null()), pa.field("string", pa.string(), False)]
        + [pa.field("long", pa.int64(), False), pa.field("double", pa.float64(), False)],
        [0, 1, 2, 3],
    )
    user = _user(table)
    alone, batch = user.slice(0, len(ROWS)), user.slice(len(ROWS), len(ROWS))
    assert alone.to_pylist() == batch.to_pylist()
    for name in ("value", "shape"):
        a, b = alone.column(name).combine_chunks(), batch.column(name).combine_chunks()
        assert a.type_codes.to_pylist() == b.type_codes.to_pylist() and a.to_pylist() == b.to_pylist()
    assert alone.column("value").to_pylist() == ["high", 7, 0.5, None]
    assert alone.column("shape").to_pylist() == [{"x": 1, "y": 2}, {"text": "hi"}, "FULL", "EMPTY"]
    assert alone.column("tags").to_pylist()[3] == [("n", -1), ("ok", False)]
    part = lg.read("events", columns=["shape", "id"])
    assert part.column("shape").to_pylist() == table.column("shape").to_pylist()


def test_an_evolved_union_reads_old_frames(lg):
    """v2 adds a branch to `value` (BACKWARD compatible) and a union field with a default."""
    v2 = dict(SCHEMA)
    v2["fields"] = [
        *SCHEMA["fields"][:2],
        {"name": "value", "type": ["null", "string", "long", "double", "boolean"], "default": None},
        *SCHEMA["fields"][3:],
        {"name": "unit", "type": ["string", "null"], "default": "m"},
    ]
    assert lg.register_schema("events", v2) == 2
    with lg.writer("events", linger_ms=None) as w:
        w.append({**ROWS[0], "value": True, "unit": None})
        w.flush()
    table = lg.read("events")
    assert table.column("value").to_pylist()[: len(ROWS)] == ["high", 7, 0.5, None]
    assert table.column("value").to_pylist()[-1] is True
    assert table.column("unit").to_pylist()[:2] == ["m", "m"] and table.column("unit").to_pylist()[-1] is None
    narrowing = dict(v2, fields=[*v2["fields"][:2], {"name": "value", "type": ["null", "string"]}, *v2["fields"][3:]])
    with pytest.raises(logstore.SchemaIncompatibleError, match="no matching branch"):
        lg.register_schema("events", narrowing)


def test_sql_selects_and_filters_on_union_fields(lg):
    tags = query(
        lg,
        "SELECT id, union_tag(value) AS tag, union_extract(value, 'long') AS n FROM events "
        "WHERE _offset < 4 ORDER BY _offset",
    )
    assert tags.to_pylist() == [
        {"id": "a", "tag": "string", "n": None},
        {"id": "b", "tag": "long", "n": 7},
        {"id": "c", "tag": "double", "n": None},
        {"id": "d", "tag": None, "n": None},  # the null branch: a NULL union
    ]
    counted = query(
        lg,
        "SELECT union_tag(shape) AS kind, count(*) AS n FROM events WHERE union_extract(value, 'long') > 1 "
        "OR union_tag(shape) = 'ev.Kind' GROUP BY kind ORDER BY kind",
    )
    # union_tag is a DuckDB ENUM of the branches: it orders in branch order
    assert counted.to_pylist() == [{"kind": "ev.Label", "n": 21}, {"kind": "ev.Kind", "n": 42}]
    xs = query(lg, "SELECT union_extract(shape, 'ev.Point').x AS x FROM events WHERE id = 'a' AND _offset = 0")
    assert xs.to_pylist() == [{"x": 1}]
    nested = query(lg, "SELECT points, tags FROM events WHERE _offset = 1").to_pylist()
    assert nested == [{"points": ["origin"], "tags": [("n", 3)]}]


@pytest.mark.parametrize("suffix", [".avro", ".jsonl"])
def test_export_and_import_back_identical(lg, tmp_path, suffix):
    path = tmp_path / f"events{suffix}"
    assert export_topic(lg, "events", path) == len(ROWS) * 21
    if suffix == ".jsonl":
        lg.create_topic("copy", schema=SCHEMA)
    assert import_file(lg, "copy", path) == len(ROWS) * 21
    original, copy = _user(lg.read("events")), _user(lg.read("copy"))
    assert copy.to_pylist() == original.to_pylist()
    for name in ("value", "shape", "points"):
        assert copy.column(name).combine_chunks().equals(original.column(name).combine_chunks()), name


def test_parquet_form_of_union_columns_imports_back_identical(lg, tmp_path):
    """Parquet has no unions: a union column is written as a struct of its branches
    (`schemas.unions.storable`), which import turns back into the same union."""
    import pyarrow.parquet as pq

    table = lg.read("events")
    stored = pa.Table.from_batches([unions.map_columns(b, unions.storable) for b in table.to_batches()])
    pq.write_table(stored, tmp_path / "events.parquet")
    lg.create_topic("copy", schema=SCHEMA)
    assert import_file(lg, "copy", tmp_path / "events.parquet") == table.num_rows
    assert _user(lg.read("copy")).equals(_user(table))


def test_parquet_export_of_a_union_topic(lg, tmp_path):
    export_topic(lg, "events", tmp_path / "events.parquet")
    lg.create_topic("copy", schema=SCHEMA)
    import_file(lg, "copy", tmp_path / "events.parquet")
    assert _user(lg.read("copy")).equals(_user(lg.read("events")))


def test_bad_union_values_are_refused_naming_record_field_and_branches(lg):
    with lg.writer("events", linger_ms=None) as w:
        with pytest.raises(logstore.RecordValidationError) as err:
            w.append_batch([ROWS[0], {**ROWS[1], "points": [{"x": 1}]}])
    assert err.value.index == 1 and err.value.field == "points[0]"
    assert "no branch of union [null, record ev.Point, string]" in str(err.value)
    assert "ev.Point: points[0].y: missing required field" in str(err.value)


def test_sql_results_with_union_columns_print_as_json(lg):
    """A query's union columns come back as DuckDB's (sparse) unions; their JSON is the plain value."""
    from logstore.jsonvalues import json_rows

    result = query(lg, "SELECT value, shape, tags FROM events WHERE _offset < 4 ORDER BY _offset")
    assert pa.types.is_union(result.schema.field("value").type)
    assert json_rows(result) == [
        {"value": "high", "shape": {"x": 1, "y": 2}, "tags": {"ok": True}},
        {"value": 7, "shape": {"text": "hi"}, "tags": {"n": 3}},
        {"value": 0.5, "shape": "FULL", "tags": {}},
        {"value": None, "shape": "EMPTY", "tags": {"n": -1, "ok": False}},
    ]
