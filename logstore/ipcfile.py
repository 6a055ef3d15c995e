"""Arrow IPC *file* images of frames, built from the frames' own bytes (no decoding, no re-encoding).

A frame body is an Arrow IPC stream: a schema message, one record-batch message, an end-of-stream
marker. An IPC file is ``ARROW1\\0\\0``, a schema message, record-batch messages, a footer (a
flatbuffer holding the schema and the position of every record batch), the footer's length and
``ARROW1``. So a run of frames of one schema becomes a file by laying their batch messages end to
end behind one schema message and adding a footer: the footer of a k-batch file of that schema,
written once by pyarrow, with its ``Block`` structs (offset: i64, metaDataLength: i32, pad,
bodyLength: i64) patched in place. Readers of the image (pyarrow datasets, hence DuckDB) then
decode only the columns a query needs, straight from the compressed buffers the frames were
written with.
"""

from __future__ import annotations

import bisect
import struct
import threading

import pyarrow as pa

FILE_MAGIC = b"ARROW1"
_CONTINUATION = b"\xff\xff\xff\xff"
_BLOCK = struct.Struct("<qi4xq")


class FooterTemplate:
    """The footer of a `k`-batch IPC file of `schema`, and where its Blocks sit."""

    def __init__(self, schema: pa.Schema, k: int) -> None:
        sink = pa.BufferOutputStream()
        empty = pa.RecordBatch.from_pylist([], schema=schema)
        with pa.ipc.new_file(sink, schema) as w:
            for _ in range(k):
                w.write_batch(empty)
        data = sink.getvalue().to_pybytes()
        (length,) = struct.unpack_from("<i", data, len(data) - 10)
        self.footer = bytes(data[len(data) - 10 - length : len(data) - 10])
        self.block_at = _record_batches_vector(self.footer, k)

    def render(self, blocks: list[tuple[int, int, int]]) -> bytes:
        """The footer with `blocks` (offset, metadata length, body length) in place."""
        footer = bytearray(self.footer)
        for i, block in enumerate(blocks):
            _BLOCK.pack_into(footer, self.block_at + i * _BLOCK.size, *block)
        return bytes(footer)


def _record_batches_vector(buf: bytes, k: int) -> int:
    """Byte position of the first Block of the Footer table's `recordBatches` vector (field 3)."""
    (table,) = struct.unpack_from("<I", buf, 0)
    (soffset,) = struct.unpack_from("<i", buf, table)
    vtable = table - soffset
    vtable_len, _ = struct.unpack_from("<HH", buf, vtable)
    field = 3
    if 4 + 2 * field + 2 > vtable_len:
        raise ValueError("footer has no recordBatches vector")
    (off,) = struct.unpack_from("<H", buf, vtable + 4 + 2 * field)
    vec = table + off + struct.unpack_from("<I", buf, table + off)[0]
    (count,) = struct.unpack_from("<I", buf, vec)
    if count != k:
        raise ValueError(f"expected a {k}-batch footer, found {count} batches")
    return vec + 4


_templates: dict[tuple[bytes, int], FooterTemplate] = {}
_lock = threading.Lock()


def _split(body: pa.Buffer) -> tuple[memoryview, int, int, int] | None:
    """(bytes, schema message length, batch metadata length, batch body length) of a frame body."""
    data = memoryview(body).cast("B")  # pyarrow exports signed bytes
    if len(data) < 16 or data[:4] != _CONTINUATION:
        return None
    (l1,) = struct.unpack_from("<i", data, 4)
    schema_end = 8 + l1
    if data[schema_end : schema_end + 4] != _CONTINUATION:
        return None  # e.g. a dictionary batch comes first: not a plain frame
    (l2,) = struct.unpack_from("<i", data, schema_end + 4)
    meta_len = 8 + l2
    body_len = len(data) - 8 - schema_end - meta_len  # the stream ends with an 8-byte EOS marker
    if body_len < 0 or data[len(data) - 8 :] != _CONTINUATION + b"\0\0\0\0":
        return None
    return data, schema_end, meta_len, body_len


class Image:
    """A read-only, seekable file over pieces of memory laid end to end (nothing is copied until
    read, and then only the bytes read: a reader that wants three columns copies three columns)."""

    def __init__(self, pieces: list) -> None:
        self._pieces = [memoryview(p).cast("B") for p in pieces]
        self._starts = []
        pos = 0
        for piece in self._pieces:
            self._starts.append(pos)
            pos += len(piece)
        self.size = pos
        self._pos = 0
        self.closed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else self._pos + pos if whence == 1 else self.size + pos
        return self._pos

    def read(self, n: int = -1) -> bytes:
        start = self._pos
        end = self.size if n is None or n < 0 else min(self.size, start + n)
        self._pos = end
        if start >= end:
            return b""
        i = bisect.bisect_right(self._starts, start) - 1
        out = []
        while start < end:
            piece, at = self._pieces[i], start - self._starts[i]
            take = min(len(piece) - at, end - start)
            out.append(piece[at : at + take])
            start += take
            i += 1
        return out[0].tobytes() if len(out) == 1 else b"".join(out)

    def close(self) -> None:
        self.closed = True


def frames_as_file(bodies: list[pa.Buffer]) -> Image | None:
    """The IPC file image of frame bodies of one schema, or None if they are not plain frames."""
    parts = [_split(b) for b in bodies]
    if not parts or any(p is None for p in parts):
        return None
    data0, schema_end, _, _ = parts[0]
    schema_msg = bytes(data0[:schema_end])
    if any(bytes(p[0][: p[1]]) != schema_msg for p in parts[1:]):
        return None  # frames of different schemas cannot share a file
    key = (schema_msg, len(parts))
    with _lock:
        template = _templates.get(key)
    if template is None:
        template = FooterTemplate(pa.ipc.read_schema(pa.py_buffer(schema_msg)), len(parts))
        with _lock:
            if len(_templates) > 256:
                _templates.clear()
            _templates[key] = template
    pieces: list = [FILE_MAGIC, b"\0\0", schema_msg]
    blocks = []
    pos = 8 + schema_end
    for data, s_end, meta_len, body_len in parts:
        pieces.append(data[s_end : s_end + meta_len + body_len])
        blocks.append((pos, meta_len, body_len))
        pos += meta_len + body_len
    footer = template.render(blocks)
    pieces += [footer, struct.pack("<i", len(footer)), FILE_MAGIC]
    return Image(pieces)
