"""Dictionary-encoded string columns: how frames store them, how every reader hands them out."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore
from logstore.errors import RecordValidationError
from logstore.frame import Dictionaries, decode_body, encode_body, is_stored_dictionary
from logstore.segment import SegmentView, scan
from logstore.sql import topic_dataset
from tests.conftest import SCORE_SCHEMA, score_rows


def frame_schemas(log, topic: str, partition: int = 0) -> list[pa.Schema]:
    """The Arrow schema each frame body of a partition stores, in order."""
    out = []
    for seg in sorted((log.path / "topics" / topic / f"{partition:05d}").glob("*.seg")):
        view = SegmentView(seg)
        for pos, header in scan(view).frames:
            out.append(pa.ipc.open_stream(view.body(pos, header)).schema)
    return out


def stored(schema: pa.Schema) -> set[str]:
    return {f.name for f in schema if is_stored_dictionary(f)}


def write_batches(log, topic: str, batches, **writer) -> None:
    with log.writer(topic, linger_ms=None, **writer) as w:
        for b in batches:
            w.append_batch(b)


def test_repeating_strings_are_stored_as_dictionaries(log):
    """In a compressed topic a batched writer stores a repeating string column as a dictionary
    (narrow codes, marked), a column of distinct values as it is; reads give plain strings."""
    log.create_topic("t", schema=SCORE_SCHEMA, compression="zstd")
    rows = score_rows(8_000)
    write_batches(log, "t", [rows[:4_000], rows[4_000:]], durability="none")
    schemas = frame_schemas(log, "t")
    assert len(schemas) == 2
    for s in schemas:
        assert stored(s) == {"model_id"}
        assert s.field("model_id").type == pa.dictionary(pa.int8(), pa.string())
        assert s.field("request_id").type == pa.string()
    got = log.read("t")
    assert got.schema.field("model_id").type == pa.string()
    assert got.drop_columns(["_partition", "_offset", "_append_time"]).to_pylist() == rows


def test_frames_committed_alone_store_strings_as_given(log):
    """Flush-mode commits of one frame keep plain strings plain (no hashing on the caller's path)."""
    log.create_topic("t", schema=SCORE_SCHEMA, compression="zstd")
    write_batches(log, "t", [score_rows(4_000)], durability="flush")
    assert [stored(s) for s in frame_schemas(log, "t")] == [set()]


def test_dictionary_input_is_stored_as_given_in_any_topic(log):
    """A string column given as an Arrow dictionary is stored as one, compressed or not, without
    a round trip through plain strings; every reader sees the same values."""
    for name, compression in [("plain", None), ("packed", "zstd")]:
        log.create_topic(name, schema=SCORE_SCHEMA, compression=compression)
        table = pa.Table.from_pylist(score_rows(300), schema=SCORE_SCHEMA)
        codes = pc.dictionary_encode(table["model_id"]).combine_chunks()
        given = table.set_column(2, pa.field("model_id", codes.type, nullable=False), codes)
        write_batches(log, name, [given], durability="flush")
        (schema,) = frame_schemas(log, name)
        assert stored(schema) == {"model_id"}
        assert log.read(name).select(table.column_names).cast(table.schema).equals(table)


def test_dictionary_input_is_validated(log):
    """A null code in a non-nullable string column rejects the batch, naming record and field."""
    log.create_topic("t", schema=SCORE_SCHEMA, compression=None)
    table = pa.Table.from_pylist(score_rows(5), schema=SCORE_SCHEMA)
    codes = pa.DictionaryArray.from_arrays(pa.array([0, 1, None, 0, 1], pa.int8()), pa.array(["a", "b"]))
    bad = table.set_column(2, "model_id", codes)
    with pytest.raises(RecordValidationError) as err:
        write_batches(log, "t", [bad])
    assert (err.value.index, err.value.field) == (2, "model_id")
    assert log.read("t").num_rows == 0
    # a dictionary holding a null value is decoded and checked like plain strings
    holes = pa.DictionaryArray.from_arrays(pa.array([0, 1, 1, 0, 0], pa.int32()), pa.array(["a", None]))
    with pytest.raises(RecordValidationError) as err:
        write_batches(log, "t", [table.set_column(2, "model_id", holes)])
    assert (err.value.index, err.value.field) == (1, "model_id")
    assert log.read("t").num_rows == 0


def test_dictionaries_reuse_and_renew():
    """A column keeps its last dictionary while every value is in it and builds a new one when
    a value is not; a column of distinct values is left alone and not probed again at once."""
    d = Dictionaries([0, 1])
    ids = pa.array([f"r{i}" for i in range(1_000)])
    first = pa.record_batch({"id": ids, "m": pa.array(["a", "b"] * 500)})
    out = d.apply(first, auto=True)
    assert stored(out.schema) == {"m"} and out.column(0).type == pa.string()
    same = d.apply(pa.record_batch({"id": ids, "m": pa.array(["b"] * 1_000)}), auto=True)
    assert same.column(1).dictionary.to_pylist() == ["a", "b"]
    assert same.column(1).to_pylist() == ["b"] * 1_000
    new = d.apply(pa.record_batch({"id": ids, "m": pa.array(["c", None] * 500)}), auto=True)
    assert new.column(1).to_pylist() == ["c", None] * 500
    assert d._rest[0] == Dictionaries.RETRY - 2  # not probed for the two frames after the first


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    frames=st.lists(
        st.tuples(st.integers(1, 400), st.integers(1, 40), st.booleans(), st.booleans()), min_size=1, max_size=6
    ),
    compression=st.sampled_from([None, "zstd", "lz4"]),
    durability=st.sampled_from(["none", "flush"]),
)
def test_round_trip_with_any_storage(tmp_path_factory, monkeypatch, frames, compression, durability):
    """Whatever mix of plain and dictionary frames a topic holds, `read`, `reader` and the SQL
    view return the same strings as were written (nulls included)."""
    monkeypatch.setattr("logstore.writer.COMPRESS_MIN_BYTES", 0)  # small frames take the codec too
    log = logstore.open(tmp_path_factory.mktemp("dict") / "log")
    schema = pa.schema([pa.field("k", pa.string(), nullable=False), pa.field("note", pa.string())])
    log.create_topic("t", schema=schema, compression=compression)
    written, batches = [], []
    for rows, distinct, nulls, as_dictionary in frames:
        k = pa.array([f"value-{(i * 7) % distinct}" for i in range(rows)])
        note = pa.array([None if nulls and i % 3 == 0 else f"n{i % 2}" for i in range(rows)])
        if as_dictionary:
            k = pc.dictionary_encode(k)
        batch = pa.record_batch([k, note], names=["k", "note"])
        batches.append(batch)
        written += batch.to_pylist()
    write_batches(log, "t", batches, durability=durability)
    want = [{"k": r["k"], "note": r["note"]} for r in written]
    assert log.read("t").select(["k", "note"]).to_pylist() == want
    assert pa.Table.from_batches(list(log.reader("t"))).select(["k", "note"]).to_pylist() == want
    con = log.duckdb()
    assert con.execute("SELECT k, note FROM t ORDER BY _offset").fetchall() == [(r["k"], r["note"]) for r in want]
    groups = con.execute("SELECT k, count(*) FROM t GROUP BY k ORDER BY k").fetchall()
    counts: dict[str, int] = {}
    for r in want:
        counts[r["k"]] = counts.get(r["k"], 0) + 1
    assert groups == sorted(counts.items())
    assert log.verify().ok


def test_views_of_mixed_storage(log):
    """A view whose frames store a column both ways types it as a dictionary and reads every
    frame right: plain frames are encoded, filters on the column push down."""
    log.create_topic("t", schema=SCORE_SCHEMA, compression="zstd")
    rows = score_rows(12_000)
    write_batches(log, "t", [rows[:3_000]], durability="flush")  # plain
    write_batches(log, "t", [rows[3_000:7_000], rows[7_000:11_000]], durability="none")  # dictionaries
    write_batches(log, "t", [rows[11_000:]], durability="flush")  # plain again
    assert [stored(s) for s in frame_schemas(log, "t")] == [set(), {"model_id"}, {"model_id"}, set()]
    dataset, _ = topic_dataset(log, "t")
    assert pa.types.is_dictionary(dataset.schema.field("model_id").type)
    con = log.duckdb()
    assert con.execute("SELECT typeof(model_id) FROM t LIMIT 1").fetchall() == [("VARCHAR",)]
    got = con.execute("SELECT model_id, count(*), sum(score) FROM t GROUP BY 1 ORDER BY 1").fetchall()
    want: dict[str, list] = {}
    for r in rows:
        w = want.setdefault(r["model_id"], [0, 0.0])
        w[0] += 1
        w[1] += r["score"]
    assert [(m, n) for m, n, _ in got] == [(m, w[0]) for m, w in sorted(want.items())]
    assert [s for _, _, s in got] == pytest.approx([w[1] for _, w in sorted(want.items())])
    assert con.execute("SELECT count(*) FROM t WHERE model_id = 'm1'").fetchall() == [(4_000,)]
    assert con.sql("SELECT * FROM t ORDER BY _offset").to_arrow_table().select(SCORE_SCHEMA.names).to_pylist() == rows
    # a base-class scan reads the fragments' files: the same rows through the same decoder, one
    # dictionary per field in each file
    images = pads.FileSystemDataset.scanner(dataset).to_table()
    assert images.schema == dataset.schema
    assert images.select(SCORE_SCHEMA.names).to_pylist() == rows


def test_scanner_reads_like_a_pyarrow_scanner(log):
    """`TopicDataset.scanner` honours the column order asked for and offers Scanner's read methods."""
    log.create_topic("t", schema=SCORE_SCHEMA, compression="zstd")
    write_batches(log, "t", [score_rows(3_000), score_rows(3_000, start=3_000)], durability="none")
    dataset, _ = topic_dataset(log, "t")
    sc = dataset.scanner(columns=["score", "model_id", "_offset"])
    assert sc.projected_schema.names == ["score", "model_id", "_offset"]
    table = sc.to_table()
    assert table.column_names == ["score", "model_id", "_offset"]
    assert table["_offset"].to_pylist() == list(range(6_000))
    assert sc.count_rows() == 6_000
    assert sc.head(5).to_pylist() == table.slice(0, 5).to_pylist()
    assert sum(b.num_rows for b in sc.to_batches()) == 6_000
    filtered = dataset.scanner(columns=["model_id"], filter=pc.field("score") > 0.5).to_table()
    assert filtered.num_rows == sum(1 for r in score_rows(6_000) if r["score"] > 0.5)
    assert dataset.count_rows(filter=pc.field("score") > 0.5) == filtered.num_rows
    assert dataset.take([1, 4_000], columns=["_offset"]).column(0).to_pylist() == [1, 4_000]
    assert dataset.to_table(columns=["model_id"]).schema.field(0).type == dataset.schema.field("model_id").type


def test_frame_bodies_keep_dictionaries_uncompressed():
    """With a codec, a body's dictionary messages are stored uncompressed and its record batch
    compressed; any Arrow reader decodes it, and `decode_body` gives plain strings back."""
    batch = pa.record_batch({"m": pa.array(["x", "y", None, "x"] * 500), "v": pa.array(range(2_000))})
    body = encode_body(
        Dictionaries([0]).apply(batch, auto=True), schema_version=1, options=pa.ipc.IpcWriteOptions(compression="zstd")
    )
    data = pa.py_buffer(b"".join(bytes(memoryview(p).cast("B")) for p in body.parts))
    assert data.size == body.size
    from logstore.checksum import crc

    assert crc(data) == body.crc
    messages = list(pa.ipc.MessageReader.open_stream(data))
    assert [m.type for m in messages] == ["schema", "dictionary", "record batch"]
    dictionary, record = messages[1], messages[2]
    assert b"x" in dictionary.body.to_pybytes()  # readable as is: not compressed
    assert record.body.size < 2_000 * 8  # the 16,000 bytes of `v` went through the codec
    assert decode_body(data).equals(batch)


def test_old_versions_stored_as_dictionaries_resolve(log):
    """Frames of an older schema version whose strings are dictionaries resolve to the current
    version in reads and in the SQL view."""
    v1 = {"type": "record", "name": "S", "fields": [{"name": "k", "type": "string"}, {"name": "m", "type": "string"}]}
    v2 = {
        "type": "record",
        "name": "S",
        "fields": [
            {"name": "k", "type": "string"},
            {"name": "m", "type": "string"},
            {"name": "extra", "type": ["null", "string"], "default": None},
        ],
    }
    log.create_topic("s", schema=v1, compression="zstd")
    old = [{"k": f"k{i}", "m": f"m{i % 3}"} for i in range(24_000)]
    write_batches(log, "s", [old[:12_000], old[12_000:]], durability="none")
    assert stored(frame_schemas(log, "s")[0]) == {"m"}
    log.register_schema("s", v2)
    with log.writer("s", schema=v2, linger_ms=None) as w:
        w.append_batch([{"k": "new", "m": "m9", "extra": "e"}])
    want = [dict(r, extra=None) for r in old] + [{"k": "new", "m": "m9", "extra": "e"}]
    assert log.read("s").select(["k", "m", "extra"]).to_pylist() == want
    con = log.duckdb()
    assert con.execute("SELECT m, count(*) FROM s GROUP BY m ORDER BY m").fetchall() == [
        ("m0", 8_000),
        ("m1", 8_000),
        ("m2", 8_000),
        ("m9", 1),
    ]


def test_record_size_limit_counts_dictionary_values(log):
    """A record whose dictionary-coded string is over max_record_bytes is refused by index; a
    batch of small records over a large dictionary passes."""
    log.create_topic("t", schema=SCORE_SCHEMA, compression=None, max_record_bytes=300)
    table = pa.Table.from_pylist(score_rows(200), schema=SCORE_SCHEMA)
    big = pa.DictionaryArray.from_arrays(pa.array([0] * 200, pa.int8()), pa.array(["m", "x" * 1000]))
    write_batches(log, "t", [table.set_column(2, "model_id", big)])  # the long value is never used
    codes = pa.array([0] * 200, pa.int8()).to_numpy().copy()
    codes[7] = 1
    bad = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(["m", "x" * 1000]))
    with pytest.raises(logstore.RecordTooLargeError) as err:
        write_batches(log, "t", [table.set_column(2, "model_id", bad)])
    assert err.value.index == 7
    assert log.read("t").num_rows == 200


def test_a_probe_that_does_not_parse_is_no_evidence(log):
    """The view's types come from the schema messages of a few frames, read unverified: a probe
    whose schema message is garbled, or whose frame runs past the view, counts for nothing."""
    from logstore.sql import view_schema

    log.create_topic("t", schema=SCORE_SCHEMA, compression="zstd")
    table = pa.Table.from_pylist(score_rows(300), schema=SCORE_SCHEMA)
    codes = pc.dictionary_encode(table["model_id"]).combine_chunks()
    write_batches(log, "t", [table.set_column(2, pa.field("model_id", codes.type, nullable=False), codes)])
    (seg,) = (log.path / "topics" / "t" / "00000").glob("*.seg")
    view = SegmentView(seg)
    logical = log.arrow_schema("t", system_columns=True)
    assert pa.types.is_dictionary(view_schema(logical, [(view, 0)]).field("model_id").type)

    class Garbled:  # the same header, a schema message of 0xff
        size, header_at = view.size, view.header_at
        buffer = pa.py_buffer(view.buffer.to_pybytes()[:64] + b"\xff" * 64 + view.buffer.to_pybytes()[128:])

    class Cut:  # the frame runs past what the view holds
        size, header_at, buffer = view.size - 1, view.header_at, view.buffer

    assert view_schema(logical, [(Garbled, 0), (Cut, 0)]) == logical
