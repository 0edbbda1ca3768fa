"""Moving an alert to other targets: retargeting after a URL edit, and channel fallback.

A row whose URL left the config while its channel stayed (a revoked webhook replaced on SIGHUP)
is re-recorded for the channel's current targets (`retarget`); only a row whose channel is gone
too is dead-lettered. `fallback` re-queues an alert for another channel once its primary has
failed it for `fallback_after` or dead-lettered it (`FallbackPolicy`). Both record the moved
alert under a key naming where it came from, so doing it again after a crash adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from notifier.channel_limits import ChannelLimits
from notifier.events import Alert
from notifier.store import OutboxItem

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
                body_format=item.body_format,  # as written: apprise is told so
            )
        )
    key = _retarget_key(item.fill_key, item.rule, item.target)
    # The moved alert keeps its age: an edited URL must not restart its max_age. One that
    # `outbox --retry-dead --to` moved and nobody tried since starts it now, as it would have
    # had its one try under its old target key (see due_decision).
    created = None if item.requeued else item.created_at
    return store.record(fill_key=key, filled_at=item.filled_at, alerts=alerts, created_at=created)


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
        # Per target, (created_at, id) of rows a sweep passed over (their send still running).
        self._passed: dict[str, list[tuple[datetime, int]]] = {}

    def due_at(self, item: OutboxItem, limits: ChannelLimits, channel: str) -> datetime | None:
        """When the row falls back if it is still failing then; None if it has no fallback."""
        fallback = limits.fallback(channel)
        if fallback is None or item.attempts == 0 or item.identity in self._done:
            return None
        return item.created_at + fallback[1]

    def sweep(
        self,
        target: str,
        cutoff: datetime,
        escalate: Callable[[OutboxItem], object],
        waiting: Callable[[OutboxItem], bool] = lambda row: False,
    ) -> datetime | None:
        """Escalate the rows of `target` recorded by `cutoff` (now less fallback_after), in
        the order they were recorded; the created_at of the next one, None if none is left.

        For a target whose head is failing: the rows queued behind it were never tried (a lane
        sends its head first), but their channel has been failing all the while. Without this
        only the head would fall back, the rest at `max_age`.

        A row `waiting` says must wait (a send given up on that holds it still runs) is passed
        over, not escalated: the sweep goes on past it, and each later one looks at it again
        first, until it is escalated or no longer pending.
        """
        if not self._look_again(target, escalate, waiting):
            return None  # the fallback channel is gone (a reload): later, again
        while True:
            rows = self._store.pending_by_age(
                target, after=self._swept.get(target), limit=SWEEP_BATCH
            )
            for row in rows:
                if row.created_at > cutoff:
                    return row.created_at
                if row.identity not in self._done:
                    if waiting(row):
                        self._passed.setdefault(target, []).append((row.created_at, row.id))
                    else:
                        escalate(row)
                        if row.identity not in self._done:
                            return None  # its fallback channel is gone (a reload): later, again
                self._swept[target] = (row.created_at, row.id)
            if len(rows) < SWEEP_BATCH:
                return None

    def _look_again(
        self,
        target: str,
        escalate: Callable[[OutboxItem], object],
        waiting: Callable[[OutboxItem], bool],
    ) -> bool:
        """The rows of `target` an earlier sweep passed over, each read back by its place in
        the order (gone: sent, dead or moved since), escalated once it no longer waits; False
        if the fallback channel is gone."""
        passed = self._passed.pop(target, [])
        for n, (created_at, row_id) in enumerate(passed):
            found = self._store.pending_by_age(target, after=(created_at, row_id - 1), limit=1)
            row = found[0] if found and found[0].id == row_id else None
            if row is None or row.identity in self._done:
                continue
            if waiting(row):
                self._passed.setdefault(target, []).append((created_at, row_id))
                continue
            escalate(row)
            if row.identity not in self._done:
                self._passed.setdefault(target, []).extend(passed[n:])
                return False
        return True

    def settled(self, identity: str) -> None:
        """The row needs no fallback (it was delivered after all): never queue it for one."""
        self._done.add(identity)

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
                body_format=item.body_format,  # as written: apprise is told so
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
