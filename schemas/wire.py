"""The Confluent Schema Registry wire format, so a topic can be bridged to Kafka.

    byte 0      magic byte, always 0
    bytes 1-4   schema id, 4-byte big-endian unsigned
    bytes 5-    the record in Avro binary encoding (no container, no schema)

The id is whatever the Kafka-side registry assigned (Confluent ids are 32-bit); logstore's own
64-bit fingerprints do not fit and are not used here. Values are Python objects as fastavro
takes them (datetime for timestamps, str for enums, dict for maps and records).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

import fastavro

from logstore.errors import SchemaError

MAGIC = 0
HEADER = struct.Struct(">bI")
_PARSED: dict[int, tuple[dict[str, Any], Any]] = {}


def _parsed(schema: dict[str, Any]) -> Any:
    hit = _PARSED.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    try:
        parsed = fastavro.parse_schema(schema, _write_hint=False)
    except Exception as e:  # noqa: BLE001 - fastavro raises several kinds
        raise SchemaError(f"invalid Avro schema: {e}") from None
    if len(_PARSED) > 1024:
        _PARSED.clear()
    _PARSED[id(schema)] = (schema, parsed)
    return parsed


def encode(record: dict[str, Any], schema: dict[str, Any], schema_id: int) -> bytes:
    """One record as a Confluent-framed Avro message."""
    if not 0 <= schema_id <= 0xFFFFFFFF:
        raise SchemaError(f"schema id must fit 4 unsigned bytes (0..4294967295), found {schema_id}")
    out = io.BytesIO()
    out.write(HEADER.pack(MAGIC, schema_id))
    try:
        fastavro.schemaless_writer(out, _parsed(schema), record)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        raise SchemaError(f"record does not match schema id {schema_id}: {e}") from None
    return out.getvalue()


def decode(data: bytes, lookup: Callable[[int], dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """(schema id, record) of a Confluent-framed message; `lookup(id)` gives the writer schema."""
    if len(data) < HEADER.size:
        raise SchemaError(
            f"wire message too short: expected at least {HEADER.size} bytes "
            f"(magic byte and 4-byte schema id), found {len(data)}"
        )
    if data[0] != MAGIC:
        raise SchemaError(f"wire message: expected magic byte 0, found {data[0]}; not Confluent-framed Avro")
    _, schema_id = HEADER.unpack_from(data)
    try:
        schema = lookup(schema_id)
    except SchemaError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the lookup raises, name the id
        raise SchemaError(f"wire message: unknown schema id {schema_id}: {e}") from None
    body = io.BytesIO(memoryview(data)[HEADER.size :])
    try:
        record = fastavro.schemaless_reader(body, _parsed(schema), None)
    except (EOFError, ValueError, IndexError, TypeError, KeyError, struct.error) as e:
        raise SchemaError(
            f"wire message: Avro body does not decode with schema id {schema_id}: {type(e).__name__}: {e}"
        ) from None
    if body.tell() != len(data) - HEADER.size:
        raise SchemaError(
            f"wire message: {len(data) - HEADER.size - body.tell()} trailing bytes after the "
            f"record (schema id {schema_id}); wrong schema?"
        )
    if not isinstance(record, dict):
        raise SchemaError(f"wire message: schema id {schema_id} is not a record schema")
    return schema_id, record
