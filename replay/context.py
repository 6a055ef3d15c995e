"""The as-of view a model gets as `ctx`: what was known at each row's clock, and nothing after.

The engine keeps an `AsOfState` per lookup topic and feeds it frames from the event clock as
the clock passes them (`apply`), so records appended after the clock are not even loaded when a
model asks. `Context.lookup` and `Context.history` answer from that state, for each row as of its
clock (or an earlier `as_of`); asking for a later time raises `TimeLeakError` naming the model,
what was asked and the row's clock. Every answer raises the row's `read_fence` (the latest
append time it read), which the output records and `replay audit` checks.

State layout per topic: the frames applied so far (consolidated into bigger chunks as they pile
up), the append time of every row in arrival order, and a dict key -> row numbers (ascending in
append time, since the clock applies frames in append-time order). Memory grows with the lookup
topic (history and `as_of` need it), not with the inputs replayed.
"""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from logstore.errors import TimeLeakError
from logstore.reader import to_us

from .clock import fmt_time
from .errors import ReplayError

_CONSOLIDATE = 64


class AsOfState:
    """The records of one lookup topic applied so far, by key (see the module docstring)."""

    def __init__(self, topic: str, key: str, schema: pa.Schema) -> None:
        if key not in schema.names:
            raise ReplayError(f"lookup topic {topic!r} has no key field {key!r}; its fields are {schema.names}")
        self.topic = topic
        self.key = key
        self.schema = schema
        self._chunks: list[pa.RecordBatch] = []
        self._fresh = 0  # frames appended to _chunks since the last consolidation
        self._table: pa.Table | None = None
        self._times = np.empty(1024, np.int64)
        self._n = 0
        self._index: dict[Any, list[int]] = {}
        self.fence: dict[int, int] = {}  # partition -> highest offset applied
        self.latest = -(2**63)  # append time of the last frame applied

    def __len__(self) -> int:
        return self._n

    def apply(self, batch: pa.RecordBatch, partition: int, time_us: int) -> None:
        """Add one frame (all rows appended at `time_us`) to the state."""
        n = batch.num_rows
        if not n:
            return
        if time_us < self.latest:
            raise AssertionError(f"lookup state of {self.topic!r} fed out of clock order")
        base = self._n
        if base + n > len(self._times):
            grown = np.empty(max(2 * len(self._times), base + n), np.int64)
            grown[:base] = self._times[:base]
            self._times = grown
        self._times[base:base + n] = time_us
        index = self._index
        for i, k in enumerate(batch.column(batch.schema.get_field_index(self.key)).to_pylist(), base):
            lst = index.get(k)
            if lst is None:
                index[k] = [i]
            else:
                lst.append(i)
        self._n = base + n
        self._chunks.append(batch)
        self._fresh += 1
        self._table = None
        self.fence[partition] = batch.column(batch.schema.get_field_index("_offset"))[-1].as_py()
        self.latest = time_us

    def table(self) -> pa.Table:
        if self._table is None:
            if self._fresh > _CONSOLIDATE:  # merge the recent small frames into one block
                k = self._fresh
                block = pa.Table.from_batches(self._chunks[-k:]).combine_chunks().to_batches()
                self._chunks[-k:] = block
                self._fresh = 0
            self._table = pa.Table.from_batches(self._chunks, schema=self._chunks[0].schema if self._chunks else None) \
                if self._chunks else pa.table({}).cast(pa.schema([]))
        return self._table

    def latest_rows(self, keys: Sequence[Any], limits: np.ndarray | None, ttl_us: int | None) -> np.ndarray:
        """Row numbers of the latest record per key with append time <= its limit (-1: none)."""
        index, times = self._index, self._times
        out = np.full(len(keys), -1, np.int64)
        if limits is None:  # as of the clock: everything applied is visible
            for i, k in enumerate(keys):
                lst = index.get(k)
                if lst:
                    out[i] = lst[-1]
        else:
            for i, k in enumerate(keys):
                lst = index.get(k)
                if lst:
                    j = bisect.bisect_right(lst, limits[i], key=times.__getitem__)
                    if j:
                        out[i] = lst[j - 1]
        if ttl_us is not None:
            found = out >= 0
            if found.any():
                ref = limits if limits is not None else np.full(len(keys), self.latest, np.int64)
                old = found & (ref - times[np.where(found, out, 0)] > ttl_us)
                out[old] = -1
        return out

    def history_rows(self, key: Any, since_us: int | None, limit_us: int) -> np.ndarray:
        lst = self._index.get(key) or []
        times = self._times
        hi = bisect.bisect_right(lst, limit_us, key=times.__getitem__)
        lo = 0 if since_us is None else bisect.bisect_left(lst, since_us, 0, hi, key=times.__getitem__)
        return np.asarray(lst[lo:hi], np.int64)

    def times_of(self, rows: np.ndarray) -> np.ndarray:
        return self._times[rows]

    def take(self, rows: np.ndarray, columns: Sequence[str] | None) -> pa.Table:
        """Records at row numbers `rows` (-1 gives a row of nulls), in the state's schema."""
        schema = self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        if not self._chunks:
            return pa.Table.from_batches([], schema=schema) if not len(rows) else \
                pa.table({f.name: pa.nulls(len(rows), f.type) for f in schema}, schema=schema.with_metadata(None))
        t = self.table()
        if columns is not None:
            t = t.select(list(columns))
        idx = pa.array(rows, mask=rows < 0)
        return t.take(idx)


def _keys_list(keys: Any, batch: pa.RecordBatch | None) -> list:
    if isinstance(keys, str):
        if batch is None or keys not in batch.schema.names:
            raise ReplayError(f"keys={keys!r}: a string names a column of the batch, and the batch has "
                              f"{batch.schema.names if batch is not None else 'no columns'}")
        keys = batch.column(batch.schema.get_field_index(keys))
    if isinstance(keys, (pa.Array, pa.ChunkedArray)):
        return keys.to_pylist()
    if isinstance(keys, np.ndarray):
        return keys.tolist()
    return list(keys)


def _as_us(value: Any, what: str) -> int:
    if isinstance(value, datetime):
        return to_us(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[us]").astype(np.int64))
    raise ReplayError(f"{what} must be an aware datetime, found {value!r}")


def _td_us(value: Any, what: str) -> int:
    if isinstance(value, timedelta):
        return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1_000_000)  # seconds
    raise ReplayError(f"{what} must be a timedelta (or seconds), found {value!r}")


class Context:
    """What a model may know while deciding (or learning from) a batch: `ctx`.

    - ``ctx.now``: the batch's clock (an aware datetime); when rows have their own clocks
      (event-time order) it is the earliest of them, and ``ctx.clock`` gives each row's.
    - ``ctx.lookup(topic, keys, as_of=None, ttl=None, key=None, columns=None)``: per row, the
      latest record of `topic` for its key appended at or before the row's clock (or `as_of`,
      which may be earlier, never later), within `ttl` of it if given; a row of nulls when none.
    - ``ctx.history(topic, key, since=None, row=None)``: every record for one key appended in
      [since, clock] (since: a datetime, or a timedelta back from the clock).
    - ``ctx.rng``: a numpy Generator seeded by (run seed, model, input partition).
    - in `learn`: ``ctx.label`` names the label column of the batch.

    Lookups are answered from the run's lookup topics only (``lookups=`` of `replay.run` or a
    model's ``lookups`` attribute); outcomes never reach `predict` except through a lookup on
    the outcomes topic, which, like any lookup, sees only what was appended by the clock.
    """

    def __init__(self, states: Mapping[str, AsOfState], seed: int = 0) -> None:
        self._states = states
        self.seed = seed
        self.model = ""
        self.model_version = ""
        self.label: str | None = None
        self.batch: pa.RecordBatch | None = None
        self.topic = ""
        self.partition = -1
        self._clock_us = 0
        self._clocks: np.ndarray | None = None
        self._n = 0
        self.read_fence: np.ndarray | None = None
        self._rngs: dict[tuple[str, int], np.random.Generator] = {}
        self.reads = 0

    # --- set by the engine ------------------------------------------------------------------
    def _enter(self, model: Any, batch: pa.RecordBatch, topic: str, partition: int, clock_us: int,
               clocks: np.ndarray | None, fence: np.ndarray | None) -> None:
        self.model = model.name
        self.model_version = model.version
        self.batch = batch
        self.topic = topic
        self.partition = partition
        self._n = batch.num_rows
        self._clock_us = clock_us if clocks is None or not len(clocks) else int(clocks.min())
        self._clocks = clocks
        self.read_fence = fence

    # --- what models use ------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        from .clock import to_datetime

        return to_datetime(self._clock_us)

    @property
    def clock(self) -> pa.Array:
        """Each row's clock, timestamp[us, UTC]."""
        return pa.array(self._row_clocks(), pa.int64()).view(pa.timestamp("us", tz="UTC"))

    def _row_clocks(self) -> np.ndarray:
        if self._clocks is not None:
            return self._clocks
        return np.full(self._n, self._clock_us, np.int64)

    @property
    def rng(self) -> np.random.Generator:
        k = (self.model, self.partition)
        g = self._rngs.get(k)
        if g is None:
            import zlib

            g = self._rngs[k] = np.random.default_rng(
                [self.seed & 0xFFFFFFFF, zlib.crc32(self.model.encode()), max(self.partition, 0)])
        return g

    def _state(self, topic: str, what: str) -> AsOfState:
        st = self._states.get(topic)
        if st is None:
            known = sorted(self._states) or "none"
            raise ReplayError(
                f"model {self.model!r} called ctx.{what}({topic!r}, ...) but {topic!r} is not a lookup topic of "
                f"this run (lookup topics: {known}); declare it with replay.run(lookups=[...]) or a "
                f"`lookups` attribute on the model")
        return st

    def _leak(self, what: str, asked_us: int, clock_us: int, row: int) -> TimeLeakError:
        where = ""
        if self.batch is not None and "_offset" in self.batch.schema.names and 0 <= row < self.batch.num_rows:
            off = self.batch.column(self.batch.schema.get_field_index("_offset"))[row].as_py()
            where = f" ({self.topic} partition {self.partition} offset {off})"
        return TimeLeakError(
            f"model {self.model!r} (version {self.model_version}) asked {what} as of {fmt_time(asked_us)}, "
            f"after the clock {fmt_time(clock_us)} of row {row}{where}: nothing appended after a row's clock "
            f"is visible to it")

    def lookup(self, topic: str, keys: Any, as_of: Any = None, ttl: Any = None, key: str | None = None,
               columns: Sequence[str] | None = None) -> pa.Table:
        """Per row, the latest record of `topic` for its key known at the row's clock (see class doc).

        `keys`: one key per row (array-like), or the name of a column of the batch. `as_of`: a
        datetime for every row or one per row (array of timestamps); later than a row's clock
        raises TimeLeakError. `ttl`: a timedelta; older records count as missing. `key` must be
        the state's key field (the topic's key field, or what the run declared).
        """
        st = self._state(topic, "lookup")
        if key is not None and key != st.key:
            raise ReplayError(f"lookup topic {topic!r} is indexed by {st.key!r}, not {key!r} "
                              f"(declare lookups={{{topic!r}: {key!r}}} to index it by {key!r})")
        ks = _keys_list(keys, self.batch)
        n = len(ks)
        clocks = self._row_clocks()
        if n != len(clocks) and len(clocks):
            raise ReplayError(f"model {self.model!r}: ctx.lookup({topic!r}) got {n} keys for a batch of {len(clocks)} rows")
        limits = None
        what = f"ctx.lookup({topic!r})"
        if as_of is not None:
            if isinstance(as_of, (pa.Array, pa.ChunkedArray, np.ndarray, list, tuple)):
                arr = pa.array(as_of) if isinstance(as_of, (list, tuple)) else as_of
                if isinstance(arr, (pa.Array, pa.ChunkedArray)):
                    arr = arr.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
                else:
                    arr = arr.astype("datetime64[us]").astype(np.int64)
                limits = np.asarray(arr, np.int64)
            else:
                limits = np.full(n, _as_us(as_of, "as_of"), np.int64)
            over = np.nonzero(limits > clocks)[0] if n else []
            if len(over):
                r = int(over[0])
                raise self._leak(what, int(limits[r]), int(clocks[r]), r)
            if (limits >= st.latest).all():
                limits = None
        ttl_us = None if ttl is None else _td_us(ttl, "ttl")
        if ttl_us is not None and limits is None:
            limits = clocks.copy() if n else None
        rows = st.latest_rows(ks, limits, ttl_us)
        self._raise_fence(st, rows, None)
        self.reads += 1
        return st.take(rows, columns)

    def history(self, topic: str, key: Any, since: Any = None, row: int | None = None,
                columns: Sequence[str] | None = None) -> pa.Table:
        """Every record of `topic` for `key` appended in [since, clock], oldest first.

        The clock is row `row`'s (default: the earliest clock of the batch, ``ctx.now``). `since`:
        an aware datetime, or a timedelta back from that clock; None for all history.
        """
        st = self._state(topic, "history")
        clocks = self._row_clocks()
        clock = self._clock_us if row is None else int(clocks[row])
        if isinstance(since, timedelta):
            since_us = clock - _td_us(since, "since")
        elif since is None:
            since_us = None
        else:
            since_us = _as_us(since, "since")
            if since_us > clock:
                raise self._leak(f"ctx.history({topic!r}) since", since_us, clock, row if row is not None else 0)
        rows = st.history_rows(key, since_us, clock)
        if len(rows) and self.read_fence is not None:
            t = int(st.times_of(rows).max())
            if row is None:
                np.maximum(self.read_fence, t, out=self.read_fence)
            else:
                self.read_fence[row] = max(self.read_fence[row], t)
        self.reads += 1
        return st.take(rows, columns)

    def _raise_fence(self, st: AsOfState, rows: np.ndarray, _: Any) -> None:
        if self.read_fence is None or not len(rows):
            return
        found = rows >= 0
        if found.any():
            t = np.where(found, st.times_of(np.where(found, rows, 0)), np.iinfo(np.int64).min)
            np.maximum(self.read_fence, t, out=self.read_fence)
