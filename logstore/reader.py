"""Reading: offset and time ranges over partitions, frames decoded into Arrow with system columns.

Every row read carries ``_partition`` (int32), ``_offset`` (int64) and ``_append_time``
(timestamp[us, UTC]). Rows come grouped by partition (ascending), in offset order within each.
Reads work on a snapshot of each partition's committed end, so a read concurrent with writers sees
whole frames only (invariant 3). Every frame's header and body checksums are verified before any
of its rows are returned; a bad frame raises `CorruptFrameError`, or with ``on_corrupt="skip"`` is
skipped and reported in ``gaps``.

Seeks never scan from the start: offsets find their segment by the sorted segment names and their
frame by the segment's index; append times bisect segments then index entries (append time never
decreases within a partition); event times select frames by the index's per-frame min/max.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import CorruptFrameError, LogstoreError
from .frame import BODY_SYSTEM_FIELDS, FrameHeader, decode_body
from .parallel import imap_ordered, prefetch
from .partition import Partition, Snapshot
from .writer import clock_us

SYSTEM_COLUMNS = ("_partition", "_offset", "_append_time")
APPEND_TIME_TYPE = pa.timestamp("us", tz="UTC")
SYSTEM_FIELDS = [
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_append_time", APPEND_TIME_TYPE, nullable=False),
]

Bound = int | datetime | Mapping[int, int] | None


@dataclass(frozen=True)
class Gap:
    """Records skipped because their frame failed its checksum (``on_corrupt="skip"``)."""

    partition: int
    start_offset: int
    end_offset: int  # exclusive; -1 when unknown
    path: str
    position: int
    reason: str


@dataclass
class Plan:
    """What one read covers: per partition an offset range, plus an optional event-time filter."""

    ranges: dict[int, tuple[int, int]]
    snapshots: dict[int, Snapshot]
    event_range: tuple[int | None, int | None] | None = None


def to_us(t: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (naive ones are refused)."""
    if t.tzinfo is None:
        raise ValueError(f"datetime {t.isoformat()} has no time zone: pass an aware datetime (e.g. UTC)")
    return clock_us(lambda: t)


def plan(topic: Any, start: Bound, end: Bound, partitions: Sequence[int] | None, by: str) -> Plan:
    """Resolve start/end bounds into exact offset ranges on a snapshot of each partition."""
    if by not in ("append_time", "event_time"):
        raise ValueError(f"by must be 'append_time' or 'event_time', found {by!r}")
    n = topic.config.partitions
    numbers = list(range(n)) if partitions is None else list(partitions)
    for p in numbers:
        if not isinstance(p, (int, np.integer)) or not 0 <= p < n:
            raise ValueError(f"topic {topic.name!r} has partitions 0..{n - 1}, asked for {p!r}")
    snaps = {p: topic.partition(p).snapshot() for p in numbers}
    event = None
    if by == "event_time" and (isinstance(start, datetime) or isinstance(end, datetime)):
        if topic.config.event_time_field is None:
            raise ValueError(f"topic {topic.name!r} has no event-time field: read by append time instead")
        event = (
            to_us(start) if isinstance(start, datetime) else None,
            to_us(end) if isinstance(end, datetime) else None,
        )
    ranges = {}
    for p in numbers:
        snap, part = snaps[p], topic.partition(p)
        lo = _bound(part, snap, start, by, default=snap.start_offset, which="start")
        hi = _bound(part, snap, end, by, default=snap.end_offset, which="end")
        lo = max(lo, snap.start_offset)
        hi = min(hi, snap.end_offset)
        ranges[p] = (lo, max(lo, hi))
    return Plan(ranges, snaps, event)


def _bound(part: Partition, snap: Snapshot, value: Bound, by: str, *, default: int, which: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise TypeError(f"{which} must be an offset, a mapping of partition to offset, or a datetime")
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise ValueError(f"{which} offset must be >= 0, found {value}")
        return int(value)
    if isinstance(value, Mapping):
        v = value.get(part.number)
        return default if v is None else int(v)
    if isinstance(value, datetime):
        if by == "event_time":
            return default  # event time filters frames and rows, not offsets
        return part.offset_for_append_time(snap, to_us(value))
    raise TypeError(f"{which} must be an offset, a mapping of partition to offset, or a datetime, found {type(value).__name__}")


def output_schema(arrow: pa.Schema, columns: Sequence[str] | None) -> pa.Schema:
    full = pa.schema(list(arrow) + SYSTEM_FIELDS)
    if columns is None:
        return full
    missing = [c for c in columns if c not in full.names]
    if missing:
        raise ValueError(f"unknown column(s) {missing}; the topic has {full.names}")
    return pa.schema([full.field(c) for c in columns])


@dataclass(frozen=True, slots=True)
class _FrameJob:
    """One frame to verify and decode, and the rows of it wanted."""

    partition: int
    view: Any
    position: int
    header: FrameHeader
    start_row: int
    stop_row: int
    event: tuple[int | None, int | None] | None


class FrameReader:
    """Decodes the frames of one topic into output batches (with version resolution)."""

    def __init__(self, topic: Any, columns: Sequence[str] | None, on_corrupt: str, *, use_threads: bool = True) -> None:
        """`use_threads`: decompress a frame's buffers on Arrow's CPU pool (else on the calling thread)."""
        if on_corrupt not in ("raise", "skip"):
            raise ValueError(f"on_corrupt must be 'raise' or 'skip', found {on_corrupt!r}")
        self.topic = topic
        self.latest = topic.version()
        self.schema = output_schema(self.latest.arrow, columns)
        self.columns = list(columns) if columns is not None else None
        self.on_corrupt = on_corrupt
        self.gaps: list[Gap] = []
        names = self.latest.arrow.names
        needed = [c for c in (columns if columns is not None else names) if c not in SYSTEM_COLUMNS]
        event_field = topic.config.event_time_field
        if event_field is not None and event_field not in needed:
            needed.append(event_field)  # event-time filters read it even when not asked for
        wanted = set(needed)
        self._needed = [c for c in names if c in wanted]  # body order
        # decode only the needed fields, plus _offset and _append_time (the body's last two)
        system = [len(names), len(names) + 1]
        self._included = [i for i, c in enumerate(names) if c in wanted] + system if columns is not None else None
        self.use_threads = use_threads
        self.bytes_read = 0

    def partition_batches(self, part: Partition, snap: Snapshot, lo: int, hi: int,
                          event: tuple[int | None, int | None] | None = None,
                          parallel: bool = False) -> Iterator[pa.RecordBatch]:
        """Batches of records [lo, hi) of one partition, one per frame (empty frames skipped).

        With `parallel`, frames are verified and decoded on the frame thread pool a few ahead of
        the consumer (results keep their order; gaps and errors surface at their frame).
        """
        jobs = self._frame_jobs(part, snap, lo, hi, event)
        results = imap_ordered(self._load, jobs) if parallel else map(self._load, jobs)
        for out in results:
            if isinstance(out, Gap):
                self._gap(out.partition, out.start_offset, out.end_offset, out.path, out.position, out.reason)
                continue
            batch, nbytes = out
            self.bytes_read += nbytes
            if batch.num_rows:
                yield batch

    def _frame_jobs(self, part: Partition, snap: Snapshot, lo: int, hi: int,
                    event: tuple[int | None, int | None] | None) -> Iterator[_FrameJob | Gap]:
        """The frames to load for records [lo, hi), in order, from the index and the headers."""
        if lo >= hi or not snap.bases:
            return
        expected = lo
        i = part.segment_for_offset(snap, lo)
        sums = part.summaries() if event is not None else {}
        bases = snap.bases
        for j in range(i, len(bases)):
            base = bases[j]
            if base >= hi:
                break
            following = bases[j + 1] if j + 1 < len(bases) else snap.end_offset
            s = sums.get(base)
            if s is not None and base != bases[-1] and not _overlaps(s[3], s[4], event):
                expected = max(expected, s[0])  # no record of this sealed segment is in the event range
                continue
            try:
                entries = part.entries(snap, base)
                if not len(entries):
                    continue
                view = part.snapshot_view(snap, base)
            except FileNotFoundError:
                # retention deleted this sealed segment after the snapshot: its records are gone by
                # design, not damaged; reading goes on at the next segment
                expected = max(expected, following)
                continue
            ends = entries["base_offset"] + entries["count"]
            k0 = int(np.searchsorted(ends, expected, side="right"))
            for k in range(k0, len(entries)):
                e = entries[k]
                fbase, count = int(e["base_offset"]), int(e["count"])
                if fbase >= hi:
                    return
                pos = int(e["position"])
                if fbase > expected:
                    yield Gap(part.number, expected, fbase, str(view.path), pos,
                              "records missing from the segment (a damaged frame was excluded from the index)")
                if event is not None and not _overlaps(int(e["min_event_time"]), int(e["max_event_time"]), event):
                    expected = fbase + count  # skipped by the (checksummed) index: no header read
                    continue
                expected = fbase + count
                header = view.header_at(pos)
                if not isinstance(header, FrameHeader) or header.base_offset != fbase or header.count != count:
                    reason = header if isinstance(header, str) else "index entry does not match the frame header"
                    yield Gap(part.number, fbase, fbase + count, str(view.path), pos, reason)
                    continue
                yield _FrameJob(part.number, view, pos, header, max(lo - fbase, 0), min(hi - fbase, count), event)

    def _load(self, job: _FrameJob | Gap) -> tuple[pa.RecordBatch, int] | Gap:
        """Verify and decode one frame (thread-safe: it only reads): its rows wanted and its size
        on disk, or the gap it makes; a gap job passes through."""
        if isinstance(job, Gap):
            return job
        h = job.header
        try:
            body = job.view.body(job.position, h)
        except CorruptFrameError as err:
            return Gap(job.partition, h.base_offset, h.next_offset, err.path, err.position, err.reason)
        batch = self._decode(body, h, str(job.view.path), job.position)
        return self._finish(batch, job.partition, h, job.start_row, job.stop_row, job.event), h.size

    def _gap(self, partition: int, start: int, end: int, path: str, position: int, reason: str) -> None:
        if self.on_corrupt == "raise":
            raise CorruptFrameError(path, position, f"{reason} (partition {partition}, offsets {start}..{end - 1})")
        self.gaps.append(Gap(partition, start, end, path, position, reason))

    def _decode(self, body: pa.Buffer, header: FrameHeader, path: str, pos: int) -> pa.RecordBatch:
        """The body's batch: the user columns needed (resolved to the latest schema), `_offset`, `_append_time`."""
        try:
            if header.schema_version == self.latest.version:
                return decode_body(body, self._included, use_threads=self.use_threads)
            import schemas

            old = self.topic.version(header.schema_version)
            full = decode_body(body, use_threads=self.use_threads)
            k = full.num_columns - BODY_SYSTEM_FIELDS
            user = schemas.resolve(full.select(range(k)), old.schema, self.latest.schema).select(self._needed)
            system = full.select(range(k, full.num_columns))
            return pa.RecordBatch.from_arrays(list(user.columns) + list(system.columns),
                                              schema=pa.schema(list(user.schema) + list(system.schema)))
        except LogstoreError:
            raise
        except (pa.ArrowException, ValueError) as e:
            raise CorruptFrameError(path, pos, f"body passed its checksum but does not decode: {e}") from e

    def _finish(self, batch: pa.RecordBatch, partition: int, header: FrameHeader,
                start_row: int, stop_row: int, event: tuple[int | None, int | None] | None) -> pa.RecordBatch:
        if start_row or stop_row < batch.num_rows:
            batch = batch.slice(start_row, stop_row - start_row)
        n = batch.num_rows
        arrays = dict(zip(batch.schema.names, batch.columns))  # user columns, _offset, _append_time
        arrays["_partition"] = _from_numpy(np.full(n, partition, np.int32), pa.int32())
        out = pa.RecordBatch.from_arrays([arrays[f.name] for f in self.schema], schema=self.schema)
        if event is not None:
            et = arrays[self.topic.config.event_time_field].cast(pa.int64())
            mask = None
            if event[0] is not None:
                mask = pc.greater_equal(et, event[0])
            if event[1] is not None:
                m2 = pc.less(et, event[1])
                mask = m2 if mask is None else pc.and_(mask, m2)
            if mask is not None:
                out = out.filter(mask)
        return out


def _from_numpy(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    """A non-null Arrow array over a numpy buffer (zero-copy; pa.array would import pandas to check)."""
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(values)])


def _overlaps(min_event: int, max_event: int, event: tuple[int | None, int | None]) -> bool:
    """True if records with event times in [min_event, max_event] may fall in the range `event`."""
    lo, hi = event
    if lo is not None and max_event < lo:
        return False
    if hi is not None and min_event >= hi:
        return False
    return True


def read_table(topic: Any, start: Bound = None, end: Bound = None, partitions: Sequence[int] | None = None,
               columns: Sequence[str] | None = None, by: str = "append_time",
               on_corrupt: str = "raise") -> tuple[pa.Table, FrameReader]:
    """Read a range of a topic into one table (see `Log.read`)."""
    fr = FrameReader(topic, columns, on_corrupt)
    pl = plan(topic, start, end, partitions, by)
    batches: list[pa.RecordBatch] = []
    for p, (lo, hi) in pl.ranges.items():
        batches.extend(fr.partition_batches(topic.partition(p), pl.snapshots[p], lo, hi, pl.event_range,
                                            parallel=True))
    return pa.Table.from_batches(batches, schema=fr.schema), fr


class Reader:
    """An iterator of record batches over a topic; with ``follow=True`` it tails new data.

    Batches come one frame at a time. Without `follow` the reader stops at the end snapshotted
    when iteration starts; with `follow` it polls every `poll_interval` seconds for new frames
    and never stops on its own (break out of the loop, or pass an offset `end`).
    """

    def __init__(self, topic: Any, *, start: Bound = None, end: Bound = None,
                 partitions: Sequence[int] | None = None, columns: Sequence[str] | None = None,
                 by: str = "append_time", follow: bool = False, poll_interval: float = 0.05,
                 on_corrupt: str = "raise", read_ahead: int = 0) -> None:
        self.topic = topic
        self.start, self.end, self.by = start, end, by
        self.partitions = partitions
        self.follow = follow
        self.poll_interval = poll_interval
        # reading ahead, a frame is decoded whole on the read-ahead thread: Arrow's CPU pool stays
        # free for the consumer (whose own work, e.g. writing, may use it)
        self._frames = FrameReader(topic, columns, on_corrupt, use_threads=read_ahead <= 0)
        self.read_ahead = read_ahead
        self.positions: dict[int, int] = {}

    @property
    def gaps(self) -> list[Gap]:
        """Records skipped because their frames failed their checksums (``on_corrupt="skip"``)."""
        return self._frames.gaps

    @property
    def bytes_read(self) -> int:
        """Frame bytes verified and decoded so far (what the seek did not skip)."""
        return self._frames.bytes_read

    @property
    def schema(self) -> pa.Schema:
        return self._frames.schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        pl = plan(self.topic, self.start, self.end, self.partitions, self.by)
        stop: dict[int, int | None] = {}
        for p, (lo, hi) in pl.ranges.items():
            self.positions[p] = lo
            stop[p] = hi if (not self.follow or self.end is not None) else None
        snaps = pl.snapshots
        while True:
            progressed = False
            for p in sorted(self.positions):
                lo = self.positions[p]
                limit = snaps[p].end_offset if stop[p] is None else min(stop[p], snaps[p].end_offset)
                batches = self._frames.partition_batches(self.topic.partition(p), snaps[p], lo, limit, pl.event_range)
                if self.read_ahead > 0:
                    batches = prefetch(batches, self.read_ahead)
                for batch in batches:
                    last = batch.column("_offset")[-1].as_py() if "_offset" in batch.schema.names else None
                    yield batch
                    progressed = True
                    if last is not None:
                        self.positions[p] = last + 1
                self.positions[p] = max(self.positions[p], limit)
            if not self.follow or all(stop[p] is not None and self.positions[p] >= stop[p] for p in stop):
                return
            if not progressed:
                time.sleep(self.poll_interval)
            snaps = {p: self.topic.partition(p).snapshot() for p in self.positions}
