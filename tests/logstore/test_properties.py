"""Property tests: random batches, splits and partition counts read back exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore
from logstore.keyhash import partition_of

SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("value", pa.int64(), nullable=False),
        pa.field("note", pa.string()),
        pa.field("vec", pa.list_(pa.float32())),
    ]
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)

record = st.fixed_dictionaries(
    {
        "key": st.text(min_size=0, max_size=12),
        "value": st.integers(-(2**63), 2**63 - 1),
        "note": st.none() | st.text(max_size=30),
        "vec": st.none() | st.lists(st.floats(width=32, allow_nan=False), max_size=5),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(st.lists(record, min_size=1, max_size=40), min_size=1, max_size=8),
    partitions=st.integers(1, 5),
    per_record=st.booleans(),
    compression=st.sampled_from([None, "zstd"]),
    segment_bytes=st.sampled_from([512, 4096, 1 << 20]),
)
def test_round_trip(tmp_path_factory, batches, partitions, per_record, compression, segment_bytes):
    """Whatever is written reads back equal, in order per partition, with dense offsets."""
    log = logstore.open(tmp_path_factory.mktemp("prop") / "log")
    log.create_topic(
        "t", schema=SCHEMA, partitions=partitions, key_field="key", compression=compression, segment_bytes=segment_bytes
    )
    written = []
    i = 0
    with log.writer("t", linger_ms=None, batch_records=7) as w:
        for batch in batches:
            recs = []
            for r in batch:
                recs.append(dict(r, event_time=T0 + timedelta(microseconds=i)))
                i += 1
            written.extend(recs)
            if per_record:
                for r in recs:
                    w.append(r)
            else:
                w.append_batch(recs)
    t = log.read("t")
    assert t.num_rows == len(written)
    for p in range(partitions):
        part = t.filter(pc.equal(t["_partition"], p))
        assert part["_offset"].to_pylist() == list(range(part.num_rows))
        expect = [r for r in written if partition_of(r["key"], partitions) == p]
        got = part.drop_columns(["_partition", "_offset", "_append_time"]).to_pylist()
        assert got == expect
    assert log.verify().ok


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=10), lo=st.integers(0, 300), span=st.integers(0, 300))
def test_offset_ranges(tmp_path_factory, sizes, lo, span):
    """read(start, end) returns exactly the offsets in [start, end) that exist."""
    log = logstore.open(tmp_path_factory.mktemp("rng") / "log")
    log.create_topic("t", schema=SCHEMA, segment_bytes=1024)
    n = 0
    with log.writer("t", linger_ms=None) as w:
        for s in sizes:
            w.append_batch(
                [{"key": "k", "event_time": T0, "value": n + j, "note": None, "vec": None} for j in range(s)]
            )
            n += s
    t = log.read("t", start=lo, end=lo + span)
    assert t["_offset"].to_pylist() == list(range(min(lo, n), min(lo + span, n)))
    assert t["value"].to_pylist() == t["_offset"].to_pylist()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.integers(-5, 20), min_size=1, max_size=25),
    lo=st.integers(-5, 400),
    span=st.integers(0, 400),
    partitions=st.integers(1, 3),
)
def test_append_time_bounds_match_brute_force(tmp_path_factory, steps, lo, span, partitions):
    """Datetime bounds select exactly the records whose (monotonic) append time is in [start, end)."""
    log = logstore.open(tmp_path_factory.mktemp("time") / "log")
    log.create_topic("t", schema=SCHEMA, partitions=partitions, key_field="key", segment_bytes=700)
    now = [T0]

    def clock():
        return now[0]

    with log.writer("t", clock=clock, linger_ms=None) as w:
        for i, step in enumerate(steps):
            now[0] = now[0] + timedelta(seconds=step)  # the clock may go backward
            w.append_batch(
                [{"key": f"k{i}-{j}", "event_time": T0, "value": i, "note": None, "vec": None} for j in range(3)]
            )
    everything = log.read("t")
    start, end = T0 + timedelta(seconds=lo), T0 + timedelta(seconds=lo + span)
    want = sorted(
        (p, o)
        for p, o, t in zip(
            everything["_partition"].to_pylist(),
            everything["_offset"].to_pylist(),
            everything["_append_time"].to_pylist(),
        )
        if start <= t < end
    )
    got = log.read("t", start=start, end=end)
    assert sorted(zip(got["_partition"].to_pylist(), got["_offset"].to_pylist())) == want
