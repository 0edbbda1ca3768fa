"""What becomes of an outbox row once its lane has decided: sent, retried, re-queued or dead.

The lane (`deliver.py`, timed by `due_decision.py`) decides when a row goes and with what; this
records the outcome in the state file, counts it, logs it, and queues the channel's fallback when
the row's channel keeps failing. A row whose URL left the config is re-queued for its channel's
current URLs and marked sent (it is done; `stats.retargeted` counts it, not `sent`); only when
the channel is gone too is it dead-lettered.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from notifier.backoff import retry_delay
from notifier.channel_limits import ChannelLimits
from notifier.events import SendResult
from notifier.outbox_queue import MOVED_PREFIX
from notifier.reroute import FallbackPolicy, TargetDirectory, channel_targets, retarget
from notifier.sender import Sender
from notifier.settings import DeliverySettings
from notifier.store import OutboxItem, StateStore

log = logging.getLogger(__name__)

UNKNOWN_TARGET = "target no longer configured"  # and the sender cannot list its channel's
CHANNEL_GONE = "target and its channel no longer configured"


@dataclass(slots=True)
class DeliveryStats:
    """Counters read by metrics and the shutdown summary; `failed` counts failed attempts."""

    sent: int = 0
    failed: int = 0
    dead: int = 0
    retried: int = 0
    retargeted: int = 0  # rows re-queued for their channel's current URLs after a config edit
    sent_by_channel: dict[str, int] = field(default_factory=dict)
    failed_by_channel: dict[str, int] = field(default_factory=dict)
    dead_by_channel: dict[str, int] = field(default_factory=dict)


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


class Outcomes:
    """Records each row's outcome; `notify` wakes the lanes when a row was queued elsewhere."""

    def __init__(
        self,
        store: StateStore,
        limits: ChannelLimits,
        *,
        clock: Callable[[], datetime],
        rng: random.Random,
        notify: Callable[[], None],
        on_sent: Callable[[OutboxItem], None] | None = None,
    ) -> None:
        self._store = store
        self._limits = limits
        self._fallbacks = FallbackPolicy(store)
        self._clock = clock
        self._rng = rng
        self._notify = notify
        self._on_sent = on_sent
        self.stats = DeliveryStats()

    def fallback_at(self, item: OutboxItem, channel: str) -> datetime | None:
        """When the row is due for its channel's fallback, if it has one and has not gone yet."""
        return self._fallbacks.due_at(item, self._limits, channel)

    def sweep_fallbacks(
        self, target: str, channel: str, now: datetime, sender: Sender
    ) -> datetime | None:
        """Escalate the rows waiting behind a failing head for fallback_after (FallbackPolicy);
        when the next one will be due."""
        fallback = self._limits.fallback(channel)
        if fallback is None:
            return None
        after = fallback[1]

        def settle_or_escalate(row: OutboxItem) -> None:
            # A row behind the head may have been tried before (the head was then filled later,
            # before a backfilled row took its place): sent late, it needs no fallback.
            if self.delivered_after_all(row, channel, sender):
                self._fallbacks.settled(row.identity)
            else:
                self.escalate(row, channel, sender)

        recorded = self._fallbacks.sweep(
            target,
            now - after,
            settle_or_escalate,
            waiting=lambda row: _still_sending(row, sender),
        )
        return None if recorded is None else recorded + after

    def delivered_after_all(self, item: OutboxItem, channel: str, sender: Sender) -> bool:
        """Whether an attempt given up on delivered the row when its thread ended (the sender
        remembers); if so it is marked sent now."""
        take = getattr(sender, "take_delivered", None)
        if not callable(take) or not take(item.target, item.identity):
            return False
        self.sent(item, channel)
        return True

    def still_sending(self, item: OutboxItem, sender: Sender) -> bool:
        """Whether an attempt given up on that holds this alert still runs (it may yet arrive)."""
        return _still_sending(item, sender)

    def sent(self, item: OutboxItem, channel: str) -> None:
        self._store.mark_sent(item.id)
        self.stats.sent += 1
        _bump(self.stats.sent_by_channel, channel)
        log.info(
            "alert sent: channel %s, rule %s, outbox #%d",
            channel,
            item.rule,
            item.id,
            extra={"event": "sent", "channel": channel, "rule": item.rule, "alert": item.id},
        )
        if self._on_sent is not None:
            try:  # the item as sent: under its channel's name now (a rename may have kept it)
                self._on_sent(item if item.channel == channel else replace(item, channel=channel))
            except Exception:  # a metrics hook must not stop delivery
                log.exception("on_sent hook failed")

    def failed(
        self,
        item: OutboxItem,
        channel: str,
        result: SendResult,
        settings: DeliverySettings,
        sender: Sender,
    ) -> None:
        """A failed attempt: back off (at least as long as the service asked), maybe fall back."""
        attempts = item.attempts + 1
        s = settings
        delay = retry_delay(attempts, base=s.retry_base, cap=s.retry_cap, rng=self._rng)
        now = self._clock()
        pause: float | None = None  # seconds the channel rests, when the service asked
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)
            until = self._limits.pause(channel, now, now + timedelta(seconds=result.retry_after))
            pause = round((until - now).total_seconds(), 1)
        # A 429 pauses the whole channel, not just this alert: said, with the pause taken (an
        # earlier longer one kept; apprise passes no Retry-After on: a wait the answer states,
        # else 30 s).
        paused = "" if pause is None else f" (rate-limited: channel {channel} paused {pause:g}s)"
        error = result.error or "failed"
        next_at = now + timedelta(seconds=delay)
        # A requeued alert's one try must be an answer: a 429 asks for a pause, so it stays
        # requeued (and not expired) until the service takes or refuses it.
        counted = not (item.requeued and result.retry_after is not None)
        self._store.mark_failed(item.id, error=error, next_at=next_at, counted=counted)
        self.stats.failed += 1
        _bump(self.stats.failed_by_channel, channel)
        log.warning(
            "delivery failed: channel %s, rule %s, outbox #%d, attempt %d: %s; retrying in %.1fs%s",
            channel,
            item.rule,
            item.id,
            attempts,
            error,
            delay,
            paused,
            extra={
                "event": "failed",
                "channel": channel,
                "rule": item.rule,
                "alert": item.id,
                "attempt": attempts,
                "retry_in": round(delay, 3),
                "error": error,
                **({} if pause is None else {"paused": pause}),
            },
        )
        fallback = self._limits.fallback(channel)
        if fallback is not None and now - item.created_at >= fallback[1]:
            self.escalate(item, channel, sender)

    def retarget(self, item: OutboxItem, sender: Sender) -> None:
        """The row's URL left the config: re-queue it for its channel's current URLs, or die."""
        targets = channel_targets(sender, item.channel)
        if targets is None:
            gone = isinstance(sender, TargetDirectory)
            channel = sender.channel_of(item.target) or item.channel
            self.dead(item, channel, CHANNEL_GONE if gone else UNKNOWN_TARGET, sender)
            return
        retarget(self._store, item, targets)
        self._store.mark_sent(item.id)  # commits the records too; a replay after a crash adds none
        self.stats.retargeted += 1
        why = (
            "moved there by `outbox --retry-dead --to`"
            if item.target.startswith(MOVED_PREFIX)
            else "its URL left the config"
        )
        log.info(
            "alert re-queued for the current URL(s) of channel %s (%s): rule %s, was outbox #%d",
            item.channel,
            why,
            item.rule,
            item.id,
        )
        self._notify()

    def dead(self, item: OutboxItem, channel: str, error: str, sender: Sender) -> None:
        # The fallback first, as `retarget` records before it marks: its rows join the batch
        # that marking the row dead commits. Marked first, a kill before that batch's commit
        # left a dead row whose fallback no later look would ever queue; queued first, a kill
        # between leaves the row pending, and dying again queues nothing twice.
        self.escalate(item, channel, sender, dead=True)
        self._store.mark_dead(item.id, error=error)
        self.stats.dead += 1
        _bump(self.stats.dead_by_channel, channel)
        log.error(
            "alert dead-lettered: channel %s, rule %s, outbox #%d: %s",
            channel,
            item.rule,
            item.id,
            error,
            extra={
                "event": "dead",
                "channel": channel,
                "rule": item.rule,
                "alert": item.id,
                "attempts": item.attempts,
                "error": error,
            },
        )

    def escalate(
        self, item: OutboxItem, channel: str, sender: Sender, *, dead: bool = False
    ) -> None:
        """Queue the alert for its channel's fallback (once); wake lanes to send it.

        Not while an attempt given up on that holds it still runs: it may yet arrive, and the
        alert would show twice. It is asked again at the next look (a retry, the sweep). A
        dead-lettered alert goes regardless: no later look would come.
        """
        if not dead and _still_sending(item, sender):
            log.debug("fallback for rule %s waits: a send given up on still runs", item.rule)
            return
        if self._fallbacks.escalate(item, self._limits, channel, sender):
            fallback = self._limits.fallback(channel)
            log.warning(
                "channel %s failing for rule %s: alert (outbox #%d) also queued for %s",
                channel,
                item.rule,
                item.id,
                fallback[0] if fallback else "?",
            )
            self._notify()


def _still_sending(item: OutboxItem, sender: Sender) -> bool:
    """Whether the sender says an attempt given up on that holds this alert still runs."""
    sending = getattr(sender, "sending", None)
    return callable(sending) and bool(sending(item.target, item.identity))
