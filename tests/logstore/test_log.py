"""The log's public API: topics, writer, reader, seeks, bounds and errors."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest

import logstore
from logstore.keyhash import partition_of
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


def test_append_and_read_back_in_order(scores):
    """Records read back equal what was written, dense offsets per partition, system columns typed."""
    rows = score_rows(500)
    with scores.writer("scores") as w:
        for r in rows[:200]:
            w.append(r)
        w.append_batch(rows[200:])
    t = scores.read("scores")
    assert t.num_rows == 500
    assert t.schema.field("_partition").type == pa.int32()
    assert t.schema.field("_offset").type == pa.int64()
    assert t.schema.field("_append_time").type == pa.timestamp("us", tz="UTC")
    for p in range(3):
        part = t.filter(pa.compute.equal(t["_partition"], p))
        assert part["_offset"].to_pylist() == list(range(part.num_rows))
        ids = part["request_id"].to_pylist()
        assert ids == [r["request_id"] for r in rows if partition_of(r["request_id"], 3) == p]
    got = sorted(t.select(["request_id", "score"]).to_pylist(), key=lambda r: int(r["request_id"][1:]))
    assert got == [{"request_id": r["request_id"], "score": r["score"]} for r in rows]


def test_key_partitioning_is_stable(scores):
    """Every record lands in the partition its key hashes to."""
    with scores.writer("scores") as w:
        w.append_batch(score_rows(300))
    t = scores.read("scores")
    for rid, p in zip(t["request_id"].to_pylist(), t["_partition"].to_pylist()):
        assert partition_of(rid, 3) == p


def test_offset_bounds_and_mapping(scores):
    """start inclusive, end exclusive; an int applies to every partition, a mapping to one each."""
    with scores.writer("scores") as w:
        w.append_batch(score_rows(300))
    t = scores.read("scores", start=5, end=10)
    for p in range(3):
        assert t.filter(pa.compute.equal(t["_partition"], p))["_offset"].to_pylist() == [5, 6, 7, 8, 9]
    t = scores.read("scores", start={0: 3}, end={0: 4}, partitions=[0])
    assert t["_offset"].to_pylist() == [3]


def test_append_time_seek_and_monotonic_clock(log):
    """Datetimes select by append time; a clock that goes backward never makes append time decrease."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    clock = StepClock(step=timedelta(minutes=1))
    with log.writer("t", clock=clock, linger_ms=None) as w:
        for i in range(10):
            w.append_batch(score_rows(10, start=i * 10))
    t = log.read("t", start=T0 + timedelta(minutes=3), end=T0 + timedelta(minutes=5))
    assert t["_offset"].to_pylist() == list(range(30, 50))
    back = [T0 + timedelta(hours=1), T0]  # goes backward
    with log.writer("t", clock=lambda: back.pop(0) if back else T0, linger_ms=None) as w:
        w.append_batch(score_rows(1, start=100))
        w.append_batch(score_rows(1, start=101))
    times = log.read("t")["_append_time"].to_pylist()
    assert times == sorted(times)


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


def test_consumer_commits_durably(log):
    """A consumer resumes from its group's committed position after reopening."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    with log.writer("t") as w:
        w.append_batch(score_rows(30))
    c = log.consumer("t", group="eval")
    assert c.poll(max_records=10).num_rows == 10
    c.commit()
    assert c.poll(max_records=5)["_offset"].to_pylist() == [10, 11, 12, 13, 14]
    again = logstore.open(log.path).consumer("t", group="eval")
    assert again.poll(max_records=100)["_offset"].to_pylist()[0] == 10
    assert again.lag() == {0: 0}


def test_bad_records_reject_whole_batch(scores):
    """A record that does not match names index and field; the batch writes nothing."""
    rows = score_rows(10)
    rows[7] = dict(rows[7], score="high")
    with scores.writer("scores") as w:
        with pytest.raises(logstore.RecordValidationError) as ei:
            w.append_batch(rows)
    assert ei.value.index == 7 and ei.value.field == "score"
    missing = score_rows(3)
    del missing[1]["event_time"]
    with scores.writer("scores") as w:
        with pytest.raises(logstore.RecordValidationError) as ei:
            w.append_batch(missing)
    assert ei.value.index == 1 and ei.value.field == "event_time"
    assert scores.read("scores").num_rows == 0


def test_per_record_bad_record_rejected_alone(log):
    """append(): a bad record is rejected alone, named by its append number; the rest are written."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    rows = score_rows(5)
    rows[2] = dict(rows[2], score=None)
    w = log.writer("t", linger_ms=None)
    for r in rows:
        w.append(r)
    with pytest.raises(logstore.RecordValidationError) as ei:
        w.flush()
    assert ei.value.index == 2 and ei.value.field == "score"
    w.close()
    assert log.read("t")["request_id"].to_pylist() == ["r0", "r1", "r3", "r4"]


def test_too_large_record(log):
    """A record over max_record_bytes is refused by index."""
    log.create_topic("t", schema=SCORE_SCHEMA, max_record_bytes=200)
    rows = score_rows(3)
    rows[1]["model_id"] = "x" * 1000
    with log.writer("t") as w, pytest.raises(logstore.RecordTooLargeError) as ei:
        w.append_batch(rows)
    assert ei.value.index == 1


def test_record_size_limit_is_per_record(log):
    """A batch far over max_record_bytes whose records are each under it is accepted, including a
    slice of an Arrow batch whose big value lies outside the slice; a big one inside is refused."""
    log.create_topic("t", schema=SCORE_SCHEMA, max_record_bytes=300)
    rows = score_rows(200)
    with log.writer("t") as w:
        w.append_batch(rows)  # about 60 bytes each: the batch is ~40x the limit
        rows[5]["model_id"] = "x" * 1000
        table = pa.Table.from_pylist(rows, schema=log.arrow_schema("t"))
        w.append_batch(table.slice(6))
        with pytest.raises(logstore.RecordTooLargeError) as ei:
            w.append_batch(table.slice(2))
        assert ei.value.index == 3
    assert log.read("t").num_rows == 200 + 194


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


def test_topic_created_on_first_use(log):
    """A writer on a missing topic creates it from the first data."""
    with log.writer("auto") as w:
        w.append_batch(pa.table({"a": [1, 2], "b": ["x", "y"]}))
    assert log.read("auto", columns=["a", "b"]).to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_uncompressed_and_lz4_topics(log):
    """Compression is a topic setting; all settings read back the same data."""
    for comp in [None, "lz4", "zstd"]:
        name = f"t-{comp}"
        log.create_topic(name, schema=SCORE_SCHEMA, compression=comp)
        with log.writer(name) as w:
            w.append_batch(score_rows(100))
        assert log.read(name)["request_id"].to_pylist() == [f"r{i}" for i in range(100)]


def test_linger_flushes_in_background(log):
    """Records appended one by one reach the log after linger_ms without flush()."""
    import time

    log.create_topic("t", schema=SCORE_SCHEMA)
    w = log.writer("t", linger_ms=20)
    w.append(score_rows(1)[0])
    deadline = time.monotonic() + 5
    while log.read("t").num_rows == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.read("t").num_rows == 1
    w.close()


def test_writer_is_thread_safe(log):
    """Four threads appending through one writer lose nothing and duplicate nothing."""
    import threading

    log.create_topic("t", schema=SCORE_SCHEMA, partitions=2, key_field="request_id")
    w = log.writer("t", batch_records=37)

    def work(k):
        for r in score_rows(250, start=k * 250):
            w.append(r)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    ids = log.read("t")["request_id"].to_pylist()
    assert sorted(ids) == sorted(f"r{i}" for i in range(1000))


def test_append_racing_close_is_written_or_refused(log):
    """Threads append while another closes the writer: every append that returned is written
    exactly once, every one refused with WriterClosedError is not, and nothing else appears."""
    import sys
    import threading

    log.create_topic("t", schema=SCORE_SCHEMA)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    everything: list[str] = []
    try:
        for round_ in range(5):
            w = log.writer("t", batch_records=50, durability="none")
            accepted: list[list[str]] = [[] for _ in range(3)]

            def work(k: int) -> None:
                for r in score_rows(4000, start=(round_ * 3 + k) * 4000):
                    try:
                        w.append(r)
                    except logstore.WriterClosedError:
                        return
                    accepted[k].append(r["request_id"])

            threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
            for t in threads:
                t.start()
            while sum(map(len, accepted)) < 500:
                pass
            w.close()
            for t in threads:
                t.join()
            everything += [i for a in accepted for i in a]
        got = log.read("t")["request_id"].to_pylist()
        extra, missing = set(got) - set(everything), set(everything) - set(got)
        assert not extra and not missing and len(got) == len(everything), (
            sorted(extra)[:5], sorted(missing)[:5], len(got), len(everything))
    finally:
        sys.setswitchinterval(switch)


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


def test_durability_modes_and_closed_writer(log):
    """Every durability mode writes the data; a closed writer refuses appends."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    for mode in ["none", "flush", "fsync"]:
        w = log.writer("t", durability=mode)
        w.append_batch(score_rows(10))
        w.close()
        with pytest.raises(logstore.WriterClosedError):
            w.append(score_rows(1)[0])
    assert log.read("t").num_rows == 30
    with pytest.raises(ValueError):
        log.writer("t", durability="maybe")


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


def test_validate_false_trusts_only_exact_arrow(log):
    """validate=False skips per-value checks for Arrow input of the exact schema; other input is still checked."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    exact = pa.Table.from_pylist(score_rows(5), schema=log.arrow_schema("t"))
    with log.writer("t", validate=False) as w:
        w.append_batch(exact)
        with pytest.raises(logstore.RecordValidationError):
            w.append_batch([dict(score_rows(1)[0], score="x")])
    assert log.read("t").num_rows == 5


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


def test_durability_none_defers_writes_until_flush(log):
    """durability="none" holds cut frames in memory until batch_bytes pile up or flush()."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    w = log.writer("t", durability="none", linger_ms=None)
    w.append_batch(score_rows(10))
    assert log.read("t").num_rows == 0  # not handed to the OS yet
    w.flush()
    assert log.read("t").num_rows == 10
    w.close()


def test_durability_none_commits_keep_order(scores):
    """In "none" mode full buffers are committed as they fill; order and density hold."""
    rows = score_rows(3000)
    with scores.writer("scores", durability="none", batch_bytes=4096, linger_ms=None) as w:
        for i in range(0, 3000, 100):
            w.append_batch(rows[i:i + 100])
    t = scores.read("scores")
    assert t.num_rows == 3000
    for p in range(3):
        part = t.filter(pa.compute.equal(t["_partition"], p))
        assert part["_offset"].to_pylist() == list(range(part.num_rows))
        want = [r["request_id"] for r in rows if partition_of(r["request_id"], 3) == p]
        assert part["request_id"].to_pylist() == want


def test_failed_commit_to_several_partitions_writes_none(scores, monkeypatch):
    """A commit failing on one of its partitions raises and writes nothing to any of them (the
    error says how many records were not written); the next batch is stored densely, once."""
    from logstore import commit as commit_mod

    real = commit_mod.write_frames
    calls = {"n": 0}

    def failing(fd, position, chunks):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(fd, position, chunks)

    monkeypatch.setattr(commit_mod, "write_frames", failing)
    rows = score_rows(300)
    w = scores.writer("scores", durability="none", batch_bytes=1, linger_ms=None)
    with pytest.raises(logstore.LogIOError, match="No space left") as err:
        w.append_batch(rows[:150])  # over batch_bytes: committed now, partition 1 fails after 0 was written
    assert "the 150 records of this commit" in " ".join(err.value.__notes__)
    assert scores.read("scores").num_rows == 0
    w.append_batch(rows[150:])
    w.close()
    t = scores.read("scores")
    lost = {r["request_id"] for r in rows[:150]}
    assert t.num_rows == 300 - len(lost)
    for p in range(3):
        part = t.filter(pa.compute.equal(t["_partition"], p))
        assert part["_offset"].to_pylist() == list(range(part.num_rows))
        want = [r["request_id"] for r in rows if partition_of(r["request_id"], 3) == p and r["request_id"] not in lost]
        assert part["request_id"].to_pylist() == want


def test_append_batch_to_a_chosen_partition(log, scores):
    """append_batch(partition=p) puts the whole batch in p on an unkeyed topic; a keyed topic or a
    partition out of range is refused and nothing is written."""
    log.create_topic("u", schema=SCORE_SCHEMA, partitions=3)
    rows = score_rows(30)
    with log.writer("u") as w:
        w.append_batch(rows[:10], partition=2)
        w.append_batch(rows[10:20], partition=2)
        w.append_batch(rows[20:], partition=0)
        with pytest.raises(ValueError, match="partitions 0..2"):
            w.append_batch(rows, partition=3)
    t = log.read("u")
    ids = {p: t.filter(pa.compute.equal(t["_partition"], p))["request_id"].to_pylist() for p in range(3)}
    assert ids == {2: [r["request_id"] for r in rows[:20]], 1: [], 0: [r["request_id"] for r in rows[20:]]}
    with scores.writer("scores") as w, pytest.raises(ValueError, match="key field"):
        w.append_batch(rows, partition=0)
    assert scores.read("scores").num_rows == 0


def test_commit_failing_midway_leaves_no_partial_frames(log, monkeypatch):
    """A commit whose fourth frame fails to encode, after earlier frames of it were written,
    truncates them all: the log holds only whole earlier commits, and appends go on densely."""
    from logstore import commit as commit_mod
    from logstore import writer as writer_mod

    log.create_topic("t", schema=SCORE_SCHEMA)
    rows = score_rows(600)
    with log.writer("t", durability="flush") as w:
        w.append_batch(rows[:100])
    real = writer_mod.encode_body
    calls = {"n": 0}

    def failing(batch, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise ValueError("frame too large")
        return real(batch, **kw)

    monkeypatch.setattr(writer_mod, "encode_body", failing)
    monkeypatch.setattr(commit_mod, "WRITE_CHUNK", 1)  # write every frame as soon as it is encoded
    w = log.writer("t", durability="none", batch_bytes=10**9, linger_ms=None)
    for i in range(100, 600, 100):
        w.append_batch(rows[i:i + 100])  # five frames pending
    with pytest.raises(ValueError, match="too large"):
        w.flush()
    assert log.read("t")["request_id"].to_pylist() == [r["request_id"] for r in rows[:100]]
    assert log.verify().ok
    w.append_batch(rows[100:200])
    w.close()
    t = log.read("t")
    assert t["_offset"].to_pylist() == list(range(200))
    assert t["request_id"].to_pylist() == [r["request_id"] for r in rows[:200]]


def test_segments_roll_by_age(log):
    """segment_ms rolls the active segment once its first frame is that old (by the writer's clock)."""
    log.create_topic("t", schema=SCORE_SCHEMA, segment_ms=60_000)
    clock = StepClock(step=timedelta(seconds=25))
    with log.writer("t", clock=clock, linger_ms=None) as w:
        for i in range(8):
            w.append_batch(score_rows(5, start=i * 5))
    segs = log.describe("t")["partition_details"][0]["segments"]
    assert len(segs) >= 3
    assert log.read("t")["_offset"].to_pylist() == list(range(40))


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


def test_consumer_reset_latest_skips_history(log):
    """A new group with reset="latest" starts at the end and sees only later records."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    with log.writer("t") as w:
        w.append_batch(score_rows(5))
    c = log.consumer("t", group="live", reset="latest")
    assert c.poll().num_rows == 0
    with log.writer("t") as w:
        w.append_batch(score_rows(2, start=5))
    assert c.poll()["_offset"].to_pylist() == [5, 6]
