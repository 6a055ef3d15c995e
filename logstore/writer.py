"""The writer: validates, batches, partitions and commits records as frames.

Durability modes (what `flush()` and a returned `append_batch()` promise):

============ ================================================ =================== ====================
mode         when a frame reaches the segment file            survives a process  survives power loss
                                                              crash (kill -9)
============ ================================================ =================== ====================
``"none"``   cut frames are held in memory and written when   after ``flush()``   no guarantee
             ``batch_bytes`` of records pile up, on            or ``close()``
             ``flush()``, ``close()`` or after ``linger_ms``
``"flush"``  every frame is written to the OS as it is cut    yes, once written   no guarantee
             (``append_batch`` returns after the write)
``"fsync"``  every commit is written then ``fdatasync``-ed    yes                 yes, once ``flush``
             (new segment files also fsync their directory)                       or ``append_batch``
                                                                                  returned
============ ================================================ =================== ====================

In every mode records given to `append()` wait in the writer's record buffer until a frame is cut
(``batch_records`` or ``batch_bytes`` reached, ``linger_ms`` elapsed, ``flush()`` or ``close()``): an
unflushed buffer is lost if the process dies. What a mode acknowledged is never lost or changed
(invariant 1); a frame is all-or-nothing (invariant 3).

Validation: `append_batch` validates the whole batch before writing anything; a bad record rejects
the batch with an error naming the record index, field and reason (invariant 6). `append` keeps the
hot path to a list append: its records are validated when their frame is cut; a bad one is rejected
alone (the others are written) and its error (naming its append sequence number) is raised by the
call that cut the frame, or by the next call if the background linger thread cut it.

Thread-safety: a writer may be shared by threads (one lock guards its state; the common case of
`append` is a lock-free list append, and cuts take records from the front of that list under the
lock, so a record appended meanwhile is never lost, and one appended after `close()` raises
`WriterClosedError` and is not kept). Several writers,
in one process or many, may append to the same partition: each commit holds the partition's flock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import schemas
from schemas import rowcodec

from .commit import CommitSettings, Encode, commit_many
from .encodings import decode_runs, mark_runs
from .errors import ArgumentError, RecordValidationError, WriterClosedError
from .frame import ROW_FRAME_MAX, Dictionaries, EncodedBody, encode_body, rows_body, with_system_columns
from .keyhash import partition_of, partitions_for
from .parallel import imap_ordered
from .partition import Partition
from .recordsize import check_sizes
from .timeutil import MAX_TIME, MIN_TIME, Clock, clock_us
from .topic import Topic, Version

DURABILITY = ("none", "flush", "fsync")
COMPRESS_MIN_BYTES = 64 * 1024
_PLAIN = pa.ipc.IpcWriteOptions(compression=None, use_threads=False)


@dataclass(slots=True)
class RowBlock:
    """Records staged for a row frame: their Avro encodings (`schemas.rowcodec`)."""

    rows: list[bytes]

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return sum(map(len, self.rows))


Piece: TypeAlias = "pa.RecordBatch | RowBlock"  # what one frame will hold
RowFrame: TypeAlias = "tuple[int, RowBlock, tuple[int, int]]"  # partition, records, event-time range


def _span(events: list[int] | None) -> tuple[int, int]:
    """The event-time range of a row frame's records (the whole range without an event-time field)."""
    return (MIN_TIME, MAX_TIME) if events is None else (min(events), max(events))


ROWS_FORMAT = 2  # the log format that added row frames


class Writer:
    """Appends records to one topic. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        topic: Topic,
        *,
        durability: str = "flush",
        clock: Clock | None = None,
        batch_records: int = 10_000,
        batch_bytes: int = 8 * 1024 * 1024,
        linger_ms: float | None = 200.0,
        schema_version: int | None = None,
        validate: bool = True,
        max_clock_skew: float | None = 60.0,
    ) -> None:
        if durability not in DURABILITY:
            raise ArgumentError(f"durability must be one of {DURABILITY}, found {durability!r}")
        if batch_records < 1 or batch_bytes < 1:
            raise ArgumentError("batch_records and batch_bytes must be positive")
        self.topic = topic
        self.durability = durability
        self.clock = clock
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
        self.linger_ms = linger_ms
        self.validate = validate
        self._lock = threading.Lock()
        # one list for the writer's life: append() adds at its end without the lock; only a cut,
        # under the lock, removes from its front (both are single, atomic list operations)
        self._rows: list[dict[str, Any]] = []
        self._row_seq = 0  # append() calls before the buffered rows (names rejected records)
        self._rows_since = 0.0
        self._row_limit = batch_records
        self._pending: dict[int, list[tuple[Piece, tuple[int, int]]]] = {}
        self._pending_bytes = 0
        self._pending_since = 0.0
        self._committed: set[int] = set()  # partitions this writer committed to
        self._rows_format = False  # the log's marker says it may hold row frames
        if max_clock_skew is not None and (
            isinstance(max_clock_skew, bool) or not isinstance(max_clock_skew, (int, float)) or max_clock_skew < 0
        ):
            raise ArgumentError(
                f"max_clock_skew must be a non-negative number of seconds or None, found {max_clock_skew!r}"
            )
        self._max_skew_us = None if max_clock_skew is None else int(max_clock_skew * 1e6)
        self._settings_cache: CommitSettings | None = None  # the topic may not exist before the first data
        self._sticky = 0
        self._closed = False
        self._deferred: BaseException | None = None
        self._blocked = False  # closed, or a deferred error waits: append() must take the slow path
        self._version: Version | None = None
        if schema_version is not None:
            self._bind_version(schema_version)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if linger_ms is not None and linger_ms > 0:
            self._thread = threading.Thread(target=self._linger_loop, name=f"logstore-linger-{topic.name}", daemon=True)
            self._thread.start()

    # --- public API ------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> None:
        """Buffer one record (a dict of the topic's fields); it is written when its frame is cut.

        The common case takes no lock (a list append is atomic); filling the buffer, or a writer
        closed meanwhile, takes the locked path.
        """
        if self._blocked:
            with self._lock:
                self._check_open()
        rows = self._rows
        if not rows:
            self._rows_since = time.monotonic()
        rows.append(record)
        if len(rows) >= self._row_limit or self._blocked:
            self._append_locked(record)

    def _append_locked(self, record: dict[str, Any]) -> None:
        with self._lock:
            if self._closed:
                # closed after the check above: the record is still buffered unless close() took it
                for i in range(len(self._rows) - 1, -1, -1):
                    if self._rows[i] is record:
                        del self._rows[i]
                        self._check_open()
                return
            if len(self._rows) >= self._row_limit:
                self._cut_rows()
                self._maybe_commit()

    def append_batch(
        self, data: pa.Table | pa.RecordBatch | Sequence[dict[str, Any]], *, partition: int | None = None
    ) -> None:
        """Validate and write a batch (Arrow table/batch or list of dicts) as whole frames.

        Nothing is written if any record is invalid. In "flush" and "fsync" modes the frames are
        committed (and synced) before this returns. `partition` places the whole batch in that
        partition; only for topics without a key field (a keyed topic places records by key hash).
        Without it, an unkeyed topic's batches go to its partitions in turn.
        """
        self._check_partition(partition)
        with self._lock:
            if self._closed:
                raise WriterClosedError(f"writer on topic {self.topic.name!r} is closed")
            if self._deferred is not None:
                self._raise_deferred()
            if not isinstance(data, (pa.Table, pa.RecordBatch)):
                data = list(data)
            if len(data) == 0:
                return
            if self._rows:
                self._cut_rows()  # keep order: buffered records go first
            place = None if partition is None else int(partition)
            if isinstance(data, list) and len(data) <= ROW_FRAME_MAX and self._stage_rows(data, place):
                self._maybe_commit()  # a small commit of dicts: row frames, as append() + flush()
                return
            self._stage(self._conform(data, 0), place)
            self._maybe_commit()

    def _check_partition(self, partition: int | None) -> None:
        if partition is None:
            return
        cfg = self.topic.config
        if cfg.key_field is not None:
            raise ArgumentError(
                f"topic {self.topic.name!r} places records by its key field "
                f"{cfg.key_field!r}: append_batch(partition=) is for unkeyed topics"
            )
        if (
            isinstance(partition, bool)
            or not isinstance(partition, (int, np.integer))
            or not 0 <= partition < cfg.partitions
        ):
            raise ArgumentError(f"topic {self.topic.name!r} has partitions 0..{cfg.partitions - 1}, not {partition!r}")

    def flush(self) -> None:
        """Cut buffered records into frames and commit everything; returns once durable per mode."""
        with self._lock:
            if self._closed:
                raise WriterClosedError(f"writer on topic {self.topic.name!r} is closed")
            self._flush_locked()

    def close(self) -> None:
        """Flush, stop the linger thread and release files. Idempotent."""
        with self._lock:
            if self._closed:
                return
            # closed before the last flush: an append() that saw the writer open put its record in
            # the buffer before this line, so the flush writes it; later ones take the locked path
            self._closed = self._blocked = True
            try:
                self._flush_locked()
            finally:
                self._stop.set()
                self._sync_committed()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # do not mask the original error with a flush failure
            try:
                self.close()
            except Exception:
                pass

    @property
    def buffered(self) -> int:
        """Records appended but not yet cut into a frame."""
        return len(self._rows)

    # --- internals ---------------------------------------------------------------------------
    def _bind_version(self, version: int | None = None) -> None:
        self._version = self.topic.version(version)
        # top-level string fields: stored dictionary-encoded when given so, or (compressed) when they repeat
        self._dictionaries = Dictionaries([i for i, f in enumerate(self._version.arrow) if pa.types.is_string(f.type)])
        v = self._version
        self._rows_codec = rowcodec.codec(v.schema, v.arrow, self.topic.config.event_time_field)

    def _check_open(self) -> None:
        if self._closed:
            raise WriterClosedError(f"writer on topic {self.topic.name!r} is closed")
        if self._deferred is not None:
            self._raise_deferred()

    def _raise_deferred(self) -> None:
        err, self._deferred = self._deferred, None
        self._blocked = self._closed
        raise err  # type: ignore[misc]

    def _flush_locked(self) -> None:
        if self._deferred is not None:
            self._raise_deferred()
        if self._rows:
            alone = self._cut_rows(stage=bool(self._pending))
            if alone is not None:  # the live path: one row frame to one partition, nothing else pending
                self._commit_alone(*alone)
                return
        self._commit_all()

    def _conform(self, data: Any, offset_index: int) -> pa.RecordBatch:
        if self._version is None:
            if not self.topic.exists():
                self.topic.create_from_data(data)
            self._bind_version()
        v = self._version
        assert v is not None
        if not self.validate and isinstance(data, (pa.Table, pa.RecordBatch)) and data.schema.equals(v.arrow):
            # trusted Arrow input of exactly the topic's schema: no per-value checks
            return data.combine_chunks().to_batches()[0] if isinstance(data, pa.Table) else data
        batch = schemas.conform(
            data,
            v.schema,
            v.arrow,
            topic=self.topic.name,
            offset_index=offset_index,
            keep_dictionaries=bool(self._dictionaries.strings),
            keep_runs=True,
        )
        check_sizes(batch, self.topic.config.max_record_bytes, offset_index, self.topic.name)
        return batch

    def _cut_rows(self, *, stage: bool = True) -> RowFrame | None:
        """Turn the record buffer into encoded frames; a bad record is rejected alone. Without
        `stage`, a single row frame is returned rather than staged, to be committed at once."""
        n = len(self._rows)
        rows, first = self._rows[:n], self._row_seq
        del self._rows[:n]  # records appended meanwhile (no lock) stay, after these
        self._row_seq = first + n
        if n <= ROW_FRAME_MAX:
            frames = self._row_frames(rows)
            if frames is not None:
                if not stage and len(frames) == 1:
                    return frames[0]
                for frame in frames:
                    self._pend(*frame)
                return None
        seqs = list(range(first, first + len(rows)))
        errors: list[RecordValidationError] = []
        batch = None
        while rows:
            try:
                batch = self._conform(rows, 0)
                break
            except RecordValidationError as err:
                i = err.index
                if i is None or not 0 <= i < len(rows):  # not about one record: reject them all
                    errors.append(RecordValidationError(None, err.field, err.reason, topic=self.topic.name))
                    rows = []
                    break
                errors.append(err.__class__(seqs[i], err.field, err.reason, topic=self.topic.name))
                del rows[i], seqs[i]
        if batch is not None:
            self._stage(batch)
            per_row = max(1, batch.nbytes // max(1, batch.num_rows))
            self._row_limit = max(1, min(self.batch_records, self.batch_bytes // per_row))
        if errors:
            if len(errors) > 1:
                errors[0].add_note(f"{len(errors) - 1} more appended records were rejected too")
            raise errors[0]
        return None

    def _stage_rows(self, rows: list[dict[str, Any]], partition: int | None = None) -> bool:
        """Stage a small commit's `rows` as row frames if the row codec is certain of every one
        (`schemas.rowcodec`); False to take the batch path, which decides (and names the bad record)."""
        frames = self._row_frames(rows, partition)
        if frames is None:
            return False
        for frame in frames:
            self._pend(*frame)
        return True

    def _row_frames(self, rows: list[dict[str, Any]], partition: int | None = None) -> list[RowFrame] | None:
        """A small commit's `rows` as row frames, one a partition, if the row codec is certain of
        every one (`schemas.rowcodec`); None to take the batch path."""
        if self._version is None:
            if not self.topic.exists():
                return None  # the batch path creates the topic from the first data
            self._bind_version()
        encoded = self._rows_codec.encode(rows)
        if encoded is None:
            return None
        if not self._rows_format:
            self.topic.log.require_format(ROWS_FORMAT)  # older readers cannot decode row frames
            self._rows_format = True
        bodies, events = encoded
        cfg = self.topic.config
        if 2 * max(map(len, bodies)) > cfg.max_record_bytes:
            return None  # near the limit: the batch path measures records its way
        n = cfg.partitions
        if n == 1 or partition is not None or cfg.key_field is None:  # one partition takes them all
            if n == 1 or partition is not None:
                place = partition or 0
            else:
                place = self._sticky % n
                self._sticky += 1
            return [(place, RowBlock(bodies), _span(events))]
        assert self._version is not None
        key_type, keys = self._version.arrow.field(cfg.key_field).type, [r.get(cfg.key_field) for r in rows]
        if pa.types.is_string(key_type) or pa.types.is_int64(key_type):  # the codec checked: str / int
            places = [partition_of(k, n) for k in keys]  # the scalar reference: ~2 us a key, no arrays
        else:
            places = partitions_for(pa.array(keys, type=key_type), n).tolist()
        groups: dict[int, list[int]] = {}
        for i, p in enumerate(places):
            groups.setdefault(p, []).append(i)
        return [
            (p, RowBlock([bodies[i] for i in at]), _span(None if events is None else [events[i] for i in at]))
            for p, at in groups.items()
        ]

    def _pend(self, p: int, piece: Piece, span: tuple[int, int]) -> None:
        """Add `piece` (its records' event-time range `span`) to partition `p`'s part of the next commit."""
        if not self._pending_bytes:
            self._pending_since = time.monotonic()
        self._pending.setdefault(p, []).append((piece, span))
        self._pending_bytes += piece.nbytes

    def _event_range(self, batch: pa.RecordBatch) -> tuple[int, int]:
        field = self.topic.config.event_time_field
        if field is None or batch.num_rows == 0:
            return MIN_TIME, MAX_TIME
        col = batch.column(field)
        if pa.types.is_run_end_encoded(col.type):  # whole runs (`frame.whole_runs`): its values are its rows'
            col = col.values
        mm = pc.min_max(col.cast(pa.int64()) if pa.types.is_timestamp(col.type) else col)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        return (int(lo), int(hi)) if lo is not None else (MIN_TIME, MAX_TIME)

    def _stage(self, batch: pa.RecordBatch, partition: int | None = None) -> None:
        """Split a valid batch by partition; each part becomes one frame at the next commit."""
        cfg = self.topic.config
        n = cfg.partitions
        if partition is not None:
            groups = [(partition, batch)]
        elif n == 1:
            groups = [(0, batch)]
        elif cfg.key_field is None:
            groups = [(self._sticky % n, batch)]
            self._sticky += 1
        else:
            batch = decode_runs(batch)  # placed row by row: runs would not survive the shuffle
            parts = partitions_for(batch.column(cfg.key_field), n)
            order = np.argsort(parts, kind="stable")
            sorted_parts = parts[order]
            cuts = np.flatnonzero(np.diff(sorted_parts)) + 1
            starts = np.concatenate([[0], cuts])
            ends = np.concatenate([cuts, [len(parts)]])
            taken = batch.take(pa.array(order))
            groups = [(int(sorted_parts[s]), taken.slice(s, e - s)) for s, e in zip(starts, ends)]
        for p, b in groups:
            self._pend(p, b, self._event_range(b))

    def _maybe_commit(self) -> None:
        if self.durability != "none" or self._pending_bytes >= self.batch_bytes:
            self._commit_all()

    def _commit_all(self) -> None:
        """Commit everything pending, to every partition at once: all of it or, raising, none.

        A failed commit drops what it held (the error says so): the caller was told, and a
        retry of the call that failed stores it once.
        """
        pending, self._pending = self._pending, {}
        self._pending_bytes = 0
        if not pending:
            return
        jobs = [self._job(p, pending[p]) for p in sorted(pending)]
        self._committed.update(pending)
        try:
            if len(jobs) == 1:  # one partition: grouped with other threads' commits to it
                part, counts, encode = jobs[0]
                part.commit(counts, encode, self._settings)
            else:
                commit_many(jobs, self._settings)
        except BaseException as e:
            self._not_written(e, sum(b.num_rows for batches in pending.values() for b, _ in batches))
            raise

    def _commit_alone(self, p: int, block: RowBlock, span: tuple[int, int]) -> None:
        """`_commit_all` of one row frame to partition `p` (nothing else pending), without staging it."""
        part, counts, encode = self._row_job(p, block, span)
        self._committed.add(p)
        try:
            part.commit(counts, encode, self._settings)
        except BaseException as e:
            self._not_written(e, block.num_rows)
            raise

    def _not_written(self, e: BaseException, n: int) -> None:
        e.add_note(f"the {n} records of this commit to topic {self.topic.name!r} were not written")

    @property
    def _settings(self) -> CommitSettings:
        if self._settings_cache is None:
            cfg = self.topic.config
            self._settings_cache = CommitSettings(
                durable=self.durability == "fsync",
                segment_bytes=cfg.segment_bytes,
                segment_ms=cfg.segment_ms,
                clock_us=lambda: clock_us(self.clock),
                max_skew_us=self._max_skew_us,
            )
        return self._settings_cache

    def _job(self, p: int, batches: list[tuple[Piece, tuple[int, int]]]) -> tuple[Partition, list[int], Encode]:
        """Partition `p`'s part of a commit: (partition, frame counts, encode) for `commit_many`.

        Bodies are encoded under the partition's lock because they carry their records' offsets
        and append time (the `_offset` and `_append_time` columns), which only the lock holder knows.
        """
        if len(batches) == 1 and isinstance(batches[0][0], RowBlock):
            block, span = batches[0]
            return self._row_job(p, block, span)
        part: Partition = self.topic.partition(p)
        assert self._version is not None
        version = self._version.version
        options = self.topic.write_options
        counts = [b.num_rows for b, _ in batches]
        # compressed frames are encoded on the frame pool a few ahead (the codec and the
        # checksum release the GIL) while this thread writes the ones done, each frame's
        # buffers on one thread; a lone frame compresses its buffers on Arrow's threads. An
        # uncompressed body is only checksummed: cheaper here than handing it to a thread.
        parallel = len(batches) > 1 and options.compression is not None
        if parallel:
            options = pa.ipc.IpcWriteOptions(compression=options.compression, use_threads=False)
        dictionaries = self._dictionaries

        def encode(job: tuple[Piece, int, int, tuple[int, int]]) -> EncodedBody:
            batch, first, append_time, event_range = job
            if isinstance(batch, RowBlock):
                return rows_body(batch.rows, schema_version=version, event_range=event_range)
            # a small body is not worth compressing: per-buffer codec setup costs more than it saves
            opts = options if batch.nbytes >= COMPRESS_MIN_BYTES else _PLAIN
            if dictionaries.strings:
                # repeating strings become dictionaries where frames are encoded on the pool:
                # hashing every value costs about what the codec then saves, and would sit on
                # the critical path of a frame committed alone (flush, fsync)
                batch = dictionaries.apply(batch, auto=parallel and opts.compression is not None)
            return encode_body(
                with_system_columns(mark_runs(batch), first, append_time),
                schema_version=version,
                options=opts,
                event_range=event_range,
            )

        def encode_all(first: int, append_time: int) -> Iterable[EncodedBody]:
            jobs = []
            for (batch, event_range), n in zip(batches, counts):
                jobs.append((batch, first, append_time, event_range))
                first += n
            return imap_ordered(encode, jobs) if parallel else map(encode, jobs)

        return part, counts, encode_all

    def _row_job(self, p: int, block: RowBlock, span: tuple[int, int]) -> tuple[Partition, list[int], Encode]:
        """`_job` of a row frame alone (the live path): its body holds neither offsets nor append
        time, so it is encoded and checksummed here, outside the partition's lock."""
        assert self._version is not None
        body = rows_body(block.rows, schema_version=self._version.version, event_range=span)
        return self.topic.partition(p), [block.num_rows], lambda first, append_time: (body,)

    def _sync_committed(self) -> None:
        """At close: index what this writer committed, make it durable if it was not, and say so in
        the hint's synced slot (the recovery point a power cut or a reboot keeps; see `partition.py`)."""
        for p in sorted(self._committed):
            self.topic.partition(p).sync_tail()
        self._committed.clear()

    def _linger_loop(self) -> None:
        interval = max(0.005, (self.linger_ms or 100) / 1000 / 2)
        limit = (self.linger_ms or 0) / 1000
        while not self._stop.wait(interval):
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                try:
                    if self._rows and now - self._rows_since >= limit:
                        self._cut_rows()
                        self._maybe_commit()
                    if self._pending and now - self._pending_since >= limit:
                        self._commit_all()
                except BaseException as e:  # surfaced by the next call on the writer
                    if self._deferred is None:
                        self._deferred = e
                        self._blocked = True
