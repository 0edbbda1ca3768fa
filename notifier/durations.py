"""Human durations for config files: "30s", "5m", "2h", "1d", "1h30m", "500ms", or plain seconds.

Pure and exact: numbers are read as decimals (never binary floats), so "0.1s" is 100 ms exactly.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

_UNITS: dict[str, Decimal] = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "min": Decimal(60),  # as `rate: 20/min` writes it
    "h": Decimal(3600),
    "d": Decimal(86400),
    "w": Decimal(604800),
}
# Longest unit names first so "ms" is not read as "m" followed by garbage.
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(min|ms|s|m|h|d|w)", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_HINT = 'use a number of seconds or a duration such as "30s", "5m", "2h", "1d", "1h30m", "500ms"'
# About 1,900 years, in seconds: now plus or minus a duration must stay a date (Python's run
# from the year 1 to 9999; `every: 3000000d` passed the end), while "forever" written as
# `max_age: 99999d` still reads as it did.
MAX_DAYS = 700_000
_MAX_SECONDS = Decimal(MAX_DAYS) * 86400


def parse_duration(value: object) -> timedelta:
    """Read a non-negative duration; raise ValueError with a message a user can act on.

    Accepts an int/Decimal of seconds, a numeric string of seconds, or unit parts such as
    "1h30m". Floats are refused (config numbers arrive as text or Decimal) except exact ones.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}; {_HINT}")
    if isinstance(value, int | Decimal):
        return _seconds(Decimal(value), value)
    if isinstance(value, float):
        return _seconds(Decimal(repr(value)), value)
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"duration must not be negative, got {format_duration(-value)} ago")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a duration, got {type(value).__name__}; {_HINT}")
    text = value.strip()
    if not text:
        raise ValueError(f"expected a duration, got an empty string; {_HINT}")
    if text.startswith("-"):
        raise ValueError(f"duration must not be negative, got {value!r}")
    if _NUMBER.fullmatch(text):
        return _seconds(Decimal(text), value)
    total = Decimal(0)
    pos = 0
    last: Decimal | None = None  # the unit before: each must be smaller ("1h30m", not "30m1h")
    for part in _PART.finditer(text):
        if text[pos : part.start()].strip():
            break
        unit = _UNITS[part.group(2).lower()]
        if last is not None and unit >= last:
            raise ValueError(
                f"not a duration: {value!r} (write its units largest first, each once, as "
                f'"1h30m"); {_HINT}'
            )
        total += Decimal(part.group(1)) * unit
        last, pos = unit, part.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(f"not a duration: {value!r}; {_HINT}")
    return _seconds(total, value)


def _seconds(seconds: Decimal, original: object) -> timedelta:
    """A timedelta of exactly `seconds` (to the microsecond), checking sign and range."""
    if not seconds.is_finite():
        raise ValueError(f"not a duration: {original!r}; {_HINT}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {original!r}")
    if seconds > _MAX_SECONDS:
        raise ValueError(f"duration too long: {original!r}; at most {MAX_DAYS}d")
    micros = int((seconds * 1_000_000).to_integral_value())
    return timedelta(microseconds=micros)


def format_duration(td: timedelta) -> str:
    """Compact unit text that parse_duration reads back to the same value: 5400s -> "1h30m"."""
    if td < timedelta(0):
        return "-" + format_duration(-td)
    micros = td // timedelta(microseconds=1)
    if micros == 0:
        return "0s"
    seconds, micro = divmod(micros, 1_000_000)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    if micro:
        if micro % 1000 == 0 and seconds == 0:
            parts.append(f"{micro // 1000}ms")
        else:
            frac = f"{micro:06d}".rstrip("0")
            parts.append(f"{seconds}.{frac}s")
    elif seconds:
        parts.append(f"{seconds}s")
    return "".join(parts)
