"""Buffers the codec barely shrinks, stored raw inside a compressed record batch message.

The Arrow IPC format compresses a record batch message buffer by buffer: each body buffer is an
i64 little-endian uncompressed length followed by the codec's frame, and a length of -1 says the
bytes that follow are stored as they are (Arrow C++'s `min_space_savings`, which pyarrow does not
expose). Random scores, latencies and feature vectors shrink by 5-12% under zstd, and inflating
them costs a reader more than reading those few extra bytes: such a buffer is stored raw, and
every Arrow reader (logstore's, DuckDB's through Arrow) takes it zero-copy.

`store_raw(parts, batch)` rewrites the pieces of one encapsulated, compressed record batch
message (``0xFFFFFFFF``, i32 metadata length, flatbuffer `Message`, body) written by Arrow for
`batch`: a fixed-width value buffer whose compressed form is over `KEEP_RATIO` of its size is
replaced by ``-1`` and its bytes, taken zero-copy from `batch`. Only the `Buffer` entries and the
`bodyLength` of the metadata change (in place: the flatbuffer keeps its size); anything it does not
recognise is left exactly as Arrow wrote it.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from typing import Any

import pyarrow as pa

KEEP_RATIO = 0.85  # a compressed buffer is kept if the codec shrank it to at most this share
_MIN_BYTES = 4096  # smaller buffers stay as written: their codec cost is small either way

_u16 = struct.Struct("<H").unpack_from
_i32 = struct.Struct("<i").unpack_from
_u32 = struct.Struct("<I").unpack_from
_i64 = struct.Struct("<q").unpack_from
_PAIR = struct.Struct("<qq")
_RAW = struct.pack("<q", -1)
_RECORD_BATCH = 3  # MessageHeader.RecordBatch


def _field(buf: Any, table: int, i: int) -> int:
    """Absolute position of field `i` of the flatbuffer table at `table`, 0 if absent."""
    vtable = table - _i32(buf, table)[0]
    if 4 + 2 * i >= _u16(buf, vtable)[0]:
        return 0
    rel = _u16(buf, vtable + 4 + 2 * i)[0]
    return table + rel if rel else 0


def _slots(batch: pa.RecordBatch) -> list[pa.Buffer | None] | None:
    """Per body buffer of `batch`'s record batch message, in order, the raw bytes Arrow compressed
    for it when it is a fixed-width value buffer (else None); None if a column's layout is not
    one handled here."""
    out: list[pa.Buffer | None] = []

    def values(arr: pa.Array) -> pa.Buffer | None:
        t = arr.type
        if pa.types.is_boolean(t) or pa.types.is_decimal(t) or pa.types.is_dictionary(t):
            return None
        width = t.bit_width // 8
        data = arr.buffers()[1]
        if data is None:
            return None
        return data.slice(arr.offset * width, len(arr) * width)

    for col in batch.columns:
        t = col.type
        if pa.types.is_fixed_size_list(t) and _fixed_width(t.value_type):
            size = t.list_size
            out += [None, None, values(col.values.slice(col.offset * size, len(col) * size))]
        elif (pa.types.is_list(t) or pa.types.is_large_list(t)) and _fixed_width(t.value_type):
            offsets = col.offsets  # the writer sends the values these offsets span, rebased
            lo = offsets[0].as_py() if len(offsets) else 0
            hi = offsets[-1].as_py() if len(offsets) else 0
            out += [None, None, None, values(col.values.slice(lo, hi - lo))]
        elif _fixed_width(t):
            out += [None, values(col)]
        elif pa.types.is_boolean(t):
            out += [None, None]
        elif (
            pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or pa.types.is_large_binary(t)
        ):
            out += [None, None, None]
        else:
            return None
    return out


def _fixed_width(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date(t)
        or pa.types.is_time(t)
        or pa.types.is_duration(t)
    )


def nbytes(part: Any) -> int:
    """Bytes in one piece of a message (a `pyarrow.Buffer` or a bytes-like object)."""
    return part.size if isinstance(part, pa.Buffer) else len(part)


class Pieces:
    """Byte ranges of pieces laid end to end, sliced without copying."""

    __slots__ = ("parts", "starts")

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts
        self.starts = list(itertools.accumulate((nbytes(p) for p in parts), initial=0))

    def take(self, start: int, end: int) -> list[Any]:
        """The pieces covering bytes [start, end), the first and last sliced."""
        out = []
        k = bisect.bisect_right(self.starts, start) - 1
        while start < end and k < len(self.parts):
            part, pos = self.parts[k], self.starts[k]
            lo, hi = start - pos, min(end - pos, self.starts[k + 1] - pos)
            out.append(part if (lo, hi) == (0, self.starts[k + 1] - pos) else part[lo:hi])
            start = pos + hi
            k += 1
        return out

    def bytes(self, start: int, end: int) -> bytes:
        return b"".join(bytes(p) for p in self.take(start, end))


def store_raw(parts: list[Any], batch: pa.RecordBatch) -> list[Any]:
    """The message in `parts` with `batch`'s poorly compressed fixed-width buffers stored raw
    (see the module docstring); `parts` itself if nothing is worth changing or recognised."""
    slots = _slots(batch)
    if slots is None or not any(s is not None and s.size >= _MIN_BYTES for s in slots):
        return parts
    try:
        pieces = Pieces(parts)
        head = pieces.bytes(0, 8)
        if _u32(head, 0)[0] != 0xFFFFFFFF:
            return parts
        meta_len = _i32(head, 4)[0]
        meta = bytearray(pieces.bytes(8, 8 + meta_len))
        root = _u32(meta, 0)[0]
        kind_at = _field(meta, root, 1)
        header_at = _field(meta, root, 2)
        length_at = _field(meta, root, 3)
        if not (kind_at and header_at and length_at) or meta[kind_at] != _RECORD_BATCH:
            return parts
        rb = header_at + _u32(meta, header_at)[0]
        if not _field(meta, rb, 3):  # no BodyCompression: nothing was compressed
            return parts
        vec_at = _field(meta, rb, 2)
        if not vec_at:
            return parts
        vec = vec_at + _u32(meta, vec_at)[0]
        count = _u32(meta, vec)[0]
        if count != len(slots):
            return parts
        body_start = 8 + meta_len
        entries = [_PAIR.unpack_from(meta, vec + 4 + 16 * i) for i in range(count)]
        raw_at: dict[int, pa.Buffer] = {}
        for i, ((offset, length), raw) in enumerate(zip(entries, slots)):
            if raw is None or raw.size < _MIN_BYTES or length < 8:
                continue
            size = _i64(pieces.bytes(body_start + offset, body_start + offset + 8), 0)[0]
            if size == raw.size and length - 8 > KEEP_RATIO * size:
                raw_at[i] = raw
        if not raw_at:
            return parts
        body: list[Any] = []
        pos = 0
        for i, (offset, length) in enumerate(entries):
            if i in raw_at:
                chunk, n = [_RAW, raw_at[i]], 8 + raw_at[i].size
            else:
                chunk, n = pieces.take(body_start + offset, body_start + offset + length), length
            _PAIR.pack_into(meta, vec + 4 + 16 * i, pos, n)
            body += chunk
            pad = -n % 8
            if pad:
                body.append(b"\x00" * pad)
            pos += n + pad
        struct.pack_into("<q", meta, length_at, pos)
        return [head, bytes(meta), *body]
    except (struct.error, IndexError, ValueError):
        return parts
