"""Per-channel send limits for delivery: a sliding window per channel, and 429 pauses.

`rate: 20/min` is a proactive limit (Telegram allows about 20 messages a minute per group): at
most 20 messages in any 60 s, on the injected clock, as the service counts them. (A token
bucket of 20 refilled at 20 a minute, which this was, lets 20 go at once and 20 more within
the same minute: twice the limit.) A lane that finds the window full waits until its oldest
send leaves it and then sends every due row of its target as one message (`message_fold.py`),
so a burst costs the chat a few messages and nothing is dropped. A 429's Retry-After pauses the
whole channel. The channel's fallback setting is read here too; what falling back does is
`reroute.FallbackPolicy`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from notifier.settings import ChannelSettings

MAX_STATED_PAUSE = 3600.0  # a wait a channel states (429) is believed up to an hour


@dataclass(slots=True)
class SendWindow:
    """At most `count` sends in any `per` seconds. Pure: `now` is given."""

    count: int
    per: float
    sent: deque[datetime] = field(default_factory=deque)  # the window's sends, oldest first

    def _settle(self, now: datetime) -> None:
        horizon = now - timedelta(seconds=self.per)
        while self.sent and self.sent[0] <= horizon:
            self.sent.popleft()
        if self.sent and self.sent[-1] > now:
            # The wall clock stepped back: a send stamped after `now` counts as made now, so
            # the window never waits out the step (an hour back would hold it an hour).
            self.sent = deque(min(at, now) for at in self.sent)

    def wait(self, now: datetime) -> float:
        """Seconds until a send fits the window (0: one does)."""
        self._settle(now)
        if len(self.sent) < self.count:
            return 0.0
        return max((self.sent[0] - now).total_seconds() + self.per, 0.0)

    def take(self, now: datetime) -> None:
        """Count one send (callers check `wait` first)."""
        self._settle(now)
        self.sent.append(now)
        while len(self.sent) > self.count:
            self.sent.popleft()


class ChannelLimits:
    """Rate windows and 429 pauses per channel, under the channel settings in force."""

    def __init__(self, channels: Mapping[str, ChannelSettings] | None = None) -> None:
        self._settings: dict[str, ChannelSettings] = dict(channels or {})
        self._windows: dict[str, SendWindow] = {}
        # channel -> (last looked at, until): the first says whether the clock stepped back
        self._paused: dict[str, tuple[datetime, datetime]] = {}

    def update(self, channels: Mapping[str, ChannelSettings]) -> None:
        """A reload: channels whose rate did not change keep the sends their window counts."""
        old = self._settings
        self._settings = dict(channels)
        for name in list(self._windows):
            if name not in channels or channels[name].rate != old[name].rate:
                del self._windows[name]

    def limited(self, channel: str) -> bool:
        """Whether the channel has a rate limit."""
        settings = self._settings.get(channel)
        return settings is not None and settings.rate is not None

    def wait(self, channel: str, now: datetime) -> float:
        """Seconds before the channel may send: a 429 pause, then the rate limit."""
        paused = self._paused.get(channel)
        if paused is not None:
            seen, until = paused
            if now < seen:  # the wall clock stepped back: the pause keeps what it had left
                until -= seen - now
            if now < until:
                self._paused[channel] = (now, until)
                return (until - now).total_seconds()
            del self._paused[channel]
        window = self._window(channel)
        return 0.0 if window is None else window.wait(now)

    def take(self, channel: str, now: datetime) -> None:
        """Count one message sent on the channel."""
        window = self._window(channel)
        if window is not None:
            window.take(now)

    def pause(self, channel: str, now: datetime, until: datetime) -> datetime:
        """The channel asked us to wait (HTTP 429 Retry-After): nothing goes out before `until`.
        The pause's end, an earlier longer one kept."""
        earlier = self._paused.get(channel)
        if earlier is None or until > earlier[1]:
            self._paused[channel] = (now, until)
            return until
        return earlier[1]

    def fallback(self, channel: str) -> tuple[str, timedelta] | None:
        """The channel's fallback and after how long of failing, if it has one."""
        settings = self._settings.get(channel)
        if settings is None or settings.fallback is None:
            return None
        return settings.fallback, settings.fallback_after

    def _window(self, channel: str) -> SendWindow | None:
        settings = self._settings.get(channel)
        if settings is None or settings.rate is None:
            return None
        window = self._windows.get(channel)
        if window is None:
            count, per = settings.rate
            window = self._windows[channel] = SendWindow(count, per)
        return window
