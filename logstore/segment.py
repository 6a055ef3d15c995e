"""Segments: files of consecutive frames holding a contiguous offset range of one partition.

A segment file is nothing but frames back to back (see `frame.py` for a frame's layout); it is
named by the offset of its first record (`names.segment_name`). Only the newest segment of a
partition (the active one) is appended to; once a newer one exists it is sealed and its bytes
never change again, until retention deletes the whole file.

This module reads segments: it walks frames, verifies them, and recovers an active segment's torn
tail. Recovery truncates only a suffix of the file in which no valid frame follows the first bad
one (a torn or unwritten tail); damage followed by valid frames is reported, never truncated, so
acknowledged frames are never destroyed by recovery (invariants 1 and 4).
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
from .frame import HEADER_SIZE, MAGIC, FrameHeader, parse_header


class SegmentView:
    """A read-only, memory-mapped view of the first `size` bytes of a segment file.

    Buffers sliced from it are zero-copy and keep the mapping alive.
    """

    __slots__ = ("path", "size", "buffer", "_view")

    def __init__(self, path: Path, size: int | None = None) -> None:
        self.path = path
        try:
            with open(path, "rb") as f:
                actual = os.fstat(f.fileno()).st_size
                self.size = actual if size is None else min(size, actual)
                if self.size == 0:
                    self.buffer = pa.py_buffer(b"")
                else:
                    mm = mmap.mmap(f.fileno(), self.size, access=mmap.ACCESS_READ)
                    self.buffer = pa.py_buffer(mm)
        except FileNotFoundError:
            raise
        except OSError as e:
            raise LogIOError(f"cannot map segment {path}: {e}") from e
        self._view = memoryview(self.buffer)

    def header_at(self, position: int) -> FrameHeader | str:
        """The verified header at `position`, or why there is none."""
        if position + HEADER_SIZE > self.size:
            return f"header truncated ({self.size - position} of {HEADER_SIZE} bytes before end of file)"
        return parse_header(self._view[position : position + HEADER_SIZE])

    def check_frame(self, position: int, header: FrameHeader) -> str | None:
        """None if the whole frame at `position` is present and its body checksum matches."""
        end = position + header.size
        if end > self.size:
            return f"frame truncated: needs {header.size} bytes, {self.size - position} present"
        found = crc(self._view[position + HEADER_SIZE : end])
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
            chunk = bytes(self._view[pos:chunk_end])
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


@dataclass
class ScanResult:
    """What a walk over a segment found."""

    frames: list[tuple[int, FrameHeader]] = field(default_factory=list)
    problems: list[FrameProblem] = field(default_factory=list)
    tail_start: int | None = None  # start of an invalid tail (no valid frame after it), if any


def scan(view: SegmentView, start: int = 0, *, verify_bodies: bool = True) -> ScanResult:
    """Walk the frames of `view` from byte `start` to its end, verifying each.

    A bad frame followed (possibly after resynchronising on the next valid header) by valid frames
    is recorded as a problem and skipped; a bad frame after which nothing valid follows starts the
    invalid tail (`tail_start`).
    """
    result = ScanResult()
    pos = start
    while pos < view.size:
        header = view.header_at(pos)
        if isinstance(header, FrameHeader):
            problem = view.check_frame(pos, header) if verify_bodies else (
                None if pos + header.size <= view.size else "frame truncated"
            )
            if problem is None:
                result.frames.append((pos, header))
                pos += header.size
                continue
            nxt = pos + header.size if pos + header.size <= view.size else None
            if nxt is not None and nxt < view.size and _valid_after(view, nxt):
                result.problems.append(
                    FrameProblem(str(view.path), pos, problem, header.base_offset, header.next_offset)
                )
                pos = nxt
                continue
            result.problems.append(FrameProblem(str(view.path), pos, problem, header.base_offset, header.next_offset))
            result.tail_start = pos
            return result
        nxt = view.resync(pos + 1)
        if nxt is not None and _valid_after(view, nxt):
            result.problems.append(FrameProblem(str(view.path), pos, header))
            pos = nxt
            continue
        result.problems.append(FrameProblem(str(view.path), pos, header))
        result.tail_start = pos
        return result
    return result


def _valid_after(view: SegmentView, position: int) -> bool:
    """True if some complete, checksum-valid frame starts at or after `position`."""
    pos: int | None = position
    while pos is not None and pos < view.size:
        header = view.header_at(pos)
        if isinstance(header, FrameHeader) and view.check_frame(pos, header) is None:
            return True
        pos = view.resync(pos + 1)
    return False


def build_index(scan_result: ScanResult) -> np.ndarray:
    """Index entries for the valid frames found by a scan."""
    if not scan_result.frames:
        return index_mod.empty()
    return np.concatenate([index_mod.entry(h, p) for p, h in scan_result.frames])


@dataclass
class Recovery:
    """What recovering one active segment did."""

    path: str
    bytes_truncated: int = 0
    frames_dropped: int = 0
    index_rebuilt: bool = False
    problems: list[FrameProblem] = field(default_factory=list)


def validated_index(view: SegmentView, idx_path: Path) -> tuple[np.ndarray, int, bool]:
    """Load the index of `view` and keep its trustworthy prefix.

    Returns (entries, position to scan from, whether the index file must be rewritten). The last
    kept entry's frame is fully verified; entries that point past the data or at a different frame
    are dropped (an index written before a crash lost the data it described).
    """
    loaded = index_mod.load(idx_path)
    if loaded is None:
        return index_mod.empty(), 0, True
    entries, rewrite = loaded
    if not index_mod.is_consistent(entries):
        return index_mod.empty(), 0, True
    keep = len(entries)
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
    if keep == 0:
        return index_mod.empty(), 0, True
    last = entries[keep - 1]
    return entries[:keep], int(last["position"]) + HEADER_SIZE + int(last["body_len"]), rewrite


def recover_active(seg_path: Path, idx_path: Path) -> tuple[Recovery, np.ndarray]:
    """Recover the active segment: truncate an invalid tail, repair the index.

    Idempotent; returns what it did and the segment's complete index.
    """
    view = SegmentView(seg_path)
    entries, start, rewrite = validated_index(view, idx_path)
    result = scan(view, start)
    rec = Recovery(str(seg_path), problems=list(result.problems))
    if result.frames or rewrite:
        entries = np.concatenate([entries, build_index(result)]) if len(entries) else build_index(result)
        rec.index_rebuilt = rewrite
    if result.tail_start is not None:
        rec.bytes_truncated = view.size - result.tail_start
        rec.frames_dropped = _count_tail_frames(view, result.tail_start)
        del view
        try:
            with open(seg_path, "r+b") as f:
                f.truncate(result.tail_start)
                os.fsync(f.fileno())
        except OSError as e:
            raise LogIOError(f"cannot truncate the torn tail of {seg_path}: {e}") from e
        rec.problems = [p for p in rec.problems if p.position < result.tail_start]
    if rewrite or result.frames or result.tail_start is not None:
        index_mod.write(idx_path, entries)
    return rec, entries


def _count_tail_frames(view: SegmentView, start: int) -> int:
    """How many (partial) frames an invalid tail held: at least one."""
    count, pos = 0, start
    while pos is not None and pos < view.size:
        count += 1
        header = view.header_at(pos)
        if isinstance(header, FrameHeader):
            pos = pos + header.size
        else:
            pos = view.resync(pos + 1)
    return max(count, 1)
