"""The frame decoder every read goes through: `FrameReader.load`, its output types, its jobs."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from logstore.frame import DICTIONARY_TYPE
from logstore.names import SYSTEM_COLUMNS
from logstore.reader import SYSTEM_FIELDS, FrameJob, FrameReader, Gap, as_type
from tests.conftest import SCORE_SCHEMA, score_rows


def write(log, topic, batches, **writer):
    with log.writer(topic, linger_ms=None, **writer) as w:
        for b in batches:
            w.append_batch(b)


def frame_batches(fr: FrameReader, log, topic: str, partition: int = 0) -> list[pa.RecordBatch]:
    part = log.topic(topic).partition(partition)
    snap = part.snapshot()
    return list(fr.partition_batches(part, snap, snap.start_offset, snap.end_offset))


def test_system_columns_are_defined_once_in_order():
    assert SYSTEM_COLUMNS == ("_partition", "_offset", "_append_time")
    assert SYSTEM_COLUMNS == tuple(f.name for f in SYSTEM_FIELDS)


def test_as_type_converts_stored_encodings():
    """Runs are decoded, narrow dictionary codes widened, plain strings encoded, dictionaries decoded."""
    strings = pa.array(["a", "b", "a", None])
    narrow = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0, None], pa.int8()), pa.array(["a", "b"]))
    runs = pc.run_end_encode(strings)
    for col in (strings, narrow, runs):
        assert as_type(col, pa.string()).equals(strings)
        wide = as_type(col, DICTIONARY_TYPE)
        assert wide.type == DICTIONARY_TYPE and wide.to_pylist() == strings.to_pylist()
    assert as_type(pa.array([1, 2], pa.int32()), pa.int64()).type == pa.int64()


def test_reader_hands_out_the_types_asked_for(log):
    """By default stored dictionaries come out plain; with `types` a dictionary column stays one
    (plain frames encoded), as the SQL views read them, and only the columns asked for are decoded."""
    log.create_topic("t", schema=SCORE_SCHEMA, compression="zstd")
    rows = score_rows(9_000)
    write(log, "t", [rows[:3_000]], durability="flush")  # plain strings
    write(log, "t", [rows[3_000:6_000], rows[6_000:]], durability="none")  # dictionaries
    topic = log.topic("t")
    whole = FrameReader(topic, None, "raise")
    plain = frame_batches(whole, log, "t")
    assert all(b.schema.field("model_id").type == pa.string() for b in plain)
    assert pa.Table.from_batches(plain).select(SCORE_SCHEMA.names).to_pylist() == rows
    types = pa.schema([pa.field("model_id", DICTIONARY_TYPE, nullable=False)])
    fr = FrameReader(topic, ["model_id", "_offset"], "raise", use_threads=False, types=types)
    coded = frame_batches(fr, log, "t")
    assert [b.schema.names for b in coded] == [["model_id", "_offset"]] * len(coded)
    assert all(b.schema.field("model_id").type == DICTIONARY_TYPE for b in coded)
    assert pa.Table.from_batches(coded)["model_id"].to_pylist() == [r["model_id"] for r in rows]
    assert fr.bytes_read == whole.bytes_read > 0  # every frame verified whole, whatever is decoded


def test_no_columns_still_count_rows(log):
    """A read of no columns decodes the least it can and still gives every frame's rows."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    write(log, "t", [score_rows(100), score_rows(50, start=100)])
    batches = frame_batches(FrameReader(log.topic("t"), [], "raise"), log, "t")
    assert [b.num_rows for b in batches] == [100, 50]
    assert all(b.num_columns == 0 for b in batches)
    only = frame_batches(FrameReader(log.topic("t"), ["_partition"], "raise"), log, "t")
    assert [b.column(0).to_pylist() for b in only] == [[0] * 100, [0] * 50]


def test_a_frame_not_as_indexed_is_a_gap(log):
    """`load` checks the header against the index entry before reading the body."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    write(log, "t", [score_rows(10)])
    topic = log.topic("t")
    part = topic.partition(0)
    snap = part.snapshot()
    fr = FrameReader(topic, None, "skip")
    (job,) = fr.segment_jobs(part, snap, snap.bases[0], part.entries(snap, snap.bases[0]), 0, 10)
    assert isinstance(job, FrameJob) and (job.base_offset, job.count, job.start_row, job.stop_row) == (0, 10, 0, 10)
    batch, size = fr.load(job)
    assert batch.num_rows == 10 and size == job.size
    gap = fr.load(dataclasses.replace(job, count=9))
    assert isinstance(gap, Gap) and "does not match" in gap.reason
    assert fr.deliver(gap) is None and fr.gaps == [gap]
    with pytest.raises(Exception, match="does not match"):
        FrameReader(topic, None, "raise").deliver(gap)
    cut = list(fr.segment_jobs(part, snap, snap.bases[0], part.entries(snap, snap.bases[0]), 3, 7))
    assert fr.load(cut[0])[0]["_offset"].to_pylist() == [3, 4, 5, 6]


def test_segment_jobs_skip_a_segment_deleted_since_the_snapshot(log):
    """Retention deleting a segment after a snapshot: its frames are skipped, not an error."""
    log.create_topic("t", schema=SCORE_SCHEMA, segment_bytes=3_000, retention_bytes=10_000)
    write(log, "t", [score_rows(50, start=i) for i in range(0, 1_000, 50)])
    topic = log.topic("t")
    part = topic.partition(0)
    snap = part.snapshot()
    first = snap.bases[0]
    entries = part.entries(snap, first)
    part._views.clear()  # no mapping kept from before the deletion
    assert log.enforce_retention().deleted
    assert list(FrameReader(topic, None, "raise").segment_jobs(part, snap, first, entries, first, first + 50)) == []


def test_snapshots_list_segments_again_only_when_the_directory_changed(tmp_path):
    """A snapshot lists the partition's segments only when the directory's mtime moved, and
    keeps no listing taken within a coarse timestamp tick of the last change."""
    import os
    import time

    import logstore

    lg = logstore.open(tmp_path / "log")
    lg.create_topic("s", schema=SCORE_SCHEMA, segment_bytes=4096, compression=None)
    with lg.writer("s", linger_ms=None) as w:
        w.append_batch(score_rows(50))
    part = lg.topic("s").partition(0)
    assert part.listed_bases() == part.segment_bases() and part._listed is None  # just changed: not kept
    old = time.time() - 5
    os.utime(part.dir, (old, old))
    assert part.listed_bases() == part.segment_bases() and part._listed is not None  # settled: kept
    with lg.writer("s", linger_ms=None) as w:  # rolls: a new segment changes the directory
        for i in range(10):
            w.append_batch(score_rows(50, start=50 * (i + 1)))
    assert part.listed_bases() == part.segment_bases() and len(part.segment_bases()) > 1
    assert lg.read("s").num_rows == 550
