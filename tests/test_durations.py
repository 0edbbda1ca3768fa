"""Durations as users write them in the config file."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("0.1s", timedelta(milliseconds=100)),
        ("1.5h", timedelta(minutes=90)),
        ("2H", timedelta(hours=2)),
        ("45", timedelta(seconds=45)),
        ("0", timedelta(0)),
        (" 10s ", timedelta(seconds=10)),
        ("5min", timedelta(minutes=5)),  # as `rate: 20/min` writes minutes
        ("1h5min", timedelta(hours=1, minutes=5)),
    ],
)
def test_parses_unit_strings(text: str, expected: timedelta) -> None:
    """Unit parts (ms/s/m/h/d/w, combinable) and bare numbers read as the duration they say."""
    assert parse_duration(text) == expected


def test_plain_numbers_are_seconds() -> None:
    """An int or Decimal (how YAML numbers arrive) is a number of seconds, exactly."""
    assert parse_duration(90) == timedelta(seconds=90)
    assert parse_duration(Decimal("0.25")) == timedelta(milliseconds=250)
    assert parse_duration(0.5) == timedelta(milliseconds=500)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "not a duration: 'abc'; use a number of seconds or a duration such as"),
        ("5x", "not a duration: '5x'"),
        ("m5", "not a duration: 'm5'"),
        ("5m3", "not a duration: '5m3'"),
        ("1e3", "not a duration: '1e3'"),
        ("-3s", "duration must not be negative, got '-3s'"),
        (-1, "duration must not be negative, got -1"),
        ("", "expected a duration, got an empty string"),
        (True, "expected a duration, got True"),
        (None, "expected a duration, got NoneType"),
        ([1], "expected a duration, got list"),
        (Decimal("NaN"), "not a duration: Decimal('NaN')"),
        ("99999999999d", "duration too long: '99999999999d'"),
        ("700001d", "duration too long: '700001d'; at most 700000d"),
        # Units largest first, each once: "30m1h" and "1d1d" are typos more likely than sums.
        ("30m1h", "not a duration: '30m1h' (write its units largest first, each once"),
        ("1d1d", "not a duration: '1d1d' (write its units largest first, each once"),
        ("1m5min", "not a duration: '1m5min' (write its units largest first, each once"),
    ],
)
def test_refuses_with_actionable_message(value: object, message: str) -> None:
    """Bad values raise ValueError whose text names the value and shows valid forms."""
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_duration(value)


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=30), "30s"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(days=1, seconds=1), "1d1s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(seconds=1, milliseconds=500), "1.5s"),
        (timedelta(seconds=-5), "-5s"),
    ],
)
def test_formats_compactly(td: timedelta, text: str) -> None:
    """format_duration writes the compact unit form users write themselves."""
    assert format_duration(td) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10_000)))
def test_format_round_trips(td: timedelta) -> None:
    """Whatever format_duration writes, parse_duration reads back to the same value."""
    assert parse_duration(format_duration(td)) == td
