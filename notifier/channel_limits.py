"""Per-channel send limits for delivery: a token bucket, 429 pauses, folding and fallback.

`rate: 20/min` is a proactive limit (Telegram allows about 20 messages a minute per group): a
bucket of 20 tokens refilled at 20 per 60 s on the injected clock. A lane that finds the bucket
empty waits for the next token and then sends every due row of its target as ONE message listing
them (`fold`), so a burst costs the chat a few messages and nothing is dropped. A 429's
Retry-After pauses the whole channel. `fallback` re-queues an alert for another channel once its
primary has failed it for `fallback_after` or dead-lettered it (`FallbackPolicy`).

A row whose URL left the config while its channel stayed (a revoked webhook replaced on SIGHUP)
is re-recorded for the channel's current targets (`retarget`); only a row whose channel is gone
too is dead-lettered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from notifier.events import Alert, MessageLimit
from notifier.settings import ChannelSettings
from notifier.store import OutboxItem

FOLD_LIMIT = 50  # rows folded into one message at most; the rest go in the next one
MAX_STATED_PAUSE = 3600.0  # a wait a channel states (429) is believed up to an hour
FALLBACK_SUFFIX = "→fallback"  # rule name of a fallback row: one per (alert, target), idempotent
RETARGET_SUFFIX = "→retarget"  # rule suffix only for a target an alert was moved away from before
SWEEP_BATCH = 100  # rows the fallback sweep reads at a time


class _Target(Protocol):
    @property
    def key(self) -> str: ...


@runtime_checkable
class TargetDirectory(Protocol):
    """A sender that can also list a channel's targets (needed to fall back to it)."""

    def targets(self, channel: str) -> Sequence[_Target]: ...


class Recorder(Protocol):
    """The store's part: record alerts under a key, once."""

    def record(self, *, fill_key: str, filled_at: datetime, alerts: Sequence[Alert]) -> bool: ...


class FallbackRecorder(Recorder, Protocol):
    """The store's part in fallback: also whether a target already has an alert, and its
    pending rows in the order they were recorded."""

    def has_alert(
        self, *, fill_key: str, rule: str, target: str, derived: bool = False
    ) -> bool: ...

    def pending_by_age(
        self, target: str, *, after: tuple[datetime, int] | None = None, limit: int = 100
    ) -> list[OutboxItem]: ...


class RetargetRecorder(Protocol):
    """The store's part in retargeting: records that keep the alert's age, and whether a key
    was recorded before."""

    def record(
        self,
        *,
        fill_key: str,
        filled_at: datetime,
        alerts: Sequence[Alert],
        created_at: datetime | None = None,
    ) -> bool: ...

    def seen(self, fill_key: str) -> bool: ...


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


SAFE_LIMIT = MessageLimit(chars=1900)  # what any service takes (Discord's 2000, less a margin)


def fitting(
    items: Sequence[OutboxItem], limit: MessageLimit, newline: str = "\n"
) -> list[OutboxItem]:
    """The first rows whose fold the service takes whole (at least the first row).

    A fold cut by the service (overflow=truncate, or a service's line limit) would lose whole
    alerts that are then marked sent: the rest wait for the next message instead. Lengths are
    counted as markup may grow them (`worst_length`); lines as any line break may end one.
    """
    taken: list[OutboxItem] = []
    for item in items:
        title, body = fold([*taken, item], newline)
        text = f"{title}{newline}{body}"
        breaks = text.count("\n") + (text.count(newline) if newline != "\n" else 0)
        too_long = worst_length(text) > limit.chars
        too_tall = limit.lines > 0 and breaks + 1 > limit.lines
        if taken and (too_long or too_tall):
            break
        taken.append(item)
    return taken


MARKUP_OVERHEAD = 64  # characters a service may wrap a message in (Telegram: <b>title</b>...)
MARKUP_GROWTH = 8  # the most one character may become: `&nbsp;`, `&apos;`, `<br />\r\n`


def worst_length(text: str) -> int:
    """The most a service's conversion can make of the text, in characters.

    apprise escapes a text body to HTML for Telegram (a space is `&nbsp;`, a quote `&apos;`, a
    tab `&emsp;`) and cuts the escaped form; MarkdownV2 puts a backslash before punctuation.
    Only letters and digits are sure to stay one character, so anything else counts as
    `MARKUP_GROWTH`: a bound, not a guess at each service's rules.
    """
    plain = sum(1 for c in text if c.isalnum())
    return MARKUP_OVERHEAD + plain + MARKUP_GROWTH * (len(text) - plain)


def fold(items: Sequence[OutboxItem], newline: str = "\n") -> tuple[str, str]:
    """One message for several alerts of one target: a count title and each alert in turn,
    their lines ended as the message format ends them (render.line_break)."""
    if len(items) == 1:
        return items[0].title, items[0].body
    title = f"{len(items)} alerts (sending was rate-limited)"
    body = (newline * 2).join(f"{item.title}{newline}{item.body}" for item in items)
    return title, body


def channel_targets(sender: object, channel: str) -> Sequence[_Target] | None:
    """The channel's current targets; None if it is gone (or the sender cannot list them)."""
    if not isinstance(sender, TargetDirectory):
        return None
    try:
        targets = sender.targets(channel)
    except KeyError:
        return None
    return targets or None


def retarget(store: RetargetRecorder, item: OutboxItem, targets: Sequence[_Target]) -> bool:
    """Record a row's alert for its channel's current targets; whether new rows were added.

    The new rows keep the alert's (fill_key, rule), so a target that already holds the alert
    (it was in the channel when the alert was recorded) is not given it twice: the outbox
    ignores a second (fill_key, rule, target). The record key names the old row, so doing this
    again after a crash adds nothing. A target this alert was earlier moved away from holds a
    row marked sent but never delivered: it gets the alert under a suffixed rule instead.
    """
    base = item.rule
    while base.endswith(RETARGET_SUFFIX):
        base = base.removesuffix(RETARGET_SUFFIX)
    alerts = []
    for target in targets:
        rule = base
        while store.seen(_retarget_key(item.fill_key, rule, target.key)):
            rule += RETARGET_SUFFIX
        alerts.append(
            Alert(
                fill_key=item.fill_key,
                rule=rule,
                channel=item.channel,
                target=target.key,
                title=item.title,
                body=item.body,
                filled_at=item.filled_at,
            )
        )
    key = _retarget_key(item.fill_key, item.rule, item.target)
    # The moved alert keeps its age: an edited URL must not restart its max_age.
    return store.record(
        fill_key=key, filled_at=item.filled_at, alerts=alerts, created_at=item.created_at
    )


def base_rule(rule: str) -> str:
    """The configured rule an outbox row's rule name derives from (fallback and retarget
    rows carry suffixes)."""
    for suffix in (FALLBACK_SUFFIX, RETARGET_SUFFIX):
        rule = rule.split(suffix, 1)[0]
    return rule


def _retarget_key(fill_key: str, rule: str, target: str) -> str:
    return f"retarget:{fill_key}|{rule}|{target}"


class FallbackPolicy:
    """Queues an alert for its channel's fallback, once: a failing primary must not silence it."""

    def __init__(self, store: FallbackRecorder) -> None:
        self._store = store
        # By the row's identity, not its id: SQLite reuses the id of a deleted last row.
        self._done: set[str] = set()
        # Per target, (created_at, id) of the last row the sweep escalated: where it goes on.
        self._swept: dict[str, tuple[datetime, int]] = {}

    def due_at(self, item: OutboxItem, limits: ChannelLimits, channel: str) -> datetime | None:
        """When the row falls back if it is still failing then; None if it has no fallback."""
        fallback = limits.fallback(channel)
        if fallback is None or item.attempts == 0 or item.identity in self._done:
            return None
        return item.created_at + fallback[1]

    def sweep(
        self, target: str, cutoff: datetime, escalate: Callable[[OutboxItem], object]
    ) -> datetime | None:
        """Escalate the rows of `target` recorded by `cutoff` (now less fallback_after), in
        the order they were recorded; the created_at of the next one, None if none is left.

        For a target whose head is failing: the rows queued behind it were never tried (a lane
        sends its head first), but their channel has been failing all the while. Without this
        only the head would fall back, the rest at `max_age`.
        """
        while True:
            rows = self._store.pending_by_age(
                target, after=self._swept.get(target), limit=SWEEP_BATCH
            )
            for row in rows:
                if row.created_at > cutoff:
                    return row.created_at
                if row.identity not in self._done:
                    escalate(row)
                    if row.identity not in self._done:
                        return None  # its fallback channel is gone (a reload): later, again
                self._swept[target] = (row.created_at, row.id)
            if len(rows) < SWEEP_BATCH:
                return None

    def escalate(
        self, item: OutboxItem, limits: ChannelLimits, channel: str, sender: object
    ) -> bool:
        """Record the alert for the fallback channel's targets; whether rows were added."""
        fallback = limits.fallback(channel)
        identity = item.identity
        if fallback is None or identity in self._done or not isinstance(sender, TargetDirectory):
            return False
        try:
            targets = sender.targets(fallback[0])
        except KeyError:
            return False  # the fallback channel is gone after a reload (it may come back)
        self._done.add(identity)
        # Named after the rule the alert came from, whatever hops and moves it made since:
        # a fallback of a fallback, or of a row re-queued for an edited URL, is still the
        # same alert, and the outbox takes one (fill_key, rule, target).
        rule = base_rule(item.rule)
        alerts = [
            Alert(
                fill_key=item.fill_key,
                rule=rule + FALLBACK_SUFFIX,
                channel=fallback[0],
                target=target.key,
                title=item.title,
                body=item.body,
                filled_at=item.filled_at,
            )
            for target in targets
            # A target that holds the alert already: the rule notifies the fallback channel
            # itself, or an earlier hop or move took the alert there.
            if not self._store.has_alert(
                fill_key=item.fill_key, rule=rule, target=target.key, derived=True
            )
        ]
        if not alerts:
            return False
        return self._store.record(
            fill_key=f"fallback:{identity}", filled_at=item.filled_at, alerts=alerts
        )
