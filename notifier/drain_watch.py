"""Whether each channel's alerts drain: what /healthz and the oldest-pending gauge judge.

Judged per URL (each is delivered and retried on its own), from the outbox's pending rows and
the sends seen, and reported per channel: one channel's sends must not hide another whose
alerts pile up, nor one URL's sends a sibling URL of its channel that a recipient no longer
gets. Times come from the delivery clock, which tests move by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from notifier.wording import counted

STALL_AFTER = 600.0  # seconds a channel has alerts pending and sends none before /healthz is 503

Pending = Mapping[str, tuple[int, datetime]]  # channel -> (rows pending, oldest queued at)
PendingTargets = Mapping[tuple[str, str], tuple[int, datetime]]  # (channel, target) -> as above


class DrainWatch:
    """Remembers each URL's last send; judges the pending rows against it."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._started = clock()
        self._last_sent: dict[tuple[str, str], datetime] = {}  # by the row's channel, target

    def sent(self, channel: str, target: str) -> None:
        """An alert of this channel was delivered to this target now."""
        self._last_sent[channel, target] = self._clock()

    def stalled(
        self,
        pending: PendingTargets,
        paced: Mapping[str, float] | None = None,
        urls: Mapping[str, int] | None = None,
    ) -> list[str]:
        """Channels with an alert queued for one of their URLs more than STALL_AFTER ago and
        none sent to that URL since then, each as a phrase for the health answer.

        `paced`: seconds a channel's `rate` may hold an alert back (its period: a full window
        waits for its oldest send to leave it), added to its allowance: `rate: 1/h` is not
        stuck after 10 minutes.
        `urls`: how many URLs each channel has, to say how many of them are stuck.
        """
        now = self._clock()
        if self._started > now - timedelta(seconds=STALL_AFTER):
            return []  # not up long enough to tell a stall from a backlog left by the last run
        stuck: dict[str, tuple[int, int]] = {}  # channel -> (rows pending, URLs stuck)
        for (channel, target), (count, oldest) in pending.items():
            allowed = STALL_AFTER + (paced or {}).get(channel, 0.0)
            quiet_since = now - timedelta(seconds=allowed)
            last = self._last_sent.get((channel, target))
            if oldest <= quiet_since and (last is None or last <= quiet_since):
                rows, targets = stuck.get(channel, (0, 0))
                stuck[channel] = (rows + count, targets + 1)
        stalled = []
        for channel, (count, targets) in sorted(stuck.items()):
            minutes = (STALL_AFTER + (paced or {}).get(channel, 0.0)) / 60
            alerts = counted(count, "alert")
            of = (urls or {}).get(channel, 1)
            if of > targets:  # its other URLs deliver: "none sent" is said of these alone
                stalled.append(
                    f"channel {channel} has {alerts} pending for {targets} of its {of} "
                    f"URLs, none sent there for {minutes:g} minutes"
                )
            else:
                stalled.append(
                    f"channel {channel} has {alerts} pending, none sent for {minutes:g} minutes"
                )
        return stalled

    def oldest(self, pending: Pending) -> dict[str, float]:
        """Seconds the oldest pending alert of each channel has waited."""
        now = self._clock()
        return {
            channel: max((now - oldest).total_seconds(), 0.0)
            for channel, (_, oldest) in pending.items()
        }
