"""The segment summary of a partition: ``<partition>/segments.sum``.

One fixed-size entry per sealed segment, appended by the writer that seals it (under the
partition lock), little-endian (56 bytes)::

    0 8 base offset | 8 8 end offset (exclusive) | 16 8 first append time | 24 8 last append time |
    32 8 min event time | 40 8 max event time | 48 4 CRC-32C of bytes 0..47 | 52 4 reserved

It lets an event-time read skip whole segments without opening their indexes (a 10,000-segment
partition is one file read). Derived data (invariant 5): never fsynced, checked on load (a damaged
entry ends the valid prefix), matched to segments by base offset; a sealed segment without an entry
is simply read through its index.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from . import files
from .checksum import crc

SUMMARY_NAME = "segments.sum"
_FIELDS = struct.Struct("<qqqqqq")
ENTRY_SIZE = 56


def entry(base: int, end: int, first_append: int, last_append: int, min_event: int, max_event: int) -> bytes:
    raw = _FIELDS.pack(base, end, first_append, last_append, min_event, max_event)
    return raw + struct.pack("<II", crc(raw), 0)


def summarize(base: int, entries: np.ndarray) -> bytes | None:
    """The summary entry of a segment from its index entries (None for an empty segment)."""
    if not len(entries):
        return None
    return entry(
        base,
        int(entries["base_offset"][-1] + entries["count"][-1]),
        int(entries["append_time"][0]),
        int(entries["append_time"][-1]),
        int(entries["min_event_time"].min()),
        int(entries["max_event_time"].max()),
    )


def append(directory: Path, raw: bytes) -> None:
    """Append one entry (not fsynced: the summary is derived)."""
    files.append_bytes(directory / SUMMARY_NAME, raw)


def load(directory: Path) -> dict[int, tuple[int, int, int, int, int]]:
    """base offset -> (end, first append, last append, min event, max event) of the valid prefix."""
    try:
        data = files.read_small(directory / SUMMARY_NAME, limit=1 << 32)
    except OSError:  # missing, or not a file we can trust: segments are read through their indexes
        return {}
    out = {}
    for i in range(len(data) // ENTRY_SIZE):
        raw = data[i * ENTRY_SIZE : (i + 1) * ENTRY_SIZE]
        if crc(raw[:48]) != struct.unpack_from("<I", raw, 48)[0]:
            break
        base, *rest = _FIELDS.unpack_from(raw)
        out[base] = tuple(rest)
    return out


def rewrite(directory: Path, keep: set[int]) -> None:
    """Keep only the entries of segments in `keep` (after retention deleted the others)."""
    current = load(directory)
    data = b"".join(entry(b, *current[b]) for b in sorted(current) if b in keep)
    files.write_atomic(directory / SUMMARY_NAME, data, "rewrite segment summary", durable=False)
