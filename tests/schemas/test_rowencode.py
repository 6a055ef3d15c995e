"""The generated row encoder (`schemas.rowencode`) accepts exactly the records the row codec's
converters and fastavro accept, and writes the same bytes: checked by property against the
converter path, on well-typed, ill-typed and edge values of every type it generates code for."""

from __future__ import annotations

import copy
import functools
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from schemas import rowcodec

COLOURS = ["red", "green", "blue"]
COMMON = {
    "type": "record",
    "name": "Common",
    "fields": [
        {"name": "s", "type": "string"},
        {"name": "b", "type": "bytes"},
        {"name": "flag", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "e", "type": {"type": "enum", "name": "Colour", "symbols": COLOURS}},
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "tm", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "xs", "type": {"type": "array", "items": "double"}},
        {"name": "m", "type": {"type": "map", "values": "string"}},
        {"name": "ns", "type": ["null", "string"], "default": None},
        {"name": "sn", "type": ["string", "null"]},
        {"name": "nf", "type": ["null", "float"], "default": None},
        {"name": "nxs", "type": ["null", {"type": "array", "items": ["null", "long"]}], "default": None},
        {"name": "mx", "type": {"type": "map", "values": {"type": "array", "items": "Colour"}}},
        {"name": "ni", "type": ["null", "int"], "default": None},
        {"name": "status", "type": "string", "default": "ok"},
        {"name": "n", "type": "long", "default": 7},
        {"name": "g", "type": "double", "default": 1},
        {
            "name": "nr",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Inner",
                    "fields": [{"name": "a", "type": "string"}, {"name": "k", "type": ["null", "long"]}],
                },
            ],
            "default": None,
        },
    ],
}
NAMES = [f["name"] for f in COMMON["fields"]]


@functools.cache
def _common(event: str | None) -> tuple[rowcodec.RowCodec, rowcodec.RowCodec]:
    return _codecs(COMMON, event)


def _codecs(schema: dict, event: str | None) -> tuple[rowcodec.RowCodec, rowcodec.RowCodec]:
    """(the codec with its generated encoder, the same codec on the converter path)."""
    fast = rowcodec.RowCodec(schema, schemas.to_arrow(schema), event)
    slow = copy.copy(fast)
    slow._row = None
    return fast, slow


class Text(str):
    """A str subclass: not exactly a str, so the row path declines it."""


_int32 = st.integers(-(2**31), 2**31 - 1) | st.sampled_from([2**31 - 1, -(2**31), 0, 63, 64, -65])
_int64 = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([2**63 - 1, -(2**63), 2**53, -(2**53)])
_floats = st.floats(width=64) | st.sampled_from([3.5e38, -3.5e38, 3.4028235e38, 1e300, float("nan")])
_reals = _floats | st.integers(-(2**53), 2**53)
_datetimes = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)) | st.datetimes(
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))])
)
_whole_ms = _datetimes.map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
_long_text = st.text(min_size=60, max_size=300)  # lengths of two varint bytes
GOOD = {
    "s": st.text(max_size=8) | _long_text,
    "b": st.binary(max_size=8) | st.binary(min_size=60, max_size=300),
    "flag": st.booleans(),
    "i": _int32,
    "l": _int64,
    "f": _reals,
    "d": _reals,
    "e": st.sampled_from(COLOURS),
    "t": _datetimes | _int64,
    "tm": _whole_ms | _int64,
    "xs": st.lists(_reals, max_size=4) | st.lists(st.just(0.5), min_size=64, max_size=70),
    "m": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    "ns": st.none() | st.text(max_size=5),
    "sn": st.none() | st.text(max_size=5),
    "nf": st.none() | _floats,
    "nxs": st.none() | st.lists(st.none() | _int64, max_size=4),
    "mx": st.dictionaries(st.text(max_size=3), st.lists(st.sampled_from(COLOURS), max_size=3), max_size=3),
    "ni": st.none() | _int32,
    "status": st.text(max_size=5),
    "n": _int64,
    "g": _reals,
    "nr": st.none() | st.fixed_dictionaries({"a": st.text(max_size=5), "k": st.none() | _int64}),
}
# values the row path declines, or that sit at the edge of a type: wrong types, out of range, odd
_odd = st.sampled_from(
    [np.float64(0.5), np.int64(3), np.bool_(True), Text("x"), ("red",), b"red", "red", "a\ud800", {1: "x"}, 2**53 + 1]
)
_edge_ints = st.sampled_from([2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64])
_sub_ms = st.datetimes().filter(lambda t: t.microsecond % 1000 != 0)
_scalars = st.none() | st.booleans() | _edge_ints | _floats | st.text(max_size=4) | st.binary(max_size=4) | _odd
_any = st.recursive(
    _scalars | _sub_ms,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
_good_row = st.fixed_dictionaries({name: GOOD[name] for name in NAMES})
_real_edges = [2**53 + 1, -(2**53) - 1, True, np.float32(0.5), "0.5", None]
_text_edges = [b"x", Text("x"), "a\ud800", 1, None]
EDGES = {  # per field: values just outside what its type accepts
    "s": _text_edges,
    "b": ["x", bytearray(b"x"), memoryview(b"x"), None],
    "flag": [1, 0, 1.0, np.bool_(True), None, "true"],
    "i": [2**31, -(2**31) - 1, True, 1.0, np.int32(1)],
    "l": [2**63, -(2**63) - 1, False, np.int64(1), 2.0],
    "f": _real_edges,
    "d": _real_edges,
    "g": _real_edges,
    "e": ["Red", Text("red"), b"red", 0, None],
    "t": [2**63, 1.5, "2026-01-01", np.datetime64(0, "us"), None],
    "tm": [datetime(2026, 1, 1, 0, 0, 0, 1), 2**63, None],
    "xs": [(0.5,), [0.5, "x"], [None], {0: 0.5}],
    "m": [{1: "x"}, {"k": 1}, {Text("k"): "x"}, [("k", "x")], {"a\ud800": "x"}],
    "sn": _text_edges,
    "nxs": [[2**63], (1,), [1.0]],
    "mx": [{"k": ["Red"]}, {"k": "red"}],
    "ni": [2**31, True],
    "status": _text_edges,
    "n": [2**63, None],
    "nr": [{"a": 1, "k": None}, {"a": "x", "k": 1, "z": 1}, {"k": 1}, "x", [("a", "x")], {"a": "x", "k": 2**63}],
}


@st.composite
def _row(draw: st.DrawFn) -> dict:
    """A well-typed record, one with a field changed or dropped or an unknown key, or a partial one."""
    row = draw(_good_row)
    how = draw(st.sampled_from(["good", "change", "drop", "unknown", "partial"]))
    name = draw(st.sampled_from(NAMES))
    if how == "change":
        row[name] = draw(st.sampled_from(EDGES.get(name, [None])) | _any | GOOD[name])
    elif how == "drop":
        del row[name]
    elif how == "unknown":
        row["unknown"] = draw(_any)
    elif how == "partial":
        row = draw(st.fixed_dictionaries({}, optional={n: GOOD[n] | _any for n in NAMES}))
    return row


ROW = _row()


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=3))
def test_the_generated_encoder_accepts_and_writes_what_the_converters_and_fastavro_do(rows):
    for event in (None, "t", "tm", "l", "ni"):  # event times of each kind the encoder takes
        fast, slow = _common(event)
        assert fast._row is not None
        assert fast.encode(rows) == slow.encode(rows)


class Row(dict):
    """A dict subclass: not exactly a dict, so the row path declines it."""


BASE = {
    "s": "s",
    "b": b"b",
    "flag": True,
    "i": 1,
    "l": 2,
    "f": 0.5,
    "d": 0.25,
    "e": "red",
    "t": datetime(2026, 11, 1, tzinfo=UTC),
    "tm": 1,
    "xs": [0.5],
    "m": {"k": "v"},
    "sn": "x",
    "mx": {"k": ["blue"]},
}


def test_every_edge_value_of_every_field_is_taken_or_declined_as_the_converters_do():
    fast, slow = _common("t")
    cases = [({**BASE, name: value}, name) for name, values in EDGES.items() for value in values]
    cases += [({**BASE, name: good}, name) for name, good in [("flag", False), ("ns", None), ("sn", None)]]
    taken = 0
    for row, name in cases:
        got = fast.encode([row])
        assert got == slow.encode([row]), (name, row[name])
        taken += got is not None
    assert 0 < taken < len(cases)
    for row in (Row(BASE), list(BASE.items()), None, {**BASE, "unknown": 1}):
        assert fast.encode([row]) is None and slow.encode([row]) is None
    assert fast.encode([BASE]) == slow.encode([BASE]) != None  # noqa: E711


@settings(max_examples=100, deadline=None)
@given(row=st.fixed_dictionaries({name: GOOD[name] for name in NAMES}))
def test_well_typed_records_mostly_take_the_row_path_and_decode_to_their_values(row):
    fast, slow = _common("t")
    got = fast.encode([row])
    assert got == slow.encode([row])
    if got is not None:
        assert len(fast.rows(got[0][0], 1)) == 1


def test_model_score_has_a_generated_encoder_and_an_event_time():
    schema = schemas.load("model_score")
    fast, slow = _codecs(schema, "event_time")
    assert fast._row is not None
    row = {"request_id": "r", "event_time": datetime(2026, 11, 1, tzinfo=UTC), "model_id": "m", "model_version": "1"}
    bodies, events = fast.encode([row])
    assert (bodies, events) == slow.encode([row]) and events == [1793491200000000]
    assert fast.rows(bodies[0], 1)[0]["status"] == "ok"  # the default filled in
    assert fast.encode([{**row, "event_time": None}]) is None  # a required event time
    assert fast.encode([{**row, "score": np.float64(0.5)}]) is None  # the batch path decides


@pytest.mark.parametrize("name", ["model_input", "model_score", "decision", "outcome", "metric", "control"])
def test_every_live_schema_has_a_generated_encoder(name):
    """Each record the live side commits one at a time takes the row path with the generated
    encoder (model_input's nullable swap-token record included), never the Arrow path."""
    fast, _ = _codecs(schemas.load(name), "event_time")
    assert fast.supported and fast._row is not None


def test_a_hot_swap_token_is_a_row_of_model_input():
    fast, slow = _codecs(schemas.load("model_input"), "event_time")
    at = datetime(2026, 11, 1, tzinfo=UTC)
    row = {"request_id": "r", "event_time": at, "features": {}, "raw": "{}", "source": "s"}
    token = {**row, "swap": {"token": "t1", "model_id": "m", "version": "2"}}
    for r in (row, token):
        bodies, events = fast.encode([r])
        assert (bodies, events) == slow.encode([r])
        assert fast.rows(bodies[0], 1)[0]["swap"] == r.get("swap")
    assert fast.encode([{**token, "swap": {"token": "t1", "model_id": "m"}}]) is None  # version required


def test_a_nullable_event_time_that_is_null_declines_the_commit():
    schema = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]}],
    }
    fast, slow = _codecs(schema, "at")
    assert fast._row is not None
    assert fast.encode([{"at": None}]) is None and slow.encode([{"at": None}]) is None
    assert fast.encode([{"at": 5}]) == slow.encode([{"at": 5}]) == ([b"\x02\x0a"], [5])


def test_general_unions_and_other_event_types_keep_the_converters():
    union = {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["null", "string", "long"]}]}
    assert rowcodec.RowCodec(union, schemas.to_arrow(union))._row is None
    text = {"type": "record", "name": "T", "fields": [{"name": "at", "type": "string"}]}
    assert rowcodec.RowCodec(text, schemas.to_arrow(text), "at")._row is None
    assert rowcodec.RowCodec(text, schemas.to_arrow(text))._row is not None
