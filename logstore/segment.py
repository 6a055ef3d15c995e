"""Segments: files of consecutive frames holding a contiguous offset range of one partition.

A segment file is nothing but frames back to back (see `frame.py` for a frame's layout); it is
named by the offset of its first record (`names.segment_name`). Only the newest segment of a
partition (the active one) is appended to; once a newer one exists it is sealed and its bytes
never change again, until retention deletes the whole file.

This module reads segments: it walks frames (`walk`, linear in the file's size however many frames
are damaged), verifies them, and tells the committed part of an active segment from a torn tail
(`analyze`, read-only: readers derive the committed end with it too). `recover_active` then
truncates the torn tail; only a writer holding the partition's lock calls it.

What is torn, and what is damage (docs/architecture.md, invariants 1 and 4). A writer appends
whole commits one after the other (every frame of a commit but its last is flagged *continued*).
The *recovery point* R of an active segment is the committed size named by a trusted tail hint
(`partition.py`: synced, or written in this boot): every byte before R was committed and is on
disk as it was written, so a frame there that fails its checksum is damage, kept and reported, and
never truncated. Past R nothing is known to have survived a power cut, so those bytes are checked
commit by commit (every frame whole and valid, offsets dense, the last frame closing the commit),
as Kafka recovers from its recovery point: the committed end is the end of the last good commit,
and what lies after it (a frame cut short, zeros, a commit whose last frame never made it, or one a
power cut kept only part of) is the torn tail of a commit never acknowledged under its mode.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import index as index_mod
from .checksum import crc
from .errors import CorruptFrameError, LogIOError
from .files import CLOEXEC, NOFOLLOW
from .frame import HEADER_SIZE, MAGIC, FrameHeader, parse_header


class SegmentView:
    """A read-only, memory-mapped view of the first `size` bytes of a segment file.

    Buffers sliced from it are zero-copy and keep the mapping alive.
    """

    __slots__ = ("path", "size", "buffer", "_view")
    path: Path | str  # a local file, or (`remote.RemoteSegmentView`) the URI of a remote object

    def __init__(self, path: Path, size: int | None = None) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY | NOFOLLOW | CLOEXEC)  # a symlinked segment is refused
        except FileNotFoundError:
            raise
        except OSError as e:
            raise LogIOError(f"cannot open segment {path}: {e.strerror or e}") from e
        try:
            actual = os.fstat(fd).st_size
            self.size = actual if size is None else min(size, actual)
            if self.size == 0:
                self.buffer = pa.py_buffer(b"")
            else:
                self.buffer = pa.py_buffer(mmap.mmap(fd, self.size, access=mmap.ACCESS_READ))
        except (OSError, ValueError) as e:
            raise LogIOError(f"cannot map segment {path}: {e}") from e
        finally:
            os.close(fd)
        self._view = memoryview(self.buffer)

    def _bytes(self, start: int, stop: int) -> memoryview:
        """Bytes [start, stop) of the segment (a remote view fetches them)."""
        return self._view[start:stop]

    def header_at(self, position: int) -> FrameHeader | str:
        """The verified header at `position`, or why there is none."""
        if position + HEADER_SIZE > self.size:
            return f"header truncated ({self.size - position} of {HEADER_SIZE} bytes before end of file)"
        return parse_header(self._bytes(position, position + HEADER_SIZE))

    def check_frame(self, position: int, header: FrameHeader) -> str | None:
        """None if the whole frame at `position` is present and its body checksum matches."""
        end = position + header.size
        if end > self.size:
            return f"frame truncated: needs {header.size} bytes, {self.size - position} present"
        found = crc(self._bytes(position + HEADER_SIZE, end))
        if found != header.body_crc:
            return f"body checksum mismatch: expected crc 0x{header.body_crc:08x}, found 0x{found:08x}"
        return None

    def body(self, position: int, header: FrameHeader) -> pa.Buffer:
        """The frame's body bytes, verified; raises CorruptFrameError if they fail the checksum."""
        problem = self.check_frame(position, header)
        if problem is not None:
            raise CorruptFrameError(str(self.path), position, problem)
        return self.buffer.slice(position + HEADER_SIZE, header.body_len)

    def resync(self, start: int) -> int | None:
        """Position of the next byte >= `start` where a valid header begins, or None."""
        pos = start
        while pos + HEADER_SIZE <= self.size:
            chunk_end = min(self.size, pos + (1 << 20))
            chunk = bytes(self._bytes(pos, chunk_end))
            rel = chunk.find(MAGIC)
            while rel >= 0:
                if isinstance(self.header_at(pos + rel), FrameHeader):
                    return pos + rel
                rel = chunk.find(MAGIC, rel + 1)
            if chunk_end == self.size:
                return None
            pos = chunk_end - (len(MAGIC) - 1)  # a magic may straddle two chunks
        return None


@dataclass
class FrameProblem:
    """A damaged frame (or index): where it is and what is wrong."""

    path: str
    position: int
    reason: str
    base_offset: int | None = None
    end_offset: int | None = None

    def __str__(self) -> str:
        return f"{self.path} @ byte {self.position}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Item:
    """One step of a walk: a valid frame (`problem` None) or a bad region up to `end`."""

    position: int
    end: int
    header: FrameHeader | None  # the frame's verified header (a bad body may still have one)
    problem: str | None = None

    @property
    def valid(self) -> bool:
        return self.problem is None


def walk(
    view: SegmentView,
    start: int = 0,
    stop: int | None = None,
    *,
    verify_bodies: bool = True,
    expected: int | None = None,
) -> list[Item]:
    """The frames and bad regions of `view` from byte `start` to `stop` (default: its end).

    Linear in the bytes walked: after a bad frame the walk goes on at the end its (checksummed)
    header names if a valid header is there, else at the next valid header found by scanning for
    the magic (never past `stop`), so damage costs one pass however many frames it hits. A valid
    frame whose base offset does not follow the valid frame just before it is a bad one.
    """
    stop = view.size if stop is None else min(stop, view.size)
    items: list[Item] = []
    pos = start
    while pos < stop:
        header = view.header_at(pos)
        if isinstance(header, FrameHeader):
            end = pos + header.size
            if end > view.size:
                problem: str | None = f"frame truncated: needs {header.size} bytes, {view.size - pos} present"
            elif verify_bodies:
                problem = view.check_frame(pos, header)
            else:
                problem = None
            if problem is None and expected is not None and header.base_offset != expected:
                problem = f"offsets not dense: expected base offset {expected}, found {header.base_offset}"
            if problem is None:
                items.append(Item(pos, end, header))
                expected = header.next_offset
                pos = end
                continue
            if end <= stop and (end == stop or isinstance(view.header_at(end), FrameHeader)):
                items.append(Item(pos, end, header, problem))
                expected = None
                pos = end
                continue
            bad_header: FrameHeader | None = header
        else:
            problem, bad_header = header, None
        nxt = view.resync(pos + 1)
        end = stop if nxt is None or nxt > stop else nxt
        items.append(Item(pos, end, bad_header, problem))
        expected = None
        pos = end
    return items


@dataclass
class ScanResult:
    """What a walk over a segment found: valid frames and damaged places."""

    frames: list[tuple[int, FrameHeader]] = field(default_factory=list)
    problems: list[FrameProblem] = field(default_factory=list)


def scan(
    view: SegmentView,
    start: int = 0,
    stop: int | None = None,
    *,
    verify_bodies: bool = True,
    expected: int | None = None,
) -> ScanResult:
    """The valid frames of `view` in [start, stop) and a problem for each bad region."""
    result = ScanResult()
    for it in walk(view, start, stop, verify_bodies=verify_bodies, expected=expected):
        if it.valid:
            result.frames.append((it.position, it.header))  # type: ignore[arg-type]
        else:
            h = it.header
            result.problems.append(
                FrameProblem(
                    str(view.path),
                    it.position,
                    it.problem or "",
                    h.base_offset if h else None,
                    h.next_offset if h else None,
                )
            )
    return result


def build_index(scan_result: ScanResult) -> np.ndarray:
    """Index entries for the valid frames found by a scan."""
    return index_mod.entries_of(scan_result.frames)


def index_prefix(view: SegmentView, idx_path: Path) -> tuple[np.ndarray, bool]:
    """The trustworthy prefix of a segment's index, and whether the index file needs rewriting.

    Entries must be ordered and contiguous and lie within the file; the last one kept must point
    at a whole, valid frame with its offset and count (an index written before a crash may
    describe data the crash lost). Reads only.
    """
    loaded = index_mod.load(idx_path)
    if loaded is None:
        return index_mod.empty(), True
    entries, rewrite = loaded
    if not index_mod.is_consistent(entries):
        return index_mod.empty(), True
    keep = int(np.searchsorted(_ends(entries), view.size, side="right"))
    rewrite = rewrite or keep < len(entries)
    while keep > 0:
        e = entries[keep - 1]
        pos = int(e["position"])
        header = view.header_at(pos)
        if (
            isinstance(header, FrameHeader)
            and header.base_offset == int(e["base_offset"])
            and header.count == int(e["count"])
            and view.check_frame(pos, header) is None
        ):
            break
        keep -= 1
        rewrite = True
    return entries[:keep], rewrite


@dataclass
class Tail:
    """The committed part of an active segment (see the module docstring).

    `committed_size` bytes are committed; `entries` index its valid frames (damaged ones are
    left out, so readers see their records as a gap); `end_offset` is the offset after its last
    record; `problems` are damaged places inside it; `torn_bytes` lie past it.
    """

    committed_size: int
    end_offset: int
    entries: np.ndarray
    problems: list[FrameProblem]
    torn_bytes: int
    last_append_time: int | None
    rewrite_index: bool = False


def analyze(view: SegmentView, base: int, idx_path: Path, point: tuple[int, int, bool] | None = None) -> Tail:
    """Tell the committed part of active segment `view` (base offset `base`) from its torn tail.

    `point` is the recovery point (committed size, next offset, exact) of a trusted hint, or None;
    an exact one says nothing past it is committed (a failed commit the writer could not take back).
    Reads only. Costs a header walk up to the recovery point (none where the index covers it)
    and a verified walk after it.
    """
    prefix, rewrite = index_prefix(view, idx_path)
    r, r_next, exact = point if point is not None and point[0] >= 0 else (0, base, False)
    # a trusted hint naming more bytes than the file has: committed bytes were lost (the file was
    # cut short by hand or by a failing disk); every byte left is committed, the cut frame is lost
    shortened = r > view.size
    if shortened:
        r, exact = view.size, True
    ends = _ends(prefix)
    if len(prefix) and int(ends[-1]) > r:
        keep = int(np.searchsorted(ends, r, side="right"))
        prefix, ends, rewrite = prefix[:keep], ends[:keep], True
    pend = int(ends[-1]) if len(prefix) else 0
    expected = int(prefix["base_offset"][-1] + prefix["count"][-1]) if len(prefix) else base
    trusted = walk(view, pend, r, verify_bodies=False, expected=expected) if r > pend else []
    if r > 0 and not shortened and not _is_boundary(view, r, pend, trusted):
        return analyze(view, base, idx_path, None)  # a hint that names no frame boundary is not trusted
    lost: list[FrameProblem] = []
    if shortened:
        cut = trusted[-1] if trusted and not trusted[-1].valid and trusted[-1].end == r else None
        if cut is not None and (
            cut.header is None
            and r - cut.position < HEADER_SIZE
            or cut.header is not None
            and cut.position + cut.header.size > r
        ):
            trusted.pop()
            r = cut.position
        lost.append(
            FrameProblem(
                str(view.path),
                r,
                f"segment is shorter than its committed size "
                f"({point[0]} bytes, next offset {point[1]}): the records after byte {r} "  # type: ignore[index]
                "are lost",
            )
        )
    verified = [] if exact else walk(view, r, expected=r_next if r > 0 else base)
    accepted: list[Item] = []
    commit: list[Item] = []
    for it in verified:
        if not it.valid:
            break
        commit.append(it)
        if not it.header.continued:  # type: ignore[union-attr]
            accepted += commit
            commit = []
    committed = accepted[-1].end if accepted else r
    good = [it for it in trusted if it.valid] + accepted
    more = (
        np.concatenate([index_mod.entry(it.header, it.position) for it in good if it.header is not None])
        if good
        else index_mod.empty()
    )
    entries = np.concatenate([prefix, more]) if len(prefix) and len(more) else (more if len(more) else prefix)
    path = str(view.path)
    problems = [
        FrameProblem(
            path,
            it.position,
            it.problem or "",
            it.header.base_offset if it.header else None,
            it.header.next_offset if it.header else None,
        )
        for it in trusted
        if not it.valid
    ]
    problems += lost
    if accepted:
        end_offset = accepted[-1].header.next_offset  # type: ignore[union-attr]
    elif r > 0 and not shortened:
        end_offset = r_next
    else:
        end_offset = int(entries["base_offset"][-1] + entries["count"][-1]) if len(entries) else base
    last_time = int(entries["append_time"][-1]) if len(entries) else None
    return Tail(committed, end_offset, entries, problems, view.size - committed, last_time, rewrite)


def _ends(entries: np.ndarray) -> np.ndarray:
    return entries["position"] + HEADER_SIZE + entries["body_len"].astype(np.int64)


def _is_boundary(view: SegmentView, position: int, pend: int, trusted: list[Item]) -> bool:
    """True if a frame ends, or a valid header begins, at byte `position`."""
    if position in (pend, view.size) or isinstance(view.header_at(position), FrameHeader):
        return True
    return bool(trusted) and trusted[-1].valid and trusted[-1].end == position


@dataclass
class Recovery:
    """What recovering one active segment did."""

    path: str
    bytes_truncated: int = 0
    frames_dropped: int = 0
    index_rebuilt: bool = False
    problems: list[FrameProblem] = field(default_factory=list)


def recover_active(
    seg_path: Path, idx_path: Path, base: int, point: tuple[int, int, bool] | None = None
) -> tuple[Recovery, Tail]:
    """Recover the active segment: truncate its torn tail, repair its index.

    Only for a writer holding the partition's lock. Idempotent; never truncates below the
    committed end (`analyze`), never follows a symlink.
    """
    view = SegmentView(seg_path)
    tail = analyze(view, base, idx_path, point)
    rec = Recovery(str(seg_path), problems=list(tail.problems))
    if tail.torn_bytes:
        rec.bytes_truncated = tail.torn_bytes
        rec.frames_dropped = max(1, sum(1 for _ in walk(view, tail.committed_size, verify_bodies=False)))
        del view
        try:
            fd = os.open(seg_path, os.O_RDWR | NOFOLLOW | CLOEXEC)
            try:
                os.ftruncate(fd, tail.committed_size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise LogIOError(f"cannot truncate the torn tail of {seg_path}: {e.strerror or e}") from e
    if tail.rewrite_index or tail.torn_bytes or len(tail.entries) != _index_len(idx_path):
        index_mod.write(idx_path, tail.entries)
        rec.index_rebuilt = True
    return rec, tail


def _index_len(idx_path: Path) -> int:
    loaded = index_mod.load(idx_path)
    return -1 if loaded is None or loaded[1] else len(loaded[0])
