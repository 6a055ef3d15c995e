"""Output rows with constant columns: assembling and hashing them equals doing so expanded."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from logstore.frame import decode_runs
from replay.engine.rows import Const, Constants, Rows, Span, assemble, expand
from replay.runner.hashing import ContentHash

TS = pa.timestamp("us", tz="UTC")
CODES = pa.dictionary(pa.int8(), pa.string())
SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("model_id", CODES),
        ("model_version", CODES),
        ("score", pa.float64()),
        ("scores", pa.list_(pa.float64())),
        ("label", pa.string()),
        ("latency_ms", pa.float32()),
        ("input_partition", pa.int32()),
        ("input_offset", pa.int64()),
        ("clock", TS),
        ("read_fence", TS),
        ("fence", pa.map_(pa.string(), pa.int64())),
    ]
)


def _column(draw, f: pa.Field, n: int, start: int, at: int):
    """A column of `n` rows for field `f`: a constant, a span or an array, drawn."""
    t = f.type
    name = f.name
    if name in ("request_id",):
        return pa.array([f"r{start + i}" if i % 5 else None for i in range(n)], t)
    if name in ("model_id", "model_version"):
        return Const(draw(st.sampled_from(["a", "b", "c"])))
    if name == "score":
        return pa.array(np.arange(n, dtype=np.float64) / 7 + start)
    if name == "scores":
        if draw(st.booleans()):
            return Const(None)
        return pa.array([[float(i)] if i % 2 else None for i in range(n)], t)
    if name == "label":
        return draw(
            st.sampled_from([Const(None), Const("yes"), pa.array(["x" if i % 3 else None for i in range(n)], t)])
        )
    if name == "latency_ms":
        return Const(float(np.float32(draw(st.floats(0, 10)))))
    if name == "input_partition":
        return Const(draw(st.integers(0, 3)))
    if name == "input_offset":
        if draw(st.booleans()):
            return Span(start)
        return pa.array(start + np.cumsum(np.full(n, draw(st.integers(1, 3)))), t)
    if name in ("clock", "read_fence"):
        if draw(st.booleans()):
            return Const(at)
        return pa.array(at + np.arange(n) // 3, pa.int64()).view(t)
    if name == "fence":
        if draw(st.booleans()):
            return Const(None)
        return pa.array([[("t/0", start + i)] if i % 2 else None for i in range(n)], t)
    raise AssertionError(name)


@st.composite
def _parts(draw) -> list[Rows]:
    out = []
    start, at = draw(st.integers(0, 1000)), draw(st.integers(0, 10**9))
    for _ in range(draw(st.integers(1, 5))):
        n = draw(st.integers(1, 40))
        cols = {f.name: _column(draw, f, n, start, at) for f in SCHEMA}
        out.append(Rows(("in", 0, "m"), n, SCHEMA, cols))
        start += n + draw(st.integers(0, 2))
        at += draw(st.integers(0, 5))
    return out


@settings(max_examples=80, deadline=None)
@given(parts=_parts())
def test_assemble_equals_concatenating_the_expanded_rows(parts):
    """One batch from many parts holds exactly the rows of the parts, expanded, in order."""
    got = decode_runs(assemble(parts, Constants()))
    want = pa.Table.from_batches([r.to_batch() for r in parts]).combine_chunks()
    assert got.num_rows == sum(r.n for r in parts)
    for name in SCHEMA.names:
        a, b = got.column(name), want.column(name)
        if pa.types.is_dictionary(a.type):
            a = a.dictionary_decode()
        if pa.types.is_dictionary(b.type):
            b = b.combine_chunks().dictionary_decode()
        assert a.to_pylist() == b.to_pylist(), name


@settings(max_examples=80, deadline=None)
@given(parts=_parts())
def test_hashing_rows_equals_hashing_their_batches(parts):
    """Constants and spans hashed as runs give the digest their expanded columns give."""
    fast, slow = ContentHash(), ContentHash()
    for r in parts:
        fast.update_rows(r)
        slow.update("in", 0, "m", r.to_batch())
    assert fast.hexdigest() == slow.hexdigest()


def test_filter_keeps_constants_and_expands_spans():
    """Filtering rows keeps a constant as a constant and turns a span into the offsets kept."""
    r = Rows(
        ("in", 0, "m"),
        4,
        pa.schema([("input_offset", pa.int64()), ("clock", TS)]),
        {"input_offset": Span(10), "clock": Const(5)},
    )
    kept = r.filter(np.array([False, True, False, True]))
    assert kept.n == 2
    assert kept.cols["clock"] == Const(5)
    assert kept.column("input_offset").to_pylist() == [11, 13]


def test_constants_expand_to_their_type():
    """A string constant expands to dictionary codes or to plain strings, per the column's type."""
    c = Constants()
    coded = expand(Const("model-a"), 3, CODES, c)
    assert coded.type == CODES and coded.indices.to_pylist() == [0, 0, 0]
    assert expand(Const("x"), 2, pa.string(), c).to_pylist() == ["x", "x"]
    assert expand(Const(None), 2, pa.list_(pa.float64()), c).null_count == 2
    assert expand(Const(7), 3, TS, c).cast(pa.int64()).to_pylist() == [7, 7, 7]
    big = expand(Const("y"), 70_000, pa.string(), c)  # past the cached length: rebuilt longer
    assert len(big) == 70_000 and big[-1].as_py() == "y"


def test_constants_of_every_part_become_runs():
    """A column constant in every part is one run per value change, of its field's type."""
    schema = pa.schema([("model_id", pa.string()), ("clock", TS), ("label", pa.string())])
    parts = [
        Rows(("in", 0, "m"), n, schema, {"model_id": Const("a"), "clock": Const(t), "label": Const(None)})
        for n, t in [(3, 10), (2, 10), (4, 11)]
    ]
    got = assemble(parts, Constants())
    clock = got.column(1)
    assert pa.types.is_run_end_encoded(clock.type)
    assert clock.run_ends.to_pylist() == [5, 9] and clock.values.cast(pa.int64()).to_pylist() == [10, 11]
    assert got.column(0).type.value_type == pa.string() and got.column(0).run_ends.to_pylist() == [9]
    coded = assemble([Rows(("in", 0, "m"), 2, pa.schema([("model_id", CODES)]), {"model_id": Const("a")})] * 2)
    assert coded.column(0).type == CODES  # dictionary-typed: codes, not runs
    plain = decode_runs(got)
    assert plain.column(0).to_pylist() == ["a"] * 9 and plain.column(2).null_count == 9
