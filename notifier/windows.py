"""A rule's active hours: the `active:` spec, its parser, and when its windows open and close.

Pure: instants in, instants out. An active window is a half-open interval of instants [open, close)
starting on each chosen day at the wall time `start` in the rule's zone and ending at the next wall
time `end`, each resolved across daylight saving as `walltimes.py` does, so a window opens and
closes once a day. The day filter applies to the day the window starts, so a Friday 22:00-06:00
window runs into Saturday morning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from notifier.shapingspecs import (
    SpecError,
    attempt,
    check_mapping,
    parse_zone,
    raise_all,
    suggest,
)
from notifier.walltimes import resolve_wall_time

Outside = Literal["hold", "drop"]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_ACTIVE_KEYS = ("days", "hours", "tz", "outside")
_INSTANT = timedelta(microseconds=1)  # the finest step of a datetime
_SEARCH_DAYS = 16  # more than a week, so a window lost to a DST gap cannot hide the next one


@dataclass(frozen=True, slots=True)
class ActiveSpec:
    """When a rule may send: on `days` (0 = Monday), from `start` to `end` wall time in `tz`.

    `end` <= `start` means the window runs past midnight; `end == start` is a whole day (written
    `00:00-24:00`). `outside` says what happens to alerts outside it: held until the next opening,
    or dropped.
    """

    days: frozenset[int]
    start: time
    end: time
    tz: ZoneInfo
    outside: Outside = "hold"

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValueError(f"days must be a non-empty set of 0..6, got {sorted(self.days)}")
        if self.outside not in ("hold", "drop"):
            raise ValueError(f"outside must be 'hold' or 'drop', got {self.outside!r}")

    def is_active(self, at: datetime) -> bool:
        """Whether the instant `at` (timezone-aware) lies inside one of the windows."""
        local_day = aware(at).astimezone(self.tz).date()
        return any(o <= at < c for o, c in self._windows(local_day - timedelta(days=1), count=2))

    def holds_until(self, at: datetime) -> bool:
        """Whether a message due at `at` lies in a window: one due at closing time itself (a
        summary `at` the close; judged at the last instant a match could join it) does, and
        so does one due at an opening (a summary `at` 09:00 of hours opening then)."""
        return self.is_active(at) or self.is_active(at - _INSTANT)

    def next_open(self, at: datetime) -> datetime:
        """`at` itself if the window is open then, else the instant it next opens."""
        local_day = aware(at).astimezone(self.tz).date()
        for opens, closes in self._windows(local_day - timedelta(days=1), count=_SEARCH_DAYS):
            if opens <= at < closes:
                return at
            if opens > at:
                return opens
        raise AssertionError("an active window with days never opens")  # parse forbids it

    def _windows(self, first: date, *, count: int) -> Iterable[tuple[datetime, datetime]]:
        """The non-empty windows starting on `count` days from `first`, as UTC instants."""
        for offset in range(count):
            day = first + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            end_day = day if self.end > self.start else day + timedelta(days=1)
            opens = resolve_wall_time(day, self.start, self.tz)
            closes = resolve_wall_time(end_day, self.end, self.tz)
            if opens < closes:  # empty only when both ends fall into one DST gap
                yield opens, closes


def parse_active(raw: object) -> ActiveSpec:
    """An `active:` mapping (`days`, `hours`, `tz`, `outside`) as an ActiveSpec, or SpecError.

    Each key is checked on its own, so a spec with several problems raises SpecErrors with all.
    """
    errors: list[SpecError] = []
    spec = check_mapping(raw, _ACTIVE_KEYS, what="active", errors=errors)
    if "hours" not in spec:
        errors.append(SpecError("hours", 'is required, e.g. "08:00-22:00"'))
        hours = None
    else:
        hours = attempt(errors, _parse_hours, spec["hours"])
    days = attempt(errors, _parse_days, spec.get("days", list(DAY_NAMES)))
    tz = attempt(errors, parse_zone, spec.get("tz", "UTC"))
    outside = attempt(errors, _parse_outside, spec.get("outside", "hold"))
    raise_all(errors, spec)  # so each value below is set
    assert hours is not None
    assert days is not None
    assert tz is not None
    assert outside is not None
    start, end = hours
    return ActiveSpec(days=days, start=start, end=end, tz=tz, outside=outside)


def _parse_outside(raw: object) -> Outside:
    if raw == "hold" or raw == "drop":
        return "hold" if raw == "hold" else "drop"
    raise SpecError("outside", f"must be 'hold' or 'drop', got {raw!r}")


def _parse_hours(raw: object) -> tuple[time, time]:
    match = _HOURS.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise SpecError("hours", f'must look like "08:00-22:00", got {raw!r}')
    sh, sm, eh, em = (int(g) for g in match.groups())
    if (eh, em) == (24, 0):
        eh = 0  # 24:00 is the midnight that ends the day
    elif sh == 24 or eh == 24:
        raise SpecError("hours", f"24:00 may only end a window, got {raw!r}")
    if sh > 23 or eh > 23 or sm > 59 or em > 59:
        raise SpecError("hours", f"not a time of day in {raw!r}")
    start, end = time(sh, sm), time(eh, em)
    if start == end and match.group(3) != "24":
        raise SpecError("hours", f"{raw!r} is empty; write 00:00-24:00 for the whole day")
    return start, end


def _parse_days(raw: object) -> frozenset[int]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise SpecError("days", f"must be a non-empty list of days like [mon, fri], got {raw!r}")
    days: set[int] = set()
    errors: list[SpecError] = []
    for index, item in enumerate(items):
        path = f"days[{index}]" if not isinstance(raw, str) else "days"
        if not isinstance(item, str):
            errors.append(SpecError(path, f"must be a day name like 'mon', got {item!r}"))
            continue
        first, sep, last = item.partition("-")
        a = attempt(errors, _day, first, path)
        b = attempt(errors, _day, last, path) if sep else None
        if a is None or (sep and b is None):
            continue
        days.update(range(a, a + 1) if b is None else ((a + i) % 7 for i in range((b - a) % 7 + 1)))
    raise_all(errors)
    return frozenset(days)


def _day(name: str, path: str) -> int:
    word = name.strip().lower()
    if word in DAY_NAMES:
        return DAY_NAMES.index(word)
    if word in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(word)
    raise SpecError(path, f"unknown day{suggest(word, DAY_NAMES)}")


def aware(at: datetime) -> datetime:
    """`at`, checked to carry a zone: naive and aware instants compare with a late TypeError."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("shaping needs timezone-aware datetimes")
    return at
