"""Output rows of one model for one input frame, constant columns kept as their one value.

Most columns of a run's output are constant over an input frame: the model and run ids, the
input topic and partition, the clock and read fence (a frame's rows share one append time), the
nulls of fields a model leaves unset, the per-row latency. `Rows` holds such a column as a
`Const`, a dense offset column as a `Span`, and every other column as an Arrow array:

- the sink assembles the rows of many input frames into one record batch (`assemble`) where a
  column constant in every frame is run-end encoded: a run per frame, stored so by the log, not a
  value per row expanded, concatenated, checksummed and written;
- the content hash takes a constant or a span as the runs it is (`replay.runner.hashing.StreamHash.update_rows`),
  giving the digest the expanded column gives, without expanding it.

Any `Rows` turns into a record batch with `to_batch`, which expands each constant to its value
repeated (a dictionary-typed one to codes of one dictionary value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa


@dataclass(frozen=True, slots=True)
class Const:
    """Every row holds `value` (None: null; timestamps as int microseconds)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Span:
    """Dense int64 values: `start`, `start` + 1, ... (a frame's offsets)."""

    start: int


Column: TypeAlias = "pa.Array | Const | Span"

_CACHE_CAP = 1 << 16  # rows a cached constant column holds (sliced to length); grows on demand
_CACHE_ENTRIES = 64  # distinct cached constants before the cache starts over


class Constants:
    """Expands constants into arrays; strings and nulls are built once per value and type and
    handed out as zero-copy slices, numbers are filled fresh (their values change frame to frame)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, pa.DataType], pa.Array] = {}

    def __call__(self, value: Any, n: int, t: pa.DataType) -> pa.Array:
        if value is not None and _fixed_width(t):
            return _fill([Const(value)], [n], n, t)
        key = (value, t)
        arr = self._cache.get(key)
        if arr is None or len(arr) < n:
            if len(self._cache) >= _CACHE_ENTRIES:
                self._cache.clear()
            arr = self._cache[key] = self._build(value, max(n, _CACHE_CAP), t)
        return arr.slice(0, n)

    @staticmethod
    def _build(value: Any, n: int, t: pa.DataType) -> pa.Array:
        if value is None:
            return pa.nulls(n, t)
        if pa.types.is_dictionary(t):
            return pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, t.index_type.to_pandas_dtype())), pa.array([value], t.value_type)
            )
        if pa.types.is_string(t) and isinstance(value, str):
            raw = value.encode()
            if len(raw) * n < 2**31:
                offsets = np.arange(0, len(raw) * n + 1, len(raw), dtype=np.int32)
                return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(raw * n))
        return pa.array([value] * n, t)


def _fixed_width(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_duration(t)
        or pa.types.is_date64(t)
    )


def _numpy_type(t: pa.DataType) -> np.dtype:
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return np.dtype(t.to_pandas_dtype())
    return np.dtype(np.int64)  # timestamp, duration, date64: int64 storage


def _allocate(n: int, t: pa.DataType) -> tuple[pa.Buffer, np.ndarray]:
    """A buffer for `n` values of fixed-width type `t`, and a writable numpy view of it.

    From Arrow's memory pool, which keeps freed memory for the next frame: fresh memory from the
    system costs a page fault per 4 KiB, about what filling it costs."""
    dtype = _numpy_type(t)
    buf = pa.allocate_buffer(n * dtype.itemsize)
    return buf, np.frombuffer(buf, dtype)


class Rows:
    """Output rows of one stream `key` (input topic, partition, model id): `n` rows of `schema`,
    each column an Arrow array, a `Const` or a `Span` (module docstring)."""

    __slots__ = ("key", "n", "schema", "cols")

    def __init__(self, key: tuple[str, int, str], n: int, schema: pa.Schema, cols: dict[str, Column]) -> None:
        self.key = key
        self.n = n
        self.schema = schema
        self.cols = cols

    def column(self, name: str, constants: Constants | None = None) -> pa.Array:
        """Column `name` as an array."""
        return expand(self.cols[name], self.n, self.schema.field(name).type, constants or _CONSTANTS)

    def to_batch(self, constants: Constants | None = None) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays([self.column(f.name, constants) for f in self.schema], schema=self.schema)

    def filter(self, keep: np.ndarray) -> Rows:
        """The rows where `keep` (bool, one per row) is true; constants stay constants."""
        n = int(np.count_nonzero(keep))
        if n == self.n:
            return self
        mask = pa.array(keep, pa.bool_())
        cols: dict[str, Column] = {}
        for f in self.schema:
            c = self.cols[f.name]
            cols[f.name] = c if isinstance(c, Const) else self.column(f.name).filter(mask)
        return Rows(self.key, n, self.schema, cols)


_CONSTANTS = Constants()


def expand(c: Column, n: int, t: pa.DataType, constants: Constants | None = None) -> pa.Array:
    """Column `c` of `n` rows of type `t` as an array."""
    constants = constants or _CONSTANTS
    if isinstance(c, Const):
        return constants(c.value, n, t)
    if isinstance(c, Span):
        return _fill([c], [n], n, t)
    return c


def assemble(parts: Sequence[Rows], constants: Constants | None = None) -> pa.RecordBatch:
    """The rows of `parts` (non-empty, one schema) as one record batch, in order.

    A column every part holds as a constant becomes a run-end encoded column of the field's type
    (a run per part at most; the log stores it so, `logstore.frame`). Other fixed-width columns
    are filled straight into one buffer; the rest are concatenated."""
    constants = constants or _CONSTANTS
    schema = parts[0].schema
    ns = [r.n for r in parts]
    total = sum(ns)
    fields, arrays = [], []
    for f in schema:
        cs = [r.cols[f.name] for r in parts]
        t = f.type
        if all(isinstance(c, Const) for c in cs) and not pa.types.is_dictionary(t):
            arr = _runs([c for c in cs if isinstance(c, Const)], ns, t)
        elif len(cs) == 1:
            arr = expand(cs[0], total, t, constants)
        elif _fixed_width(t) and all(_null_free(c, t) for c in cs):
            arr = _fill(cs, ns, total, t)
        else:
            arr = pa.concat_arrays([expand(c, n, t, constants) for c, n in zip(cs, ns)])
        fields.append(f if arr.type == t else pa.field(f.name, arr.type, f.nullable, f.metadata))
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, schema.metadata))


def _runs(cs: list[Const], ns: list[int], t: pa.DataType) -> pa.Array:
    """Per-part constants as a run-end encoded column, equal neighbours in one run."""
    values: list[Any] = []
    ends: list[int] = []
    at = 0
    for c, n in zip(cs, ns):
        at += n
        if ends and values[-1] == c.value:
            ends[-1] = at
        else:
            values.append(c.value)
            ends.append(at)
    return pa.RunEndEncodedArray.from_arrays(pa.array(ends, pa.int32()), _values(values, t))


def _values(values: list[Any], t: pa.DataType) -> pa.Array:
    """`values` as an array of `t`; temporal ones built from their int64 storage (building them
    from Python ints looks the time zone up every call: ~25x slower)."""
    if _fixed_width(t) and not (pa.types.is_integer(t) or pa.types.is_floating(t)) and None not in values:
        return pa.array(values, pa.int64()).view(t)
    return pa.array(values, t)


def _null_free(c: Column, t: pa.DataType) -> bool:
    """Whether `c` has no nulls (and, an array, is of type `t` exactly)."""
    if isinstance(c, Const):
        return c.value is not None
    return isinstance(c, Span) or (c.null_count == 0 and c.type == t)


def _fill(cs: list[Column], ns: list[int], total: int, t: pa.DataType) -> pa.Array:
    """Null-free parts of a fixed-width column (constants, spans, arrays of type `t`) written into
    one buffer from Arrow's pool."""
    buf, out = _allocate(total, t)
    dtype = out.dtype
    at = 0
    for c, n in zip(cs, ns):
        if isinstance(c, Const):
            out[at : at + n] = c.value
        elif isinstance(c, Span):
            out[at : at + n] = np.arange(c.start, c.start + n, dtype=dtype)
        else:
            out[at : at + n] = np.frombuffer(c.buffers()[1], dtype, count=n, offset=c.offset * dtype.itemsize)
        at += n
    return pa.Array.from_buffers(t, total, [None, buf])
