"""The writer's per-record size limit (a topic's ``max_record_bytes``), checked on a conformed batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import RecordTooLargeError


def _is_var_binary(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or pa.types.is_large_binary(t)
    )


def _widest(col: pa.Array) -> int:
    """Bytes of the longest value of a string/binary column, from its offsets (nulls count 0)."""
    if len(col) == 0:
        return 0
    width = 8 if pa.types.is_large_string(col.type) or pa.types.is_large_binary(col.type) else 4
    offsets = np.frombuffer(
        col.buffers()[1], np.int32 if width == 4 else np.int64, count=len(col) + 1, offset=col.offset * width
    )
    return int(np.diff(offsets).max())


def check_sizes(batch: pa.RecordBatch, limit: int, offset_index: int, topic: str) -> None:
    """Refuse the first record over `limit` bytes (`RecordTooLargeError`, naming its index plus
    `offset_index`); O(columns) when every record is small.

    A record is at most the sum of each column's widest value, which the value offsets give
    without a per-row pass; only a batch whose bound is over the limit is measured row by row.
    """
    if batch.nbytes <= limit:
        return
    bound = 0
    for col in batch.columns:
        t = col.type
        if _is_var_binary(t):
            bound += _widest(col)
        elif pa.types.is_dictionary(t) and _is_var_binary(t.value_type):
            bound += _widest(col.dictionary)
        elif pa.types.is_primitive(t) and not pa.types.is_boolean(t):
            bound += t.bit_width // 8
        else:  # nested, dictionary, ...: the whole column bounds any one value
            bound += col.nbytes
    if bound <= limit:
        return
    sizes = np.zeros(batch.num_rows, np.int64)
    for col in batch.columns:
        t = col.type
        if pa.types.is_dictionary(t) and _is_var_binary(t.value_type):
            col = col.dictionary_decode()
        if _is_var_binary(col.type):
            sizes += pc.binary_length(col).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            try:
                sizes += t.bit_width // 8
            except ValueError:
                sizes += col.nbytes // max(1, len(col))
    big = np.nonzero(sizes > limit)[0]
    if len(big):
        i = int(big[0])
        raise RecordTooLargeError(
            i + offset_index,
            None,
            f"record is about {int(sizes[i])} bytes, over the topic's max_record_bytes of {limit}",
            topic=topic,
        )
