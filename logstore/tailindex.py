"""The active segment's index, between commits and reads.

Writers append index entries in batches (`flush_index`: every `INDEX_BATCH` frames, or once the
oldest waiting entry is `INDEX_LAG_S` old, and always before a roll and at close), never one
per small commit, and only ever in file order: an append first looks where the index ends and
indexes the frames between there and its own from their checksummed headers (another writer's,
or those of a writer that died with entries unwritten). Safe because the index is derived
(docs/architecture.md, invariant 5): readers scan the headers of an active segment's frames past
its index, recovery rebuilds a bad one, and a sealed segment's index is made whole at its roll.

Readers keep what they read of an active segment's entries and only extend it (`Entries`), so a
tailer's cost per commit is O(new frames).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import index as index_mod
from .files import CLOEXEC, NOFOLLOW, write_all
from .frame import HEADER_SIZE, FrameHeader
from .segment import SegmentView, build_index, scan

if TYPE_CHECKING:
    from .partition import Partition
    from .tailstate import TailState

log = logging.getLogger("logstore")
INDEX_BATCH = 32  # frames whose index entries are appended together
INDEX_LAG_S = 1.0  # ... or once the oldest waiting entry is this old


def flush_index(part: Partition, tail: TailState) -> None:
    """(Under the lock, after the commit point.) Append the pending index entries of the active
    segment, in file order: first the entries of any frames between the index's end and the first
    pending one, from their headers. A failure is logged: readers find the frames by their headers."""
    pending, tail.index_pending = tail.index_pending, []
    if not pending or not tail.index_ok or tail.hint is None:
        return
    base = tail.hint.base
    path = part.idx_path(base)
    entries = np.frombuffer(b"".join(pending), dtype=index_mod.ENTRY_DTYPE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
        try:
            size = os.fstat(fd).st_size
            end = 0
            if size % index_mod.ENTRY_SIZE:
                raise OSError(errno.EINVAL, "a partial entry at its end")
            if size:
                raw = os.pread(fd, index_mod.ENTRY_SIZE, size - index_mod.ENTRY_SIZE)
                last = np.frombuffer(raw, index_mod.ENTRY_DTYPE)
                if not index_mod.valid(last):
                    raise OSError(errno.EINVAL, "its last entry fails its checksum")
                end = frames_end(last)
            first = int(entries["position"][0])
            if end > first:  # already indexed (e.g. by recovery): keep only what follows
                entries = entries[entries["position"] >= end]
                if len(entries) and int(entries["position"][0]) != end:
                    raise OSError(errno.EINVAL, "it does not end at a frame boundary")
            elif end < first:  # frames nobody indexed yet: from their headers
                found = scan(part.view(base, first), end, verify_bodies=False)
                last_end = found.frames[-1][0] + found.frames[-1][1].size if found.frames else end
                if found.problems or last_end != first:
                    raise OSError(errno.EINVAL, f"the frames before position {first} do not scan")
                entries = np.concatenate([build_index(found), entries])
            if len(entries):
                write_all(fd, entries.tobytes())
        finally:
            os.close(fd)
    except OSError as e:
        tail.index_ok = False
        log.warning("index of %s not updated (%s): frames after it are found by their headers", part.seg_path(base), e)


REINDEX_BYTES = 1 << 20  # an active segment grown by more than this is re-read through its index


class Entries:
    """A growing array of one active segment's index entries (capacity doubles: appending a few
    entries costs O(few), amortized), contiguous from position 0 up to `end`."""

    def __init__(self, base: int, entries: np.ndarray) -> None:
        self.base = base
        self._buf = entries.copy() if len(entries) else index_mod.empty()
        self.n = len(entries)
        self.end = frames_end(entries)

    def extend(self, more: np.ndarray) -> None:
        if not len(more):
            return
        need = self.n + len(more)
        if need > len(self._buf):
            grown = np.zeros(max(need, 2 * len(self._buf), 64), dtype=self._buf.dtype)
            grown[: self.n] = self._buf[: self.n]
            self._buf = grown
        self._buf[self.n : need] = more
        self.n = need
        self.end = frames_end(more)

    def covers(self, size: int) -> bool:
        """True if `size` is a frame boundary of these entries (so their prefix is its entries)."""
        return size == 0 or len(self.prefix(size)) > 0 and frames_end(self.prefix(size)) == size

    def prefix(self, size: int) -> np.ndarray:
        """The entries of frames ending at or before byte `size` (a read-only view)."""
        entries = self._buf[: self.n]
        if size < self.end:
            k = int(np.searchsorted(entries["position"], size, side="left"))
            if k and frames_end(entries[k - 1 : k]) > size:
                k -= 1
            entries = entries[:k]
        view = entries.view()
        view.flags.writeable = False
        return view


def frames_end(entries: np.ndarray) -> int:
    """The byte just past the last frame `entries` describe (0 for none)."""
    if not len(entries):
        return 0
    last = entries[-1]
    return int(last["position"]) + HEADER_SIZE + int(last["body_len"])


class ActiveIndex:
    """A reader's entries of a partition's active segment, read once, then only extended: a
    tailer's cost per commit is O(new frames), not O(segment). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # the index file as last read: (base, (inode, bytes read, entries), entries checked)
        self._file: tuple[int, tuple[int, int, np.ndarray], int] | None = None
        self._acc: Entries | None = None

    def entries(self, base: int, size: int, view: Callable[[], SegmentView], idx_path: Path) -> np.ndarray:
        """Index entries of active segment `base`'s first `size` committed bytes (`view()` maps them).

        The first read takes the index, then a header scan of the frames it does not cover yet;
        later reads of a larger size scan the new frames' (checksummed) headers, or take the index
        again when many bytes were added. A smaller `size` (an older snapshot) is a prefix.
        """
        with self._lock:
            acc = self._acc
        if acc is None or acc.base != base or acc.end > size and not acc.covers(size):
            acc = Entries(base, self._fresh(base, size, view, idx_path))
        elif acc.end < size:
            if size - acc.end > REINDEX_BYTES:
                acc = Entries(base, self._fresh(base, size, view, idx_path))
            else:
                found = scan(view(), acc.end, verify_bodies=False)
                acc.extend(build_index(found))
        with self._lock:
            self._acc = acc
        return acc.prefix(size)

    def _fresh(self, base: int, size: int, view_of: Callable[[], SegmentView], idx_path: Path) -> np.ndarray:
        """Entries of the first `size` bytes: the index, then a header scan of the frames it does
        not cover yet."""
        view = view_of()
        entries = index_mod.empty()
        start = 0
        with self._lock:
            cached = self._file if self._file and self._file[0] == base else None
        loaded = index_mod.load_more(idx_path, cached[1] if cached else None)
        if loaded is not None:
            known, damaged, extended = loaded
            checked = cached[2] if cached and extended else 0
            entries = known[2]
            ok = index_mod.consistent_from(entries, checked)
            with self._lock:  # an index read once is not read again: tailing stays O(new frames)
                self._file = (base, known, len(entries) if ok and not damaged else 0)
            if not ok:
                entries = index_mod.empty()
            elif len(entries) and frames_end(entries) > size:
                entries = entries[index_mod.frame_ends(entries) <= size]
            if len(entries):
                last = entries[-1]
                header = view.header_at(int(last["position"]))
                if isinstance(header, FrameHeader) and header.base_offset == int(last["base_offset"]):
                    start = frames_end(entries)
                else:
                    entries, start = index_mod.empty(), 0
        if start < size:
            more = build_index(scan(view, start, verify_bodies=False))
            if len(more):
                entries = np.concatenate([entries, more]) if len(entries) else more
        return entries
