"""The event clock: every topic of a run merged into one stream ordered by what was known when.

Frames (one per append: every row of a frame shares its append time) are read from one
`log.reader` per (topic, partition), pinned to exact offset ranges of a snapshot taken when the
run starts, and merged with a heap, one frame per stream in memory (input streams: a few more,
decoded ahead on a thread). Frames come out in the order of their key::

    (append time, role, topic, partition, first offset)      role: 0 outcomes, 1 lookups, 2 inputs

so at equal append times outcomes and lookup records come before the inputs they could inform,
and the order is total: a replay is deterministic (docs/architecture.md, "Two clocks" and
invariants 8, 9). Lookup topics are fed to their states by `replay.engine.lookups` along the
same order, up to each row's clock.

Event-time order (`order="event_time"`, `EventTimeOrder`) releases input rows at their clock
``c = max(event_time + lateness, append_time)`` instead of their append time; outcomes and
lookups still become visible at their append time, so a row is decided as of `c`, and the
output records `c` as its clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from logstore.timeutil import iso_z, to_us

from ..errors import RangeError
from .frames import by_append_time
from .tokens import TOKEN_FIELD, strip

OUTCOME, LOOKUP, INPUT = 0, 1, 2
ROLE_NAMES = {OUTCOME: "outcomes", LOOKUP: "lookup", INPUT: "inputs"}
TIME_TYPE = pa.timestamp("us", tz="UTC")


fmt_time = iso_z  # an ISO-8601 UTC time with microseconds, e.g. ``2026-11-01T00:00:03.000000Z``


@dataclass
class Source:
    """One topic of a run: its role and the exact offset range [lo, hi) read per partition."""

    topic: str
    role: int
    ranges: dict[int, tuple[int, int]]

    @property
    def rows(self) -> int:
        return sum(hi - lo for lo, hi in self.ranges.values())


@dataclass(eq=False)
class Event:
    """One step of the clock: a frame of a side topic, or input rows to decide.

    `time` is the frame's append time (µs). For inputs, `clock` holds each row's clock when the
    rows do not share one (event-time order); otherwise every row's clock is `time`.
    """

    key: tuple
    role: int
    topic: str
    partition: int
    batch: pa.RecordBatch
    clock: np.ndarray | None = None
    decide: bool = True  # False: an input frame arriving in event-time order (state only, decided later)

    @property
    def time(self) -> int:
        return self.key[0]

    def clocks(self) -> np.ndarray:
        """Each row's clock in µs."""
        if self.clock is not None:
            return self.clock
        return np.full(self.batch.num_rows, self.key[0], np.int64)


# --------------------------------------------------------------------------------------------
# ranges


def resolve(log: Any, topic: str, start: Any, end: Any, snaps: Mapping[int, Any]) -> dict[int, tuple[int, int]]:
    """Exact per-partition offset ranges [lo, hi) of `topic` for `start`/`end` on `snaps`
    (``log.snapshot(topic)``, taken when the run starts).

    Bounds: None (the first stored / the snapshotted end), an int offset for every partition, a
    {partition: offset} mapping, or an aware datetime (append time: the first offset appended at
    or after it). Offsets must lie within what is stored: an offset past the end, before the
    first stored offset, or a start after the end raises `RangeError`, never a silent clamp.
    """
    out: dict[int, tuple[int, int]] = {}
    for which, value in (("start", start), ("end", end)):
        if isinstance(value, Mapping):
            bad = [p for p in value if not isinstance(p, (int, np.integer)) or int(p) not in snaps]
            if bad:
                raise RangeError(f"{which} names partition(s) {bad} of topic {topic!r}, which has {sorted(snaps)}")
    for p, snap in sorted(snaps.items()):
        first, last = snap.start_offset, snap.end_offset
        lo = _bound(log, topic, p, snap, start, "start", first)
        hi = _bound(log, topic, p, snap, end, "end", last)
        where = f"topic {topic!r} partition {p}"
        if lo < first:
            raise RangeError(f"start offset {lo} of {where} is no longer stored: the first stored offset is {first}")
        if lo > last:
            raise RangeError(f"start offset {lo} of {where} is past its end ({last}, snapshotted when the run started)")
        if hi > last:
            raise RangeError(f"end offset {hi} of {where} is past its end ({last}, snapshotted when the run started)")
        if hi < lo:
            raise RangeError(f"{where}: end {hi} is before start {lo}")
        out[p] = (lo, hi)
    return out


def _bound(log: Any, topic: str, p: int, snap: Any, value: Any, which: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise RangeError(
            f"{which} must be an offset, a {{partition: offset}} mapping or an aware datetime, found {value!r}"
        )
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise RangeError(f"{which} offset must be >= 0, found {value}")
        return int(value)
    if isinstance(value, Mapping):
        v = value.get(p, value.get(str(p)))
        return default if v is None else _bound(log, topic, p, snap, v, which, default)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise RangeError(f"{which} {value!r} has no time zone: pass an aware datetime (e.g. in UTC)")
        return log.offset_for_time(topic, p, to_us(value), snap)
    raise RangeError(
        f"{which} must be an offset, a {{partition: offset}} mapping or an aware datetime, found {type(value).__name__}"
    )


def first_append_time(log: Any, topic: str, ranges: Mapping[int, tuple[int, int]]) -> int | None:
    """The earliest append time (µs) of the records in `ranges`, None when they are empty."""
    times = []
    for p, (lo, hi) in ranges.items():
        if hi > lo:
            t = log.read(topic, start={p: lo}, end={p: lo + 1}, partitions=[p], columns=["_append_time"])
            times.append(t.column(0)[0].value)
    return min(times) if times else None


def ranges_from_time(log: Any, topic: str, snaps: Mapping[int, Any], t_us: int | None) -> dict[int, tuple[int, int]]:
    """Per partition [first offset appended at or after `t_us`, snapshotted end)."""
    out = {}
    for p, snap in sorted(snaps.items()):
        lo = snap.start_offset if t_us is None else max(snap.start_offset, log.offset_for_time(topic, p, t_us, snap))
        out[p] = (lo, max(lo, snap.end_offset))
    return out


# --------------------------------------------------------------------------------------------
# the merge


def _frames(log: Any, src: Source, p: int, lo: int, hi: int, columns: list[str] | None) -> Iterator[Event]:
    rank = src.role
    # input frames are decoded a few ahead (the GIL is released), so a replay decides one frame
    # while the next is read; the order is the stream's and the clock still decides visibility
    ahead = READ_AHEAD if rank == INPUT else 0
    if rank == INPUT and columns is not None and TOKEN_FIELD not in columns:
        if any(f["name"] == TOKEN_FIELD for f in log.schema(src.topic)["fields"]):
            columns = [*columns, TOKEN_FIELD]  # read to be left out (`strip`)
    reader = log.reader(src.topic, start={p: lo}, end={p: hi}, partitions=[p], columns=columns, read_ahead=ahead)
    for t, off, batch in by_append_time(reader):
        if rank == INPUT:  # hot-swap tokens are barriers, not inputs (`tokens.strip`)
            batch = strip(batch)
            if not batch.num_rows:
                continue
        yield Event((t, rank, src.topic, p, off), rank, src.topic, p, batch)


READ_AHEAD = 8  # input frames decoded ahead per stream (log.reader's read_ahead: a thread each)


def merge(
    log: Any, sources: Iterable[Source], columns: Mapping[str, list[str] | None] | None = None
) -> Generator[Event, None, None]:
    """All frames of `sources` in clock order (see the module docstring); per stream one frame is
    held, and input streams are decoded a few frames ahead (`READ_AHEAD`)."""
    streams = []
    for src in sources:
        cols = None if columns is None else columns.get(src.topic)
        for p, (lo, hi) in sorted(src.ranges.items()):
            if hi > lo:
                streams.append(_frames(log, src, p, lo, hi, cols))
    try:
        heap: list[tuple[tuple, int, Event]] = []
        for i, s in enumerate(streams):
            ev = next(s, None)
            if ev is not None:
                heap.append((ev.key, i, ev))
        heapq.heapify(heap)
        while heap:
            _, i, ev = heap[0]
            yield ev
            nxt = next(streams[i], None)
            if nxt is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (nxt.key, i, nxt))
    finally:
        for s in streams:
            s.close()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# event-time order


@dataclass(eq=False)
class _Held:
    """Input rows of one frame waiting for their clock, sorted by (clock, offset)."""

    topic: str
    partition: int
    batch: pa.RecordBatch
    clock: np.ndarray
    offset: np.ndarray
    done: int = 0


@dataclass
class EventTimeOrder:
    """Re-orders input rows by ``clock = max(event_time + lateness, append_time)`` (module docstring).

    Side events pass through at their append time; before each, every held input row whose key
    ``(clock, 2, topic, partition, offset)`` is smaller is released, per partition, so the state
    those rows see is exactly the state at their clocks.
    """

    lateness_us: int
    event_time_field: str | None
    held: list[_Held] = field(default_factory=list)

    def __call__(self, events: Iterable[Event]) -> Generator[Event, None, None]:
        for ev in events:
            yield from self._release(ev.key)
            if ev.role == INPUT:
                self._hold(ev)
                # the frame itself still arrives now (pending learning state), decided at its clock
                yield Event(ev.key, ev.role, ev.topic, ev.partition, ev.batch, decide=False)
            else:
                yield ev
        yield from self._release(None)

    def _hold(self, ev: Event) -> None:
        b = ev.batch
        n = b.num_rows
        at = np.full(n, ev.time, np.int64)
        if self.event_time_field is not None and self.event_time_field in b.schema.names:
            col = b.column(b.schema.get_field_index(self.event_time_field))
            et = col.cast(pa.int64()).fill_null(ev.time).to_numpy(zero_copy_only=False) + self.lateness_us
            clock = np.maximum(et, at)
        else:
            clock = at
        off = b.column(b.schema.get_field_index("_offset")).to_numpy()
        order = np.lexsort((off, clock))
        if not np.array_equal(order, np.arange(n)):
            b = b.take(pa.array(order))
            clock, off = clock[order], off[order]
        self.held.append(_Held(ev.topic, ev.partition, b, clock, off))

    def _release(self, key: tuple | None) -> Iterator[Event]:
        if not self.held:
            return
        pieces: dict[tuple[str, int], list[tuple[pa.RecordBatch, np.ndarray, np.ndarray]]] = {}
        keep = []
        for h in self.held:
            if key is None:
                cut = len(h.clock)
            else:
                t, rank = key[0], key[1]
                cut = int(np.searchsorted(h.clock, t, side="left"))
                if rank == INPUT:  # equal clocks: an input row goes first if (topic, p, offset) is smaller
                    eq_end = int(np.searchsorted(h.clock, t, side="right"))
                    while cut < eq_end and (h.topic, h.partition, int(h.offset[cut])) < key[2:]:
                        cut += 1
            if cut > h.done:
                pieces.setdefault((h.topic, h.partition), []).append(
                    (h.batch.slice(h.done, cut - h.done), h.clock[h.done : cut], h.offset[h.done : cut])
                )
                h.done = cut
            if h.done < len(h.clock):
                keep.append(h)
        self.held = keep
        for (topic, p), parts in sorted(pieces.items()):
            if len(parts) == 1:
                b, c, o = parts[0]
            else:
                b = pa.Table.from_batches([x[0] for x in parts]).combine_chunks().to_batches()[0]
                c = np.concatenate([x[1] for x in parts])
                o = np.concatenate([x[2] for x in parts])
                order = np.lexsort((o, c))
                b, c, o = b.take(pa.array(order)), c[order], o[order]
            yield Event((int(c[0]), INPUT, topic, p, int(o[0])), INPUT, topic, p, b, c)
