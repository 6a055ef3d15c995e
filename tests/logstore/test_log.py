"""The log: opening and creating it, topics and their names, reading bounds and seeks."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest

import logstore
from tests.conftest import SCORE_SCHEMA, T0, StepClock, score_rows


def test_open_writes_nothing_the_first_topic_creates_the_log(tmp_path):
    """open() writes nothing; a new log has no topics; its first topic creates the directories."""
    lg = logstore.open(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    assert lg.topics() == []
    with pytest.raises(logstore.TopicNotFoundError):
        lg.read("scores")
    assert not (tmp_path / "a").exists()
    lg.create_topic("scores", schema=SCORE_SCHEMA)
    assert (tmp_path / "a" / "b" / "logstore.json").is_file()
    assert lg.topics() == ["scores"]


def test_readonly_open_of_a_missing_log_raises(tmp_path):
    """A read-only open (every CLI read) of a path with no log says so and creates nothing."""
    with pytest.raises(logstore.LogNotFoundError, match="no log at"):
        logstore.open(tmp_path / "typo", readonly=True)
    (tmp_path / "plain").mkdir()
    with pytest.raises(logstore.LogNotFoundError, match="no log at"):
        logstore.open(tmp_path / "plain", readonly=True)
    assert not (tmp_path / "typo").exists() and list((tmp_path / "plain").iterdir()) == []


def test_a_non_empty_directory_is_never_turned_into_a_log(tmp_path):
    """Creating a topic in a directory that holds other files and no log is refused."""
    (tmp_path / "notes.txt").write_text("mine")
    lg = logstore.open(tmp_path)
    with pytest.raises(logstore.LogIOError, match="not a logstore log and not empty"):
        lg.create_topic("scores", schema=SCORE_SCHEMA)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_offset_bounds_and_mapping(scores):
    """start inclusive, end exclusive; an int applies to every partition, a mapping to one each."""
    with scores.writer("scores") as w:
        w.append_batch(score_rows(300))
    t = scores.read("scores", start=5, end=10)
    for p in range(3):
        assert t.filter(pa.compute.equal(t["_partition"], p))["_offset"].to_pylist() == [5, 6, 7, 8, 9]
    t = scores.read("scores", start={0: 3}, end={0: 4}, partitions=[0])
    assert t["_offset"].to_pylist() == [3]


def test_event_time_selection(log):
    """by='event_time' selects rows by the topic's event-time field."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    with log.writer("t") as w:
        w.append_batch(score_rows(1000))
    t = log.read("t", start=T0 + timedelta(milliseconds=100), end=T0 + timedelta(milliseconds=200), by="event_time")
    assert t["request_id"].to_pylist() == [f"r{i}" for i in range(100, 200)]


def test_columns_projection(scores):
    """columns= returns just those columns, system ones included on request."""
    with scores.writer("scores") as w:
        w.append_batch(score_rows(50))
    t = scores.read("scores", columns=["score", "_offset"])
    assert t.column_names == ["score", "_offset"]
    with pytest.raises(ValueError, match="unknown column"):
        scores.read("scores", columns=["nope"])


def test_segments_roll_and_reads_span_them(log):
    """Small segment_bytes rolls segments; reads and seeks cross them transparently."""
    log.create_topic("t", schema=SCORE_SCHEMA, segment_bytes=4096, compression=None)
    with log.writer("t", linger_ms=None) as w:
        for i in range(50):
            w.append_batch(score_rows(20, start=i * 20))
    d = log.describe("t")
    assert len(d["partition_details"][0]["segments"]) > 5
    t = log.read("t", start=333, end=777)
    assert t["_offset"].to_pylist() == list(range(333, 777))
    assert t["request_id"].to_pylist() == [f"r{i}" for i in range(333, 777)]


def test_reader_follow_tails_new_data(log):
    """A following reader sees records appended after it started."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    with log.writer("t") as w:
        w.append_batch(score_rows(5))
    it = iter(log.reader("t", follow=True, poll_interval=0.01))
    first = next(it)
    assert first.num_rows == 5
    with log.writer("t") as w:
        w.append_batch(score_rows(3, start=5))
    nxt = next(it)
    assert nxt["_offset"].to_pylist() == [5, 6, 7]


@pytest.mark.parametrize("name", ["", "..", "a/b", "a\x00b", "x" * 201, "a;b", 'a"b', ".hidden", "../up"])
def test_invalid_topic_names(log, name):
    """Unsafe topic names are refused with InvalidNameError."""
    with pytest.raises(logstore.InvalidNameError):
        log.create_topic(name, schema=SCORE_SCHEMA)


def test_topic_names_with_dots_and_dashes(log):
    """Dots, dashes and underscores are fine."""
    log.create_topic("replay.scores-v2_x", schema=SCORE_SCHEMA)
    assert log.topics() == ["replay.scores-v2_x"]


def test_topic_exists_and_not_found(log):
    """Creating twice fails unless exist_ok; reading a missing topic names it."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    with pytest.raises(logstore.TopicExistsError):
        log.create_topic("t", schema=SCORE_SCHEMA)
    log.create_topic("t", schema=SCORE_SCHEMA, exist_ok=True)
    with pytest.raises(logstore.TopicNotFoundError, match="nope"):
        log.read("nope")


def test_time_seek_reads_only_the_tail(log):
    """Reading the last 10% by append time touches about 10% of the bytes (the index does the seek)."""
    log.create_topic("t", schema=SCORE_SCHEMA, compression=None, segment_bytes=64 * 1024)
    clock = StepClock()
    with log.writer("t", clock=clock, linger_ms=None) as w:
        for i in range(100):
            w.append_batch(score_rows(100, start=i * 100))
    cut = log.read("t", start=9000, end=9001)["_append_time"][0].as_py()
    reader = log.reader("t", start=cut)
    n = sum(b.num_rows for b in reader)
    assert n == 1000
    assert reader.bytes_read <= 0.11 * log.describe("t")["bytes"]


def test_event_time_reads_skip_segments_by_summary(log):
    """Event-time reads skip sealed segments by their summary; without it (derived data) they still agree."""
    from logstore.summary import SUMMARY_NAME

    log.create_topic("t", schema=SCORE_SCHEMA, segment_bytes=2048, compression=None)
    with log.writer("t", linger_ms=None) as w:
        for i in range(60):
            w.append_batch(score_rows(20, start=i * 20))
    start, end = T0 + timedelta(milliseconds=555), T0 + timedelta(milliseconds=777)
    reader = log.reader("t", start=start, end=end, by="event_time")
    got = [r for b in reader for r in b["request_id"].to_pylist()]
    assert got == [f"r{i}" for i in range(555, 777)]
    assert reader.bytes_read < 0.3 * log.describe("t")["bytes"]
    (log.path / "topics" / "t" / "00000" / SUMMARY_NAME).unlink()
    again = logstore.open(log.path).read("t", start=start, end=end, by="event_time")
    assert again["request_id"].to_pylist() == got


def test_readonly_log_refuses_writes(scores):
    """A log opened read-only reads but refuses to create topics or writers."""
    with scores.writer("scores") as w:
        w.append_batch(score_rows(6))
    ro = logstore.open(scores.path, readonly=True)
    assert ro.read("scores").num_rows == 6
    with pytest.raises(logstore.TopicError):
        ro.writer("scores")
    with pytest.raises(logstore.TopicError):
        ro.create_topic("x", schema=SCORE_SCHEMA)
