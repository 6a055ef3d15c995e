"""Durations as people type them on a command line: ``500ms``, ``30s``, ``5m``, ``2h``, ``7d``,
``1w``, or several parts (``1h30m``, ``1d 12h``), with decimals (``1.5h``).

Units: ``us`` (or ``µs``), ``ms``, ``s``, ``m`` (minutes), ``h``, ``d``, ``w``; any case, long
forms too (``sec``, ``min``, ``hours``, ``days``, ``weeks``). A bare number is refused unless the
option's name carries its unit (``--retention-ms 5000``): "7" means seven days to one user and
seven seconds to another, so `parse_duration` takes one only when told its unit (`bare_unit`).
Durations are never negative; zero is allowed only where the caller says so.
"""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import ArgumentError

__all__ = ["UNITS", "parse_duration", "duration_ms", "format_duration"]

UNITS: dict[str, float] = {  # seconds per unit
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
    "weeks": 604800.0,
}
_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zµ]+)\s*")
_NUMBER = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*")
EXAMPLES = "e.g. 500ms, 30s, 5m, 2h, 7d, 1h30m"


def parse_duration(text: str, what: str = "duration", *, bare_unit: str | None = None, zero: bool = True) -> timedelta:
    """`text` as a timedelta; raises `ArgumentError` naming `what` when it is not a duration.

    `bare_unit` (a key of `UNITS`) is the unit of a bare number; without it a bare number is
    refused as ambiguous. `zero=False` refuses a zero duration."""
    s = text.strip().lower()
    if not s:
        raise ArgumentError(f"{what}: empty; give a duration ({EXAMPLES})")
    bare = _NUMBER.fullmatch(s)
    if bare is not None:
        if bare_unit is None:
            raise ArgumentError(f"{what} {text!r}: a bare number is ambiguous; give its unit ({EXAMPLES})")
        seconds = float(bare.group(1)) * UNITS[bare_unit]
    else:
        seconds, pos = 0.0, 0
        while pos < len(s):
            m = _PART.match(s, pos)
            if m is None or m.group(2) not in UNITS:
                raise ArgumentError(f"{what} {text!r} is not a duration ({EXAMPLES})")
            seconds += float(m.group(1)) * UNITS[m.group(2)]
            pos = m.end()
    if not zero and seconds <= 0:
        raise ArgumentError(f"{what} {text!r}: must be more than zero")
    return timedelta(seconds=seconds)


def duration_ms(text: str, what: str = "duration", *, bare_unit: str | None = None) -> int:
    """`parse_duration` in whole milliseconds (rounded up, so a positive duration stays positive)."""
    d = parse_duration(text, what, bare_unit=bare_unit)
    us = (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
    return -(-us // 1000)


def format_duration(ms: int | None) -> str:
    """Milliseconds as the shortest exact text `parse_duration` reads back (``7d``, ``90s``)."""
    if ms is None:
        return "none"
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
