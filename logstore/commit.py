"""The commit protocol of a partition: lock, tail sync, roll, write, sync, index, hint.

One commit puts one or more whole frames at the end of a partition's active segment, under the
partition's exclusive lock (`Partition.exclusive`), in this order:

1. *Tail sync.* The partition's tail (active segment, committed size, next offset, last append
   time) is the one this process left if the file still has that size; else the hint another
   writer left if it is trusted and matches; else it is derived from the segment, recovering a
   torn tail (`Partition.derive_tail`).
2. *Roll.* A full (``segment_bytes``) or old (``segment_ms``) active segment is sealed: fdatasynced
   in every durability mode (so a sealed segment never loses a tail to a power cut), summarized,
   and a new segment file is created at the next offset, its directory entry fsynced (so the
   segments of a partition never have a hole after a power cut).
3. *Stamp.* The append time is ``max(clock, last append time)``; a clock more than the writer's
   ``max_clock_skew`` ahead of the machine's own clock is refused (`ClockSkewError`), so one bad
   clock cannot drag every later commit of the partition into the future.
4. *Write and sync.* Headers (every frame but the commit's last flagged *continued*, see
   `frame.py`) and bodies are written with ``pwritev``; in "fsync" mode the segment is
   ``fdatasync``-ed. This is the commit point. A failure before it truncates the segment back to
   where the commit began and raises `LogIOError`: the commit did not happen, and a retry stores
   it once. A commit to several partitions (`commit_many`) holds all their locks and passes its
   commit point only once every partition's frames are written (and synced): all or nothing.
   A single-partition commit goes through the partition's group (`GroupCommit`), whose durable
   batches are fdatasynced after the lock is released, so several processes share the sync.
5. *Index and hint.* Both are derived; a failure writing them after the commit point is logged
   and swallowed (the commit happened and is reported as such, so a retry does not store it twice);
   the next reader or writer derives what they would have said. The hint is written at every
   commit: it is what readers see (a reader's snapshot ends at the hint's committed size, so a
   commit is visible once its hint is). Index entries are appended in batches
   (`INDEX_BATCH` frames, or older than `INDEX_LAG_S`, and always before a roll and at close):
   readers already scan the headers of an active segment's frames past its index, and entries
   are only ever appended in file order (`tailindex`). So a crash loses no index, only time.

The tail state (`tailstate.TailState`) lives on the `Partition` object, guarded by its exclusive
lock, and is shared by every writer of the partition in this process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from . import index as index_mod
from . import summary
from .errors import ClockSkewError, LogIOError
from .files import write_frames
from .frame import HEADER_SIZE, EncodedBody, build_header
from .hint import Hint
from .tailclose import close_tail as close_tail  # the close steps of `Partition`
from .tailclose import sync_tail as sync_tail
from .tailindex import INDEX_BATCH, INDEX_LAG_S, flush_index
from .tailstate import TailState as TailState
from .tailstate import match_tail, write_hint_quietly
from .timeutil import iso, now_us

if TYPE_CHECKING:
    from .partition import Partition

log = logging.getLogger("logstore")
Encode = Callable[[int, int], Iterable[EncodedBody]]
WRITE_CHUNK = 4 * 1024 * 1024  # a commit's frames go to the file in writes of about this size


class Committed(NamedTuple):
    """Where a commit landed."""

    base_offset: int
    end_offset: int
    append_time: int


@dataclass(frozen=True)
class CommitSettings:
    """How a writer commits: durability, rolling, and its clock."""

    durable: bool  # "fsync": fdatasync before acknowledging
    segment_bytes: int
    segment_ms: int | None
    clock_us: Callable[[], int]
    max_skew_us: int | None


def commit_many(jobs: Sequence[tuple[Partition, list[int], Encode]], settings: CommitSettings) -> list[Committed]:
    """Commit to several partitions of one topic at once: all of it, or (raising) none of it.

    The partitions' locks are taken in partition order (every writer takes them in that order,
    so two multi-partition commits never deadlock), every partition's frames are written (and
    synced, in "fsync" mode), and only then is any index or hint written. A failure before that
    point truncates every partition back, so a retry of the whole call stores it once.
    """
    jobs = sorted(jobs, key=lambda j: j[0].number)
    with ExitStack() as stack:
        for part, _, _ in jobs:
            stack.enter_context(part.exclusive())
        now = settings.clock_us()
        _check_skew(jobs[0][0], now, settings)
        staged: list[_Staged] = []
        for part, counts, encode in jobs:
            tail = part.tail
            match_tail(part, tail)
            hint = _roll_if_due(part, tail, now, settings)
            staged.append(_Staged(part, tail, hint, counts, encode, max(now, hint.last_append_time)))
        try:
            for st in staged:
                _write(st)
            if settings.durable:
                for st in staged:
                    os.fdatasync(st.tail.fd)  # type: ignore[arg-type]
        except BaseException as e:
            for st in staged:
                _undo(st)
            if isinstance(e, OSError) and not isinstance(e, LogIOError):
                where = ", ".join(str(st.part.seg_path(st.hint.base)) for st in staged)
                raise LogIOError(f"cannot append to {where}: {e.strerror or e}; nothing was written") from e
            raise
        # the commit point has passed: from here on, failures cost only derived state
        return [_publish(st, settings.durable) for st in staged]


@dataclass(slots=True)
class _Request:
    """One committer's single-partition commit waiting in its partition's group."""

    counts: list[int]
    encode: Encode
    settings: CommitSettings
    done: bool = False
    result: Committed | None = None
    error: BaseException | None = None
    wake: threading.Lock | None = None  # held while its committer sleeps; released once to wake it
    batch: list[_Request] | None = None  # set when it is handed the lead of these commits


class GroupCommit:
    """The commits waiting for one partition in this process (group commit, as PostgreSQL's WAL
    and Kafka's log do it): a committer that finds the group idle leads at once; the others queue.
    A leader takes the partition's lock once and writes its batch (each commit its own, frames
    contiguous); as soon as it lets the lock go it hands the lead, with every commit queued
    meanwhile as the next batch, to the first of them, and then syncs its own batch with one
    ``fdatasync`` in "fsync" mode. So the next batch is written while this one syncs, and the two
    fdatasyncs overlap (the kernel commits them together). Every committer sleeps on its own lock
    and is woken once: when its records are durable (or its commit failed), or to lead. A commit
    that fails in a batch is taken back alone; the others are stored.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: list[_Request] = []
        self.busy = False

    def hand_on(self) -> None:
        """(A leader, its lock hold over.) Give the lead and every queued commit to the first of
        them, or leave the group idle."""
        with self.lock:
            if not self.queue:
                self.busy = False
                return
            batch, self.queue = self.queue, []
        batch[0].batch = batch
        assert batch[0].wake is not None
        batch[0].wake.release()


def commit_grouped(part: Partition, counts: list[int], encode: Encode, settings: CommitSettings) -> Committed:
    """`commit` through the partition's group (see `GroupCommit`): same result, same errors."""
    group = part.group
    req = _Request(counts, encode, settings)
    with group.lock:
        if group.busy:
            req.wake = threading.Lock()
            req.wake.acquire()
            group.queue.append(req)
        else:
            group.busy = True
    interrupted = _await_turn(group, req) if req.wake is not None else None
    if not req.done:
        batch = req.batch or [req]
        try:
            _commit_batch(part, batch, group.hand_on)  # hands the lead on whatever happens
        except BaseException as e:  # noqa: BLE001 - delivered to every committer not yet answered
            for r in batch:
                if not r.done:
                    r.error, r.done = e, True
        finally:
            for r in batch:
                if r is not req:
                    assert r.done and r.wake is not None
                    r.wake.release()
    if interrupted is not None:
        raise interrupted
    if req.error is not None:
        raise req.error
    assert req.result is not None
    return req.result


def _await_turn(group: GroupCommit, req: _Request) -> BaseException | None:
    """Sleep until `req` is answered or handed the lead. An interrupt (a signal's exception)
    while still queued takes the commit out of the queue and propagates: nothing was written.
    Once in a batch, the commit is finished first (its leader answers it, or it leads what it
    was handed, so no batch is left without a leader) and the interrupt is returned to raise."""
    assert req.wake is not None
    try:
        req.wake.acquire()
        return None
    except BaseException as e:
        with group.lock:
            queued = req in group.queue
            if queued:
                group.queue.remove(req)
        if queued:
            raise
        req.wake.acquire()
        return e


def _commit_batch(part: Partition, batch: list[_Request], hand_on: Callable[[], None]) -> None:
    """(The group's leader.) Commit `batch` under one lock hold and at most one fdatasync;
    `hand_on()` is called exactly once, as soon as the lock is let go (before the fdatasync),
    whether the batch was written or not.

    The fdatasync of a durable batch runs after the lock is released (on a duplicate of the
    segment's descriptor), so committers of other processes write theirs meanwhile and the
    kernel's next journal commit carries them together: group commit across processes. The batch
    is visible to readers once written (as in "flush" mode); its committers return once it is
    durable. If the fdatasync fails, the batch is taken back (hint restored, segment truncated)
    when nobody committed after it; otherwise its committers get a `LogIOError` saying the records
    are in the log but not known to be durable.
    """
    try:
        synced = _write_batch(part, batch)
    finally:
        hand_on()
    if synced is None:
        return
    fd, hint, published = synced
    try:
        os.fdatasync(fd)
    except BaseException as e:  # noqa: BLE001
        _sync_failed(part, hint, published, e)
        return
    finally:
        os.close(fd)
    done = part.tail.synced  # set outside the lock: batches sync in parallel, keep the furthest
    if done is None or (done.base, done.size) < (hint.base, hint.size):
        part.tail.synced = hint  # recorded in the hint's synced slot at the next lock hold
    for r, _, result in published:
        r.result, r.done = result, True


_Synced = tuple[int, Hint, list[tuple[_Request, "_Staged", Committed]]]


def _write_batch(part: Partition, batch: list[_Request]) -> _Synced | None:
    """(The leader.) Under the partition's lock, write and publish `batch`; for a durable batch,
    what its fdatasync needs (a duplicate of the segment's descriptor, the tail, the results)."""
    with part.exclusive():
        tail = part.tail
        match_tail(part, tail)
        _note_synced(part, tail)
        written: list[tuple[_Request, _Staged]] = []
        for req in batch:
            try:
                st = _stage_one(part, tail, req, written)
            except BaseException as e:  # noqa: BLE001 - this commit fails alone
                req.error, req.done = e, True
                continue
            try:
                _write(st)
            except BaseException as e:  # noqa: BLE001
                if not _truncate_to(st):  # the tail is unknown now: fail the rest, publish nothing
                    for r, _ in written:
                        r.error, r.done = e, True
                    for r in batch:
                        if not r.done:
                            r.error, r.done = _not_written(st, e), True
                    return None
                req.error, req.done = _not_written(st, e), True
                continue
            written.append((req, st))
        if not written:
            return None
        durable = written[0][0].settings.durable if len(written) == 1 else any(r.settings.durable for r, _ in written)
        if not durable:
            for r, st in written:
                r.result, r.done = _publish(st, False), True
            return None
        try:
            fd = os.dup(tail.fd)  # type: ignore[arg-type]
        except OSError as e:  # not committed: take every one back
            _fail_all(written, e)
            return None
        published = [(r, st, _publish(st, False)) for r, st in written]
        assert tail.hint is not None
        return fd, tail.hint, published


def _fail_all(written: list[tuple[_Request, _Staged]], e: BaseException) -> None:
    first = written[0][1]
    _undo(first)
    for r, _ in written:
        r.error, r.done = _not_written(first, e), True


def _sync_failed(
    part: Partition, hint: Hint, published: list[tuple[_Request, _Staged, Committed]], e: BaseException
) -> None:
    """A durable batch's fdatasync failed after it was published: take it back if nobody
    committed after it, else say it is in the log but not known to be durable."""
    first = published[0][1]
    with part.exclusive():
        tail = part.tail
        try:
            unmoved = part.read_hint() == hint and tail.hint == hint
        except OSError:
            unmoved = False
        if unmoved:
            write_hint_quietly(part, first.hint)
            _undo(first)
            for r, _, _ in published:
                r.error, r.done = _not_written(first, e), True
            return
    n = sum(sum(st.counts) for _, st, _ in published)
    err = LogIOError(
        f"cannot sync {part.seg_path(first.hint.base)}: {getattr(e, 'strerror', None) or e}; the {n} records of "
        "this commit are in the log (other commits followed them) but not known to be durable"
    )
    err.__cause__ = e
    for r, _, _ in published:
        r.error, r.done = err, True


def _note_synced(part: Partition, tail: TailState) -> None:
    """(Under the lock.) Record in the hint's synced slot what this process's last fdatasync made
    durable (the recovery point a reboot keeps; see `hint.py`)."""
    done, tail.synced = tail.synced, None
    if done is not None and tail.hint is not None and done.base == tail.hint.base and done.size <= tail.hint.size:
        try:
            part.write_hint(done.marked(synced=True), slot=1)
        except OSError as e:
            log.warning("synced tail hint of %s not updated (%s)", part.dir, e)


def _stage_one(part: Partition, tail: TailState, req: _Request, written: list[tuple[_Request, _Staged]]) -> _Staged:
    """Stamp, check the clock, roll if due (only before the batch's first write), and stage `req`
    after what the batch already wrote."""
    settings = req.settings
    now = settings.clock_us()
    _check_skew(part, now, settings)
    if not written:
        if tail.fd is None or tail.hint is None:  # an earlier commit of the batch failed its roll
            match_tail(part, tail)
        hint = _roll_if_due(part, tail, now, settings)
    else:
        prev = written[-1][1]
        hint = Hint(prev.hint.base, prev.end, prev.next_offset, prev.append_time)
    return _Staged(part, tail, hint, req.counts, req.encode, max(now, hint.last_append_time))


def _roll_if_due(part: Partition, tail: TailState, now: int, settings: CommitSettings) -> Hint:
    """(Under the lock, tail synced.) Roll a full or old active segment; the tail to commit after."""
    hint = tail.hint
    assert hint is not None and tail.fd is not None
    age_ok = (
        settings.segment_ms is None
        or tail.first_append_time is None
        or now - tail.first_append_time < settings.segment_ms * 1000
    )
    if hint.size > 0 and (hint.size >= settings.segment_bytes or not age_ok):
        _roll(part, tail)
        hint = tail.hint
        assert hint is not None
    return hint


def _truncate_to(st: _Staged) -> bool:
    """Cut the segment back to where `st` began (the tail stays open); False if that failed, in
    which case the tail is marked for the next commit to take back (see `_undo`)."""
    fd = st.tail.fd
    try:
        if fd is not None and os.fstat(fd).st_size != st.hint.size:
            os.ftruncate(fd, st.hint.size)
        return True
    except OSError:
        _undo(st)
        return False


def _not_written(st: _Staged, e: BaseException) -> BaseException:
    if isinstance(e, OSError) and not isinstance(e, LogIOError):
        err = LogIOError(f"cannot append to {st.part.seg_path(st.hint.base)}: {e.strerror or e}; nothing was written")
        err.__cause__ = e
        return err
    return e


def _check_skew(part: Partition, now: int, settings: CommitSettings) -> None:
    if settings.max_skew_us is None:
        return
    machine = now_us()
    if now > machine + settings.max_skew_us:
        raise ClockSkewError(
            f"commit to {part.dir.parent.name!r}: the writer's clock says {iso(now)}, "
            f"{(now - machine) / 1e6:.1f} s ahead of this machine's clock ({iso(machine)}); the bound is "
            f"{settings.max_skew_us / 1e6:g} s (writer(max_clock_skew=...)); nothing was written"
        )


@dataclass(slots=True)
class _Staged:
    """One partition's part of a commit, between its roll and its commit point."""

    part: Partition
    tail: TailState
    hint: Hint  # the tail before this commit
    counts: list[int]
    encode: Encode
    append_time: int
    entries: list[Any] = field(default_factory=list)
    end: int = 0  # bytes of the segment after this commit
    next_offset: int = 0


def _write(st: _Staged) -> None:
    """Write `st`'s frames after its tail (not yet committed: no index, no hint)."""
    tail, hint = st.tail, st.hint
    assert tail.fd is not None
    chunks: list[Any] = []
    offset, pos = hint.next_offset, hint.size
    written = pos
    last = len(st.counts) - 1
    for k, body in enumerate(st.encode(hint.next_offset, st.append_time)):
        chunks.append(build_header(body, offset, st.append_time, continued=k < last))
        chunks.extend(body.parts)
        st.entries.append(
            index_mod.entry_bytes(
                offset, pos, body.count, body.size, st.append_time, body.min_event_time, body.max_event_time
            )
        )
        offset += body.count
        pos += HEADER_SIZE + body.size
        if pos - written >= WRITE_CHUNK:
            written += write_frames(tail.fd, written, chunks)
            chunks = []
    if chunks:
        write_frames(tail.fd, written, chunks)
    st.end, st.next_offset = pos, offset


def _undo(st: _Staged) -> None:
    """(Under the lock.) Take back what `_write` put in the segment: truncate to the old tail.

    If even that fails, the bytes stay until the next commit to the partition truncates them
    first (`TailState.undo`), and the hint says they are not committed (`Hint.exact`), so no
    other writer's recovery takes them for a commit either.
    """
    tail, hint = st.tail, st.hint
    if tail.fd is None:
        return
    try:
        if os.fstat(tail.fd).st_size != hint.size:
            os.ftruncate(tail.fd, hint.size)
    except OSError as e:
        log.warning(
            "could not take back a failed commit to %s (%s): the next commit truncates it",
            st.part.seg_path(hint.base),
            e,
        )
        tail.undo = hint
        write_hint_quietly(st.part, hint.marked(exact=True))
        return
    tail.close()


def _publish(st: _Staged, durable: bool) -> Committed:
    """(After the commit point.) Index and hint; their failures are logged and swallowed."""
    part, tail, hint = st.part, st.tail, st.hint
    if tail.first_append_time is None:
        tail.first_append_time = st.append_time
    tail.hint = Hint(hint.base, st.end, st.next_offset, st.append_time, synced=durable)
    if tail.index_ok:
        now = time.monotonic()
        if not tail.index_pending:
            tail.index_since = now
        tail.index_pending.extend(st.entries)
        if len(tail.index_pending) >= INDEX_BATCH or now - tail.index_since >= INDEX_LAG_S:
            flush_index(part, tail)
    write_hint_quietly(part, tail.hint)
    return Committed(hint.next_offset, st.next_offset, st.append_time)


def _roll(part: Partition, tail: TailState) -> None:
    """(Under the lock.) Seal the active segment and start a new one at the next offset."""
    hint = tail.hint
    assert hint is not None and tail.fd is not None
    flush_index(part, tail)  # a sealed segment's index is whole
    fd = tail.fd
    try:
        os.fdatasync(fd)  # in every mode: a sealed segment never loses its tail to a power cut
    except OSError as e:
        tail.close()
        raise LogIOError(f"cannot seal {part.seg_path(hint.base)}: {e.strerror or e}; nothing was written") from e
    loaded = index_mod.load(part.idx_path(hint.base))
    if loaded is not None and not loaded[1] and len(loaded[0]):
        entries = loaded[0]
        raw = summary.summarize(hint.base, entries)
        if raw is not None and int(entries["base_offset"][-1] + entries["count"][-1]) == hint.next_offset:
            try:
                summary.append(part.dir, raw)
            except OSError as e:
                log.warning("segment summary of %s not updated (%s)", part.dir, e)
    tail.close()
    try:
        tail.fd = part.open_segment(hint.next_offset, create=True, durable=True)
    except LogIOError:
        tail.close()
        raise
    tail.hint = Hint(hint.next_offset, 0, hint.next_offset, hint.last_append_time, synced=hint.synced)
    tail.first_append_time = None
    write_hint_quietly(part, tail.hint)
