"""What one read covers: start and end bounds (offsets, per-partition offsets, or times) resolved
to exact offset ranges on a snapshot of each partition, plus an optional event-time filter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from .partition import Partition, Snapshot
from .timeutil import to_us

if TYPE_CHECKING:
    from .topic import Topic

Bound = int | datetime | Mapping[int, int] | None
EventRange = tuple[int | None, int | None]  # event times [lo, hi) in microseconds, either end open


@dataclass
class Plan:
    """What one read covers: per partition an offset range, plus an optional event-time filter."""

    ranges: dict[int, tuple[int, int]]
    snapshots: dict[int, Snapshot]
    event_range: EventRange | None = None


def plan(topic: Topic, start: Bound, end: Bound, partitions: Sequence[int] | None, by: str) -> Plan:
    """Resolve start/end bounds into exact offset ranges on a snapshot of each partition."""
    if by not in ("append_time", "event_time"):
        raise ValueError(f"by must be 'append_time' or 'event_time', found {by!r}")
    n = topic.config.partitions
    numbers = list(range(n)) if partitions is None else list(partitions)
    for p in numbers:
        if not isinstance(p, (int, np.integer)) or not 0 <= p < n:
            raise ValueError(f"topic {topic.name!r} has partitions 0..{n - 1}, asked for {p!r}")
    snaps = {p: topic.partition(p).snapshot() for p in numbers}
    event = None
    if by == "event_time" and (isinstance(start, datetime) or isinstance(end, datetime)):
        if topic.config.event_time_field is None:
            raise ValueError(f"topic {topic.name!r} has no event-time field: read by append time instead")
        event = (
            to_us(start) if isinstance(start, datetime) else None,
            to_us(end) if isinstance(end, datetime) else None,
        )
    ranges = {}
    for p in numbers:
        snap, part = snaps[p], topic.partition(p)
        lo = _bound(part, snap, start, by, default=snap.start_offset, which="start")
        hi = _bound(part, snap, end, by, default=snap.end_offset, which="end")
        lo = max(lo, snap.start_offset)
        hi = min(hi, snap.end_offset)
        ranges[p] = (lo, max(lo, hi))
    return Plan(ranges, snaps, event)


def _bound(part: Partition, snap: Snapshot, value: Bound, by: str, *, default: int, which: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise TypeError(f"{which} must be an offset, a mapping of partition to offset, or a datetime")
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise ValueError(f"{which} offset must be >= 0, found {value}")
        return int(value)
    if isinstance(value, Mapping):
        v = value.get(part.number)
        return default if v is None else int(v)
    if isinstance(value, datetime):
        if by == "event_time":
            return default  # event time filters frames and rows, not offsets
        return part.offset_for_append_time(snap, to_us(value))
    raise TypeError(
        f"{which} must be an offset, a mapping of partition to offset, or a datetime, found {type(value).__name__}"
    )
