"""Judging whether each channel drains: the /healthz verdict and the oldest-pending gauge."""

from __future__ import annotations

from datetime import timedelta

from fakes import T0, HandClock

from notifier.drain_watch import STALL_AFTER, DrainWatch


def test_a_paced_channel_gets_its_rate_s_share_before_it_counts_as_stuck() -> None:
    """`rate: 1/h` holds an alert back up to an hour: not stuck at 20 minutes; a channel with
    no rate is; one that sent within the allowance is not."""
    clock = HandClock(T0)
    watch = DrainWatch(clock)
    clock.advance(seconds=STALL_AFTER * 3)
    queued = clock.now - timedelta(minutes=20)
    pending = {("hourly", "h"): (3, queued), ("chat", "c"): (1, queued), ("mail", "m"): (2, queued)}
    watch.sent("mail", "m")
    assert watch.stalled(pending, {"hourly": 3600.0}) == [
        "channel chat has 1 alert pending, none sent for 10 minutes"
    ]
    assert watch.stalled(pending) == [
        "channel chat has 1 alert pending, none sent for 10 minutes",
        "channel hourly has 3 alerts pending, none sent for 10 minutes",
    ]
    clock.advance(seconds=3600)
    assert "channel hourly has 3 alerts pending, none sent for 70 minutes" in watch.stalled(
        pending, {"hourly": 3600.0}
    )
    assert watch.oldest({"chat": (1, queued)}) == {"chat": 80 * 60.0}


def test_nothing_is_stuck_before_the_daemon_has_been_up_for_the_allowance() -> None:
    """A backlog left by the last run is not a stall the moment the daemon starts."""
    clock = HandClock(T0)
    watch = DrainWatch(clock)
    old = clock.now - timedelta(hours=5)
    assert watch.stalled({("chat", "c"): (4, old)}) == []
    clock.advance(seconds=STALL_AFTER + 1)
    assert watch.stalled({("chat", "c"): (4, old)}) != []


def test_one_url_of_a_channel_is_stuck_however_well_its_other_url_delivers() -> None:
    """Each URL delivers on its own: a send to one does not vouch for the other's backlog."""
    clock = HandClock(T0)
    watch = DrainWatch(clock)
    clock.advance(seconds=STALL_AFTER * 3)
    queued = clock.now - timedelta(minutes=20)
    watch.sent("desk", "good")
    pending = {("desk", "bad"): (2, queued), ("desk", "good"): (1, queued)}
    assert watch.stalled(pending, urls={"desk": 2}) == [
        "channel desk has 2 alerts pending for 1 of its 2 URLs, none sent there for 10 minutes"
    ]
    watch.sent("desk", "bad")
    assert watch.stalled(pending, urls={"desk": 2}) == []
