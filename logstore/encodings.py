"""How columns are stored in frame bodies: dictionary-encoded strings and run-end encoded columns.

A leaf (pyarrow and numpy only), shared by the frame codec, the readers and `schemas.conform`.
A stored field carries ``logstore.encoding`` in its metadata: ``dictionary`` (a string column the
writer stored as a dictionary, read back as plain strings) or ``runs`` (a column given run-end
encoded, stored as its runs and read back decoded).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ENCODING_KEY = b"logstore.encoding"
DICTIONARY = b"dictionary"
RUNS = b"runs"


def is_stored_dictionary(field: pa.Field) -> bool:
    """Whether `field` is a string column stored dictionary-encoded (not a logical enum)."""
    return pa.types.is_dictionary(field.type) and (field.metadata or {}).get(ENCODING_KEY) == DICTIONARY


def is_stored_runs(field: pa.Field) -> bool:
    """Whether `field` is a column stored run-end encoded."""
    return pa.types.is_run_end_encoded(field.type) and (field.metadata or {}).get(ENCODING_KEY) == RUNS


def whole_runs(col: pa.Array) -> bool:
    """Whether run-end encoded `col` is stored as it is: unsliced, its runs covering exactly its rows."""
    ends = col.run_ends
    return (
        col.offset == 0
        and len(ends) == len(col.values)
        and (ends[-1].as_py() == len(col) if len(ends) else len(col) == 0)
    )


def run_end_decode(col: pa.Array) -> pa.Array:
    """A run-end encoded array as an array of its values' type (Arrow's kernel takes no dictionary
    values: those are taken run by run)."""
    if not pa.types.is_dictionary(col.type.value_type):
        return pc.run_end_decode(col)
    lo, n = col.find_physical_offset(), col.find_physical_length()
    ends = np.minimum(col.run_ends.slice(lo, n).to_numpy(zero_copy_only=False).astype(np.int64) - col.offset, len(col))
    lengths = np.diff(ends, prepend=0)
    return col.values.slice(lo, n).take(pa.array(np.repeat(np.arange(n), lengths)))


def mark_runs(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with its run-end encoded columns marked for storage as such (``logstore.encoding: runs``)."""
    fields = list(batch.schema)
    marked = False
    for i, f in enumerate(fields):
        if pa.types.is_run_end_encoded(f.type) and not is_stored_runs(f):
            fields[i] = pa.field(f.name, f.type, f.nullable, {**(f.metadata or {}), ENCODING_KEY: RUNS})
            marked = True
    if not marked:
        return batch
    return pa.RecordBatch.from_arrays(batch.columns, schema=pa.schema(fields, batch.schema.metadata))


def decode_runs(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with every run-end encoded column decoded to its values' type (a writer's input
    given so, before partitioning by key or a per-value pass)."""
    return _decoded(batch, lambda f: pa.types.is_run_end_encoded(f.type))


def decode_stored(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with its stored-dictionary string columns decoded to plain strings and its stored
    run-end encoded columns to their own type."""
    return _decoded(batch, lambda f: is_stored_dictionary(f) or is_stored_runs(f))


def _decoded(batch: pa.RecordBatch, picked: Callable[[pa.Field], bool]) -> pa.RecordBatch:
    """`batch` with the dictionary or run-end encoded columns whose field is `picked` decoded (the
    encoding mark dropped from the field's metadata)."""
    schema = batch.schema
    marked = [i for i, f in enumerate(schema) if picked(f)]
    if not marked:
        return batch
    columns, fields = list(batch.columns), list(schema)
    for i in marked:
        f = fields[i]
        col = columns[i]
        columns[i] = col.dictionary_decode() if pa.types.is_dictionary(f.type) else run_end_decode(col)
        meta = {k: v for k, v in (f.metadata or {}).items() if k != ENCODING_KEY}
        fields[i] = pa.field(f.name, f.type.value_type, f.nullable, meta or None)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields, schema.metadata))
