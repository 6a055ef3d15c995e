"""Partitions: a directory of segments with one writer at a time.

``<topic>/<partition, 5 digits>/`` holds the segments (``<base>.seg``), their indexes (``<base>.idx``),
the segment summary (``segments.sum``) and ``.lock``. Writers commit under an exclusive lock on
``.lock`` (`Partition.exclusive`), one commit (one or more whole frames) at a time, so several
threads and processes can append to one partition: offsets stay dense and frames never
interleave. The partition owns its commit protocol (`Partition.commit`, in `commit.py`: tail
sync, roll, write, sync, index, hint) and the tail state it keeps between commits. Readers take
the lock shared for an instant to snapshot the committed end. Sealed segments moved to a remote
store (`tier.py`) are read where the tier manifest places them (`manifest.py`, `remote.py`).

``.lock`` also holds the *tail hints* (`hint.py`). A trusted hint that matches the active
segment's size gives a snapshot without reading the segment, and tells recovery what was
committed (a frame it covers that fails its checksum is damage, never a torn tail); anything else
is re-derived from the segment. Append time never goes backward within a partition: a commit is
stamped ``max(clock(), last append time)``.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import commit as commit_mod
from . import index as index_mod
from . import summary
from .commit import GroupCommit
from .errors import LogIOError, TopicError
from .files import CLOEXEC, NOFOLLOW, fsync_dir, make_dir
from .frame import FrameHeader
from .hint import HINT_SLOT, Hint, _hints, pack_hint, parse_hint, recovery_point
from .manifest import Placement
from .names import LOCK_NAME, index_name, parse_segment_name, segment_name
from .remote import Remotes
from .segment import Recovery, SegmentView, Tail, analyze, build_index, recover_active, scan
from .tailindex import ActiveIndex, frames_end
from .tailstate import TailState
from .timeutil import MIN_TIME

SETTLED_NS = 50_000_000  # a directory mtime this old is past any coarse timestamp tick
INDEX_AHEAD = 8  # remote indexes fetched ahead when a partition's are read in order

if TYPE_CHECKING:
    from .commit import CommitSettings, Committed, Encode

log = logging.getLogger("logstore")


@contextmanager
def flocked(fd: int, mode: int) -> Iterator[None]:
    """Hold flock `mode` (LOCK_EX or LOCK_SH) on `fd` for the block."""
    fcntl.flock(fd, mode)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Snapshot:
    """The committed state of a partition at one instant: what a reader may see."""

    partition: int
    bases: tuple[int, ...]  # segment base offsets, ascending; the last is the active segment
    active_size: int  # committed bytes of the active segment
    end_offset: int  # offset just past the last committed record (exclusive)

    @property
    def start_offset(self) -> int:
        return self.bases[0] if self.bases else self.end_offset


class Partition:
    """One partition directory: its segments, lock, tail and the frames a snapshot can see.

    Locking: writers (and retention, and recovery) hold ``.lock`` exclusively through
    `exclusive()`: a process-wide mutex first (flock does not exclude two threads sharing one
    open file), then ``flock(LOCK_EX)`` on the writers' descriptor. Readers take ``LOCK_SH`` for an
    instant on a descriptor of their own, opened read-only and never created: a reader of a
    partition nobody wrote yet sees it empty, and reading never writes.
    """

    def __init__(self, directory: Path, number: int, *, readonly: bool = False, remotes: Remotes | None = None) -> None:
        self.dir = directory
        self.placement = Placement(directory)  # where sealed segments live (the tier manifest)
        self.remotes = remotes
        self.number = number
        self.readonly = readonly
        self._mutex = threading.Lock()  # held with the exclusive flock
        self._reader_mutex = threading.Lock()  # serializes LOCK_SH/LOCK_UN on the readers' descriptor
        self._cache_mutex = threading.Lock()
        self._writer_fd: int | None = None
        self._lock_path = ""  # the writers' descriptor's path and (inode, device): `_check_lock_file`
        self._lock_id: tuple[int, int] = (0, 0)
        self._reader_fd: int | None = None
        self._sealed_entries: dict[tuple[int, int], np.ndarray] = {}
        self._views: dict[tuple[int, int], SegmentView] = {}
        self._summary: tuple[int, dict[int, tuple[int, int, int, int, int]]] | None = None
        self.active_index = ActiveIndex()  # the active segment's entries as far as read
        self.tail = TailState()  # the commit protocol's view of the tail, guarded by `exclusive()`
        self.group = GroupCommit()  # this process's committers waiting for the partition
        self._derived: tuple[tuple[Any, ...], Tail] | None = None
        self._listed: tuple[int, list[int]] | None = None  # (directory mtime, segment bases) for snapshots

    # --- files -------------------------------------------------------------------------------
    def seg_path(self, base: int) -> Path:
        return self.dir / segment_name(base)

    def idx_path(self, base: int) -> Path:
        return self.dir / index_name(base)

    def segment_bases(self) -> list[int]:
        """Base offsets of the segments, ascending: on local disk, or remote by the tier manifest."""
        try:
            names = os.listdir(self.dir)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as e:
            raise LogIOError(f"cannot list partition directory {self.dir}: {e.strerror or e}") from e
        return self.placement.merge(names, {b for b in map(parse_segment_name, names) if b is not None})

    def local_bases(self) -> list[int]:
        """Base offsets of the segments whose local file is authoritative, ascending."""
        m = self.placement.current()
        return [b for b in self.segment_bases() if b not in m.segments or m.segments[b].state == "uploading"]

    def _remotes(self) -> Remotes:
        if self.remotes is None:
            self.remotes = Remotes(None)
        return self.remotes

    def listed_bases(self) -> list[int]:
        """`segment_bases`, re-listed only when the directory's mtime moved: a tailer snapshots on
        every wake, and listing costs ~100 us where a stat costs ~1. A listing is kept only if
        the mtime was older than `SETTLED_NS` when it was taken: a file system stamps mtimes at a
        coarse tick, so a change in the tick of the listing could leave the mtime unmoved ("racy"
        entries, as git's index handles them)."""
        try:
            mtime = os.stat(self.dir).st_mtime_ns
        except OSError:
            return self.segment_bases()
        listed = self._listed
        if listed is not None and listed[0] == mtime:
            return list(listed[1])
        bases = self.segment_bases()
        self._listed = (mtime, bases) if time.time_ns() - mtime > SETTLED_NS else None
        return list(bases)

    @contextmanager
    def exclusive(self, *, blocking: bool = True) -> Iterator[bool]:
        """Hold the partition's write lock (thread and process exclusive) for the block.

        Yields True, or False without the lock when `blocking` is False and another holds it.
        """
        if self.readonly:
            raise TopicError(f"partition {self.dir} is open read-only")
        if not self._mutex.acquire(blocking):
            yield False
            return
        try:
            fd = self._open_writer_fd()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                self._check_lock_file(fd)
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def _check_lock_file(self, fd: int) -> None:
        """(Under the lock.) Raise unless `fd` is still the partition's lock file: a directory deleted
        or replaced under a writer (a log removed and created again at its path) must not be written
        with the lock and tail of the one it replaced: that would overwrite the new one's commits."""
        if self.replaced():
            raise LogIOError(
                f"partition {self.dir} was deleted or replaced while this process had it open: "
                "nothing written; open the log again"
            )

    def replaced(self) -> bool:
        """Whether the lock file this process's writers opened is no longer the partition's."""
        try:
            st = os.stat(self._lock_path)
        except FileNotFoundError:
            return bool(self._lock_path)
        return (st.st_ino, st.st_dev) != self._lock_id

    def _open_writer_fd(self) -> int:
        if self._writer_fd is None:
            path = self.dir / LOCK_NAME
            try:
                make_dir(self.dir)
                self._writer_fd = os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
                st = os.fstat(self._writer_fd)
                self._lock_path, self._lock_id = str(path), (st.st_ino, st.st_dev)
            except OSError as e:
                raise LogIOError(f"cannot open lock file {path}: {e.strerror or e}") from e
        return self._writer_fd

    def _open_reader_fd(self) -> int | None:
        if self._reader_fd is None:
            path = self.dir / LOCK_NAME
            try:
                self._reader_fd = os.open(path, os.O_RDONLY | NOFOLLOW | CLOEXEC)
            except FileNotFoundError:
                return None
            except OSError as e:
                raise LogIOError(f"cannot open lock file {path}: {e.strerror or e}") from e
        return self._reader_fd

    def close(self) -> None:
        for name in ("_writer_fd", "_reader_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        with self._cache_mutex:
            self._views.clear()

    def read_hint(self) -> Hint | None:
        """(Under the exclusive lock.) The latest hint in ``.lock`` (slot 0)."""
        return parse_hint(os.pread(self._open_writer_fd(), HINT_SLOT, 0))

    def read_hints(self) -> list[Hint]:
        """(Under the exclusive lock.) Both hints (latest, last synced), where valid."""
        return _hints(os.pread(self._open_writer_fd(), 2 * HINT_SLOT, 0))

    def write_hint(self, hint: Hint, *, slot: int = 0) -> None:
        """(Under the exclusive lock.) Replace hint `slot` (not synced: it is derived state)."""
        data = pack_hint(hint)
        if os.pwrite(self._open_writer_fd(), data, slot * HINT_SLOT) != len(data):
            raise OSError(errno.EIO, "short write of the tail hint")

    # --- recovery (writers) --------------------------------------------------------------------
    def recover(self, *, blocking: bool = False) -> Recovery | None:
        """Recover the active segment's torn tail if no live writer holds the partition.

        Returns what was done, or None when the partition is empty or another process holds
        the lock (a live writer has already recovered it). Idempotent.
        """
        if self.readonly or not self.dir.is_dir():
            return None
        with self.exclusive(blocking=blocking) as held:
            if not held:
                return None
            state = self.derive_tail()
            if state is None:
                return None
            self._repair_sealed_indexes()
            return state[1]

    def derive_tail(self) -> tuple[Hint, Recovery] | None:
        """(Caller holds the exclusive lock.) Re-derive the tail from the active segment,
        truncating its torn tail (never a committed frame), and rewrite the hint."""
        bases = self.segment_bases()
        if not bases:
            return None
        base = bases[-1]
        rec, tail = recover_active(
            self.seg_path(base), self.idx_path(base), base, recovery_point(self.read_hints(), base)
        )
        if rec.bytes_truncated or rec.problems:
            log.warning(
                "recovered %s: truncated %d bytes (%d frames) of torn tail; %d damaged places kept in place",
                rec.path,
                rec.bytes_truncated,
                rec.frames_dropped,
                len(rec.problems),
            )
        last = tail.last_append_time
        remote = self.placement.remote(bases[-2]) if len(bases) > 1 else None
        if last is None and remote is not None:  # a writer needs no remote store: the manifest says it
            last = remote.last_append
        elif last is None:
            prev = self.last_entry(bases[-2]) if len(bases) > 1 else None
            last = int(prev["append_time"]) if prev is not None else MIN_TIME
        hint = Hint(base, tail.committed_size, tail.end_offset, last, synced=False)
        self.write_hint(hint)
        with self._cache_mutex:
            self._derived = None
        return hint, rec

    def _repair_sealed_indexes(self) -> None:
        """(Under the exclusive lock.) Rewrite missing or damaged indexes of local sealed segments."""
        for base in self.local_bases()[:-1]:
            entries, ok = self._load_sealed_index(base, _size(self.seg_path(base)))
            if not ok:
                result = scan(SegmentView(self.seg_path(base)), 0)
                if not result.problems:
                    index_mod.write(self.idx_path(base), build_index(result))
                    self.forget_index(base)

    def summaries(self) -> dict[int, tuple[int, int, int, int, int]]:
        """Sealed segments' summaries by base offset (see `summary.py`), cached until the file grows."""
        try:
            size = os.path.getsize(self.dir / summary.SUMMARY_NAME)
        except OSError:
            size = -1
        if self._summary is None or self._summary[0] != size:
            self._summary = (size, summary.load(self.dir) if size >= 0 else {})
        if not self.placement.known:
            return self._summary[1]
        remote = self.placement.current().segments.values()  # a remote segment's is in the manifest
        return {**self._summary[1], **{e.base: e.summary() for e in remote if e.state == "remote"}}

    def first_append_time(self, base: int) -> int | None:
        """Append time of the first frame of segment `base` (None if it has none yet)."""
        loaded = index_mod.load(self.idx_path(base))
        if loaded is not None and len(loaded[0]):
            return int(loaded[0]["append_time"][0])
        view = self.view(base, _size(self.seg_path(base)))
        header = view.header_at(0)
        return header.append_time if isinstance(header, FrameHeader) else None

    def last_entry(self, base: int) -> np.ndarray | None:
        """The index entry of a sealed segment's last frame (its index derived if needed)."""
        entries = self.sealed_entries(base)
        return entries[-1] if len(entries) else None

    # --- reading -----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The committed end of the partition now (under a shared lock for an instant).

        A trusted hint that matches the active segment's size is the fast path; otherwise (a
        writer died, a power cut, another boot) the committed end is derived from the segment
        with `segment.analyze`, read-only, and cached until the segment changes.
        """
        with self._reader_mutex:
            fd = self._open_reader_fd()
            if fd is None:  # no writer ever locked this partition: nothing committed, or a bare copy
                bases = self.segment_bases()
                return self._derived_snapshot(bases, None) if bases else Snapshot(self.number, (), 0, 0)
            with flocked(fd, fcntl.LOCK_SH):
                raw = os.pread(fd, 2 * HINT_SLOT, 0)
                hint = parse_hint(raw)
                bases = self.listed_bases()
                if not bases:
                    return Snapshot(self.number, (), 0, hint.next_offset if hint else 0)
                active = bases[-1]
                if hint is not None and hint.base == active and hint.trusted:
                    if _size(self.seg_path(active)) == hint.size:
                        return Snapshot(self.number, tuple(bases), hint.size, hint.next_offset)
                return self._derived_snapshot(bases, _hints(raw))

    def _derived_snapshot(self, bases: list[int], hints: list[Hint] | None) -> Snapshot:
        active = bases[-1]
        path = self.seg_path(active)
        size = _size(path)
        point = recovery_point(hints or [], active)
        key = (active, size, point)
        with self._cache_mutex:
            derived = self._derived
        if derived is None or derived[0] != key:
            tail = analyze(SegmentView(path, size), active, self.idx_path(active), point)
            derived = (key, tail)
            with self._cache_mutex:
                self._derived = derived
        tail = derived[1]
        return Snapshot(self.number, tuple(bases), tail.committed_size, tail.end_offset)

    def segment_size(self, snap: Snapshot, base: int) -> int:
        """Bytes of segment `base` that `snap` sees: the active segment's committed size, a sealed
        segment's file size."""
        return snap.active_size if base == snap.bases[-1] else self.sealed_size(base)

    def sealed_size(self, base: int) -> int:
        """Bytes of sealed segment `base`, where it lives (FileNotFoundError: retention deleted it)."""
        entry = self.placement.remote(base)
        if entry is None:
            try:
                return _size(self.seg_path(base))
            except FileNotFoundError:
                entry = self.placement.current().remote(base)  # moved to the remote store meanwhile?
                if entry is None:
                    raise
        return entry.bytes

    def snapshot_view(self, snap: Snapshot, base: int) -> SegmentView:
        """The (cached) mapped view of segment `base` as `snap` sees it."""
        return self.view(base, self.segment_size(snap, base))

    def view(self, base: int, size: int) -> SegmentView:
        """A (cached) mapped view of the first `size` bytes of segment `base`."""
        key = (base, size)
        with self._cache_mutex:
            v = self._views.get(key)
        if v is None:
            v = self._open_view(base, size)
            with self._cache_mutex:
                while len(self._views) >= 32:  # mapped pages count in RSS: keep few
                    self._views.pop(next(iter(self._views)))
                self._views[key] = v
        return v

    def _open_view(self, base: int, size: int) -> SegmentView:
        """Segment `base` where the tier manifest places it: the local file, or the remote object
        read through the cache. A local file gone since the snapshot may have moved: the manifest,
        read again, says where (evicted only once the remote copy is recorded)."""
        entry = self.placement.remote(base)
        if entry is None:
            try:
                return SegmentView(self.seg_path(base), size)
            except FileNotFoundError:
                entry = self.placement.current().remote(base)
                if entry is None:
                    raise
        return self._remotes().view(entry, size, next(iter(self.placement.current().following(base, 1)), None))

    def index_file(self, base: int) -> tuple[np.ndarray, bool] | None:
        """`index.load` of sealed segment `base`'s index, local or remote (None: there is none)."""
        entry = self.placement.remote(base)
        if entry is None:
            loaded = index_mod.load(self.idx_path(base))
            if loaded is not None or os.path.lexists(self.seg_path(base)):
                return loaded
            entry = self.placement.current().remote(base)
            if entry is None:
                return None
        raw = self._remotes().index_bytes(entry, self.placement.current().following(base, INDEX_AHEAD))
        return None if raw is None else index_mod.parse(raw)

    def _load_sealed_index(self, base: int, size: int) -> tuple[np.ndarray, bool]:
        """A sealed segment's index file if it is whole and matches the segment: (entries, True);
        else (empty, False)."""
        loaded = self.index_file(base)
        if loaded is not None:
            entries, damaged = loaded
            if (
                not damaged
                and index_mod.is_consistent(entries)
                and len(entries)
                and frames_end(entries) == size
                and int(entries["base_offset"][0]) == base
            ):
                return entries, True
        return index_mod.empty(), False

    def sealed_entries(self, base: int) -> np.ndarray:
        """All index entries of a sealed segment: its index file, or (missing or damaged) derived
        from the frames in memory. Reads only: a writer's `recover` rewrites such an index."""
        size = self.sealed_size(base)
        key = (base, size)
        with self._cache_mutex:
            cached = self._sealed_entries.get(key)
        if cached is not None:
            return cached
        entries, ok = self._load_sealed_index(base, size)
        if not ok:
            entries = build_index(scan(self.view(base, size), 0, expected=base))
        with self._cache_mutex:
            self._sealed_entries[key] = entries
        return entries

    def forget_index(self, base: int) -> None:
        """Drop the cached index and views of segment `base` (reloaded, or rebuilt, on next use)."""
        with self._cache_mutex:
            self._sealed_entries = {k: v for k, v in self._sealed_entries.items() if k[0] != base}
            self._views = {k: v for k, v in self._views.items() if k[0] != base}

    def active_entries(self, base: int, size: int) -> np.ndarray:
        """Index entries of the active segment's first `size` committed bytes (`tailindex.ActiveIndex`)."""
        return self.active_index.entries(base, size, lambda: self.view(base, size), self.idx_path(base))

    def entries(self, snap: Snapshot, base: int) -> np.ndarray:
        """Index entries of segment `base` as far as snapshot `snap` sees it."""
        if base == snap.bases[-1]:
            return self.active_entries(base, snap.active_size)
        return self.sealed_entries(base)

    def segment_for_offset(self, snap: Snapshot, offset: int) -> int:
        """Index into snap.bases of the segment holding `offset` (or the first after it)."""
        i = bisect.bisect_right(snap.bases, offset) - 1
        return max(i, 0)

    def offset_for_append_time(self, snap: Snapshot, t: int) -> int:
        """The first offset whose append time is >= `t` (snap.end_offset if none)."""
        bases = snap.bases
        if not bases:
            return snap.end_offset
        # Append time never decreases, so segments are ordered by it: binary search on them.
        lo, hi = 0, len(bases)
        while lo < hi:
            mid = (lo + hi) // 2
            entries = self._entries_safe(snap, bases[mid])
            if len(entries) and int(entries["append_time"][-1]) >= t:
                hi = mid
            else:
                lo = mid + 1
        if lo == len(bases):
            return snap.end_offset
        entries = self._entries_safe(snap, bases[lo])
        k = int(np.searchsorted(entries["append_time"], t, side="left"))
        if k == len(entries):
            return snap.end_offset
        return int(entries["base_offset"][k])

    def _entries_safe(self, snap: Snapshot, base: int) -> np.ndarray:
        try:
            return self.entries(snap, base)
        except FileNotFoundError:  # deleted by retention since the snapshot
            return index_mod.empty()

    def sync_through(self, offset: int) -> None:
        """Make the records below `offset` durable (fdatasync), whatever mode wrote them: before
        a consumer group records a cursor, so no power cut leaves a cursor past the data.

        Sealed segments were synced when they were sealed; the active segment is synced here,
        through a read-only descriptor (a sync changes no byte).
        """
        bases = self.segment_bases()
        if not bases or offset <= bases[-1]:
            return
        path = self.seg_path(bases[-1])
        try:
            fd = os.open(path, os.O_RDONLY | NOFOLLOW | CLOEXEC)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except FileNotFoundError:
            return
        except OSError as e:
            raise LogIOError(f"cannot sync {path}: {e.strerror or e}") from e

    # --- committing ------------------------------------------------------------------------
    def commit(self, counts: list[int], encode: Encode, settings: CommitSettings) -> Committed:
        """Commit frames of `counts` records each (bodies from `encode(first offset, append time)`)
        under the exclusive lock: the commit protocol of `commit.py`, grouped with the commits
        other threads make to this partition at the same time (`commit.GroupCommit`)."""
        return commit_mod.commit_grouped(self, counts, encode, settings)

    def sync_tail(self) -> None:
        """Make what this process committed unsynced durable, and record the recovery point."""
        self._at_close(commit_mod.sync_tail)

    def close_tail(self) -> None:
        """Release the active segment's descriptor the commit protocol keeps open."""
        self._at_close(commit_mod.close_tail)

    def _at_close(self, step: Callable[[Partition], None]) -> None:
        """Run `step`; a partition deleted or replaced meanwhile is only released: its records went with it."""
        try:
            step(self)
        except LogIOError:
            if not self.replaced():
                raise
            self.tail.close()

    # --- writing (caller holds the exclusive lock) -------------------------------------------
    def open_segment(self, base: int, *, create: bool, durable: bool) -> int:
        """Open segment `base` for writing (created if asked; a new file's directory entry is
        fsynced when `durable`). A symlink is refused."""
        path = self.seg_path(base)
        flags = os.O_RDWR | NOFOLLOW | CLOEXEC
        try:
            if create:
                try:
                    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    fd = os.open(path, flags)
                else:
                    if durable:
                        fsync_dir(self.dir)
            else:
                fd = os.open(path, flags)
        except OSError as e:
            raise LogIOError(f"cannot open segment {path}: {e.strerror or e}") from e
        return fd


def _size(path: Path) -> int:
    """A segment's size in bytes (of the link itself, for a symlink: opening it will be refused)."""
    return os.lstat(path).st_size
