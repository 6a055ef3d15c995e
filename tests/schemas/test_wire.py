"""Tests for schemas.wire: the Confluent wire format."""

from __future__ import annotations

import datetime as dt
import pathlib

import pytest
from hypothesis import given, settings

import schemas
from logstore.errors import SchemaError
from schemas import wire
from schemas.avro import expand
from tests.schemas.avro_strategies import values

# model_score as first shipped (score required, no runner fields): the fixtures below are built on it
SCORE = schemas.parse(pathlib.Path(__file__).parent / "data" / "model_score.v1.avsc")
ROW = {
    "request_id": "r1",
    "event_time": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    "model_id": "m",
    "model_version": "1",
    "score": 0.5,
    "scores": [0.5, 0.5],
    "label": None,
    "latency_ms": 1.5,
    "host": None,
    "run_id": None,
    "code_version": None,
}


def test_frame_layout():
    """Byte 0 is the magic 0, bytes 1-4 the big-endian id, then the Avro body."""
    data = wire.encode(ROW, SCORE, 0x01020304)
    assert data[:5] == b"\x00\x01\x02\x03\x04"
    assert wire.decode(data, {0x01020304: SCORE}.__getitem__) == (0x01020304, ROW)


@settings(max_examples=50, deadline=None)
@given(values(expand(schemas.load("decision"))))
def test_round_trip_decision_records(record):
    """Any valid decision record survives encode/decode."""
    schema = schemas.load("decision")
    assert wire.decode(wire.encode(record, schema, 42), lambda i: schema) == (42, record)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "too short"),
        (b"\x00\x00\x00", "too short"),
        (b"\x01\x00\x00\x00\x01abc", "expected magic byte 0, found 1"),
        (b"\x00\x00\x00\x00\x09", "does not decode"),
    ],
)
def test_decode_errors(data, message):
    """Short data, a bad magic byte and a truncated body are SchemaErrors saying which."""
    with pytest.raises(SchemaError, match=message):
        wire.decode(data, lambda i: SCORE)


def test_unknown_id_and_trailing_bytes():
    """A lookup failure names the id; bytes left after the record are reported."""
    with pytest.raises(SchemaError, match="unknown schema id 9"):
        wire.decode(b"\x00\x00\x00\x00\x09", {}.__getitem__)
    data = wire.encode(ROW, SCORE, 1) + b"\x00"
    with pytest.raises(SchemaError, match="1 trailing bytes"):
        wire.decode(data, lambda i: SCORE)


def test_encode_errors():
    """An id over 4 bytes or a record not matching the schema is refused."""
    with pytest.raises(SchemaError, match="4 unsigned bytes"):
        wire.encode(ROW, SCORE, 2**32)
    with pytest.raises(SchemaError, match="does not match schema id 3"):
        wire.encode({**ROW, "score": "high"}, SCORE, 3)
