"""Per-channel send limits for delivery: a token bucket per channel, and 429 pauses.

`rate: 20/min` is a proactive limit (Telegram allows about 20 messages a minute per group): a
bucket of 20 tokens refilled at 20 per 60 s on the injected clock. A lane that finds the bucket
empty waits for the next token and then sends every due row of its target as one message
(`message_fold.py`), so a burst costs the chat a few messages and nothing is dropped. A 429's
Retry-After pauses the whole channel. The channel's fallback setting is read here too; what
falling back does is `reroute.FallbackPolicy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from notifier.settings import ChannelSettings

MAX_STATED_PAUSE = 3600.0  # a wait a channel states (429) is believed up to an hour


@dataclass(slots=True)
class TokenBucket:
    """`capacity` sends at once, refilled at `capacity` per `per` seconds. Pure: `now` is given."""

    capacity: int
    per: float
    tokens: float
    updated: datetime

    def _refill(self, now: datetime) -> None:
        elapsed = max((now - self.updated).total_seconds(), 0.0)
        self.tokens = min(float(self.capacity), self.tokens + elapsed * self.capacity / self.per)
        # Always `now`, even behind: after the wall clock steps back an hour, keeping the later
        # time would leave an empty bucket without a token for that hour.
        self.updated = now

    def wait(self, now: datetime) -> float:
        """Seconds until a token is available (0: one is)."""
        self._refill(now)
        missing = 1.0 - self.tokens
        return 0.0 if missing <= 1e-9 else missing * self.per / self.capacity

    def take(self, now: datetime) -> None:
        """Spend one token (callers check `wait` first)."""
        self._refill(now)
        self.tokens = max(self.tokens - 1.0, 0.0)


class ChannelLimits:
    """Rate buckets and 429 pauses per channel, under the channel settings in force."""

    def __init__(self, channels: Mapping[str, ChannelSettings] | None = None) -> None:
        self._settings: dict[str, ChannelSettings] = dict(channels or {})
        self._buckets: dict[str, TokenBucket] = {}
        # channel -> (last looked at, until): the first says whether the clock stepped back
        self._paused: dict[str, tuple[datetime, datetime]] = {}

    def update(self, channels: Mapping[str, ChannelSettings]) -> None:
        """A reload: buckets of channels whose rate did not change keep their tokens."""
        old = self._settings
        self._settings = dict(channels)
        for name in list(self._buckets):
            if name not in channels or channels[name].rate != old[name].rate:
                del self._buckets[name]

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
        bucket = self._bucket(channel, now)
        return 0.0 if bucket is None else bucket.wait(now)

    def take(self, channel: str, now: datetime) -> None:
        """Count one message sent on the channel."""
        bucket = self._bucket(channel, now)
        if bucket is not None:
            bucket.take(now)

    def pause(self, channel: str, now: datetime, until: datetime) -> None:
        """The channel asked us to wait (HTTP 429 Retry-After): nothing goes out before `until`."""
        earlier = self._paused.get(channel)
        if earlier is None or until > earlier[1]:
            self._paused[channel] = (now, until)

    def fallback(self, channel: str) -> tuple[str, timedelta] | None:
        """The channel's fallback and after how long of failing, if it has one."""
        settings = self._settings.get(channel)
        if settings is None or settings.fallback is None:
            return None
        return settings.fallback, settings.fallback_after

    def _bucket(self, channel: str, now: datetime) -> TokenBucket | None:
        settings = self._settings.get(channel)
        if settings is None or settings.rate is None:
            return None
        bucket = self._buckets.get(channel)
        if bucket is None:
            count, per = settings.rate
            bucket = self._buckets[channel] = TokenBucket(count, per, float(count), now)
        return bucket
