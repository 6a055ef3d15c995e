"""The frame index of one segment: ``<base offset, 20 digits>.idx`` beside its ``.seg``.

One fixed-size entry per frame, in file order, little-endian (56 bytes)::

    offset size field
     0      8   base offset of the frame (i64)
     8      8   byte position of the frame in the segment (i64)
    16      4   record count (u32)
    20      4   body length (u32)
    24      8   append time, microseconds UTC (i64)
    32      8   min event time (i64)
    40      8   max event time (i64)
    48      4   CRC-32C of bytes 0..47 of the entry
    52      4   reserved, zero

It maps offsets and both clocks to byte positions so seeks never scan a segment. The index is
derived data (invariant 5): it is written *after* its frame (in batches, in file order: see
`commit.py`, step 5), is never fsynced, and is checked
against the segment whenever it is used: an entry that points past the end of the segment or at
bytes that are not the frame it names makes the index be rebuilt from the frames themselves. A
reader may find the newest frames of an active segment not yet indexed; it scans their headers.
Entries carry their own checksum, so a damaged index is noticed on load (and rebuilt), never
trusted to steer a seek.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from . import files
from .checksum import crc
from .frame import HEADER_SIZE, FrameHeader

ENTRY_DTYPE = np.dtype(
    [
        ("base_offset", "<i8"),
        ("position", "<i8"),
        ("count", "<u4"),
        ("body_len", "<u4"),
        ("append_time", "<i8"),
        ("min_event_time", "<i8"),
        ("max_event_time", "<i8"),
        ("crc", "<u4"),
        ("reserved", "<u4"),
    ]
)
ENTRY_SIZE = ENTRY_DTYPE.itemsize
_FIELDS = struct.Struct("<qqIIqqq")
assert ENTRY_SIZE == 56


def empty() -> np.ndarray:
    """An index with no entries."""
    return np.zeros(0, dtype=ENTRY_DTYPE)


def entry(header: FrameHeader, position: int) -> np.ndarray:
    """One index entry for the frame `header` found at byte `position`."""
    return entry_from(
        header.base_offset,
        position,
        header.count,
        header.body_len,
        header.append_time,
        header.min_event_time,
        header.max_event_time,
    )


def entries_of(frames: list[tuple[int, FrameHeader]]) -> np.ndarray:
    """Index entries of (position, header) pairs, in their order (one buffer, no per-entry arrays)."""
    out = bytearray()
    for position, h in frames:
        raw = _FIELDS.pack(
            h.base_offset, position, h.count, h.body_len, h.append_time, h.min_event_time, h.max_event_time
        )
        out += raw
        out += struct.pack("<II", crc(raw), 0)
    return np.frombuffer(bytes(out), dtype=ENTRY_DTYPE).copy() if out else empty()


def entry_from(
    base_offset: int,
    position: int,
    count: int,
    body_len: int,
    append_time: int,
    min_event_time: int,
    max_event_time: int,
) -> np.ndarray:
    """One index entry from its fields (the checksum is computed here)."""
    raw = entry_bytes(base_offset, position, count, body_len, append_time, min_event_time, max_event_time)
    return np.frombuffer(raw, dtype=ENTRY_DTYPE).copy()


def entry_bytes(
    base_offset: int,
    position: int,
    count: int,
    body_len: int,
    append_time: int,
    min_event_time: int,
    max_event_time: int,
) -> bytes:
    """One index entry's ENTRY_SIZE bytes (as `entry_from`, without an array: a commit's cost)."""
    raw = _FIELDS.pack(base_offset, position, count, body_len, append_time, min_event_time, max_event_time)
    return raw + struct.pack("<II", crc(raw), 0)


def valid(entries: np.ndarray) -> bool:
    """True if every entry passes its checksum."""
    raw = entries.tobytes()
    return all(
        crc(raw[i : i + 48]) == int.from_bytes(raw[i + 48 : i + 52], "little") for i in range(0, len(raw), ENTRY_SIZE)
    )


def load(path: Path) -> tuple[np.ndarray, bool] | None:
    """Read an index file: (its valid prefix of entries, whether anything after it was damaged).

    None if the file is missing. A partial trailing entry counts as damage.
    """
    try:
        data = files.read_small(path, limit=1 << 40)
    except FileNotFoundError:
        return None
    except OSError:  # a symlink, a directory, unreadable: not an index we can trust
        return np.zeros(0, dtype=ENTRY_DTYPE), True
    return parse(data)


def parse(data: bytes) -> tuple[np.ndarray, bool]:
    """An index file's bytes: (its valid prefix of entries, whether anything after it was damaged)."""
    n = len(data) // ENTRY_SIZE
    damaged = len(data) % ENTRY_SIZE != 0
    view = memoryview(data)
    good = n
    for i in range(n):
        raw = view[i * ENTRY_SIZE : (i + 1) * ENTRY_SIZE]
        if crc(raw[:48]) != int.from_bytes(raw[48:52], "little"):
            good, damaged = i, True
            break
    return np.frombuffer(data, dtype=ENTRY_DTYPE, count=good).copy(), damaged


def load_more(
    path: Path, known: tuple[int, int, np.ndarray] | None
) -> tuple[tuple[int, int, np.ndarray], bool, bool] | None:
    """`load` for a file that only grows (an active segment's index): `known` is what an earlier
    call returned, (inode, bytes read, entries); only the bytes after them are read and checked.

    Returns ((inode, bytes read, all valid entries), damaged, extended), or None if the file is
    missing; `extended` is False when the file was read whole (a replaced or shrunk file, or no
    `known`), True when `known` was extended.
    """
    try:
        fd = os.open(path, os.O_RDONLY | files.NOFOLLOW | files.CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return (0, 0, empty()), True, False
    try:
        st = os.fstat(fd)
        extended = not (known is None or known[0] != st.st_ino or st.st_size < known[1])
        if not extended:
            known = (st.st_ino, 0, empty())
        assert known is not None
        ino, done, entries = known
        want = (st.st_size - done) // ENTRY_SIZE * ENTRY_SIZE
        data = os.pread(fd, want, done) if want > 0 else b""
    finally:
        os.close(fd)
    n = len(data) // ENTRY_SIZE
    view = memoryview(data)
    good, damaged = n, (st.st_size - done) % ENTRY_SIZE != 0
    for i in range(n):
        raw = view[i * ENTRY_SIZE : (i + 1) * ENTRY_SIZE]
        if crc(raw[:48]) != int.from_bytes(raw[48:52], "little"):
            good, damaged = i, True
            break
    if good:
        more = np.frombuffer(data, dtype=ENTRY_DTYPE, count=good)
        entries = np.concatenate([entries, more]) if len(entries) else more.copy()
    # after damage nothing more is read: the next call starts over (a writer rewrites the file)
    return (ino, done + good * ENTRY_SIZE if not damaged else 0, entries), damaged, extended


def is_consistent(entries: np.ndarray) -> bool:
    """True if entries are ordered and contiguous in offsets and positions (a cheap sanity check)."""
    if len(entries) == 0:
        return True
    if entries["position"][0] != 0:
        return False
    ends = entries["base_offset"] + entries["count"]
    if np.any(entries["base_offset"][1:] != ends[:-1]):
        return False
    frame_end = entries["position"] + HEADER_SIZE + entries["body_len"].astype(np.int64)
    if np.any(entries["position"][1:] != frame_end[:-1]):
        return False
    return bool(np.all(np.diff(entries["append_time"]) >= 0))


def consistent_from(entries: np.ndarray, checked: int) -> bool:
    """`is_consistent(entries)`, knowing the first `checked` entries already passed it."""
    if checked <= 1:
        return is_consistent(entries)
    tail = entries[checked - 1 :]
    if len(tail) <= 1:
        return True
    ends = tail["base_offset"] + tail["count"]
    frame_end = tail["position"] + HEADER_SIZE + tail["body_len"].astype(np.int64)
    return bool(
        np.all(tail["base_offset"][1:] == ends[:-1])
        and np.all(tail["position"][1:] == frame_end[:-1])
        and np.all(np.diff(tail["append_time"]) >= 0)
    )


def frame_ends(entries: np.ndarray) -> np.ndarray:
    """The byte just past each entry's frame."""
    return entries["position"] + HEADER_SIZE + entries["body_len"].astype(np.int64)


def write(path: Path, entries: np.ndarray) -> None:
    """Replace the index file with `entries` (temp file and rename, not fsynced: it is derived).

    Only a writer holding the partition's lock writes an index; readers derive it in memory.
    """
    files.write_atomic(path, entries.tobytes(), "write index", durable=False)


def append(path: Path, entries: np.ndarray) -> None:
    """Append entries to the index file (not fsynced: the index is rebuildable)."""
    files.append_bytes(path, entries.tobytes())
