"""The content hash of a run's output: a digest per stream, combined into the run's hash.

Content hash (``sha256:<hex>``): rows grouped into streams by (input topic, input partition,
model id); each stream hashes its rows in clock-then-offset order, column by column over the
fields in `HASHED` (run id, latency, host, code version and the log's system columns are left out:
they change from run to run while the content does not; model id, version, input topic and
partition are constant in a stream and enter through its line; `request_id` and `event_time` are
the input's own, fixed by the input topic, partition and offset the stream hashes, and a third of
the bytes to hash). A column's digest is the SHA-256 of
three SHA-256s: its validity, its value lengths (strings, lists, maps; 0 for a null row) and its
values. Validity and lengths are hashed as runs (little-endian int64 pairs ``value, run length``,
validity as 1/0); values as their bytes (fixed-width: the little-endian value buffer, nulls as 0;
strings: the UTF-8 bytes concatenated; nested types: a child digest per child, by name), except
`clock` and `read_fence`, hashed as runs of their int64 values, and `input_offset`, as runs of
the differences to the previous row's offset (the stream's first row: the offset itself). Every
part is streamed and runs are emitted only when complete, so the digest does not depend on how
the rows were batched, on the number of workers, or on an interrupt and resume. The run's hash is
the SHA-256 of the sorted stream lines ``topic, partition, model id, model version, rows, digest``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..engine.rows import Const, Rows, Span

# per-row content; the stream key (input topic, partition, model id) and the model version are
# constant within a stream and enter the hash once, in the stream's line
HASHED = ["score", "scores", "label", "input_offset", "clock", "read_fence", "fence"]
# columns hashed as runs of their values (constant per input frame unless lookups or event-time
# order say otherwise) or runs of their differences (dense offsets)
HASH_AS = {"clock": "runs", "read_fence": "runs", "input_offset": "deltas"}


class _Runs:
    """Streams a sequence of int64 values into SHA-256 as its runs: little-endian int64 pairs
    (value, run length), each run emitted once it is complete. The runs of a sequence do not
    depend on how it was chunked, and a constant chunk costs O(1) bytes of hashing.
    With ``deltas=True`` the values hashed are the differences to the previous value (the first
    value of the stream as itself), so a dense offset sequence is one run."""

    def __init__(self, deltas: bool = False) -> None:
        self.h = hashlib.sha256()
        self.deltas = deltas
        self.last: int | None = None  # previous value (deltas)
        self.value: int | None = None  # the open run
        self.length = 0

    def add_run(self, value: int, n: int) -> None:
        if n <= 0:
            return
        if value == self.value:
            self.length += n
            return
        if self.value is not None:
            self.h.update(np.array([self.value, self.length], "<i8").tobytes())
        self.value, self.length = value, n

    def add(self, values: np.ndarray) -> None:
        n = len(values)
        if not n:
            return
        v = values.astype(np.int64, copy=False)
        if self.deltas:
            first = v[0] if self.last is None else v[0] - self.last
            self.last = int(v[-1])
            d = np.empty(n, np.int64)
            d[0] = first
            np.subtract(v[1:], v[:-1], out=d[1:])
            v = d
        cuts = np.flatnonzero(v[1:] != v[:-1]) + 1
        if not len(cuts):
            self.add_run(int(v[0]), n)
            return
        starts = np.concatenate(([0], cuts))
        lens = np.diff(np.append(starts, n))
        vals = v[starts]
        self.add_run(int(vals[0]), int(lens[0]))
        # close the open run, then every complete run of this chunk but the last in one update
        self.h.update(np.array([self.value, self.length], "<i8").tobytes())
        if len(starts) > 2:
            self.h.update(np.stack([vals[1:-1], lens[1:-1]], axis=1).astype("<i8").tobytes())
        self.value, self.length = int(vals[-1]), int(lens[-1])

    def add_span(self, start: int, n: int) -> None:
        """`add` of the dense values `start`, `start` + 1, ... (`n` of them), with ``deltas=True``."""
        if n <= 0:
            return
        first = start if self.last is None else start - self.last
        self.last = start + n - 1
        self.add_run(first, 1)
        self.add_run(1, n - 1)

    def digest(self) -> bytes:
        h = self.h.copy()
        if self.value is not None:
            h.update(np.array([self.value, self.length], "<i8").tobytes())
        return h.digest()


_KINDS: dict[int, str] = {}  # by Arrow type id: what a column's hashing depends on


def _kind(t: pa.DataType) -> str:
    """How `_ColumnHash` hashes a column of type `t`."""
    kind = _KINDS.get(t.id)
    if kind is None:
        kind = _KINDS[t.id] = _kind_of(t)
    return kind


def _kind_of(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_map(t):
        return "map"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "list"
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_struct(t):
        return "struct"
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t) or pa.types.is_duration(t):
        return "time"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    return "other"


def _values_buffer(arr: pa.Array, width: int) -> memoryview:
    """The value bytes of a fixed-width array without nulls (a view, no copy)."""
    return memoryview(arr.buffers()[1])[arr.offset * width : (arr.offset + len(arr)) * width]


class _ColumnHash:
    """Streams one column into SHA-256s: validity (as runs), lengths (as runs), values (nested
    types recurse); values are their bytes, or their runs (``runs``) or runs of differences
    (``deltas``) for columns that are mostly constant or dense (see `HASH_AS`)."""

    def __init__(self, encoding: str = "values") -> None:
        self.valid = _Runs()
        self.lengths = _Runs()
        self.values = hashlib.sha256()
        self.runs = _Runs(deltas=encoding == "deltas") if encoding != "values" else None
        self.children: dict[str, _ColumnHash] = {}

    def update(self, arr: pa.Array) -> None:
        if isinstance(arr, pa.ChunkedArray):
            for chunk in arr.chunks:
                self.update(chunk)
            return
        n = len(arr)
        if not n:
            return
        t = arr.type
        kind = _kind(t)
        nulls = arr.null_count
        variable = kind in ("string", "list", "map")
        if nulls == n:  # all null: what nulls among values give, without looking at the values
            self.valid.add_run(0, n)
            if variable:
                self.lengths.add_run(0, n)
                return
            if kind in ("null", "struct"):
                return
            arr, nulls = arr.fill_null(False if kind == "bool" else 0), 0
        elif nulls:
            self.valid.add(arr.is_valid().to_numpy(zero_copy_only=False))
        else:
            self.valid.add_run(1, n)
        if kind == "string":
            a = arr.fill_null("" if not pa.types.is_binary(t) else b"") if nulls else arr
            large = pa.types.is_large_string(t)
            offs = np.frombuffer(
                a.buffers()[1], np.int64 if large else np.int32, count=n + 1, offset=a.offset * (8 if large else 4)
            )
            self.lengths.add(np.diff(offs))
            data = a.buffers()[2]
            if data is not None and offs[-1] > offs[0]:
                self.values.update(memoryview(data)[int(offs[0]) : int(offs[-1])])
        elif kind == "map":
            offs = arr.offsets.to_numpy()
            self.lengths.add(map_lengths(arr))
            lo, hi = int(offs[0]), int(offs[-1])
            self._child("key").update(arr.keys.slice(lo, hi - lo))
            self._child("item").update(arr.items.slice(lo, hi - lo))
        elif kind == "list":
            self.lengths.add(pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False))
            self._child("item").update(pc.list_flatten(arr))
        elif kind == "null":
            pass
        else:
            if kind == "time":
                arr = arr.view(pa.int64()) if t.bit_width == 64 else arr.cast(pa.int64())
            elif kind == "bool":
                arr = arr.cast(pa.uint8())
            vals = arr.fill_null(0) if nulls else arr
            if self.runs is not None:
                self.runs.add(vals.to_numpy(zero_copy_only=False))
            elif kind in ("number", "time", "bool"):
                self.values.update(_values_buffer(vals, vals.type.bit_width // 8))
            else:
                self.values.update(np.ascontiguousarray(vals.to_numpy(zero_copy_only=False)).data)

    def update_column(self, rows: Rows, name: str) -> None:
        """`update` with column `name` of `rows`: constants and spans as the runs they are, when the
        column's hashing makes them runs (the digest `update` of the expanded column gives)."""
        c, n, t = rows.cols[name], rows.n, rows.schema.field(name).type
        if isinstance(c, Const):
            kind = _kind(t)
            if c.value is None and kind in ("string", "list", "map"):
                self.valid.add_run(0, n)
                self.lengths.add_run(0, n)
                return
            if (
                c.value is not None
                and self.runs is not None
                and not self.runs.deltas
                and (kind == "time" and t.bit_width == 64 or pa.types.is_integer(t))
            ):
                self.valid.add_run(1, n)
                self.runs.add_run(int(c.value), n)
                return
        elif isinstance(c, Span) and self.runs is not None and self.runs.deltas:
            self.valid.add_run(1, n)
            self.runs.add_span(c.start, n)
            return
        self.update(rows.column(name))

    def _child(self, name: str) -> _ColumnHash:
        c = self.children.get(name)
        if c is None:
            c = self.children[name] = _ColumnHash()
        return c

    def digest(self) -> str:
        h = hashlib.sha256()
        values = self.runs.digest() if self.runs is not None else self.values.digest()
        for part in (self.valid.digest(), self.lengths.digest(), values):
            h.update(part)
        for name in sorted(self.children):
            h.update(name.encode() + b"\x00" + self.children[name].digest().encode())
        return h.hexdigest()


def map_lengths(arr: pa.Array) -> np.ndarray:
    """Entries per row of a MapArray (0 for null rows), int64."""
    lens = np.diff(arr.offsets.to_numpy()).astype(np.int64)
    if arr.null_count:
        lens[arr.is_null().to_numpy(zero_copy_only=False)] = 0
    return lens


class StreamHash:
    """The content digest of one (input topic, partition, model) stream of output rows."""

    def __init__(self) -> None:
        self.rows = 0
        self.version: str | None = None
        self.cols = {name: _ColumnHash(HASH_AS.get(name, "values")) for name in HASHED}

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        self.rows += batch.num_rows
        names = batch.schema.names
        if self.version is None and batch.num_rows and "model_version" in names:
            self.version = batch.column(names.index("model_version"))[0].as_py()
        for name in HASHED:
            if name in names:
                self.cols[name].update(batch.column(names.index(name)))

    def update_rows(self, rows: Rows) -> None:
        """`update` with `rows` (same digest as with ``rows.to_batch()``), constants unexpanded."""
        n = rows.n
        if not n:
            return
        self.rows += n
        cols = rows.cols
        if self.version is None and "model_version" in cols:
            v = cols["model_version"]
            self.version = v.value if isinstance(v, Const) else rows.column("model_version")[0].as_py()
        for name in HASHED:
            if name in cols:
                self.cols[name].update_column(rows, name)

    def digest(self) -> str:
        h = hashlib.sha256()
        for name in HASHED:
            h.update(name.encode() + b"\x00" + self.cols[name].digest().encode() + b"\n")
        return h.hexdigest()


class ContentHash:
    """Stream digests by (input topic, partition, model id), combined into the run's hash."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, int, str], StreamHash] = {}

    def update(self, topic: str, partition: int, model_id: str, batch: pa.RecordBatch | pa.Table) -> None:
        key = (topic, partition, model_id)
        s = self.streams.get(key)
        if s is None:
            s = self.streams[key] = StreamHash()
        s.update(batch)

    def update_rows(self, rows: Rows) -> None:
        """Hash the rows of one stream (`rows.key`)."""
        s = self.streams.get(rows.key)
        if s is None:
            s = self.streams[rows.key] = StreamHash()
        s.update_rows(rows)

    def update_mixed(self, table: pa.Table) -> None:
        """Hash rows of several streams; rows of each stream must come in their stream order."""
        if not table.num_rows:
            return
        keys = pa.table(
            {
                "t": table.column("input_topic"),
                "p": table.column("input_partition"),
                "m": table.column("model_id"),
            }
        )
        groups = keys.group_by(["t", "p", "m"], use_threads=False).aggregate([])
        if groups.num_rows == 1:
            g = groups.to_pylist()[0]
            self.update(g["t"], g["p"], g["m"], table)
            return
        for g in groups.to_pylist():
            mask = pc.and_(
                pc.and_(pc.equal(keys["t"], g["t"]), pc.equal(keys["p"], g["p"])), pc.equal(keys["m"], g["m"])
            )
            self.update(g["t"], g["p"], g["m"], table.filter(mask))

    def summary(self) -> dict[str, dict]:
        """Per stream ``"topic/partition/model"`` -> {"rows": n, "sha256": digest}."""
        return {
            f"{t}/{p}/{m}": {"rows": s.rows, "model_version": s.version, "sha256": s.digest()}
            for (t, p, m), s in sorted(self.streams.items())
        }

    @staticmethod
    def combine(streams: dict[str, dict]) -> str:
        lines = []
        for name, info in streams.items():
            t, p, m = name.split("/", 2)  # topics and partitions hold no "/"
            lines.append(
                f"{t}\x00{int(p)}\x00{m}\x00{info.get('model_version')}\x00{info['rows']}\x00{info['sha256']}\n"
            )
        h = hashlib.sha256()
        for line in sorted(lines):
            h.update(line.encode())
        return "sha256:" + h.hexdigest()

    def hexdigest(self) -> str:
        return self.combine(self.summary())
