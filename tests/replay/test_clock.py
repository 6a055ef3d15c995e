"""The event clock: one stream ordered by append time, ties broken deterministically, streamed."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

import logstore
from replay.engine import clock
from replay.engine.clock import INPUT, LOOKUP, OUTCOME, EventTimeOrder, Source
from replay.errors import RangeError

from .builders import at, write_at

SCHEMA = pa.schema([("request_id", pa.string()), ("event_time", pa.timestamp("us", tz="UTC"))])


@pytest.fixture
def tlog(tmp_path):
    log = logstore.open(tmp_path / "log")
    for name in ("inputs", "outcomes", "aa_lookup", "zz_lookup"):
        log.create_topic(name, SCHEMA, partitions=2, key_field="request_id")
    yield log
    log.close()


def _all(log, topic):
    return {p: (0, e) for p, e in log.end_offsets(topic).items()}


def test_merge_orders_by_time_then_role_topic_partition_offset(tlog):
    """Equal append times: outcomes, then lookups (by topic), then inputs; then partition, offset."""
    rows = lambda tag: [(at(t), {"request_id": f"{tag}{t}{k}", "event_time": at(t)}) for t in (1, 2) for k in range(3)]  # noqa: E731
    for topic in ("inputs", "outcomes", "aa_lookup", "zz_lookup"):
        write_at(tlog, topic, rows(topic[:2]))
    srcs = [
        Source("inputs", INPUT, _all(tlog, "inputs")),
        Source("zz_lookup", LOOKUP, _all(tlog, "zz_lookup")),
        Source("outcomes", OUTCOME, _all(tlog, "outcomes")),
        Source("aa_lookup", LOOKUP, _all(tlog, "aa_lookup")),
    ]
    keys = [ev.key for ev in clock.merge(tlog, srcs)]
    assert keys == sorted(keys)
    roles = [(k[0], k[1], k[2]) for k in keys]
    t1 = [r for r in roles if r[0] == roles[0][0]]
    assert list(dict.fromkeys(r[2] for r in t1)) == ["outcomes", "aa_lookup", "zz_lookup", "inputs"]
    again = [ev.key for ev in clock.merge(tlog, srcs[::-1])]
    assert again == keys  # deterministic whatever the order the sources are given in


def test_merge_streams_a_bounded_number_of_frames_per_partition(tlog):
    """The merge pulls frames lazily: per stream it holds one frame and reads a few ahead, no more."""
    write_at(tlog, "inputs", [(at(t), {"request_id": f"r{t}", "event_time": at(t)}) for t in range(50)])
    pulled = []

    class Counting:
        def __init__(self, log):
            self.log = log

        def reader(self, *a, **k):
            for b in self.log.reader(*a, **k):
                pulled.append(b.num_rows)
                yield b

    per_stream = 1 + clock.READ_AHEAD + 1  # held, queued, and one read waiting for room
    it = clock.merge(Counting(tlog), [Source("inputs", INPUT, _all(tlog, "inputs"))])
    next(it)
    time.sleep(0.2)  # let the read-ahead threads fill their queues
    assert len(pulled) <= 2 * per_stream
    for _ in range(9):
        next(it)
    time.sleep(0.2)
    assert len(pulled) <= 10 + 2 * per_stream
    it.close()
    assert not [t for t in threading.enumerate() if t.name == "logstore-read-ahead"]


def test_merge_surfaces_a_reader_error_and_stops_its_threads(tlog):
    """An error while reading ahead is raised to the consumer at its place in the stream."""
    write_at(tlog, "inputs", [(at(t), {"request_id": f"r{t}", "event_time": at(t)}) for t in range(20)])

    class Failing:
        def __init__(self, log):
            self.log = log

        def reader(self, *a, **k):
            for b in self.log.reader(*a, **k):  # small commits come together: fail after the first batch
                yield b
                raise OSError("disk on fire")

    seen = 0
    with pytest.raises(OSError, match="disk on fire"):
        for _ in clock.merge(Failing(tlog), [Source("inputs", INPUT, _all(tlog, "inputs"))]):
            seen += 1
    assert seen >= 3
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name == "logstore-read-ahead"]


def test_resolve_offsets_and_datetimes_exactly(tlog):
    """Offsets are kept as given; datetimes select the first offset appended at or after them."""
    write_at(tlog, "inputs", [(at(t), {"request_id": f"r{t}", "event_time": at(t)}) for t in range(20)])
    snaps = tlog.snapshot("inputs")
    ends = tlog.end_offsets("inputs")
    assert clock.resolve(tlog, "inputs", None, None, snaps) == {p: (0, e) for p, e in ends.items()}
    assert clock.resolve(tlog, "inputs", 1, {0: 2}, snaps) == {0: (1, 2), 1: (1, ends[1])}
    r = clock.resolve(tlog, "inputs", at(5), at(10), snaps)
    t = tlog.read("inputs")
    for p, (lo, hi) in r.items():
        times = [a for a, pp in zip(t["_append_time"].to_pylist(), t["_partition"].to_pylist()) if pp == p]
        assert all(x < at(5) for x in times[:lo]) and all(at(5) <= x < at(10) for x in times[lo:hi])
        assert all(x >= at(10) for x in times[hi:])


@pytest.mark.parametrize(
    "start,end,match",
    [
        (10_000, None, "past its end"),
        (None, 10_000, "past its end"),
        ({0: 5}, {0: 2}, "before start"),
        ({3: 1}, None, "partition"),
        (-1, None, ">= 0"),
        (True, None, "offset"),
        ("yesterday", None, "offset"),
    ],
)
def test_resolve_refuses_bounds_that_are_not_exact(tlog, start, end, match):
    """Never a silent fallback: impossible bounds raise RangeError saying why."""
    write_at(tlog, "inputs", [(at(t), {"request_id": f"r{t}", "event_time": at(t)}) for t in range(20)])
    with pytest.raises(RangeError, match=match):
        clock.resolve(tlog, "inputs", start, end, tlog.snapshot("inputs"))


def test_snapshot_pins_the_range_while_the_log_grows(tlog):
    """Records appended after the snapshot are outside the resolved range."""
    write_at(tlog, "inputs", [(at(t), {"request_id": f"r{t}", "event_time": at(t)}) for t in range(10)])
    snaps = tlog.snapshot("inputs")
    write_at(tlog, "inputs", [(at(t), {"request_id": f"r{t}", "event_time": at(t)}) for t in range(10, 20)])
    r = clock.resolve(tlog, "inputs", None, None, snaps)
    assert sum(hi - lo for lo, hi in r.values()) == 10


def _frame(t_s, offsets, event_s):
    n = len(offsets)
    return pa.RecordBatch.from_arrays(
        [
            pa.array([at(e) for e in event_s], pa.timestamp("us", tz="UTC")),
            pa.array(offsets, pa.int64()),
            pa.array([at(t_s)] * n, pa.timestamp("us", tz="UTC")),
        ],
        names=["event_time", "_offset", "_append_time"],
    )


def test_event_time_order_releases_rows_at_event_time_plus_lateness():
    """Rows come out by clock max(event_time + lateness, append time); side events interleave at
    their append time, before rows whose clock they equal."""
    us = lambda s: int(at(s).timestamp() * 1_000_000)  # noqa: E731
    events = [
        clock.Event((us(1), INPUT, "in", 0, 0), INPUT, "in", 0, _frame(1, [0, 1], [0.5, -3])),
        clock.Event((us(2), LOOKUP, "lk", 0, 0), LOOKUP, "lk", 0, _frame(2, [0], [2])),
        clock.Event((us(2.2), INPUT, "in", 0, 2), INPUT, "in", 0, _frame(2.2, [2], [0.1])),
        clock.Event((us(3), LOOKUP, "lk", 0, 1), LOOKUP, "lk", 0, _frame(3, [1], [3])),
    ]
    out = list(EventTimeOrder(lateness_us=2_000_000, event_time_field="event_time")(iter(events)))
    steps = []
    for e in out:
        if e.role != INPUT:
            steps.append(("lookup", e.time))
        elif e.decide:
            steps += [("row", int(o), int(c)) for o, c in zip(e.batch.column("_offset").to_pylist(), e.clock)]
    # row 1 (event -3 s, arrived at 1 s) is late: decided when it arrived; row 2 (0.1 + 2 = 2.1, arrived
    # 2.2) is decided at 2.2, before row 0 (0.5 + 2 = 2.5); each lookup at its append time
    assert steps == [("row", 1, us(1)), ("lookup", us(2)), ("row", 2, us(2.2)), ("row", 0, us(2.5)), ("lookup", us(3))]
    arrivals = [e.time for e in out if e.role == INPUT and not e.decide]
    assert arrivals == [us(1), us(2.2)]
