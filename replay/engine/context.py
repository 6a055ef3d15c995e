"""The as-of view a model gets as `ctx`: what was known at each row's clock, and nothing after.

`ctx.lookup` and `ctx.history` answer, for each row, from the `AsOfState` of the topic asked
(`replay.engine.lookups`: declared topics are built up front, any other topic of the log on its
first lookup), fed up to the latest clock of the batch and filtered per row by append time, so a row
sees only records appended at or before its own clock (or an earlier `as_of`); asking for a
later time raises `TimeLeakError` naming the model, what was asked and the row's clock. Every
answer raises the row's `read_fence` (the latest append time it read), and the topics a model
read for a row become that row's `fence` (per partition, the highest offset visible at its
clock), which the output records and `replay audit` checks (docs/architecture.md, invariant 9).

State layout per topic: the frames applied so far (consolidated into bigger chunks as they pile
up), the append time of every row in arrival order, a dict key -> row numbers (ascending in
append time, since frames are applied in append-time order) and per partition the append time
and last offset of each frame. Memory grows with the lookup topic (history and `as_of` need
it), not with the inputs replayed.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from logstore.errors import ArgumentError, TimeLeakError
from logstore.timeutil import duration_us, to_us

from ..errors import LookupTopicError, ReplayError
from .clock import fmt_time

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
        self._frames: dict[int, tuple[list[int], list[int]]] = {}  # partition -> (frame times, last offsets)

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
        self._times[base : base + n] = time_us
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
        last = batch.column(batch.schema.get_field_index("_offset"))[-1].as_py()
        self.fence[partition] = last
        times, offsets = self._frames.setdefault(partition, ([], []))
        times.append(time_us)
        offsets.append(last)
        self.latest = time_us

    def fence_at(self, time_us: int) -> dict[int, int]:
        """Per partition, the highest offset appended at or before `time_us` (partitions with none left out)."""
        if time_us >= self.latest:
            return self.fence
        out = {}
        for p, (times, offsets) in self._frames.items():
            j = bisect.bisect_right(times, time_us)
            if j:
                out[p] = offsets[j - 1]
        return out

    def table(self) -> pa.Table:
        if self._table is None:
            if self._fresh > _CONSOLIDATE:  # merge the recent small frames into one block
                k = self._fresh
                block = pa.Table.from_batches(self._chunks[-k:]).combine_chunks().to_batches()
                self._chunks[-k:] = block
                self._fresh = 0
            self._table = (
                pa.Table.from_batches(self._chunks, schema=self._chunks[0].schema if self._chunks else None)
                if self._chunks
                else pa.table({}).cast(pa.schema([]))
            )
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
            return (
                pa.Table.from_batches([], schema=schema)
                if not len(rows)
                else pa.table({f.name: pa.nulls(len(rows), f.type) for f in schema}, schema=schema.with_metadata(None))
            )
        t = self.table()
        if columns is not None:
            t = t.select(list(columns))
        idx = pa.array(rows, mask=rows < 0)
        return t.take(idx)


def _keys_list(keys: Any, batch: pa.RecordBatch | None) -> list:
    if isinstance(keys, str):
        if batch is None or keys not in batch.schema.names:
            raise ReplayError(
                f"keys={keys!r}: a string names a column of the batch, and the batch has "
                f"{batch.schema.names if batch is not None else 'no columns'}"
            )
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
    try:
        return duration_us(value, what)
    except ArgumentError as e:
        raise ReplayError(str(e)) from None


class _Given:
    """Lookup states given up front (topic -> AsOfState), nothing discovered: for tests and tools."""

    def __init__(self, states: Mapping[str, AsOfState]) -> None:
        self.states = dict(states)

    def state(self, topic: str, key: str | None, upto_us: int, who: str, what: str) -> AsOfState:
        st = self.states.get(topic)
        if st is None:
            raise LookupTopicError(
                f"model {who!r} called ctx.{what}({topic!r}, ...) but this context holds no "
                f"topic {topic!r} (it holds: {sorted(self.states) or 'none'})"
            )
        return st


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

    `topic` is any topic of the log but the run's output (`replay.engine.lookups`); outcomes never
    reach `predict` except through a lookup on the outcomes topic, which, like any lookup, sees
    only what was appended by the clock. `states`: a `replay.engine.lookups.Lookups`, or a mapping
    topic -> `AsOfState` (those topics only).
    """

    def __init__(self, states: Any, seed: int = 0) -> None:
        self._lookups = _Given(states) if isinstance(states, Mapping) else states
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
        self._fence_base: Any = None
        self._fence: np.ndarray | None = None
        self.read_topics: dict[str, np.ndarray | None] = {}  # topic -> rows read (None: every row)
        self._rngs: dict[tuple[str, int], np.random.Generator] = {}
        self.reads = 0

    # --- set by the engine ------------------------------------------------------------------
    def _enter(
        self,
        model: Any,
        batch: pa.RecordBatch,
        topic: str,
        partition: int,
        clock_us: int,
        clocks: np.ndarray | None,
        fence: Any,
    ) -> None:
        """Start a batch. `fence`: each row's read fence so far (its input's append time), an int64
        ndarray updated in place, or an Arrow array copied on the first read; None: not tracked."""
        self.model = model.name
        self.model_version = model.version
        self.batch = batch
        self.topic = topic
        self.partition = partition
        self._n = batch.num_rows
        self._clock_us = clock_us if clocks is None or not len(clocks) else int(clocks.min())
        self._clocks = clocks
        self._fence_base = fence
        self._fence = fence if isinstance(fence, np.ndarray) else None
        self.read_topics = {}

    @property
    def read_fence(self) -> np.ndarray | None:
        """Each row's read fence (µs): the latest append time of anything read for it."""
        if self._fence is None and self._fence_base is not None:
            base = self._fence_base
            self._fence = base.cast(pa.int64()).to_numpy(zero_copy_only=False).copy()
        return self._fence

    # --- what models use ------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        from logstore.timeutil import to_datetime

        return to_datetime(self._clock_us)

    @property
    def clock(self) -> pa.Array:
        """Each row's clock, timestamp[us, UTC]."""
        return pa.array(self._row_clocks(), pa.int64()).view(pa.timestamp("us", tz="UTC"))

    def _row_clocks(self) -> np.ndarray:
        if self._clocks is not None:
            return self._clocks
        return np.full(self._n, self._clock_us, np.int64)

    def _last_clock(self) -> int:
        return int(self._clocks.max()) if self._clocks is not None and len(self._clocks) else self._clock_us

    @property
    def rng(self) -> np.random.Generator:
        k = (self.model, self.partition)
        g = self._rngs.get(k)
        if g is None:
            import zlib

            g = self._rngs[k] = np.random.default_rng(
                [self.seed & 0xFFFFFFFF, zlib.crc32(self.model.encode()), max(self.partition, 0)]
            )
        return g

    def _state(self, topic: str, what: str, key: str | None, row: int | None = None) -> AsOfState:
        """The state of `topic` up to the batch's last clock; marks it read for `row` (None: all rows)."""
        st = self._lookups.state(topic, key, self._last_clock(), self.model, what)
        if key is not None and key != st.key:
            raise ReplayError(
                f"model {self.model!r}: ctx.{what}({topic!r}, key={key!r}), but {topic!r} is "
                f"indexed by {st.key!r} in this run (declare lookups={{{topic!r}: {key!r}}} to "
                f"index it by {key!r})"
            )
        if row is None or not self._n:
            self.read_topics[topic] = None
        else:
            mask = self.read_topics.setdefault(topic, np.zeros(self._n, bool))
            if mask is not None:
                mask[row] = True
        return st

    def _leak(self, what: str, asked_us: int, clock_us: int, row: int) -> TimeLeakError:
        where = ""
        if self.batch is not None and "_offset" in self.batch.schema.names and 0 <= row < self.batch.num_rows:
            off = self.batch.column(self.batch.schema.get_field_index("_offset"))[row].as_py()
            where = f" ({self.topic} partition {self.partition} offset {off})"
        return TimeLeakError(
            f"model {self.model!r} (version {self.model_version}) asked {what} as of {fmt_time(asked_us)}, "
            f"after the clock {fmt_time(clock_us)} of row {row}{where}: nothing appended after a row's clock "
            f"is visible to it"
        )

    def lookup(
        self,
        topic: str,
        keys: Any,
        as_of: Any = None,
        ttl: Any = None,
        key: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Per row, the latest record of `topic` for its key known at the row's clock (see class doc).

        `keys`: one key per row (array-like), or the name of a column of the batch. `as_of`: a
        datetime for every row or one per row (array of timestamps); later than a row's clock
        raises TimeLeakError. `ttl`: a timedelta; older records count as missing. `key`: the field
        `topic` is indexed by (its declared key; for a topic not declared, the first lookup's
        `key`, else the topic's key field, else the run's join key).
        """
        ks = _keys_list(keys, self.batch)
        n = len(ks)
        clocks = self._row_clocks()
        if n != len(clocks) and len(clocks):
            raise ReplayError(
                f"model {self.model!r}: ctx.lookup({topic!r}) got {n} keys for a batch of {len(clocks)} rows"
            )
        what = f"ctx.lookup({topic!r})"
        limits = None
        if as_of is not None:
            limits = self._as_of_limits(as_of, n)
            over = np.nonzero(limits > clocks)[0] if n else np.zeros(0, np.int64)
            if len(over):
                r = int(over[0])
                raise self._leak(what, int(limits[r]), int(clocks[r]), r)
        st = self._state(topic, "lookup", key)
        if limits is None and n and st.latest > int(clocks.min()):
            limits = clocks  # rows with different clocks: each sees its own
        if limits is not None and (limits >= st.latest).all():
            limits = None
        ttl_us = None if ttl is None else _td_us(ttl, "ttl")
        if ttl_us is not None and limits is None:
            limits = clocks.copy() if n else None
        rows = st.latest_rows(ks, limits, ttl_us)
        self._raise_fence(st, rows, None)
        self.reads += 1
        return st.take(rows, columns)

    @staticmethod
    def _as_of_limits(as_of: Any, n: int) -> np.ndarray:
        if isinstance(as_of, (pa.Array, pa.ChunkedArray, np.ndarray, list, tuple)):
            arr = pa.array(as_of) if isinstance(as_of, (list, tuple)) else as_of
            if isinstance(arr, (pa.Array, pa.ChunkedArray)):
                arr = arr.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
            else:
                arr = arr.astype("datetime64[us]").astype(np.int64)
            return np.asarray(arr, np.int64)
        return np.full(n, _as_us(as_of, "as_of"), np.int64)

    def history(
        self, topic: str, key: Any, since: Any = None, row: int | None = None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """Every record of `topic` for `key` appended in [since, clock], oldest first.

        The clock is row `row`'s (default: the earliest clock of the batch, ``ctx.now``). `since`:
        an aware datetime, or a timedelta back from that clock; None for all history.
        """
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
        st = self._state(topic, "history", None, row)
        rows = st.history_rows(key, since_us, clock)
        fence = self.read_fence
        if len(rows) and fence is not None:
            t = int(st.times_of(rows).max())
            if row is None:
                np.maximum(fence, t, out=fence)
            else:
                fence[row] = max(fence[row], t)
        self.reads += 1
        return st.take(rows, columns)

    def _raise_fence(self, st: AsOfState, rows: np.ndarray, _: Any) -> None:
        if not len(rows) or self._fence_base is None:
            return
        found = rows >= 0
        if found.any():
            fence = self.read_fence
            assert fence is not None
            t = np.where(found, st.times_of(np.where(found, rows, 0)), np.iinfo(np.int64).min)
            np.maximum(fence, t, out=fence)
