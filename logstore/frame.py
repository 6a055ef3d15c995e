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
    56      2    flags: bit 0 = body buffers are compressed (Arrow IPC body compression; the body names the codec),
                 bit 1 = continued: more frames of the same commit follow this one,
                 bit 2 = rows: the body is Avro binary rows, not an Arrow IPC stream (below)
    58      6    reserved, zero
    64      n    body: an Arrow IPC *stream* (schema message, one record batch, end-of-stream marker),
                 or, with the rows flag, the records' Avro binary encodings back to back

Row frames (format 2): a small commit (at most `ROW_FRAME_MAX` records: the live path's one
request, one score) is stored as its records' Avro binary encodings in the schema version the
header names (`schemas.rowcodec`), with no schema and no system columns: every record's offset
and the append time are the header's. A one-record frame is its record's Avro bytes plus these
64 bytes. Readers decode it into the same batch an Arrow frame of those records gives. The limit
of 64 records: encoding a row costs ~4 us (a `model_score` record, by the generated encoder of
`schemas.rowencode`; ~13 us through fastavro for schemas with unions) and an Arrow frame ~0.4 ms
plus ~5 us a row, so row frames are the cheaper commit at least up to that many (a live service's
bursts); reading them back costs more per record than a columnar frame, which larger commits keep.

Dictionary-encoded strings: a top-level string column may be stored as a dictionary of strings
with signed integer codes (int8, int16 or int32: the narrowest that holds the dictionary) and the
field metadata ``logstore.encoding: dictionary``. It is the same column, encoded: readers hand it
out as plain strings (the SQL views keep the dictionary for DuckDB). A writer stores a string
column given as a dictionary as one, and, in compressed topics, a column whose values repeat
(`Dictionaries`; when a commit's frames are encoded on the frame pool, as batched writers do: a
frame committed alone keeps its caller waiting, so it stores strings as given). Like Parquet's
dictionary pages, a few distinct model ids, versions or run ids
cost a byte a row before the codec instead of their text, and group by their codes. With a codec
the dictionary messages stay uncompressed (the IPC format sets compression per message): a few
short values do not repay the codec's cost per buffer at every read. An Avro enum is a dictionary
too, but a logical one (``avro.type`` metadata, no encoding mark): it is never decoded.

Run-end encoded columns: a column given to the writer run-end encoded (`pyarrow.RunEndEncodedArray`,
its values of the field's own type, covering the whole batch) is stored so, with the field metadata
``logstore.encoding: runs``: a column constant over a frame, or over long stretches of it (a
replay's model and run ids, its clock, the nulls of fields a model leaves unset), costs a run
instead of a value per row, before and without a codec. Readers hand it out decoded, as the field's
own type.

Raw buffers in compressed bodies: a fixed-width value buffer the codec shrinks by less than 15%
(random scores, latencies, feature vectors) is stored raw inside the compressed record batch
message, behind the IPC format's ``-1`` length prefix (`rawbuffers`); every Arrow reader takes it
zero-copy instead of paying the codec's decoding for a few percent of bytes.

The body's record batch holds the records' fields followed by two system columns: ``_offset``
(int64, base offset + row) and ``_append_time`` (timestamp[us, UTC], the header's append time on
every row; a constant column costs next to nothing compressed). The writer encodes a body under the
partition lock, once it knows both, so a frame's body is a complete Arrow batch that any Arrow
reader can scan as is.

Commits: one commit (the frames a writer puts in one partition at once, under its lock) is the
unit of acknowledgement. Every frame but a commit's last has the *continued* flag, so recovery can
tell a whole commit from one a crash cut short (see `segment.analyze`). Frames written before the
flag existed never have it: each is a commit of its own.

A frame is self-describing: its body carries its own Arrow schema, so any frame can be decoded
without the rest of the segment. The two checksums make every byte of a frame checked on read:
the header crc guards the lengths and offsets (so a damaged header never misdirects a reader)
and the body crc guards the data.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .checksum import crc
from .encodings import (  # noqa: F401 - re-exported: the frame codec's column encodings
    DICTIONARY,
    ENCODING_KEY,
    RUNS,
    decode_runs,
    decode_stored,
    is_stored_dictionary,
    is_stored_runs,
    mark_runs,
    run_end_decode,
    whole_runs,
)
from .errors import ArgumentError
from .rawbuffers import Pieces, nbytes, store_raw
from .timeutil import MAX_TIME, MIN_TIME  # noqa: F401 - re-exported: "no time" in headers

MAGIC = b"LSF1"
HEADER_SIZE = 64
_HEADER = struct.Struct("<4sIIIqIIqqqH6x")
assert _HEADER.size == HEADER_SIZE
_HEADER_TAIL = struct.Struct("<IIqIIqqqH6x")  # bytes 8..63: what the header crc covers
_U32 = struct.Struct("<I")
FLAG_COMPRESSED = 1
FLAG_CONTINUED = 2
FLAG_ROWS = 4
ROW_FRAME_MAX = 64  # records: a commit with more is an Arrow frame (see the module docstring)
MAX_BODY = 2**31 - 1


class FrameHeader(NamedTuple):
    """A parsed, checksum-verified frame header."""

    body_len: int
    body_crc: int
    base_offset: int
    count: int  # type: ignore[assignment]  # the field shadows tuple.count, which frames never use
    schema_version: int
    append_time: int
    min_event_time: int
    max_event_time: int
    flags: int

    @property
    def continued(self) -> bool:
        """True if more frames of this frame's commit follow it."""
        return bool(self.flags & FLAG_CONTINUED)

    @property
    def rows(self) -> bool:
        """True if the body is Avro binary rows (a row frame), not an Arrow IPC stream."""
        return bool(self.flags & FLAG_ROWS)

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
    tail = _HEADER_TAIL.pack(
        body_len, body_crc, base_offset, count, schema_version, append_time, min_event_time, max_event_time, flags
    )
    return MAGIC + _U32.pack(crc(tail)) + tail


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
    if header.base_offset < 0:
        return f"frame claims base offset {header.base_offset}"
    if header.min_event_time > header.max_event_time:
        return "frame's event-time range is inverted"
    return header


@dataclass(slots=True)
class EncodedBody:
    """A record batch encoded as a frame body, ready to be committed under the partition lock.

    `parts` are the body's bytes in order: Arrow's own message pieces and, zero-copy, the
    batch's (or the codec's) buffers, to be gathered by one vectored write.
    """

    parts: list[Any]
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

    __slots__ = ("parts", "size", "crc", "closed", "checksum")

    def __init__(self, checksum: bool = True) -> None:
        self.parts: list[Any] = []
        self.size = 0
        self.crc = 0
        self.closed = False
        self.checksum = checksum

    def write(self, data: Any) -> int:
        n = data.size if isinstance(data, pa.Buffer) else len(data)
        if n:
            self.parts.append(data)
            self.size += n
            if self.checksum:
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
    """Encode `batch` as an Arrow IPC stream and checksum it, without copying its buffers.

    With a codec, dictionaries go uncompressed (the IPC format sets compression per message): a
    few short values do not repay the codec's fixed cost per buffer, paid again at every read.
    Nor do value buffers the codec barely shrinks (`rawbuffers`).
    """
    if options.compression is None:
        sink = _GatherSink()
        with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), batch.schema, options=options) as w:
            w.write_batch(batch)
        parts, size, body_crc = sink.parts, sink.size, sink.crc
    else:
        parts = _compressed_stream(batch, options)
        body_crc = 0
        for part in parts:
            body_crc = crc(part, body_crc)
        size = sum(map(nbytes, parts))
    if size > MAX_BODY:
        raise ArgumentError(f"a frame body of {size} bytes is over the {MAX_BODY}-byte limit")
    return EncodedBody(
        parts=parts,
        size=size,
        crc=body_crc,
        count=batch.num_rows,
        schema_version=schema_version,
        min_event_time=event_range[0],
        max_event_time=event_range[1],
        flags=FLAG_COMPRESSED if options.compression is not None else 0,
    )


def rows_body(
    rows: list[bytes], *, schema_version: int, event_range: tuple[int, int] = (MIN_TIME, MAX_TIME)
) -> EncodedBody:
    """A row frame's body from its records' Avro encodings (`schemas.rowcodec.RowCodec.encode`)."""
    body = rows[0] if len(rows) == 1 else b"".join(rows)
    return EncodedBody(
        parts=[body],
        size=len(body),
        crc=crc(body),
        count=len(rows),
        schema_version=schema_version,
        min_event_time=event_range[0],
        max_event_time=event_range[1],
        flags=FLAG_ROWS,
    )


_UNCOMPRESSED = pa.ipc.IpcWriteOptions(compression=None, use_threads=False)
_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"


@functools.lru_cache(maxsize=256)
def _top_level_dictionaries(schema: pa.Schema) -> tuple[int, ...]:
    """Positions of the dictionary columns, if every dictionary of `schema` is a top-level column."""

    def nested(t: pa.DataType) -> bool:
        if pa.types.is_dictionary(t):
            return True
        return any(nested(t.field(i).type) for i in range(t.num_fields))

    found = tuple(i for i, f in enumerate(schema) if pa.types.is_dictionary(f.type))
    if any(nested(f.type) for f in schema if not pa.types.is_dictionary(f.type)):
        return ()  # a nested dictionary takes an id too: leave the whole stream to Arrow
    return found


def _compressed_stream(batch: pa.RecordBatch, options: pa.ipc.IpcWriteOptions) -> list[Any]:
    """The pieces of `batch`'s stream with a codec: the schema message and the dictionary messages
    uncompressed, the record batch compressed with `options` (barely shrunk buffers raw), the end.

    Dictionaries take ids in schema order, so the dictionary messages of a stream of the
    dictionary columns alone are those of the whole batch; the record batch message is the one a
    stream of the batch with its dictionary columns as their codes holds (a record batch message
    stores a dictionary column as its codes, typeless). A nested dictionary (it takes an id too)
    leaves its messages to Arrow, compressed."""
    head: list[Any] = [batch.schema.serialize()]  # what Arrow's stream writer writes first
    where = _top_level_dictionaries(batch.schema)
    if where:
        only = pa.RecordBatch.from_arrays(
            [batch.column(i) for i in where], schema=pa.schema([batch.schema.field(i) for i in where])
        )
        out = pa.BufferOutputStream()
        with pa.ipc.new_stream(out, only.schema, options=_UNCOMPRESSED) as w:
            w.write_batch(only.slice(0, 0))
        stream = out.getvalue()
        start = only.schema.serialize().size
        head.append(stream.slice(start, stream.size - start - only.slice(0, 0).serialize().size - len(_EOS)))
        fields, columns = list(batch.schema), list(batch.columns)
        for i in where:
            f = fields[i]
            fields[i], columns[i] = pa.field(f.name, f.type.index_type, f.nullable), columns[i].indices
        batch = pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))
    sink = _GatherSink(checksum=False)
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), batch.schema, options=options) as w:
        w.write_batch(batch)  # the writer writes its schema message with the first batch
    # keep the record batch message: drop the schema message before it and the EOS after it
    message = Pieces(sink.parts).take(batch.schema.serialize().size, sink.size - len(_EOS))
    return [*head, *store_raw(message, batch), _EOS]


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


_READ_OPTIONS = {True: pa.ipc.IpcReadOptions(), False: pa.ipc.IpcReadOptions(use_threads=False)}


def decode_body(
    body: pa.Buffer, included_fields: list[int] | None = None, *, use_threads: bool = True
) -> pa.RecordBatch:
    """Decode a verified frame body into its record batch (zero-copy when uncompressed), string
    columns stored dictionary-encoded handed out as plain strings, stored runs decoded.
    `use_threads=False` keeps the decompression on the calling thread (not Arrow's CPU pool)."""
    if included_fields is not None:
        options = pa.ipc.IpcReadOptions(included_fields=included_fields, use_threads=use_threads)
    else:
        options = _READ_OPTIONS[use_threads]
    reader = pa.ipc.open_stream(body, options=options)
    return decode_stored(reader.read_next_batch())


# --------------------------------------------------------------------------------------------------
# dictionary-encoded strings

DICTIONARY_TYPE = pa.dictionary(pa.int32(), pa.string())
SAMPLE = 32  # values probed per column before paying for a dictionary
SAMPLE_DISTINCT = 8  # ... a column is encoded when its sample holds at most this many distinct values


@functools.lru_cache(maxsize=64)
def _sample(n: int) -> pa.Array:
    return pa.array(np.arange(0, n, n // SAMPLE, dtype=np.int32)[:SAMPLE])


def _repeats(col: pa.Array) -> pa.DictionaryArray | None:
    """`col` dictionary-encoded if a strided sample says its values repeat and the whole column
    agrees (at most one distinct value per 4 rows); None to store it plain."""
    n = len(col)
    if n < 4 * SAMPLE or col.null_count == n:
        return None
    if pc.count_distinct(col.take(_sample(n))).as_py() > SAMPLE_DISTINCT:
        return None
    encoded = pc.dictionary_encode(col)
    return _narrow(encoded) if 4 * len(encoded.dictionary) <= n else None


def _width(k: int) -> pa.DataType:
    return pa.int8() if k <= 2**7 else pa.int16() if k <= 2**15 else pa.int32()


def _narrow(col: pa.DictionaryArray) -> pa.DictionaryArray:
    """`col` with the narrowest signed codes that hold its dictionary (fewer bytes to compress)."""
    width = _width(len(col.dictionary))
    if col.type.index_type == width:
        return col
    return pa.DictionaryArray.from_arrays(recode(col.indices, width), col.dictionary, safe=False)


def recode(codes: pa.Array, t: pa.DataType) -> pa.Array:
    """Dictionary codes as integer type `t`, which must hold them (a numpy copy: a compute cast
    costs several times more per frame)."""
    if codes.type == t:
        return codes
    if codes.offset or not pa.types.is_integer(codes.type):
        return codes.cast(t)
    values = np.frombuffer(codes.buffers()[1], codes.type.to_pandas_dtype(), len(codes))
    return pa.Array.from_buffers(
        t,
        len(codes),
        [codes.buffers()[0], pa.py_buffer(values.astype(t.to_pandas_dtype()))],
        null_count=codes.null_count,
    )


class Dictionaries:
    """Which top-level string columns a writer stores dictionary-encoded, frame by frame.

    `strings` are the positions of the topic's string fields. A column given as a dictionary is
    stored as one; with `auto` (the writer's compressed frames encoded on its pool), a column whose
    values repeat is encoded. A column found not to repeat is not probed again for `RETRY` frames.
    Safe to share between the threads encoding one writer's frames (a lost update only moves a
    probe)."""

    RETRY = 16

    def __init__(self, strings: list[int]) -> None:
        self.strings = strings
        self._rest: dict[int, int] = {}  # column -> frames before its next probe
        self._known: dict[int, pa.Array] = {}  # column -> the dictionary it last had

    def _encode(self, i: int, col: pa.Array) -> pa.DictionaryArray | None:
        """Column `i` encoded; a lookup in its last dictionary when every value is in it (cheaper
        than building one), else probed and built anew."""
        known = self._known.get(i)
        if known is not None:
            codes = pc.index_in(col, value_set=known)
            if codes.null_count == col.null_count:
                return pa.DictionaryArray.from_arrays(recode(codes, _width(len(known))), known, safe=False)
        encoded = _repeats(col)
        if encoded is not None:
            self._known[i] = encoded.dictionary
        return encoded

    def apply(self, batch: pa.RecordBatch, *, auto: bool) -> pa.RecordBatch:
        """`batch` as stored: the chosen string columns as marked dictionary columns (signed codes,
        as narrow as the dictionary allows)."""
        encoded: dict[int, pa.Array] = {}
        probe = []
        for i in self.strings:
            col = batch.column(i)
            if pa.types.is_run_end_encoded(col.type):  # stored as runs, as given
                continue
            if pa.types.is_dictionary(col.type):  # given so (`schemas.conform(keep_dictionaries=True)`)
                encoded[i] = _narrow(col)
            elif auto:
                rest = self._rest.get(i, 0)
                if rest:
                    self._rest[i] = rest - 1
                else:
                    probe.append(i)
        for i in probe:
            col = self._encode(i, batch.column(i))
            if col is None:
                self._rest[i] = self.RETRY
            else:
                encoded[i] = col
        if not encoded:
            return batch
        columns, fields = list(batch.columns), list(batch.schema)
        for i, col in encoded.items():
            f = fields[i]
            columns[i] = col
            fields[i] = pa.field(f.name, col.type, f.nullable, {**(f.metadata or {}), ENCODING_KEY: DICTIONARY})
        return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields, batch.schema.metadata))


def build_header(body: EncodedBody, base_offset: int, append_time: int, *, continued: bool = False) -> bytes:
    """The header of `body` placed at `base_offset` with `append_time`; `continued` if more
    frames of its commit follow."""
    tail = _HEADER_TAIL.pack(
        body.size,
        body.crc,
        base_offset,
        body.count,
        body.schema_version,
        append_time,
        body.min_event_time,
        body.max_event_time,
        body.flags | FLAG_CONTINUED if continued else body.flags,
    )
    return MAGIC + _U32.pack(crc(tail)) + tail
