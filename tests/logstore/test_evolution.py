"""Schema evolution end to end: a v1 producer, a v2 producer, one reader."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import logstore

V1 = {
    "type": "record",
    "name": "Score",
    "namespace": "test",
    "fields": [
        {"name": "request_id", "type": "string"},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "score", "type": "float"},
        {"name": "legacy", "type": "string"},
    ],
}
V2 = {
    "type": "record",
    "name": "Score",
    "namespace": "test",
    "fields": [
        {"name": "request_id", "type": "string"},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "score", "type": "double"},
        {"name": "model_id", "type": "string", "default": "champion"},
        {"name": "latency_ms", "type": ["null", "float"], "default": None},
    ],
}
T = datetime(2026, 1, 1, tzinfo=UTC)


def test_v1_and_v2_producers_one_reader(tmp_path):
    """Old frames resolve to the reader schema: defaults added, removed fields dropped, float -> double."""
    log = logstore.open(tmp_path / "log")
    log.create_topic("s", schema=V1, partitions=2, key_field="request_id")
    old = log.writer("s", linger_ms=None)  # bound to v1 at its first append
    old.append_batch([{"request_id": "a", "event_time": T, "score": 0.5, "legacy": "x"}])
    assert log.register_schema("s", V2) == 2
    with log.writer("s", schema=V2) as new:
        new.append_batch([{"request_id": "b", "event_time": T, "score": 0.25, "model_id": "m2", "latency_ms": 3.0}])
    old.append_batch([{"request_id": "c", "event_time": T, "score": 0.75, "legacy": "y"}])
    old.close()
    t = log.read("s")
    assert t.schema.names[:5] == ["request_id", "event_time", "score", "model_id", "latency_ms"]
    rows = {r["request_id"]: r for r in t.to_pylist()}
    assert rows["a"]["model_id"] == "champion" and rows["a"]["latency_ms"] is None and rows["a"]["score"] == 0.5
    assert rows["b"]["model_id"] == "m2" and rows["b"]["latency_ms"] == 3.0
    assert rows["c"]["score"] == 0.75 and "legacy" not in rows["c"]
    assert [v.version for v in log.schemas("s")] == [1, 2]
    sub = log.read("s", columns=["request_id", "model_id"])
    assert sorted(sub.to_pylist(), key=lambda r: r["request_id"])[0] == {"request_id": "a", "model_id": "champion"}


def test_incompatible_schema_refused_with_reasons(tmp_path):
    """A new version that breaks BACKWARD is refused and lists why; nothing is registered."""
    log = logstore.open(tmp_path / "log")
    log.create_topic("s", schema=V1)
    bad = dict(V2, fields=V2["fields"][:3] + [{"name": "must", "type": "string"}])
    with pytest.raises(logstore.SchemaIncompatibleError) as ei:
        log.register_schema("s", bad)
    assert any("must" in r for r in ei.value.reasons)
    assert [v.version for v in log.schemas("s")] == [1]


def test_shipped_schema_by_name(tmp_path):
    """create_topic accepts a shipped record type's name."""
    log = logstore.open(tmp_path / "log")
    log.create_topic("scores", schema="model_score", partitions=2, key_field="request_id")
    assert "model_id" in log.arrow_schema("scores").names
