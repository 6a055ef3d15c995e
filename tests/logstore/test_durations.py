"""Durations as typed on a command line: units required, parts summed, bare numbers only with a unit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstore.durations import UNITS, duration_ms, format_duration, parse_duration
from logstore.errors import ArgumentError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("7d", 604800),
        ("1w", 604800),
        ("1h30m", 5400),
        ("1d 12h", 129600),
        ("1.5h", 5400),
        (".5s", 0.5),
        ("250us", 0.00025),
        ("3 Days", 259200),
        ("10 minutes", 600),
        ("0s", 0),
    ],
)
def test_parses_units_and_parts(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "  ", "7", "7x", "d", "1h-5m", "-5s", "5 s s", "1e3s", "one day"])
def test_refuses_what_is_not_a_duration(text):
    with pytest.raises(ArgumentError) as e:
        parse_duration(text, "--horizon")
    assert "--horizon" in str(e.value)


def test_bare_number_only_with_a_unit_named():
    with pytest.raises(ArgumentError, match="ambiguous"):
        parse_duration("7", "--retention")
    assert parse_duration("7", bare_unit="ms") == timedelta(milliseconds=7)
    assert duration_ms("5000", bare_unit="ms") == 5000
    assert duration_ms("7d", bare_unit="ms") == 7 * 86_400_000  # units still win


def test_zero_refused_when_asked():
    with pytest.raises(ArgumentError, match="more than zero"):
        parse_duration("0s", "--window", zero=False)


def test_duration_ms_rounds_up_so_positive_stays_positive():
    assert duration_ms("1us") == 1
    assert duration_ms("1500us") == 2


@given(st.integers(min_value=0, max_value=10**12))
def test_format_reads_back(ms):
    assert duration_ms(format_duration(ms)) == ms


def test_units_are_consistent():
    assert UNITS["w"] == 7 * UNITS["d"] == 7 * 24 * UNITS["h"] == 7 * 24 * 60 * UNITS["m"]
    assert format_duration(None) == "none"
    assert format_duration(604_800_000) == "1w"
    assert format_duration(90_000) == "90s"
