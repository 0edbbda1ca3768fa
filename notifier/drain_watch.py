"""Whether each channel's alerts drain: what /healthz and the oldest-pending gauge judge.

Judged per channel, from the outbox's pending rows and the sends seen: one channel's sends
must not hide another whose alerts pile up. Times come from the delivery clock, which tests
move by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

STALL_AFTER = 600.0  # seconds a channel has alerts pending and sends none before /healthz is 503

Pending = Mapping[str, tuple[int, datetime]]  # channel -> (rows pending, oldest queued at)


class DrainWatch:
    """Remembers each channel's last send; judges the pending rows against it."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._started = clock()
        self._last_sent: dict[str, datetime] = {}  # by the outbox row's channel

    def sent(self, channel: str) -> None:
        """An alert of this channel was delivered now."""
        self._last_sent[channel] = self._clock()

    def stalled(self, pending: Pending, paced: Mapping[str, float] | None = None) -> list[str]:
        """Channels with an alert queued more than STALL_AFTER ago and none sent since then,
        each as a phrase for the health answer.

        `paced`: seconds a channel's `rate` may hold an alert back (one message's share of
        its period), added to its allowance: `rate: 1/h` is not stuck after 10 minutes.
        """
        now = self._clock()
        if self._started > now - timedelta(seconds=STALL_AFTER):
            return []  # not up long enough to tell a stall from a backlog left by the last run
        stalled = []
        for channel, (count, oldest) in sorted(pending.items()):
            allowed = STALL_AFTER + (paced or {}).get(channel, 0.0)
            quiet_since = now - timedelta(seconds=allowed)
            last = self._last_sent.get(channel)
            if oldest <= quiet_since and (last is None or last <= quiet_since):
                stalled.append(
                    f"channel {channel} has {count} alerts pending, "
                    f"none sent for {allowed / 60:g} minutes"
                )
        return stalled

    def oldest(self, pending: Pending) -> dict[str, float]:
        """Seconds the oldest pending alert of each channel has waited."""
        now = self._clock()
        return {
            channel: max((now - oldest).total_seconds(), 0.0)
            for channel, (_, oldest) in pending.items()
        }
