"""DuckDB views over topics: snapshots, pruning, quoting."""

from __future__ import annotations

import threading

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest

import logstore
from logstore import sql
from logstore.names import quote_ident
from logstore.sql import topic_dataset
from tests.conftest import SCORE_SCHEMA, StepClock, score_rows


def test_views_match_read(scores):
    """A topic's view holds exactly what read() returns, system columns included."""
    with scores.writer("scores") as w:
        w.append_batch(score_rows(500))
    con = scores.duckdb()
    got = con.sql("SELECT * FROM scores ORDER BY _partition, _offset").to_arrow_table()
    want = scores.read("scores")
    assert got.to_pylist() == want.to_pylist()
    assert con.execute(
        "SELECT typeof(_append_time), typeof(_offset), typeof(_partition) FROM scores LIMIT 1"
    ).fetchone() == ("TIMESTAMP WITH TIME ZONE", "BIGINT", "INTEGER")


def test_time_filter_prunes_what_is_read(log):
    """A filter on _append_time reads only the chunks that can match (about the last 10%)."""
    log.create_topic("t", schema=SCORE_SCHEMA, compression=None)
    with log.writer("t", clock=StepClock(), linger_ms=None) as w:
        for i in range(100):
            w.append_batch(score_rows(2_000, start=i * 2_000))
    cut = log.read("t", start=180_000, end=180_001)["_append_time"][0].as_py()
    dataset, files = topic_dataset(log, "t", chunk_rows=4_000)
    con = duckdb.connect()
    con.register("v", dataset)
    assert con.execute("SELECT count(*) FROM v WHERE _append_time >= ?", [cut]).fetchone() == (20_000,)
    total = log.describe("t")["bytes"]
    assert files.bytes_read <= 0.15 * total
    files.bytes_read = 0
    assert con.execute("SELECT count(*) FROM v WHERE _offset < 4000").fetchone() == (4_000,)
    assert files.bytes_read <= 0.06 * total


def test_event_time_filter_prunes(log):
    """Event-time ranges from the index prune too."""
    from datetime import timedelta

    from tests.conftest import T0

    log.create_topic("t", schema=SCORE_SCHEMA, compression=None)
    with log.writer("t", linger_ms=None) as w:
        for i in range(50):
            w.append_batch(score_rows(1_000, start=i * 1_000))
    dataset, files = topic_dataset(log, "t", chunk_rows=2_000)
    con = duckdb.connect()
    con.register("v", dataset)
    n = con.execute("SELECT count(*) FROM v WHERE event_time < ?", [T0 + timedelta(milliseconds=3_000)]).fetchone()
    assert n == (3_000,)
    assert files.bytes_read <= 0.1 * log.describe("t")["bytes"]


def test_views_during_appends_see_whole_frames(log):
    """Querying while a writer appends: every count is a multiple of the frame size, never an error."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    stop = threading.Event()

    def write():
        with log.writer("t", linger_ms=None) as w:
            i = 0
            while not stop.is_set() and i < 300:
                w.append_batch(score_rows(50, start=i * 50))
                i += 1

    th = threading.Thread(target=write)
    th.start()
    try:
        seen = []
        for _ in range(30):
            con = log.duckdb()
            seen.append(con.execute("SELECT count(*) FROM t").fetchone()[0])
            con.close()
    finally:
        stop.set()
        th.join()
    assert all(n % 50 == 0 for n in seen)
    assert seen == sorted(seen)


def test_quoted_column_and_topic_names(log):
    """Topics with dots and dashes work; identifiers with quotes, semicolons and spaces cannot inject SQL."""
    weird = 'a"; DROP TABLE x; --'
    log.create_topic("my.topic-1", schema=SCORE_SCHEMA)
    with log.writer("my.topic-1") as w:
        w.append_batch(score_rows(3))
    con = log.duckdb()
    con.execute("CREATE TABLE x AS SELECT 1 AS k")
    con.execute(f'CREATE VIEW {quote_ident("two words; x")} AS SELECT score AS {quote_ident(weird)} FROM "my.topic-1"')
    got = con.execute(f"SELECT count({quote_ident(weird)}) FROM {quote_ident('two words; x')}").fetchone()
    assert got == (3,)
    assert con.execute("SELECT count(*) FROM x").fetchone() == (1,)
    with pytest.raises(logstore.InvalidNameError):
        log.create_topic('bad"; DROP TABLE x; --', schema=SCORE_SCHEMA)
    # Avro field names are [A-Za-z_][A-Za-z0-9_]*: such a column is refused at topic creation, clearly
    with pytest.raises(logstore.SchemaError, match="not a valid Avro field name"):
        log.create_topic("w", schema=pa.schema([pa.field(weird, pa.int64())]))


def test_logstore_sql_query(scores):
    """logstore.sql.query runs a query and returns Arrow."""
    from logstore.sql import query

    with scores.writer("scores") as w:
        w.append_batch(score_rows(30))
    t = query(scores, "SELECT model_id, count(*) AS n FROM scores GROUP BY 1 ORDER BY 1")
    assert t.to_pylist() == [{"model_id": "m0", "n": 10}, {"model_id": "m1", "n": 10}, {"model_id": "m2", "n": 10}]


def test_enum_columns_across_frames(log):
    """Enum (dictionary) columns whose frames carry different dictionaries read as one view."""
    from tests.conftest import T0

    log.create_topic("decisions", schema="decision", key_field="request_id")
    rows = [
        {
            "request_id": f"r{i}",
            "event_time": T0,
            "candidates": ["a", "b"],
            "chosen_model": "a",
            "reason": reason,
            "propensity": 1.0,
            "deadline_ms": 50.0,
        }
        for i, reason in enumerate(["first", "fallback", "sampled", "deadline"])
    ]
    with log.writer("decisions", linger_ms=None) as w:
        for r in rows:
            w.append_batch([r])  # one frame each: each has its own dictionary
    con = log.duckdb()
    got = con.execute("SELECT reason::VARCHAR, count(*) FROM decisions GROUP BY 1 ORDER BY 1").fetchall()
    assert got == [("deadline", 1), ("fallback", 1), ("first", 1), ("sampled", 1)]


def test_small_frames_are_not_compressed(log):
    """Bodies under COMPRESS_MIN_BYTES skip the codec; large ones use the topic's compression."""
    from logstore.frame import FLAG_COMPRESSED
    from logstore.segment import SegmentView, scan

    log.create_topic("t", schema=SCORE_SCHEMA, compression="zstd")
    with log.writer("t", linger_ms=None) as w:
        w.append_batch(score_rows(5))
        w.append_batch(score_rows(5000, start=5))
    seg = next((log.path / "topics" / "t" / "00000").glob("*.seg"))
    flags = [h.flags & FLAG_COMPRESSED for _, h in scan(SegmentView(seg)).frames]
    assert flags == [0, FLAG_COMPRESSED]
    assert log.read("t").num_rows == 5005


def test_damaged_frame_fails_the_query(log):
    """A frame that fails its checksum makes the query fail; its records are never returned."""
    log.create_topic("t", schema=SCORE_SCHEMA, compression=None)
    with log.writer("t", linger_ms=None) as w:
        for i in range(5):
            w.append_batch(score_rows(1_000, start=i * 1_000))
    seg = next((log.path / "topics" / "t" / "00000").glob("*.seg"))
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    con = logstore.open(log.path).duckdb()
    with pytest.raises(duckdb.Error, match="checksum"):
        con.execute("SELECT count(*), sum(score) FROM t").fetchall()


def test_every_scan_reads_the_same_rows(log):
    """The view's scanner, its read methods, a base-class scan of its fragments' files and DuckDB
    all go through the one reader path: the same rows as `read`, filters and projections included."""
    log.create_topic("t", schema=SCORE_SCHEMA, partitions=2, key_field="request_id")
    with log.writer("t", linger_ms=None) as w:
        for i in range(20):
            w.append_batch(score_rows(500, start=i * 500))
    dataset, _ = topic_dataset(log, "t", chunk_rows=2_000, start=250, end=4_700)
    want = log.read("t", start=250, end=4_700)
    flt = (pc.field("_offset") >= 3_100) & (pc.field("score") > 0.5)
    for columns, f in [(None, None), (["score", "_partition"], None), (["model_id"], flt), (["_offset"], flt)]:
        rows = want.filter(flt) if f is not None else want
        rows = rows.select(columns) if columns is not None else rows
        fast = dataset.scanner(columns=columns, filter=f).to_table()
        images = pads.FileSystemDataset.scanner(dataset, columns=columns, filter=f).to_table()
        assert fast.schema == images.schema
        assert fast.to_pylist() == images.to_pylist() == rows.to_pylist()
        assert dataset.to_table(columns=columns, filter=f).to_pylist() == rows.to_pylist()
        assert dataset.count_rows(filter=f) == rows.num_rows
    assert dataset.head(7).to_pylist() == want.slice(0, 7).to_pylist()
    assert dataset.take([0, 3]).to_pylist() == want.take([0, 3]).to_pylist()
    assert sum(b.num_rows for b in dataset.to_batches(columns=["score"])) == want.num_rows
    assert (
        dataset.filter(flt).to_table(columns=["_offset"]).to_pylist()
        == want.filter(flt).select(["_offset"]).to_pylist()
    )
    assert dataset.scanner(columns=[], use_threads=False).count_rows() == want.num_rows
    fragment = next(iter(dataset.get_fragments()))
    assert fragment.to_table().to_pylist() == want.slice(0, fragment.to_table().num_rows).to_pylist()
    con = duckdb.connect()
    con.register("v", dataset)
    got = con.sql("SELECT * FROM v ORDER BY _partition, _offset").to_arrow_table()
    assert got.to_pylist() == want.to_pylist()
    with pytest.raises(pa.ArrowInvalid):
        dataset.scanner(columns=["nope"])
    with pytest.raises(TypeError, match="bogus"):
        dataset.scanner(bogus=1)


def test_base_class_scans_prune_too(log):
    """A base-class scan with a filter reads only the fragments the guarantees leave."""
    log.create_topic("t", schema=SCORE_SCHEMA, compression=None)
    with log.writer("t", linger_ms=None) as w:
        for i in range(50):
            w.append_batch(score_rows(1_000, start=i * 1_000))
    dataset, files = topic_dataset(log, "t", chunk_rows=2_000)
    got = pads.FileSystemDataset.scanner(dataset, columns=["_offset"], filter=pc.field("_offset") < 1_500).to_table()
    assert got.column(0).to_pylist() == list(range(1_500))
    assert 0 < files.bytes_read <= 0.06 * log.describe("t")["bytes"]


def test_retention_under_an_open_view_skips_the_deleted_segments(log):
    """Segments deleted by retention after a view was made are skipped, by DuckDB and by base-class
    scans alike: the rows left are exactly the surviving ones, in order, and no error is raised."""
    log.create_topic("t", schema=SCORE_SCHEMA, segment_bytes=3_000, retention_bytes=20_000)
    with log.writer("t", linger_ms=None) as w:
        for i in range(0, 2_000, 50):
            w.append_batch(score_rows(50, start=i))
    dataset, _ = topic_dataset(log, "t", chunk_rows=100)
    assert dataset.count_rows() == 2_000
    assert log.enforce_retention().deleted
    survivors = log.read("t")["_offset"].to_pylist()
    assert 0 < len(survivors) < 2_000
    con = duckdb.connect()
    con.register("v", dataset)
    assert [r[0] for r in con.execute("SELECT _offset FROM v ORDER BY _offset").fetchall()] == survivors
    assert dataset.scanner(columns=["_offset"]).to_table().column(0).to_pylist() == survivors
    images = pads.FileSystemDataset.scanner(dataset, columns=["_offset"]).to_table()
    assert images.column(0).to_pylist() == survivors


def test_quote_ident_refuses_control_characters():
    """Identifiers are double-quoted with quotes doubled; control characters and empty names are refused."""
    assert quote_ident('a"b') == '"a""b"'
    assert quote_ident("my.topic-1 ü") == '"my.topic-1 ü"'
    for bad in ["", "a\x00b", "a\nb", "a\rb", "\x7f", "a\x85b", 3]:
        with pytest.raises(logstore.InvalidNameError):
            quote_ident(bad)


@pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")  # DuckDB 2 prefers relations
def test_fetch_arrow_takes_relations_and_results():
    """`fetch_arrow` turns a relation or an executed statement into a pyarrow Table."""
    con = duckdb.connect()
    want = pa.table({"k": pa.array([1], pa.int32())})
    assert sql.fetch_arrow(con.sql("SELECT 1::INT AS k")).equals(want)
    assert sql.fetch_arrow(con.execute("SELECT 1::INT AS k")).equals(want)


@pytest.mark.parametrize("job_bytes", [1, 3_000, 1 << 30])
def test_scan_jobs_of_several_frames_keep_order_across_versions(log, monkeypatch, job_bytes):
    """Frames are decoded a few to a job; a frame of an older schema version inside a job goes
    through the reader and keeps its place."""
    from tests.logstore.test_evolution import V1, V2, T

    monkeypatch.setattr(sql, "JOB_BYTES", job_bytes)
    log.create_topic("s", schema=V1)
    old = log.writer("s", linger_ms=None)
    old.append_batch([{"request_id": "a0", "event_time": T, "score": 0.5, "legacy": "x"}])
    log.register_schema("s", V2)
    new = log.writer("s", schema=V2, linger_ms=None)
    for i in range(1, 7):
        if i % 2:
            new.append_batch([{"request_id": f"b{i}", "event_time": T, "score": i / 8, "model_id": "m2"}] * 3)
        else:
            old.append_batch([{"request_id": f"a{i}", "event_time": T, "score": i / 8, "legacy": "y"}] * 2)
    old.close()
    new.close()
    got = log.duckdb().sql("SELECT request_id, score, model_id, _offset FROM s ORDER BY _offset").fetchall()
    want = log.read("s").select(["request_id", "score", "model_id", "_offset"]).to_pylist()
    assert got == [tuple(r.values()) for r in want] and len(got) == 16
    scanned = topic_dataset(log, "s")[0].scanner(columns=["_offset"]).to_table().column(0).to_pylist()
    assert scanned == list(range(16))  # in offset order, not sorted after the fact
