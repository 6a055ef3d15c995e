"""Frames: the unit of atomicity and durability inside a segment.

On-disk layout of one frame (all integers little-endian)::

    offset size  field
     0      4    magic b"LSF1"
     4      4    header crc: CRC-32C of bytes 8..63
     8      4    body length in bytes (u32)
    12      4    body crc: CRC-32C of the body
    16      8    base offset: offset of the frame's first record (i64)
    24      4    record count (u32, >= 1)
    28      4    schema version of the body (u32, the topic registry's version number)
    32      8    append time, microseconds since the Unix epoch, UTC (i64); shared by every record
    40      8    min event time, microseconds (i64; MIN_TIME when the topic has no event time)
    48      8    max event time, microseconds (i64; MAX_TIME when the topic has no event time)
    56      2    flags: bit 0 = body buffers are compressed (Arrow IPC body compression; the body names the codec)
    58      6    reserved, zero
    64      n    body: an Arrow IPC *stream* (schema message, one record batch, end-of-stream marker)

The body's record batch holds the records' fields followed by two system columns: ``_offset``
(int64, base offset + row) and ``_append_time`` (timestamp[us, UTC], the header's append time on
every row; a constant column costs next to nothing compressed). The writer encodes a body under the
partition lock, once it knows both, so a frame's body is a complete Arrow batch that any Arrow
reader can scan as is: the SQL views hand frame bytes to DuckDB unchanged.

A frame is self-describing: its body carries its own Arrow schema, so any frame can be decoded
without the rest of the segment. The two checksums make every byte of a frame checked on read:
the header crc guards the lengths and offsets (so a damaged header never misdirects a reader)
and the body crc guards the data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from .checksum import crc

MAGIC = b"LSF1"
HEADER_SIZE = 64
_HEADER = struct.Struct("<4sIIIqIIqqqH6x")
assert _HEADER.size == HEADER_SIZE
MIN_TIME = -(2**63)
MAX_TIME = 2**63 - 1
FLAG_COMPRESSED = 1
MAX_BODY = 2**31 - 1


class FrameHeader(NamedTuple):
    """A parsed, checksum-verified frame header."""

    body_len: int
    body_crc: int
    base_offset: int
    count: int
    schema_version: int
    append_time: int
    min_event_time: int
    max_event_time: int
    flags: int

    @property
    def next_offset(self) -> int:
        """Offset just past the frame's last record."""
        return self.base_offset + self.count

    @property
    def size(self) -> int:
        """Bytes the whole frame occupies on disk."""
        return HEADER_SIZE + self.body_len


def pack_header(
    *,
    body_len: int,
    body_crc: int,
    base_offset: int,
    count: int,
    schema_version: int,
    append_time: int,
    min_event_time: int,
    max_event_time: int,
    flags: int,
) -> bytes:
    """Build the 64 header bytes, including their own checksum."""
    tail = _HEADER.pack(
        MAGIC, 0, body_len, body_crc, base_offset, count, schema_version,
        append_time, min_event_time, max_event_time, flags,
    )[8:]
    return MAGIC + struct.pack("<I", crc(tail)) + tail


def parse_header(data: bytes | memoryview) -> FrameHeader | str:
    """Parse 64 header bytes; return the header, or a string saying why they are not a valid header."""
    if len(data) < HEADER_SIZE:
        return f"header truncated ({len(data)} of {HEADER_SIZE} bytes)"
    magic, hcrc, *rest = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        return f"bad magic: expected {MAGIC!r}, found {bytes(magic)!r}"
    found = crc(data[8:HEADER_SIZE])
    if found != hcrc:
        return f"header checksum mismatch: expected crc 0x{hcrc:08x}, found 0x{found:08x}"
    header = FrameHeader(*rest)
    if header.count < 1:
        return f"frame claims {header.count} records"
    if header.min_event_time > header.max_event_time:
        return "frame's event-time range is inverted"
    return header


@dataclass(slots=True)
class EncodedBody:
    """A record batch encoded as a frame body, ready to be committed under the partition lock.

    `parts` are the body's bytes in order: Arrow's own message pieces and, zero-copy, the
    batch's (or the codec's) buffers, to be gathered by one vectored write.
    """

    parts: list
    size: int
    crc: int
    count: int
    schema_version: int
    min_event_time: int
    max_event_time: int
    flags: int


class _GatherSink:
    """A write-only file for Arrow's IPC writer that keeps what it is given, checksumming as it goes.

    Arrow hands body buffers over as `pyarrow.Buffer` (no copy) and message framing as small
    `bytes`; both are kept by reference.
    """

    __slots__ = ("parts", "size", "crc", "closed")

    def __init__(self) -> None:
        self.parts: list = []
        self.size = 0
        self.crc = 0
        self.closed = False

    def write(self, data) -> int:
        n = data.size if isinstance(data, pa.Buffer) else len(data)
        if n:
            self.parts.append(data)
            self.size += n
            self.crc = crc(data, self.crc)
        return n

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True


def encode_body(
    batch: pa.RecordBatch,
    *,
    schema_version: int,
    options: pa.ipc.IpcWriteOptions,
    event_range: tuple[int, int] = (MIN_TIME, MAX_TIME),
) -> EncodedBody:
    """Encode `batch` as an Arrow IPC stream and checksum it, without copying its buffers."""
    sink = _GatherSink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), batch.schema, options=options) as w:
        w.write_batch(batch)
    if sink.size > MAX_BODY:
        raise ValueError(f"a frame body of {sink.size} bytes is over the {MAX_BODY}-byte limit")
    return EncodedBody(
        parts=sink.parts,
        size=sink.size,
        crc=sink.crc,
        count=batch.num_rows,
        schema_version=schema_version,
        min_event_time=event_range[0],
        max_event_time=event_range[1],
        flags=FLAG_COMPRESSED if options.compression is not None else 0,
    )


OFFSET_FIELD = pa.field("_offset", pa.int64(), nullable=False)
APPEND_TIME_FIELD = pa.field("_append_time", pa.timestamp("us", tz="UTC"), nullable=False)
BODY_SYSTEM_FIELDS = 2  # _offset, _append_time: always the body's last two fields


def with_system_columns(batch: pa.RecordBatch, base_offset: int, append_time: int) -> pa.RecordBatch:
    """`batch` plus the trailing `_offset` and `_append_time` columns a body stores."""
    n = batch.num_rows
    offsets = np.arange(base_offset, base_offset + n, dtype=np.int64)
    times = np.full(n, append_time, dtype=np.int64)
    columns = list(batch.columns) + [
        pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(offsets)]),
        pa.Array.from_buffers(APPEND_TIME_FIELD.type, n, [None, pa.py_buffer(times)]),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema.append(OFFSET_FIELD).append(APPEND_TIME_FIELD))


def decode_body(body: pa.Buffer, included_fields: list[int] | None = None) -> pa.RecordBatch:
    """Decode a verified frame body into its record batch (zero-copy when uncompressed)."""
    options = pa.ipc.IpcReadOptions(included_fields=included_fields) if included_fields is not None else None
    reader = pa.ipc.open_stream(body, options=options)
    return reader.read_next_batch()
