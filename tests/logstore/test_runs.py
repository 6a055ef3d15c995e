"""Run-end encoded columns: stored as runs when given so, handed out decoded by every reader."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logstore.errors import RecordValidationError
from logstore.frame import decode_runs, is_stored_runs, run_end_decode
from tests.conftest import SCORE_SCHEMA, score_rows

from .test_dictionary import frame_schemas

TS = pa.timestamp("us", tz="UTC")


def runs(values: list, ends: list[int], t: pa.DataType) -> pa.Array:
    return pa.RunEndEncodedArray.from_arrays(pa.array(ends, pa.int32()), pa.array(values, t))


def score_batch(n: int, *, model=None, latency=None) -> pa.RecordBatch:
    """`n` score rows; `model_id` / `latency_ms` replaced by the given (run-end encoded) columns."""
    plain = pa.RecordBatch.from_pylist(score_rows(n), schema=SCORE_SCHEMA)
    cols = dict(zip(plain.schema.names, plain.columns))
    if model is not None:
        cols["model_id"] = model
    if latency is not None:
        cols["latency_ms"] = latency
    return pa.RecordBatch.from_arrays(list(cols.values()), names=list(cols))


def plain(t: pa.Table) -> list[dict]:
    return t.drop_columns(["_partition", "_offset", "_append_time"]).to_pylist()


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_run_end_encoded_columns_are_stored_as_runs_and_read_decoded(log, compression):
    """A column given run-end encoded is stored so (marked); log.read, the reader and SQL see the
    field's own type and every row's value."""
    log.create_topic("t", schema=SCORE_SCHEMA, compression=compression)
    model = runs(["a", "b", "a"], [100, 250, 300], pa.string())
    latency = runs([1.5, None], [120, 300], pa.float32())
    batch = score_batch(300, model=model, latency=latency)
    with log.writer("t") as w:
        w.append_batch(batch)
    (schema,) = frame_schemas(log, "t")
    assert is_stored_runs(schema.field("model_id")) and is_stored_runs(schema.field("latency_ms"))
    want = decode_runs(batch).to_pylist()
    got = log.read("t")
    assert got.schema.field("model_id").type == pa.string() and got.schema.field("latency_ms").type == pa.float32()
    assert plain(got) == want
    assert [r for b in log.reader("t") for r in plain(pa.Table.from_batches([b]))] == want
    con = log.duckdb()
    rows = con.execute("select model_id, count(*), count(latency_ms) from t group by 1 order by 1").fetchall()
    assert rows == [("a", 150, 100), ("b", 150, 20)]


def test_a_null_run_in_a_required_field_is_refused_naming_the_record(log):
    """The values of a run are checked like values: a null run in a required field rejects the
    batch, naming the first record it covers, and nothing is written."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    bad = score_batch(50, model=runs(["a", None], [20, 50], pa.string()))
    with log.writer("t") as w:
        with pytest.raises(RecordValidationError) as e:
            w.append_batch(bad)
    assert e.value.index == 20 and e.value.field == "model_id"
    assert log.read("t").num_rows == 0


def test_runs_that_cannot_be_stored_so_are_decoded(log):
    """A sliced run-end encoded column is stored plain; runs of another type are converted (or
    refused) as their values would be."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    sliced = runs(["a", "b"], [30, 60], pa.string()).slice(10, 40)
    with log.writer("t") as w:
        w.append_batch(score_batch(40, model=sliced))
        with pytest.raises(RecordValidationError, match="expected Arrow float, found a column of Arrow type double"):
            w.append_batch(score_batch(40, latency=runs([2.0], [40], pa.float64())))
    (schema,) = frame_schemas(log, "t")
    assert not any(is_stored_runs(f) for f in schema)
    assert [r["model_id"] for r in plain(log.read("t"))] == ["a"] * 20 + ["b"] * 20


def test_keyed_topics_and_event_ranges_take_runs(log):
    """A keyed topic places run-end encoded rows by key (decoded to do so); an event-time field
    given as runs still bounds the frame's event times."""
    log.create_topic("k", schema=SCORE_SCHEMA, partitions=3, key_field="request_id")
    log.create_topic("e", schema=SCORE_SCHEMA, event_time_field="event_time")
    batch = score_batch(90, model=runs(["x"], [90], pa.string()))
    with log.writer("k") as w:
        w.append_batch(batch)
    assert sorted(r["request_id"] for r in plain(log.read("k"))) == sorted(f"r{i}" for i in range(90))
    t0 = batch.column(1)[0].value
    event = pa.RunEndEncodedArray.from_arrays(
        pa.array([60, 90], pa.int32()), pa.array([t0, t0 + 5_000], pa.int64()).view(TS)
    )
    cols = dict(zip(batch.schema.names, batch.columns))
    cols["event_time"] = event
    with log.writer("e") as w:
        w.append_batch(pa.RecordBatch.from_arrays(list(cols.values()), names=list(cols)))
    got = log.read("e", start=batch.column(1)[0].as_py(), by="event_time")
    assert got.num_rows == 90
    assert log.read("e", start=pa.scalar(t0 + 1, TS).as_py(), by="event_time").num_rows == 30


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_runs_round_trip(tmp_path_factory, data):
    """Random runs (nulls included) of a string and a float column read back as their rows."""
    import logstore

    log = logstore.open(tmp_path_factory.mktemp("runs") / "log")
    log.create_topic("t", schema=SCORE_SCHEMA, compression=data.draw(st.sampled_from([None, "zstd"])))
    lengths = data.draw(st.lists(st.integers(1, 30), min_size=1, max_size=8))
    ends = list(np.cumsum(lengths))
    n = int(ends[-1])
    models = data.draw(st.lists(st.sampled_from(["a", "b"]), min_size=len(ends), max_size=len(ends)))
    lat = data.draw(st.lists(st.one_of(st.none(), st.floats(0, 100, width=32)), min_size=len(ends), max_size=len(ends)))
    batch = score_batch(n, model=runs(models, ends, pa.string()), latency=runs(lat, ends, pa.float32()))
    with log.writer("t") as w:
        w.append_batch(batch)
    assert plain(log.read("t")) == decode_runs(batch).to_pylist()
    log.close()


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=1, max_size=6), data=st.data())
def test_run_end_decode_takes_dictionary_values(lengths, data):
    """Runs of dictionary values (which Arrow's kernel refuses) decode run by run, sliced too."""
    ends = list(np.cumsum(lengths))
    codes = data.draw(st.lists(st.integers(0, 2), min_size=len(ends), max_size=len(ends)))
    values = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), pa.array(["x", "y", "z"]))
    col = pa.RunEndEncodedArray.from_arrays(pa.array(ends, pa.int32()), values)
    n = int(ends[-1])
    lo = data.draw(st.integers(0, n - 1))
    hi = data.draw(st.integers(lo, n))
    want = [v for v, k in zip(values.to_pylist(), lengths) for _ in range(k)][lo:hi]
    assert run_end_decode(col.slice(lo, hi - lo)).to_pylist() == want
