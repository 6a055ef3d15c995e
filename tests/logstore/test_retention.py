"""Retention: whole sealed segments deleted by size or age, oldest first."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import SCORE_SCHEMA, StepClock, score_rows


def test_retention_deletes_whole_sealed_segments(log):
    """Retention by size deletes the oldest sealed segments only; reads start at the new start."""
    log.create_topic("t", schema=SCORE_SCHEMA, segment_bytes=2048, retention_bytes=6000, compression=None)
    with log.writer("t", linger_ms=None) as w:
        for i in range(40):
            w.append_batch(score_rows(10, start=i * 10))
    before = log.describe("t")["partition_details"][0]
    report = log.enforce_retention()
    after = log.describe("t")["partition_details"][0]
    assert report.deleted and after["bytes"] <= max(6000, after["segments"][-1]["bytes"])
    assert after["segments"][-1]["base_offset"] == before["segments"][-1]["base_offset"]
    t = log.read("t")
    assert t["_offset"].to_pylist() == list(range(after["start_offset"], 400))


def test_retention_by_time(log):
    """Retention by time deletes sealed segments whose last append is older than retention_ms."""
    log.create_topic("t", schema=SCORE_SCHEMA, segment_bytes=1024, retention_ms=60_000, compression=None)
    clock = StepClock(step=timedelta(seconds=30))
    with log.writer("t", clock=clock, linger_ms=None) as w:
        for i in range(20):
            w.append_batch(score_rows(10, start=i * 10))
    report = log.enforce_retention(now=clock.now)
    assert report.deleted
    t = log.read("t")
    assert t.num_rows < 200 and t["_offset"].to_pylist()[-1] == 199
