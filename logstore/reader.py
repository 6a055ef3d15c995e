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
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import schemas

from .encodings import run_end_decode
from .errors import CorruptFrameError, LogstoreError
from .frame import BODY_SYSTEM_FIELDS, HEADER_SIZE, FrameHeader, decode_body, recode
from .names import SYSTEM_COLUMNS
from .notify import ChangeWatch
from .parallel import imap_ordered, prefetch
from .partition import Partition, Snapshot
from .plan import Bound, EventRange, plan
from .rowframes import RowDecoder, warm
from .segment import SegmentView
from .tailasync import aiterate, follow_async

if TYPE_CHECKING:
    from .topic import Topic, Version

APPEND_TIME_TYPE = pa.timestamp("us", tz="UTC")
SYSTEM_FIELDS = [  # every row read carries these, after the topic's own columns, in this order
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_append_time", APPEND_TIME_TYPE, nullable=False),
]
assert tuple(f.name for f in SYSTEM_FIELDS) == SYSTEM_COLUMNS


@dataclass(frozen=True)
class Gap:
    """Records skipped because their frame failed its checksum (``on_corrupt="skip"``)."""

    partition: int
    start_offset: int
    end_offset: int  # exclusive; -1 when unknown
    path: str
    position: int
    reason: str


def output_schema(arrow: pa.Schema, columns: Sequence[str] | None) -> pa.Schema:
    full = pa.schema(list(arrow) + SYSTEM_FIELDS)
    if columns is None:
        return full
    missing = [c for c in columns if c not in full.names]
    if missing:
        raise ValueError(f"unknown column(s) {missing}; the topic has {full.names}")
    return pa.schema([full.field(c) for c in columns])


@dataclass(frozen=True, slots=True)
class FrameJob:
    """One frame to verify and decode, as the index places it, and the rows of it wanted."""

    partition: int
    view: SegmentView
    position: int
    base_offset: int
    count: int
    size: int  # header and body bytes, by the index
    start_row: int
    stop_row: int
    event: EventRange | None


Loaded = tuple[pa.RecordBatch, int] | Gap  # a frame's rows wanted and its size on disk, or the gap it makes


class FrameReader:
    """Decodes the frames of one topic into output batches: the one frame decoder of every read.

    `load` verifies a frame (header against its index entry, then the body checksum), decodes only
    the fields needed (``IpcReadOptions(included_fields=...)``), resolves a frame of an older
    schema version to `latest`, and hands every column out as the output type: strings stored as
    dictionaries and columns stored as runs decoded, unless `types` asks for a dictionary (the SQL
    views keep ``dictionary<int32, string>`` for DuckDB: a frame storing such a column plain is
    encoded). `load` is thread-safe (it only reads); `deliver` takes its results in order.
    """

    def __init__(
        self,
        topic: Topic,
        columns: Sequence[str] | None,
        on_corrupt: str,
        *,
        use_threads: bool = True,
        types: pa.Schema | None = None,
        latest: Version | None = None,
    ) -> None:
        """`use_threads`: decompress a frame's buffers on Arrow's CPU pool (else on the calling thread).
        `types`: fields replacing the output columns of the same name (their types, as the SQL views
        see them). `latest`: the version every frame is resolved to (default: the topic's latest)."""
        if on_corrupt not in ("raise", "skip"):
            raise ValueError(f"on_corrupt must be 'raise' or 'skip', found {on_corrupt!r}")
        self.topic = topic
        self.latest = latest if latest is not None else topic.version()
        schema = output_schema(self.latest.arrow, columns)
        if types is not None:
            schema = pa.schema([types.field(f.name) if f.name in types.names else f for f in schema])
        self.schema = schema
        self.columns = list(columns) if columns is not None else None
        self.on_corrupt = on_corrupt
        self.gaps: list[Gap] = []
        self.use_threads = use_threads
        self.bytes_read = 0
        self._partition_column = "_partition" in schema.names
        self._rows = RowDecoder(topic, self.latest)
        # per event filtering or not: the user fields to hand on (body order) and the read options
        self._fields = {False: self._plan(columns, None), True: self._plan(columns, topic.config.event_time_field)}

    def _plan(self, columns: Sequence[str] | None, event_field: str | None) -> tuple[list[str], pa.ipc.IpcReadOptions]:
        """The user fields to decode (body order) and the options decoding only them, plus the
        system fields asked for (at least `_offset`, which gives a frame's rows)."""
        names = self.latest.arrow.names
        if columns is None:
            return names, pa.ipc.IpcReadOptions(use_threads=self.use_threads)
        wanted = set(columns)
        if event_field is not None:
            wanted.add(event_field)  # event-time filters read it even when not asked for
        body = names + [f.name for f in SYSTEM_FIELDS[1:]]  # a body ends with _offset, _append_time
        included = [i for i, c in enumerate(body) if c in wanted] or [len(names)]
        needed = [c for c in names if c in wanted]
        return needed, pa.ipc.IpcReadOptions(included_fields=included, use_threads=self.use_threads)

    def partition_batches(
        self,
        part: Partition,
        snap: Snapshot,
        lo: int,
        hi: int,
        event: EventRange | None = None,
        parallel: bool = False,
    ) -> Iterator[pa.RecordBatch]:
        """Batches of records [lo, hi) of one partition, whole frames each: one per frame, or one per
        run of row frames decoded together (`load_group`); empty frames skipped.

        With `parallel`, frames are verified and decoded on the frame thread pool a few ahead of
        the consumer (results keep their order; gaps and errors surface at their frame).
        """
        groups = _groups(self._frame_jobs(part, snap, lo, hi, event))
        for outs in imap_ordered(self.load_group, groups) if parallel else map(self.load_group, groups):
            for out in outs:
                batch = self.deliver(out)
                if batch is not None:
                    yield batch

    def deliver(self, out: Loaded) -> pa.RecordBatch | None:
        """The batch `load` gave, its bytes counted; None for an empty one or a gap (which raises,
        or with ``on_corrupt="skip"`` is recorded in `gaps`)."""
        if isinstance(out, Gap):
            self._gap(out.partition, out.start_offset, out.end_offset, out.path, out.position, out.reason)
            return None
        batch, nbytes = out
        self.bytes_read += nbytes
        return batch if batch.num_rows else None

    def _frame_jobs(
        self, part: Partition, snap: Snapshot, lo: int, hi: int, event: EventRange | None
    ) -> Iterator[FrameJob | Gap]:
        """The frames to load for records [lo, hi), in order, from the index."""
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
            if event is not None and s is not None and base != bases[-1] and not _overlaps(s[3], s[4], event):
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
            expected = yield from self._entry_jobs(part.number, view, entries, lo, hi, expected, event)

    def segment_jobs(
        self, part: Partition, snap: Snapshot, base: int, entries: np.ndarray, lo: int, hi: int
    ) -> Iterator[FrameJob | Gap]:
        """The frames of `entries` (consecutive index entries of segment `base` as `snap` sees it)
        holding records [lo, hi), in order; none if retention deleted the segment since `snap`."""
        try:
            view = part.snapshot_view(snap, base)
        except FileNotFoundError:  # its records are gone by design, not damaged
            return
        yield from self._entry_jobs(part.number, view, entries, lo, hi, lo, None)

    def _entry_jobs(
        self,
        partition: int,
        view: SegmentView,
        entries: np.ndarray,
        lo: int,
        hi: int,
        expected: int,
        event: EventRange | None,
    ) -> Generator[FrameJob | Gap, None, int]:
        """The frames of one segment's `entries` from record `expected` on, below `hi` (a gap where
        records are missing); returns the next record expected."""
        ends = entries["base_offset"] + entries["count"]
        for k in range(int(np.searchsorted(ends, expected, side="right")), len(entries)):
            e = entries[k]
            fbase, count = int(e["base_offset"]), int(e["count"])
            if fbase >= hi:
                break
            pos = int(e["position"])
            if fbase > expected:
                yield Gap(
                    partition,
                    expected,
                    fbase,
                    str(view.path),
                    pos,
                    "records missing from the segment (a damaged frame was excluded from the index)",
                )
            expected = fbase + count
            if event is not None and not _overlaps(int(e["min_event_time"]), int(e["max_event_time"]), event):
                continue  # skipped by the (checksummed) index: no header read
            size = HEADER_SIZE + int(e["body_len"])
            yield FrameJob(partition, view, pos, fbase, count, size, max(lo - fbase, 0), min(hi - fbase, count), event)
        return expected

    def load(self, job: FrameJob | Gap) -> Loaded:
        """Verify and decode one frame: its header must be the one its index entry describes and its
        body must pass its checksum. Returns its rows wanted and its size on disk, or the gap it
        makes; a gap job passes through. Thread-safe (it only reads)."""
        if isinstance(job, Gap):
            return job
        view, pos = job.view, job.position
        h = view.header_at(pos)
        if not isinstance(h, FrameHeader) or h.base_offset != job.base_offset or h.count != job.count:
            reason = h if isinstance(h, str) else "index entry does not match the frame header"
            return Gap(job.partition, job.base_offset, job.base_offset + job.count, str(view.path), pos, reason)
        try:
            body = view.body(pos, h)
        except CorruptFrameError as err:
            return Gap(job.partition, h.base_offset, h.next_offset, err.path, err.position, err.reason)
        try:
            batch = self._decode(body, h, str(view.path), pos, job.event is not None)
        except CorruptFrameError as err:  # checksummed yet undecodable: a gap like any damage
            return Gap(job.partition, h.base_offset, h.next_offset, err.path, err.position, err.reason)
        return self._finish(batch, job.partition, job.start_row, job.stop_row, job.event), h.size

    def load_group(self, jobs: list[FrameJob | Gap]) -> list[Loaded]:
        """`load` of each job, with each run of consecutive row frames of one schema version
        decoded as one batch (`rowframes`): one Loaded for the run. Thread-safe."""
        out: list[Loaded] = []
        run: list[tuple[FrameJob, FrameHeader, memoryview]] = []
        for job in jobs:
            h = None if isinstance(job, Gap) else job.view.header_at(job.position)
            if (
                isinstance(h, FrameHeader)
                and h.rows
                and isinstance(job, FrameJob)
                and (h.base_offset, h.count) == (job.base_offset, job.count)
                and (not run or run[0][1].schema_version == h.schema_version)
            ):
                try:
                    run.append((job, h, memoryview(job.view.body(job.position, h))))
                    continue
                except CorruptFrameError:
                    pass  # loaded alone below: its gap in its place
            out += self._load_run(run)
            run = []
            out.append(self.load(job))
        return out + self._load_run(run)

    def _load_run(self, run: list[tuple[FrameJob, FrameHeader, memoryview]]) -> list[Loaded]:
        if len(run) <= 1:
            return [self.load(job) for job, _, _ in run]
        try:
            needed = self._fields[run[0][0].event is not None][0]
            batch = self._rows.decode([(h, body, job.start_row, job.stop_row) for job, h, body in run], needed)
        except (pa.ArrowException, ValueError):
            return [self.load(job) for job, _, _ in run]  # find the frame that does not decode
        first = run[0][0]
        size = sum(h.size for _, h, _ in run)
        return [(self._finish(batch, first.partition, 0, batch.num_rows, first.event), size)]

    def _gap(self, partition: int, start: int, end: int, path: str, position: int, reason: str) -> None:
        if self.on_corrupt == "raise":
            raise CorruptFrameError(path, position, f"{reason} (partition {partition}, offsets {start}..{end - 1})")
        self.gaps.append(Gap(partition, start, end, path, position, reason))

    def _decode(self, body: pa.Buffer, header: FrameHeader, path: str, pos: int, event: bool) -> pa.RecordBatch:
        """The body's batch as stored: the user columns needed (resolved to the latest schema), then
        the system columns decoded."""
        needed, options = self._fields[event]
        try:
            if header.rows:
                return self._rows.decode([(header, memoryview(body), 0, header.count)], needed)
            if header.schema_version == self.latest.version:
                return pa.ipc.open_stream(body, options=options).read_next_batch()
            old = self.topic.version(header.schema_version)
            full = decode_body(body, use_threads=self.use_threads)
            k = full.num_columns - BODY_SYSTEM_FIELDS
            user = schemas.resolve(full.select(range(k)), old.schema, self.latest.schema).select(needed)
            system = full.select(range(k, full.num_columns))
            return pa.RecordBatch.from_arrays(
                list(user.columns) + list(system.columns), schema=pa.schema(list(user.schema) + list(system.schema))
            )
        except LogstoreError:
            raise
        except (pa.ArrowException, ValueError) as e:
            raise CorruptFrameError(path, pos, f"body passed its checksum but does not decode: {e}") from e

    def _finish(
        self, batch: pa.RecordBatch, partition: int, start_row: int, stop_row: int, event: EventRange | None
    ) -> pa.RecordBatch:
        """The rows wanted of a decoded body as a batch of `schema` (its columns as the output types)."""
        if start_row or stop_row < batch.num_rows:
            batch = batch.slice(start_row, stop_row - start_row)
        arrays = dict(zip(batch.schema.names, batch.columns))  # user columns, _offset, _append_time
        if self._partition_column:
            arrays["_partition"] = _from_numpy(np.full(batch.num_rows, partition, np.int32), pa.int32())
        if self.schema.names:
            out = pa.RecordBatch.from_arrays([as_type(arrays[f.name], f.type) for f in self.schema], schema=self.schema)
        else:
            out = batch.select([])  # no columns, the rows still counted
        if event is not None:
            et = as_type(arrays[self.topic.config.event_time_field], pa.int64())
            mask = None
            if event[0] is not None:
                mask = pc.greater_equal(et, event[0])
            if event[1] is not None:
                m2 = pc.less(et, event[1])
                mask = m2 if mask is None else pc.and_(mask, m2)
            if mask is not None:
                out = out.filter(mask)
        return out


def as_type(col: pa.Array, t: pa.DataType) -> pa.Array:
    """A decoded column as output type `t`: stored runs decoded, a stored dictionary decoded or
    recoded to `t`'s codes, a plain string column dictionary-encoded when `t` is a dictionary."""
    if col.type == t:
        return col
    if pa.types.is_run_end_encoded(col.type):
        return as_type(run_end_decode(col), t)
    if pa.types.is_dictionary(col.type):
        if pa.types.is_dictionary(t) and col.type.value_type == t.value_type:  # stored with narrower codes
            return pa.DictionaryArray.from_arrays(recode(col.indices, t.index_type), col.dictionary, safe=False)
        return as_type(col.dictionary_decode(), t)
    if pa.types.is_dictionary(t) and col.type == t.value_type:
        return as_type(pc.dictionary_encode(col), t)
    return col.cast(t)


def _from_numpy(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    """A non-null Arrow array over a numpy buffer (zero-copy; pa.array would import pandas to check)."""
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(values)])


def _overlaps(min_event: int, max_event: int, event: EventRange) -> bool:
    """True if records with event times in [min_event, max_event] may fall in the range `event`."""
    lo, hi = event
    if lo is not None and max_event < lo:
        return False
    if hi is not None and min_event >= hi:
        return False
    return True


def read_table(
    topic: Topic,
    start: Bound = None,
    end: Bound = None,
    partitions: Sequence[int] | None = None,
    columns: Sequence[str] | None = None,
    by: str = "append_time",
    on_corrupt: str = "raise",
) -> tuple[pa.Table, FrameReader]:
    """Read a range of a topic into one table (see `Log.read`)."""
    fr = FrameReader(topic, columns, on_corrupt)
    pl = plan(topic, start, end, partitions, by)
    batches: list[pa.RecordBatch] = []
    for p, (lo, hi) in pl.ranges.items():
        batches.extend(fr.partition_batches(topic.partition(p), pl.snapshots[p], lo, hi, pl.event_range, parallel=True))
    return pa.Table.from_batches(batches, schema=fr.schema), fr


class Reader:
    """An iterator of record batches over a topic; with ``follow=True`` it tails new data.

    Batches come one frame at a time. Without `follow` the reader stops at the end snapshotted
    when iteration starts; with `follow` it wakes within a fraction of a millisecond of a commit
    by any process (`notify.ChangeWatch`: inotify; `poll_interval` seconds is the backstop, and
    the polling period where inotify is missing) and never stops on its own (break out of the
    loop, or pass an offset `end`). `async for` works too.
    """

    def __init__(
        self,
        topic: Topic,
        *,
        start: Bound = None,
        end: Bound = None,
        partitions: Sequence[int] | None = None,
        columns: Sequence[str] | None = None,
        by: str = "append_time",
        follow: bool = False,
        poll_interval: float = 0.05,
        on_corrupt: str = "raise",
        read_ahead: int = 0,
    ) -> None:
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
        if self.follow:
            warm()  # row frames convert Python values: set that up before the first commit arrives
        # armed before the first snapshot: no commit after it goes unnoticed
        nums = self._partition_numbers()
        watch = ChangeWatch(self.topic.partition(p).dir for p in nums) if self.follow else None
        try:
            yield from self._batches(watch, nums)  # blocking: never None
        finally:
            if watch is not None:
                watch.close()

    def _partition_numbers(self) -> list[int]:
        n = self.topic.config.partitions
        return list(range(n)) if self.partitions is None else [int(p) for p in self.partitions if 0 <= int(p) < n]

    def __aiter__(self) -> AsyncIterator[pa.RecordBatch]:
        """The same batches for async code (`async for batch in reader`). Following, the event
        loop itself waits for the commit (the watch's descriptor) and reads it (`tailasync`): no
        thread hand-off between a commit and the code awaiting it."""
        if not self.follow:
            return aiterate(iter(self))
        warm()
        nums = self._partition_numbers()
        watch = ChangeWatch(self.topic.partition(p).dir for p in nums)
        return follow_async(self._batches(watch, nums, block=False), watch, self.poll_interval)

    def _batches(
        self, watch: ChangeWatch | None, watched: list[int], block: bool = True
    ) -> Iterator[pa.RecordBatch | None]:
        """The batches; following, it waits on `watch` between rounds, or with ``block=False``
        yields None where it would wait (its driver awaits the watch: `tailasync`)."""
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
                until = stop[p]
                limit = snaps[p].end_offset if until is None else min(until, snaps[p].end_offset)
                if lo >= limit and self.follow:
                    continue  # nothing new here: no frames to plan
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
            if not self.follow or all(s is not None and self.positions[p] >= s for p, s in stop.items()):
                return
            if not block and not progressed:
                yield None  # the driver waits: a commit woke it, or poll_interval passed
            elif watch is None:
                time.sleep(self.poll_interval)
            elif not progressed:
                watch.wait(self.poll_interval)  # woken by a commit, or polls every poll_interval
            else:
                watch.drain()
            changed = None if watch is None else watch.changed()
            # only the partitions whose directory changed (all of them after a timeout)
            again = self.positions if changed is None else [watched[i] for i in changed if watched[i] in self.positions]
            snaps = {**snaps, **{p: self.topic.partition(p).snapshot() for p in again}}


GROUP_FRAMES = 256  # frames loaded together at most (runs of row frames decode as one batch)
GROUP_BYTES = 1 << 20  # ... or frames of about this many bytes


def _groups(jobs: Iterator[FrameJob | Gap]) -> Iterator[list[FrameJob | Gap]]:
    """`jobs` in groups for `FrameReader.load_group`: a large frame alone, small ones together."""
    group: list[FrameJob | Gap] = []
    nbytes = 0
    for job in jobs:
        group.append(job)
        nbytes += job.size if isinstance(job, FrameJob) else 0
        if len(group) >= GROUP_FRAMES or nbytes >= GROUP_BYTES:
            yield group
            group, nbytes = [], 0
    if group:
        yield group
