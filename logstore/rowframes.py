"""Decoding row frames (`frame.py`, the rows flag): one, or a run of them as one batch.

A topic written one record per commit holds a row frame per record. Decoding each alone costs
the Arrow conversion per record; a run of consecutive row frames of one schema version is
decoded together instead (their records' Avro rows into one ``from_pylist``), the offsets and
append times coming from each frame's header. The result is the batch the frames would give one
by one, concatenated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

import schemas
from schemas import rowcodec

from .frame import APPEND_TIME_FIELD, OFFSET_FIELD, FrameHeader

if TYPE_CHECKING:
    from .topic import Topic, Version


class RowDecoder:
    """Decodes the row frames of one topic, resolved to `latest`. Thread-safe (a lost cache
    update only builds a codec twice)."""

    def __init__(self, topic: Topic, latest: Version) -> None:
        self.topic = topic
        self.latest = latest
        self._codecs: dict[int, rowcodec.RowCodec] = {}

    def _codec(self, version: int) -> rowcodec.RowCodec:
        codec = self._codecs.get(version)
        if codec is None:
            v = self.latest if version == self.latest.version else self.topic.version(version)
            codec = self._codecs[version] = rowcodec.codec(v.schema, v.arrow)
        return codec

    def decode(
        self, frames: list[tuple[FrameHeader, memoryview, int, int]], names: Sequence[str] | None = None
    ) -> pa.RecordBatch:
        """Rows [start, stop) of each (header, verified body, start, stop), all of one schema
        version, as one batch of the latest schema (its fields `names` only, when given) with the
        system columns. Raises ValueError for a body that does not decode."""
        version = frames[0][0].schema_version
        codec = self._codec(version)
        rows: list[dict[str, object]] = []
        offsets, times = [], []
        for h, body, start, stop in frames:
            got = codec.rows(body, h.count)
            rows += got[start:stop] if (start, stop) != (0, h.count) else got
            offsets.append(np.arange(h.base_offset + start, h.base_offset + stop, dtype=np.int64))
            times.append(np.full(stop - start, h.append_time, dtype=np.int64))
        if version == self.latest.version:
            user = codec.batch(rows, names)
        else:
            user = schemas.resolve(codec.batch(rows), self.topic.version(version).schema, self.latest.schema)
            user = user if names is None else user.select(list(names))
        n = len(rows)
        system = [
            pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(np.concatenate(offsets))]),
            pa.Array.from_buffers(APPEND_TIME_FIELD.type, n, [None, pa.py_buffer(np.concatenate(times))]),
        ]
        return pa.RecordBatch.from_arrays(
            [*user.columns, *system], schema=user.schema.append(OFFSET_FIELD).append(APPEND_TIME_FIELD)
        )


_warmed = False


def warm() -> None:
    """Pay pyarrow's one-time set-up of Python value conversion now (it imports pandas: about a
    third of a second), not at a tailer's first record: live readers call this before waiting."""
    global _warmed
    if not _warmed:
        pa.array([0])
        _warmed = True
