"""Tests for logstore.interchange and the schema path through the log: write, read, export, import."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import fastavro
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore
import schemas
from logstore.interchange import export_topic, import_avro
from schemas.avro import expand
from tests.schemas.avro_strategies import avro_schemas, normalize, values

UTC = dt.UTC
_counter = itertools.count()


@st.composite
def schema_and_records(draw):
    s = schemas.parse(draw(avro_schemas()))
    return s, draw(st.lists(values(expand(s)), min_size=1, max_size=5))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(schema_and_records())
def test_generated_records_through_the_log_and_avro_files(tmp_path, sr):
    """Generated records: append, read back, export to Avro (fastavro agrees), import back identical."""
    s, records = sr
    root = tmp_path / f"log{next(_counter)}"
    with logstore.open(root) as log:
        log.create_topic("t", schema=s)
        with log.writer("t") as w:
            w.append_batch(records)
        expected = schemas.conform(records, s, schemas.to_arrow(s)).to_pylist()
        user = [c for c in log.read("t").column_names if not c.startswith("_")]
        assert log.read("t").select(user).to_pylist() == expected
        assert export_topic(log, "t", tmp_path / "t.avro", "avro") == len(records)
        with open(tmp_path / "t.avro", "rb") as fh:
            assert [normalize(r) for r in fastavro.reader(fh)] == normalize(records)
        assert import_avro(log, "copy", tmp_path / "t.avro") == len(records)
        assert log.read("copy").select(user).to_pylist() == expected


def _score(i, **kw):
    row = {
        "request_id": f"r{i}",
        "event_time": dt.datetime(2024, 1, 1, 0, 0, i, tzinfo=UTC),
        "model_id": "m",
        "model_version": "1",
        "score": i / 10,
    }
    row.update(kw)
    return row


def test_evolution_end_to_end(tmp_path):
    """A v1 producer and a v2 producer write one topic; one reader sees every row under v2."""
    v1 = {
        "type": "record",
        "name": "Ev",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "n", "type": "int"},
            {"name": "kind", "type": {"type": "enum", "name": "K", "symbols": ["a", "b"]}},
        ],
    }
    v2 = {
        "type": "record",
        "name": "Ev",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "n", "type": "long"},
            {"name": "kind", "type": {"type": "enum", "name": "K", "symbols": ["b", "a", "c"]}},
            {"name": "note", "type": ["null", "string"], "default": None},
            {"name": "w", "type": "double", "default": 1.0},
        ],
    }
    with logstore.open(tmp_path / "log") as log:
        log.create_topic("ev", schema=v1)
        with log.writer("ev", schema=v1) as old:
            old.append_batch([{"id": "x", "n": 1, "kind": "a"}])
        assert log.register_schema("ev", v2) == 2
        with log.writer("ev") as new:
            new.append_batch([{"id": "y", "n": 2**40, "kind": "c", "note": "hi", "w": 2.0}])
        with log.writer("ev", schema=v1) as old:
            old.append_batch([{"id": "z", "n": 3, "kind": "b"}])
        rows = log.read("ev").select(["id", "n", "kind", "note", "w"]).to_pylist()
    assert rows == [
        {"id": "x", "n": 1, "kind": "a", "note": None, "w": 1.0},
        {"id": "y", "n": 2**40, "kind": "c", "note": "hi", "w": 2.0},
        {"id": "z", "n": 3, "kind": "b", "note": None, "w": 1.0},
    ]


def test_incompatible_registration_lists_reasons(tmp_path):
    """register_schema refuses a breaking change with logstore.SchemaIncompatibleError and its reasons."""
    with logstore.open(tmp_path / "log") as log:
        log.create_topic("s", schema="model_score")
        bad = schemas.load("model_score")
        bad["fields"].append({"name": "extra", "type": "string"})
        with pytest.raises(logstore.SchemaIncompatibleError) as info:
            log.register_schema("s", bad)
        assert info.value.reasons == [
            "field 'extra' added without a default (BACKWARD: old records have no value for it)"
        ]


def test_export_parquet_and_jsonl(tmp_path):
    """Parquet and JSON lines carry the rows and the system columns."""
    with logstore.open(tmp_path / "log") as log:
        log.create_topic("m", schema="metric")
        with log.writer("m") as w:
            w.append_batch([{"name": "lat", "value": 1.5, "tags": {"host": "a"}, "event_time": 0}])
        assert export_topic(log, "m", tmp_path / "m.parquet", "parquet") == 1
        assert export_topic(log, "m", tmp_path / "m.jsonl", "jsonl") == 1
    t = pq.read_table(tmp_path / "m.parquet")
    assert t.column("name").to_pylist() == ["lat"] and "_offset" in t.column_names
    row = json.loads((tmp_path / "m.jsonl").read_text())
    assert row["tags"] == {"host": "a"} and row["event_time"] == "1970-01-01T00:00:00+00:00"
    assert row["_offset"] == 0
    with pytest.raises(logstore.LogstoreError, match="unknown export format"):
        export_topic(log, "m", tmp_path / "m.csv", "csv")


def test_import_older_file_into_evolved_topic(tmp_path):
    """An Avro file of an older schema version is appended under that version and read resolved."""
    s1 = schemas.load("model_score")
    s2 = schemas.load("model_score")
    s2["fields"].append({"name": "region", "type": "string", "default": "eu", "doc": "Serving region."})
    with logstore.open(tmp_path / "log") as log:
        log.create_topic("s", schema=s1)
        with log.writer("s") as w:
            w.append_batch([_score(1)])
        export_topic(log, "s", tmp_path / "v1.avro")
        log.register_schema("s", s2)
        assert import_avro(log, "s", tmp_path / "v1.avro") == 1
        t = log.read("s")
        assert t.column("region").to_pylist() == ["eu", "eu"]
        assert t.column("request_id").to_pylist() == ["r1", "r1"]
        # a file whose schema the topic can read but never registered is resolved to the latest
        other = schemas.load("model_score")
        other["fields"] = [f for f in other["fields"] if f["name"] != "host"]
        b = schemas.conform([_score(2)], other, schemas.to_arrow(other))
        schemas.avrofile.write(tmp_path / "other.avro", other, [b])
        assert import_avro(log, "s", tmp_path / "other.avro") == 1
        assert log.read("s").column("request_id").to_pylist() == ["r1", "r1", "r2"]
        assert len(log.schemas("s")) == 2
