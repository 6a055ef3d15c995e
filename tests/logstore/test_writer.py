"""The writer: batching, validation, partitioning, durability modes, commits and their failures."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest

import logstore
from logstore.keyhash import partition_of
from tests.conftest import SCORE_SCHEMA, T0, StepClock, score_rows


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

            def work(
                k: int, round_: int = round_, w: logstore.Writer = w, accepted: list[list[str]] = accepted
            ) -> None:
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
            sorted(extra)[:5],
            sorted(missing)[:5],
            len(got),
            len(everything),
        )
    finally:
        sys.setswitchinterval(switch)


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


def test_validate_false_trusts_only_exact_arrow(log):
    """validate=False skips per-value checks for Arrow input of the exact schema; other input is still checked."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    exact = pa.Table.from_pylist(score_rows(5), schema=log.arrow_schema("t"))
    with log.writer("t", validate=False) as w:
        w.append_batch(exact)
        with pytest.raises(logstore.RecordValidationError):
            w.append_batch([dict(score_rows(1)[0], score="x")])
    assert log.read("t").num_rows == 5


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
            w.append_batch(rows[i : i + 100])
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
        w.append_batch(rows[i : i + 100])  # five frames pending
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
