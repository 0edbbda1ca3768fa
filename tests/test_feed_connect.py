"""The reconnect policy: when the feed reconnects at once and when it backs off."""

from __future__ import annotations

import random

from fakes import grows

from notifier.feed_connect import ReconnectPolicy


def test_a_connection_that_delivered_then_saw_its_token_refused_resets_the_back_off() -> None:
    """After a long outage (back-off at its cap), a connection that delivered fills and then
    got a first 4001 reconnects at once, and a failure after it waits 1 s, not the cap."""
    policy = ReconnectPolicy(random.Random(1))
    for _ in range(6):
        policy.delay_after("connect_failed")
    policy.fill_seen()
    assert policy.delay_after("close_4001") == 0.0
    assert policy.delay_after("connect_failed") <= 1.0


def test_4001s_after_every_fill_back_off_growing() -> None:
    """Fills between repeated 4001s on short connections do not make each one immediate."""
    policy = ReconnectPolicy(random.Random(1))
    delays = []
    for _ in range(5):
        policy.fill_seen()
        delays.append(policy.delay_after("close_4001"))
    assert delays[0] == 0.0
    assert grows(delays[1:])


def test_a_stable_connection_makes_its_4001_immediate_again() -> None:
    """A token expiring on a connection up past stable_after reconnects at once, every time."""
    policy = ReconnectPolicy(random.Random(1))
    for _ in range(3):
        policy.fill_seen()
        policy.stayed_up()
        assert policy.delay_after("close_4001") == 0.0
