"""Wall-clock times of day in a zone as instants, across daylight saving. Pure.

A wall time that does not exist (the spring-forward gap: Europe/London has no 01:30 on that
day) resolves to the first instant the clock reads later than it, i.e. the end of the gap; an
ambiguous one (the fall-back hour happens twice) to its first occurrence, so a time of day
comes once a day. Shared by active hours (`windows.py`) and a group's `at` times
(`shapingspecs.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def resolve_wall_time(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the clock in `tz` on `day` reads `wall` or later."""
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first  # exists; fold=0 is the earlier of two occurrences
    # In a gap: fold=1 maps before the jump, fold=0 after it; bisect for the jump itself.
    low = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first
    step = timedelta(microseconds=1)
    while high - low > step:
        mid = low + (high - low) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= naive:
            high = mid
        else:
            low = mid
    return high


def previous_wall_time(walls: Iterable[time], tz: ZoneInfo, before: datetime) -> datetime:
    """The last instant strictly before `before` (aware) at which the clock in `tz` reads one
    of `walls`; ValueError for no wall time at all."""
    walls = tuple(walls)
    if not walls:
        raise ValueError("no wall time to look for")
    today = before.astimezone(tz).date()
    days = (today + timedelta(days=offset) for offset in (-2, -1, 0, 1))
    return max(
        at for day in days for wall in walls if (at := resolve_wall_time(day, wall, tz)) < before
    )


def next_wall_time(walls: Iterable[time], tz: ZoneInfo, after: datetime) -> datetime:
    """The first instant strictly after `after` (aware) at which the clock in `tz` reads one of
    `walls` (UTC); ValueError for no wall time at all."""
    walls = tuple(walls)
    if not walls:
        raise ValueError("no wall time to look for")
    today = after.astimezone(tz).date()
    # Each wall time resolves once a day, so the next comes within tomorrow's; yesterday's
    # is there for an instant whose local date runs ahead of a resolution across a gap.
    days = (today + timedelta(days=offset) for offset in (-1, 0, 1, 2))
    return min(
        at for day in days for wall in walls if (at := resolve_wall_time(day, wall, tz)) > after
    )
