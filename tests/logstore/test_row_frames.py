"""Row frames (format 2): small commits stored as Avro rows read back as the batch path stores them;
the index appended in batches, in file order, whoever wrote the frames; the format marker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore
from logstore import index as index_mod
from logstore.commit import INDEX_BATCH
from logstore.frame import FLAG_ROWS, HEADER_SIZE, ROW_FRAME_MAX, pack_header, parse_header
from logstore.segment import build_index, scan

ROOT = Path(__file__).resolve().parents[2]

ALL_TYPES = {
    "type": "record",
    "name": "Everything",
    "fields": [
        {"name": "s", "type": "string"},
        {"name": "b", "type": "bytes"},
        {"name": "flag", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "e", "type": {"type": "enum", "name": "Colour", "symbols": ["red", "green", "blue"]}},
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "tm", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "xs", "type": {"type": "array", "items": "double"}},
        {"name": "m", "type": {"type": "map", "values": "string"}},
        {"name": "ns", "type": ["null", "string"], "default": None},
        {"name": "nd", "type": ["null", "double"], "default": None},
        {"name": "nxs", "type": ["null", {"type": "array", "items": "long"}], "default": None},
        {
            "name": "nrec",  # a nullable record (as model_input's swap token)
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Token",
                    "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": ["null", "long"]}],
                },
            ],
            "default": None,
        },
        # unions (dense unions in Arrow): primitives, logical types, records, named references, nested
        {"name": "u", "type": ["null", "string", "long", "double", "boolean"], "default": None},
        {"name": "ut", "type": ["int", {"type": "long", "logicalType": "timestamp-micros"}, "bytes"]},
        {
            "name": "ur",
            "type": [
                {"type": "record", "name": "Point", "fields": [{"name": "x", "type": "long"}]},
                {
                    "type": "record",
                    "name": "Label",
                    "fields": [
                        {"name": "text", "type": ["null", "string"]},
                        {"name": "tag", "type": ["Colour", "long"]},
                    ],
                },
                "string",
            ],
        },
        {"name": "ua", "type": {"type": "array", "items": ["null", "Point", "float", "Colour"]}},
        {"name": "um", "type": {"type": "map", "values": ["boolean", {"type": "array", "items": "string"}]}},
    ],
}

_text = st.text(max_size=12)
_times = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.integers(0, 2**50)
_millis = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)
)
_real = st.floats(allow_nan=False, width=64) | st.integers(-(2**40), 2**40)
_colour = st.sampled_from(["red", "green", "blue"])
_point = st.fixed_dictionaries({"x": st.integers(-(2**63), 2**63 - 1)})
_label = st.fixed_dictionaries({"tag": _colour | st.integers(-5, 5)}, optional={"text": st.none() | _text})
_u = st.none() | _text | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.booleans()
_ut = st.integers(-(2**31), 2**31) | _times | st.binary(max_size=4)  # 2**31: not an int, a timestamp
RECORD = st.fixed_dictionaries(
    {
        "s": _text,
        "b": st.binary(max_size=8),
        "flag": st.booleans(),
        "i": st.integers(-(2**31), 2**31 - 1),
        "l": st.integers(-(2**63), 2**63 - 1),
        "f": st.floats(allow_nan=False, width=32),
        "d": _real,
        "e": st.sampled_from(["red", "green", "blue"]),
        "t": _times,
        "tm": _millis,
        "xs": st.lists(st.floats(allow_nan=False), max_size=3),
        "m": st.dictionaries(_text, _text, max_size=3),
        "ut": _ut,
        "ur": _point | _label | _text,
        "ua": st.lists(st.none() | _point | st.floats(allow_nan=False, width=32) | _colour, max_size=3),
        "um": st.dictionaries(_text, st.booleans() | st.lists(_text, max_size=2), max_size=3),
    },
    optional={
        "u": _u,
        "ns": st.none() | _text,
        "nd": st.none() | _real,
        "nxs": st.none() | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3),
        "nrec": st.none()
        | st.fixed_dictionaries({"id": _text}, optional={"n": st.none() | st.integers(-(2**63), 2**63 - 1)}),
    },
)


def _frames(lg: logstore.Log, topic: str, partition: int = 0) -> list:
    """Every frame header of a partition's segments, in order."""
    d = lg.path / "topics" / topic / f"{partition:05d}"
    out = []
    for seg in sorted(d.glob("*.seg")):
        data = seg.read_bytes()
        pos = 0
        while pos < len(data):
            h = parse_header(data[pos : pos + HEADER_SIZE])
            assert not isinstance(h, str), h
            out.append(h)
            pos += h.size
    return out


def _user(table: pa.Table) -> list[dict]:
    return table.drop_columns(["_append_time"]).to_pylist()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(RECORD, min_size=1, max_size=6))
def test_a_record_committed_alone_reads_back_as_the_batch_path_stores_it(tmp_path_factory, records):
    lg = logstore.open(tmp_path_factory.mktemp("log"))
    lg.create_topic("alone", schema=ALL_TYPES)
    lg.create_topic("batch", schema=ALL_TYPES)
    with lg.writer("alone", linger_ms=None) as w:
        for r in records:
            w.append(r)
            w.flush()
    with lg.writer("batch", linger_ms=None) as w:
        w.append_batch(records + records * ROW_FRAME_MAX)  # over ROW_FRAME_MAX: an Arrow frame
    assert all(h.rows for h in _frames(lg, "alone"))
    assert not any(h.rows for h in _frames(lg, "batch"))
    alone, batch = lg.read("alone"), lg.read("batch")
    assert alone.schema == batch.schema
    assert _user(alone) == _user(batch.slice(0, len(records)))
    names = alone.schema.names
    some = [names[i] for i in range(0, len(names) - 2, 3)]  # a column subset: only those are built
    for reader_cols in (some, list(reversed(some)), []):
        part = pa.Table.from_batches(list(lg.reader("alone", columns=reader_cols)))
        full = alone.select(part.schema.names)
        assert part.schema == full.schema and part.to_pylist() == full.to_pylist()
    lg.close()


def test_values_the_row_path_is_not_certain_of_take_the_batch_path(log):
    log.create_topic("s", schema="model_score")
    base = {
        "request_id": "r1",
        "event_time": datetime(2026, 11, 1, tzinfo=UTC),
        "model_id": "m",
        "model_version": "1",
        "score": 0.5,
    }
    with log.writer("s", linger_ms=None) as w:
        w.append(base)
        w.flush()
        w.append({**base, "request_id": "r2", "score": np.float64(0.25)})  # numpy: batch path, accepted
        w.flush()
        with pytest.raises(logstore.RecordValidationError) as err:
            w.append({**base, "request_id": "r3", "score": "high"})
            w.flush()
        assert err.value.field == "score"
        with pytest.raises(logstore.RecordValidationError) as err:
            w.append({**base, "request_id": "r4", "surprise": 1})
            w.flush()
        assert "surprise" in str(err.value)
    assert [h.rows for h in _frames(log, "s")] == [True, False]
    assert log.read("s", columns=["request_id", "score"]).to_pylist() == [
        {"request_id": "r1", "score": 0.5},
        {"request_id": "r2", "score": 0.25},
    ]


def test_row_frames_of_an_older_version_resolve_to_the_latest(log):
    log.create_topic("s", schema="model_score")
    rec = {"request_id": "r1", "event_time": datetime(2026, 11, 1, tzinfo=UTC), "model_id": "m"}
    rec |= {"model_version": "1", "score": 0.5}
    with log.writer("s", linger_ms=None) as w:
        w.append(rec)
        w.flush()
    v2 = log.schema("s")
    v2["fields"].append({"name": "tenant", "type": ["null", "string"], "default": None})
    log.register_schema("s", v2)
    with log.writer("s", linger_ms=None) as w:
        w.append({**rec, "request_id": "r2", "tenant": "shadow"})
        w.flush()
    assert [(h.rows, h.schema_version) for h in _frames(log, "s")] == [(True, 1), (True, 2)]
    got = log.read("s", columns=["request_id", "tenant"]).to_pylist()
    assert got == [{"request_id": "r1", "tenant": None}, {"request_id": "r2", "tenant": "shadow"}]
    sql = log.duckdb().sql("select request_id, tenant, score from s order by _offset").fetchall()
    assert sql == [("r1", None, 0.5), ("r2", "shadow", 0.5)]


def test_keyed_row_frames_land_where_the_batch_path_puts_them(log):
    log.create_topic("a", schema="model_score", partitions=4, key_field="request_id")
    log.create_topic("b", schema="model_score", partitions=4, key_field="request_id")
    t = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        {"request_id": f"r{i}", "event_time": t, "model_id": "m", "model_version": "1", "score": i / 10}
        for i in range(40)
    ]
    with log.writer("a", linger_ms=None) as w:
        for r in rows:
            w.append(r)
            w.flush()
    with log.writer("b", linger_ms=None) as w:
        w.append_batch(rows)
    placed = {n: sorted(log.read(n, columns=["request_id", "_partition"]).to_pylist(), key=str) for n in "ab"}
    assert placed["a"] == placed["b"]


def test_a_row_body_that_passes_its_checksum_but_does_not_decode_is_reported(log):
    log.create_topic("s", schema="model_score")
    rec = {"request_id": "r1", "event_time": datetime(2026, 11, 1, tzinfo=UTC), "model_id": "m"}
    with log.writer("s", linger_ms=None) as w:
        w.append(rec | {"model_version": "1", "score": 0.5})
        w.flush()
    log.close()
    seg = next((log.path / "topics" / "s" / "00000").glob("*.seg"))
    data = seg.read_bytes()
    h = parse_header(data[:HEADER_SIZE])
    body = b"\x07" * h.body_len
    from logstore.checksum import crc

    fields = h._asdict() | {"body_crc": crc(body)}
    seg.write_bytes(pack_header(**fields) + body)
    lg = logstore.open(log.path, readonly=True)
    with pytest.raises(logstore.CorruptFrameError, match="does not decode"):
        lg.read("s")
    assert lg.read("s", on_corrupt="skip").num_rows == 0


# --- the index, appended in batches and in file order -------------------------------------------
def _index_matches_segment(lg: logstore.Log, topic: str, partition: int = 0) -> None:
    d = lg.path / "topics" / topic / f"{partition:05d}"
    for seg in sorted(d.glob("*.seg")):
        entries, damaged = index_mod.load(seg.with_suffix(".idx"))
        assert not damaged
        from logstore.segment import SegmentView

        expected = build_index(scan(SegmentView(seg, seg.stat().st_size), 0))
        assert entries.tobytes() == expected.tobytes(), seg


def test_the_index_catches_up_at_close_and_matches_the_frames(log):
    log.create_topic("s", schema="model_score")
    rec = {"request_id": "r", "event_time": datetime(2026, 11, 1, tzinfo=UTC), "model_id": "m"}
    rec |= {"model_version": "1", "score": 0.5}
    with log.writer("s", linger_ms=None) as w:
        for _ in range(INDEX_BATCH + 5):
            w.append(rec)
            w.flush()
    _index_matches_segment(log, "s")
    assert log.verify("s").ok


def test_writers_of_two_logs_taking_turns_keep_one_index_in_file_order(tmp_path):
    """Two `Log` objects on one directory (as two processes: each its own tail state): each
    commit after the other's unindexed frames; the index still lists every frame once, in order."""
    a, b = logstore.open(tmp_path / "log"), None
    a.create_topic("s", schema="model_score")
    b = logstore.open(tmp_path / "log")
    rec = {"request_id": "r", "event_time": datetime(2026, 11, 1, tzinfo=UTC), "model_id": "m"}
    rec |= {"model_version": "1", "score": 0.5}
    wa, wb = a.writer("s", linger_ms=None), b.writer("s", linger_ms=None)
    for i in range(3 * INDEX_BATCH):
        w = wa if (i // 5) % 2 == 0 else wb
        w.append(rec | {"request_id": f"r{i}"})
        w.flush()
    wa.close()
    wb.close()
    _index_matches_segment(a, "s")
    assert a.read("s", columns=["request_id"]).column(0).to_pylist() == [f"r{i}" for i in range(3 * INDEX_BATCH)]


_KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import UTC, datetime
    import logstore
    lg = logstore.open(sys.argv[1])
    w = lg.writer("s", linger_ms=None)
    rec = {"request_id": "r", "event_time": datetime(2026, 11, 1, tzinfo=UTC), "model_id": "m",
           "model_version": "1", "score": 0.5}
    for i in range(int(sys.argv[2])):
        w.append(rec | {"request_id": f"k{i}"})
        w.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_writer_killed_with_index_entries_unwritten_loses_no_record_and_no_index(tmp_path):
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("s", schema="model_score")
    n = INDEX_BATCH + INDEX_BATCH // 2  # the last half batch's entries die with the process
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED, str(tmp_path / "log"), str(n)], cwd=ROOT, timeout=120, check=False
    )
    assert proc.returncode == -signal.SIGKILL
    idx = next((tmp_path / "log" / "topics" / "s" / "00000").glob("*.idx"))
    assert os.path.getsize(idx) // index_mod.ENTRY_SIZE < n  # the index lags the frames
    ro = logstore.open(tmp_path / "log", readonly=True)
    assert ro.read("s", columns=["request_id"]).column(0).to_pylist() == [f"k{i}" for i in range(n)]
    rec = {"request_id": "after", "event_time": datetime(2026, 11, 1, tzinfo=UTC), "model_id": "m"}
    with lg.writer("s", linger_ms=None) as w:  # the next writer indexes the dead one's frames first
        w.append(rec | {"model_version": "1", "score": 0.5})
        w.flush()
    _index_matches_segment(lg, "s")
    assert lg.verify("s").ok
    assert lg.read("s").num_rows == n + 1


def test_a_roll_seals_a_segment_with_its_whole_index(tmp_path):
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("s", schema="model_score", segment_bytes=4096)
    rec = {"request_id": "r", "event_time": datetime(2026, 11, 1, tzinfo=UTC), "model_id": "m"}
    with lg.writer("s", linger_ms=None) as w:
        for i in range(200):
            w.append(rec | {"model_version": "1", "score": i / 200})
            w.flush()
    segs = sorted((tmp_path / "log" / "topics" / "s" / "00000").glob("*.seg"))
    assert len(segs) > 3
    _index_matches_segment(lg, "s")
    assert lg.read("s").num_rows == 200


# --- the format marker ---------------------------------------------------------------------------
def test_a_format_1_log_reads_and_is_raised_to_format_2_by_its_first_row_frame(tmp_path):
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("s", schema="model_score")
    marker = tmp_path / "log" / "logstore.json"
    assert json.loads(marker.read_text()) == {"format": 2}
    marker.write_text(json.dumps({"format": 1}))
    lg = logstore.open(tmp_path / "log")
    rec = {"request_id": "r", "event_time": datetime(2026, 11, 1, tzinfo=UTC), "model_id": "m"}
    with lg.writer("s", linger_ms=None) as w:
        w.append_batch([rec | {"model_version": "1", "score": 0.5}] * (ROW_FRAME_MAX + 1))
    assert json.loads(marker.read_text()) == {"format": 1}  # Arrow frames only: still format 1
    with lg.writer("s", linger_ms=None) as w:
        w.append(rec | {"model_version": "1", "score": 0.5})
        w.flush()
    assert json.loads(marker.read_text()) == {"format": 2}


def test_a_log_of_a_newer_format_is_refused_never_misread(tmp_path):
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("s", schema="model_score")
    (tmp_path / "log" / "logstore.json").write_text(json.dumps({"format": 4}))
    for readonly in (False, True):
        with pytest.raises(logstore.LogIOError, match="format 4, written by a newer logstore"):
            logstore.open(tmp_path / "log", readonly=readonly)


def test_one_record_frame_costs_its_avro_bytes_and_the_header(log):
    log.create_topic("s", schema="model_score")
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    with log.writer("s", linger_ms=None) as w:
        for i in range(10):
            w.append(
                {
                    "request_id": f"req-{i:08d}",
                    "event_time": t0 + timedelta(milliseconds=i),
                    "model_id": "champion",
                    "model_version": "2026.11.1",
                    "score": 0.5,
                    "latency_ms": 3.25,
                    "host": "runner-1",
                }
            )
            w.flush()
    frames = _frames(log, "s")
    assert all(h.flags & FLAG_ROWS for h in frames)
    assert max(h.size for h in frames) <= HEADER_SIZE + 80


def test_a_run_of_row_frames_reads_as_one_batch_and_a_damaged_one_costs_only_itself(log):
    log.create_topic("s", schema="model_score")
    t = datetime(2026, 11, 1, tzinfo=UTC)
    with log.writer("s", linger_ms=None) as w:
        for i in range(30):
            w.append({"request_id": f"r{i}", "event_time": t, "model_id": "m", "model_version": "1", "score": i})
            w.flush()
    batches = list(log.reader("s"))
    assert len(batches) == 1 and batches[0].column("_offset").to_pylist() == list(range(30))
    assert log.read("s", start={0: 7}, end={0: 12}).column("request_id").to_pylist() == [f"r{i}" for i in range(7, 12)]
    log.close()
    seg = next((log.path / "topics" / "s" / "00000").glob("*.seg"))
    data = bytearray(seg.read_bytes())
    pos = 0
    for _ in range(10):  # the 11th frame's body loses a byte's worth of bits
        pos += parse_header(bytes(data[pos : pos + HEADER_SIZE])).size
    data[pos + HEADER_SIZE + 3] ^= 0xFF
    seg.write_bytes(bytes(data))
    ro = logstore.open(log.path, readonly=True)
    reader = ro.reader("s", on_corrupt="skip")
    got = [r for b in reader for r in b.column("request_id").to_pylist()]
    assert got == [f"r{i}" for i in range(30) if i != 10]
    assert [(g.start_offset, g.end_offset) for g in reader.gaps] == [(10, 11)]
    with pytest.raises(Exception, match="checksum"):
        ro.duckdb().sql("select count(*) from s").fetchall()
