"""describe and verify over a healthy log."""

from __future__ import annotations

from tests.conftest import score_rows


def test_verify_clean_log(scores):
    """verify() on an undamaged log is ok and counts frames."""
    with scores.writer("scores") as w:
        w.append_batch(score_rows(100))
    r = scores.verify()
    assert r.ok and r.frames >= 3


def test_describe_reports_ranges(scores):
    """describe() shows records, offset ranges and time ranges per partition."""
    with scores.writer("scores") as w:
        w.append_batch(score_rows(90))
    d = scores.describe("scores")
    assert d["records"] == 90
    assert sum(p["records"] for p in d["partition_details"]) == 90
    assert all(p["min_event_time"] for p in d["partition_details"])
