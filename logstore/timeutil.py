"""Time in the log: microseconds since the Unix epoch, UTC, as int64 (a leaf module).

Append and event times are stored as int64 microseconds; `MIN_TIME`/`MAX_TIME` stand for "none"
in frame headers. Users hand over aware datetimes; a naive one is refused (`ClockError`), since
its zone would be a guess.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from .errors import ArgumentError, ClockError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_TIME = -(2**63)
MAX_TIME = 2**63 - 1
Clock = Callable[[], datetime]


def now_us() -> int:
    """This machine's clock, in microseconds since the epoch."""
    return time.time_ns() // 1000


def to_us(t: datetime, what: str = "datetime") -> int:
    """Microseconds since the epoch of an aware datetime; a naive one raises ClockError."""
    if not isinstance(t, datetime):
        raise ClockError(f"{what} must be an aware datetime (e.g. in UTC), found {t!r}")
    if t.tzinfo is None:
        raise ClockError(f"{what} {t.isoformat()} has no time zone: pass an aware datetime (e.g. in UTC)")
    delta = t - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def clock_us(clock: Clock | None) -> int:
    """Microseconds since the epoch from `clock` (returning an aware datetime), or this machine's."""
    if clock is None:
        return now_us()
    return to_us(clock(), "the writer's clock's value")


def to_datetime(us: int) -> datetime:
    """An aware UTC datetime from microseconds since the epoch (OverflowError past year 9999)."""
    return EPOCH + timedelta(microseconds=int(us))


def iso_z(us: int) -> str:
    """`us` as fixed-width ISO-8601 UTC with microseconds, e.g. ``2026-11-01T00:00:03.000000Z``
    (the form manifests record)."""
    return to_datetime(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration_us(value: timedelta | float, what: str) -> int:
    """A timedelta, or a number of seconds, in microseconds."""
    if isinstance(value, timedelta):
        return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1_000_000)
    raise ArgumentError(f"{what} must be a timedelta (or seconds), found {value!r}")


def iso(us: int) -> str:
    """ISO-8601 text of `us`, or "<us> us since the epoch" outside datetime's years 1..9999."""
    try:
        return to_datetime(us).isoformat()
    except (OverflowError, ValueError, OSError):
        return f"{us} us since the epoch"
