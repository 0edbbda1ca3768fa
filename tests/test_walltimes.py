"""Times of day in a zone as instants: the next one after an instant, across daylight saving."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.walltimes import next_wall_time, previous_wall_time

LONDON = ZoneInfo("Europe/London")
# For the properties: any instant of this century, up to four times of day, zones with and
# without daylight saving (Lord Howe's is half an hour).
INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)
WALLS = st.lists(st.times(), min_size=1, max_size=4)
ZONES = st.sampled_from(["Europe/London", "America/New_York", "Australia/Lord_Howe", "UTC"])


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_next_time_of_day_is_strictly_after_the_instant() -> None:
    """At 17:00 itself the next 17:00 is tomorrow's; a minute before, today's."""
    assert next_wall_time([time(17)], LONDON, utc("2026-01-06 16:59")) == utc("2026-01-06 17:00")
    assert next_wall_time([time(17)], LONDON, utc("2026-01-06 17:00")) == utc("2026-01-07 17:00")


def test_a_time_in_the_spring_forward_gap_comes_when_the_clock_jumps() -> None:
    """London has no 01:30 on 2026-03-29: that day's 01:30 is the jump to 02:00 BST (01:00
    UTC), and the next day's is 01:30 BST again."""
    assert next_wall_time([time(1, 30)], LONDON, utc("2026-03-28 23:00")) == utc("2026-03-29 01:00")
    assert next_wall_time([time(1, 30)], LONDON, utc("2026-03-29 01:00")) == utc("2026-03-30 00:30")


def test_a_time_the_fall_back_hour_repeats_comes_once() -> None:
    """01:30 happens twice in London on 2026-10-25: only the first counts."""
    first = utc("2026-10-25 00:30")  # 01:30 BST
    assert next_wall_time([time(1, 30)], LONDON, utc("2026-10-24 12:00")) == first
    assert next_wall_time([time(1, 30)], LONDON, first) == utc("2026-10-26 01:30")


def test_no_time_of_day_is_an_error() -> None:
    """A caller with nothing to wait for is a bug, not a deadline."""
    with pytest.raises(ValueError, match="no wall time"):
        next_wall_time([], LONDON, utc("2026-01-06 12:00"))


@given(after=INSTANTS, walls=WALLS, zone=ZONES)
def test_the_next_time_is_after_within_a_day_and_a_chosen_one(
    after: datetime, walls: list[time], zone: str
) -> None:
    """Whatever the zone and times: later than the instant, within a day and an hour of it
    (a DST jump), and on the local clock one of the times asked for, or the end of a gap."""
    tz = ZoneInfo(zone)
    found = next_wall_time(walls, tz, after)
    assert after < found <= after + timedelta(days=1, hours=1)
    local = found.astimezone(tz)
    reads = local.replace(tzinfo=None).time()
    in_gap = (found - timedelta(microseconds=1)).astimezone(tz).utcoffset() != local.utcoffset()
    assert reads in walls or in_gap


@given(before=INSTANTS, walls=WALLS, zone=ZONES)
def test_the_previous_time_is_the_one_whose_next_is_past_the_instant(
    before: datetime, walls: list[time], zone: str
) -> None:
    """The previous time of day is before the instant, and no time of day lies between them:
    the next one after it is at or past the instant (a reload's period start)."""
    tz = ZoneInfo(zone)
    previous = previous_wall_time(walls, tz, before)
    assert previous < before
    assert next_wall_time(walls, tz, previous) >= before


def test_the_previous_time_of_day_is_strictly_before_the_instant() -> None:
    """At 17:00 itself the previous 17:00 is yesterday's; a minute after, today's."""
    at_five = [time(17)]
    assert previous_wall_time(at_five, LONDON, utc("2026-01-06 17:00")) == utc("2026-01-05 17:00")
    assert previous_wall_time(at_five, LONDON, utc("2026-01-06 17:01")) == utc("2026-01-06 17:00")
