"""Partitions: a directory of segments with one writer at a time.

``<topic>/<partition, 5 digits>/`` holds the segments (``<base>.seg``), their indexes (``<base>.idx``)
and ``.lock``. Writers append under an exclusive ``flock`` on ``.lock``, one commit (one or more
whole frames) at a time, so several processes can append to one partition: offsets stay dense and
frames never interleave. Readers take the lock shared for an instant to snapshot the committed end.

``.lock`` also holds a 40-byte *tail hint*, little-endian, rewritten after every commit::

    0 4 magic b"LSH1" | 4 8 active segment base | 12 8 committed size of the active segment |
    20 8 next offset | 28 8 last append time (us) | 36 4 CRC-32 of bytes 0..35

The hint is derived state (invariant 5): a writer trusts it only while the active segment's size
equals the hinted size, and otherwise re-derives the tail from the segment (recovering a torn tail a
crashed writer left behind). Append time never goes backward within a partition: a commit is
stamped ``max(clock(), last append time)``.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import logging
import os
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from . import index as index_mod
from . import summary
from .checksum import crc
from .errors import LogIOError
from .files import fsync_dir
from .frame import HEADER_SIZE, MIN_TIME, EncodedBody, FrameHeader, pack_header
from .names import LOCK_NAME, index_name, parse_segment_name, segment_name
from .segment import Recovery, SegmentView, build_index, recover_active, scan

log = logging.getLogger("logstore")

_HINT = struct.Struct("<4sqqqq")
_HINT_MAGIC = b"LSH1"
_IOV_MAX = 512


@contextmanager
def flocked(fd: int, mode: int) -> Iterator[None]:
    """Hold flock `mode` (LOCK_EX or LOCK_SH) on `fd` for the block."""
    fcntl.flock(fd, mode)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Hint:
    base: int
    size: int
    next_offset: int
    last_append_time: int


def pack_hint(h: Hint) -> bytes:
    raw = _HINT.pack(_HINT_MAGIC, h.base, h.size, h.next_offset, h.last_append_time)
    return raw + struct.pack("<I", crc(raw))


def parse_hint(data: bytes) -> Hint | None:
    if len(data) < _HINT.size + 4:
        return None
    raw = data[: _HINT.size]
    if raw[:4] != _HINT_MAGIC or struct.unpack_from("<I", data, _HINT.size)[0] != crc(raw):
        return None
    _, base, size, nxt, last = _HINT.unpack(raw)
    return Hint(base, size, nxt, last)


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
    """One partition directory: its segments, lock, tail and the frames a snapshot can see."""

    def __init__(self, directory: Path, number: int, *, readonly: bool = False) -> None:
        self.dir = directory
        self.number = number
        self.readonly = readonly
        self._lock_fd: int | None = None
        self._sealed_entries: dict[tuple[int, int], np.ndarray] = {}
        self._views: dict[tuple[int, int], SegmentView] = {}
        self._summary: tuple[int, dict] | None = None

    # --- files -------------------------------------------------------------------------------
    def seg_path(self, base: int) -> Path:
        return self.dir / segment_name(base)

    def idx_path(self, base: int) -> Path:
        return self.dir / index_name(base)

    def segment_bases(self) -> list[int]:
        """Base offsets of the segments on disk, ascending."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(b for b in map(parse_segment_name, names) if b is not None)

    def lock_fd(self) -> int:
        """The descriptor of ``.lock`` (opened once, created if missing and writable)."""
        if self._lock_fd is None:
            path = self.dir / LOCK_NAME
            try:
                if self.readonly:
                    self._lock_fd = os.open(path, os.O_RDONLY)
                else:
                    self.dir.mkdir(parents=True, exist_ok=True)
                    self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise LogIOError(f"cannot open lock file {path}: {e}") from e
        return self._lock_fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._views.clear()

    def read_hint(self) -> Hint | None:
        try:
            return parse_hint(os.pread(self.lock_fd(), 64, 0))
        except FileNotFoundError:
            return None

    def write_hint(self, hint: Hint) -> None:
        os.pwrite(self.lock_fd(), pack_hint(hint), 0)

    # --- recovery ----------------------------------------------------------------------------
    def recover(self, *, blocking: bool = False) -> Recovery | None:
        """Recover the active segment's tail if no live writer holds the partition.

        Returns what was done, or None when the partition is empty or another process holds
        the lock (a live writer has already recovered it). Idempotent.
        """
        if self.readonly or not self.dir.exists():
            return None
        fd = self.lock_fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return None
        try:
            state = self.derive_tail()
            return state[1] if state else None
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def derive_tail(self) -> tuple[Hint, Recovery] | None:
        """(Caller holds LOCK_EX.) Re-derive the tail from the active segment, recovering it."""
        bases = self.segment_bases()
        if not bases:
            return None
        base = bases[-1]
        rec, entries = recover_active(self.seg_path(base), self.idx_path(base))
        if rec.bytes_truncated or rec.problems:
            log.warning(
                "recovered %s: truncated %d bytes (%d frames) of invalid tail; %d damaged frames kept in place",
                rec.path, rec.bytes_truncated, rec.frames_dropped, len(rec.problems),
            )
        size = os.path.getsize(self.seg_path(base))
        if len(entries):
            last = entries[-1]
            hint = Hint(base, size, int(last["base_offset"]) + int(last["count"]), int(last["append_time"]))
        else:
            prev = self.last_entry(bases[-2]) if len(bases) > 1 else None
            hint = Hint(base, size, base, int(prev["append_time"]) if prev is not None else MIN_TIME)
        self.write_hint(hint)
        return hint, rec

    def summaries(self) -> dict[int, tuple[int, int, int, int, int]]:
        """Sealed segments' summaries by base offset (see `summary.py`), cached until the file grows."""
        try:
            size = os.path.getsize(self.dir / summary.SUMMARY_NAME)
        except FileNotFoundError:
            return {}
        if self._summary is None or self._summary[0] != size:
            self._summary = (size, summary.load(self.dir))
        return self._summary[1]

    def first_append_time(self, base: int) -> int | None:
        """Append time of the first frame of segment `base` (None if it has none yet)."""
        try:
            with open(self.idx_path(base), "rb") as f:
                raw = f.read(index_mod.ENTRY_SIZE)
        except FileNotFoundError:
            raw = b""
        if len(raw) == index_mod.ENTRY_SIZE:
            e = np.frombuffer(raw, dtype=index_mod.ENTRY_DTYPE)
            if crc(raw[:48]) == int(e["crc"][0]):
                return int(e["append_time"][0])
        view = self.view(base, os.path.getsize(self.seg_path(base)))
        header = view.header_at(0)
        return header.append_time if isinstance(header, FrameHeader) else None

    def last_entry(self, base: int) -> np.ndarray | None:
        """The index entry of a sealed segment's last frame (rebuilding its index if needed)."""
        entries = self.sealed_entries(base)
        return entries[-1] if len(entries) else None

    # --- reading -----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The committed end of the partition now (under a shared lock for an instant)."""
        if not self.dir.exists():
            return Snapshot(self.number, (), 0, 0)
        fd = self.lock_fd()
        with flocked(fd, fcntl.LOCK_SH):
            hint = self.read_hint()
            bases = self.segment_bases()
            if not bases:
                return Snapshot(self.number, (), 0, hint.next_offset if hint else 0)
            active = bases[-1]
            if hint is not None and hint.base == active:
                size = min(hint.size, os.path.getsize(self.seg_path(active)))
                if size == hint.size:
                    return Snapshot(self.number, tuple(bases), size, hint.next_offset)
        # No usable hint (a writer died before writing it): derive the end from the segment itself.
        entries = self.active_entries(active, os.path.getsize(self.seg_path(active)))
        if len(entries):
            end = int(entries[-1]["base_offset"]) + int(entries[-1]["count"])
            size = int(entries[-1]["position"]) + HEADER_SIZE + int(entries[-1]["body_len"])
        else:
            end, size = active, 0
        return Snapshot(self.number, tuple(bases), size, end)

    def segment_size(self, snap: Snapshot, base: int) -> int:
        """Bytes of segment `base` that `snap` sees: the active segment's committed size, a sealed
        segment's file size."""
        return snap.active_size if base == snap.bases[-1] else os.path.getsize(self.seg_path(base))

    def snapshot_view(self, snap: Snapshot, base: int) -> SegmentView:
        """The (cached) mapped view of segment `base` as `snap` sees it."""
        return self.view(base, self.segment_size(snap, base))

    def view(self, base: int, size: int) -> SegmentView:
        """A (cached) mapped view of the first `size` bytes of segment `base`."""
        key = (base, size)
        v = self._views.get(key)
        if v is None:
            v = SegmentView(self.seg_path(base), size)
            if len(self._views) >= 32:  # mapped pages count in RSS: keep few
                self._views.pop(next(iter(self._views)))
            self._views[key] = v
        return v

    def sealed_entries(self, base: int) -> np.ndarray:
        """All index entries of a sealed segment; the index is rebuilt if missing or damaged."""
        path = self.seg_path(base)
        size = os.path.getsize(path)
        key = (base, size)
        cached = self._sealed_entries.get(key)
        if cached is not None:
            return cached
        loaded = index_mod.load(self.idx_path(base))
        entries = None
        if loaded is not None:
            entries, damaged = loaded
            if damaged or not index_mod.is_consistent(entries) or _frames_end(entries) != size:
                entries = None
        if entries is None:
            view = self.view(base, size)
            result = scan(view, 0)
            entries = build_index(result)
            if not self.readonly and not result.problems:
                try:
                    index_mod.write(self.idx_path(base), entries)
                except OSError:
                    pass
        self._sealed_entries[key] = entries
        return entries

    def forget_index(self, base: int) -> None:
        """Drop the cached index of segment `base` (it will be reloaded, or rebuilt, on next use)."""
        self._sealed_entries = {k: v for k, v in self._sealed_entries.items() if k[0] != base}

    def active_entries(self, base: int, size: int) -> np.ndarray:
        """Index entries of the active segment's first `size` bytes: the index, then header scan."""
        view = self.view(base, size)
        loaded = index_mod.load(self.idx_path(base))
        entries = index_mod.empty()
        start = 0
        if loaded is not None:
            entries, _ = loaded
            if not index_mod.is_consistent(entries):
                entries = index_mod.empty()
            entries = entries[_frames_end_each(entries) <= size]
            if len(entries):
                last = entries[-1]
                header = view.header_at(int(last["position"]))
                if isinstance(header, FrameHeader) and header.base_offset == int(last["base_offset"]):
                    start = _frames_end(entries)
                else:
                    entries, start = index_mod.empty(), 0
        if start < size:
            result = scan(view, start, verify_bodies=False)
            more = build_index(result)
            if len(more):
                entries = np.concatenate([entries, more]) if len(entries) else more
        return entries

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

    # --- writing (caller holds LOCK_EX) ------------------------------------------------------
    def open_segment(self, base: int, *, create: bool, durable: bool) -> int:
        path = self.seg_path(base)
        existed = path.exists()
        try:
            fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except OSError as e:
            raise LogIOError(f"cannot open segment {path}: {e}") from e
        if create and not existed and durable:
            fsync_dir(self.dir)
        return fd


def write_frames(fd: int, position: int, chunks: Sequence[bytes | object]) -> int:
    """Write `chunks` contiguously at `position`; returns bytes written. Raises LogIOError."""
    total = 0
    pos = position
    i = 0
    chunks = list(chunks)
    while i < len(chunks):
        group = chunks[i : i + _IOV_MAX]
        want = sum(len(memoryview(c)) for c in group)
        done = os.pwritev(fd, group, pos)
        if done < want:  # short write: finish this group piece by piece
            flat = b"".join(bytes(memoryview(c)) for c in group)[done:]
            while flat:
                n = os.pwrite(fd, flat, pos + done)
                if n <= 0:
                    raise OSError(errno.EIO, "short write")
                done += n
                flat = flat[n:]
        pos += done
        total += done
        i += _IOV_MAX
    return total


def _frames_end_each(entries: np.ndarray) -> np.ndarray:
    return entries["position"] + HEADER_SIZE + entries["body_len"].astype(np.int64)


def _frames_end(entries: np.ndarray) -> int:
    return int(_frames_end_each(entries)[-1]) if len(entries) else 0


def build_header(body: EncodedBody, base_offset: int, append_time: int) -> bytes:
    """The header of `body` placed at `base_offset` with `append_time`."""
    return pack_header(
        body_len=body.size,
        body_crc=body.crc,
        base_offset=base_offset,
        count=body.count,
        schema_version=body.schema_version,
        append_time=append_time,
        min_event_time=body.min_event_time,
        max_event_time=body.max_event_time,
        flags=body.flags,
    )

