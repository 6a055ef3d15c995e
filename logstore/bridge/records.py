"""Kafka message values <-> log records, and the fields the bridge adds to a topic's schema.

A topic fed from Kafka has the Kafka writer schema's fields, then two fields the bridge owns:

    kafka_partition   int    the Kafka partition the record was read from (= its log partition)
    kafka_offset      long   its offset in that Kafka partition

and, when the writer schema has no field of the topic's event-time name (``event_time`` for a
topic the bridge creates), that field as a ``timestamp-micros``, filled from the Kafka message's
timestamp. The names carry no leading underscore: names starting with one are the log's own
(`logstore.names.SYSTEM_COLUMNS`). A writer schema that has a field of either bridge name is
refused. These fields are what makes the bridge exactly-once (`from_kafka`): the position is the data.

Values: Confluent-framed Avro (`schemas.wire`: magic byte, 4-byte schema id, Avro body, the writer
schema fetched from the registry by id), raw Avro (schemaless, one given schema) or JSON (one
object per message, values in the forms `logstore export` writes: ISO-8601 times, base64 bytes).
"""

from __future__ import annotations

import copy
import io
import json
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pyarrow as pa

import schemas
from logstore.jsonvalues import json_default, json_rows, record_reader
from schemas import unions, wire
from schemas.avro import expand
from schemas.avrofile import value_converter

from .kafka import BridgeError

KAFKA_PARTITION = "kafka_partition"
KAFKA_OFFSET = "kafka_offset"
BRIDGE_FIELDS = (KAFKA_PARTITION, KAFKA_OFFSET)
FORMATS = ("avro", "json")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ADDED = [
    {
        "name": KAFKA_PARTITION,
        "type": "int",
        "doc": "the Kafka partition this record was read from (logstore bridge from-kafka)",
    },
    {"name": KAFKA_OFFSET, "type": "long", "doc": "its offset in that Kafka partition (logstore bridge from-kafka)"},
]


def log_schema(writer: dict[str, Any], event_time_field: str | None) -> tuple[dict[str, Any], bool]:
    """(the topic schema for records of `writer`, whether the bridge fills the event-time field)."""
    parsed = schemas.parse(copy.deepcopy(writer))
    names = {f["name"] for f in parsed["fields"]}
    clash = sorted(names & set(BRIDGE_FIELDS))
    if clash:
        raise BridgeError(
            f"the Kafka writer schema {parsed.get('name')!r} has field(s) {', '.join(clash)}, which the bridge "
            "writes itself (each record's Kafka partition and offset)"
        )
    fields = [*parsed["fields"], *copy.deepcopy(_ADDED)]
    fills = event_time_field is not None and event_time_field not in names
    if fills:
        fields.append(
            {
                "name": event_time_field,
                "type": {"type": "long", "logicalType": "timestamp-micros"},
                "doc": "the Kafka message's timestamp (the writer schema has no event time)",
            }
        )
    return {**parsed, "fields": fields}, fills


def has_bridge_fields(schema: dict[str, Any]) -> bool:
    names = {f["name"] for f in schema.get("fields", [])}
    return all(n in names for n in BRIDGE_FIELDS)


def kafka_time(timestamp: tuple[int, int]) -> datetime:
    """A Kafka message's (type, ms) timestamp as an aware datetime; now when it has none."""
    kind, ms = timestamp
    if kind == 0 or ms < 0:  # TIMESTAMP_NOT_AVAILABLE
        return datetime.now(UTC)
    return EPOCH + timedelta(milliseconds=ms)


# --- Kafka -> log -------------------------------------------------------------------------------
Decoded = tuple[Any, dict[str, Any], dict[str, Any]]  # (schema key, writer schema, record)


class Decoder:
    """Turns one message value into (schema key, writer schema, record); SchemaError when it cannot."""

    def decode(self, value: bytes | None) -> Decoded:
        raise NotImplementedError


def _reader_fix(schema: dict[str, Any]) -> Callable[[Any], Any] | None:
    return value_converter(expand(schema), on_write=False)


class FramedDecoder(Decoder):
    """Confluent-framed Avro; writer schemas by id from `lookup` (the registry)."""

    def __init__(self, lookup: Callable[[int], dict[str, Any]]) -> None:
        self.lookup = lookup
        self._fix: dict[int, Callable[[Any], Any] | None] = {}

    def decode(self, value: bytes | None) -> Decoded:
        if value is None:
            raise BridgeError("a message without a value (a tombstone)")
        writer: dict[str, Any] | None = None
        if len(value) >= wire.HEADER.size and value[0] == wire.MAGIC:
            writer = self.lookup(wire.HEADER.unpack_from(value)[1])  # the registry's own error, not "unknown id"
        schema_id, record = wire.decode(value, self.lookup if writer is None else lambda _id: writer)
        if schema_id not in self._fix:
            self._fix[schema_id] = _reader_fix(self.lookup(schema_id))
        fix = self._fix[schema_id]
        return schema_id, writer or self.lookup(schema_id), fix(record) if fix else record


class RawAvroDecoder(Decoder):
    """Schemaless Avro binary of one given schema."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._parsed = fastavro.parse_schema(copy.deepcopy(schema), _write_hint=False)
        self._fix = _reader_fix(schema)

    def decode(self, value: bytes | None) -> Decoded:
        if value is None:
            raise BridgeError("a message without a value (a tombstone)")
        body = io.BytesIO(value)
        try:
            record = fastavro.schemaless_reader(body, self._parsed, None)
        except (EOFError, ValueError, IndexError, TypeError, KeyError, struct.error) as e:
            raise BridgeError(
                f"the value does not decode as Avro of the given schema: {type(e).__name__}: {e}"
            ) from None
        if body.tell() != len(value):
            raise BridgeError(f"{len(value) - body.tell()} bytes left after the Avro record: wrong schema?")
        if not isinstance(record, dict):
            raise BridgeError("the given schema is not a record schema")
        return 0, self.schema, self._fix(record) if self._fix else record


class JsonDecoder(Decoder):
    """One JSON object per message, values as `logstore export` writes them."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._read = record_reader(schemas.to_arrow(schema))

    def decode(self, value: bytes | None) -> Decoded:
        if value is None:
            raise BridgeError("a message without a value (a tombstone)")
        try:
            record = json.loads(value)
        except ValueError as e:
            raise BridgeError(f"the value is not JSON: {e}") from None
        if not isinstance(record, dict):
            raise BridgeError(f"the value is JSON {type(record).__name__}, not an object")
        return 0, self.schema, self._read(record)


# --- log -> Kafka -------------------------------------------------------------------------------
class Encoder:
    """Turns the user columns of a batch read from the log into message values."""

    def encode(self, batch: pa.Table) -> list[bytes]:
        raise NotImplementedError


class FramedEncoder(Encoder):
    """Confluent-framed Avro with the registry's id of the topic's schema."""

    def __init__(self, schema: dict[str, Any], schema_id: int) -> None:
        self.schema = schema
        self.schema_id = schema_id
        self._fix = value_converter(expand(schema), on_write=True)

    def encode(self, batch: pa.Table) -> list[bytes]:
        rows = unions.tagged_rows(batch)
        fix = self._fix
        return [wire.encode(fix(r) if fix else r, self.schema, self.schema_id) for r in rows]


class RawAvroEncoder(Encoder):
    """Schemaless Avro binary of the topic's schema."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._parsed = fastavro.parse_schema(copy.deepcopy(schema), _write_hint=False)
        self._fix = value_converter(expand(schema), on_write=True)

    def encode(self, batch: pa.Table) -> list[bytes]:
        out = []
        for r in unions.tagged_rows(batch):
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, self._parsed, self._fix(r) if self._fix else r)
            out.append(buf.getvalue())
        return out


class JsonEncoder(Encoder):
    """One JSON object per record, as `logstore export` writes JSON lines."""

    def encode(self, batch: pa.Table) -> list[bytes]:
        return [json.dumps(r, default=json_default, separators=(",", ":")).encode("utf-8") for r in json_rows(batch)]


def key_bytes(value: Any) -> bytes | None:
    """A key field's value as a Kafka message key: bytes as they are, anything else as UTF-8 text."""
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")
