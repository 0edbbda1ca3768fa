"""The delivery engine: drains the outbox to the channels, one ordered lane per target.

A lane sends its target's oldest pending row, waits for the result, then the next, so alerts
leave a target in fill order and a retry holds its place at the head. Lanes of different targets
run side by side, so a failing target never delays a healthy one; a semaphore per channel bounds
concurrent sends. A row is marked only after its result: a send cut short by cancellation or
shutdown leaves the row pending, to go out after the restart (at least once, never lost).

Channel limits (`channel_limits.py`): a channel's `rate` is a token bucket on the injected clock;
a lane that had to wait for a token folds its target's due rows into one message. A Retry-After
pauses the channel. A row its channel has failed for `fallback_after` (or dead-lettered) is also
queued for the channel's `fallback`, once. A row whose URL left the config is re-queued for its
channel's current URLs and marked sent (it is done; `stats.retargeted` counts it, not `sent`);
only when the channel is gone too is it dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from notifier.backoff import retry_delay
from notifier.channel_limits import (
    FOLD_LIMIT,
    SAFE_LIMIT,
    ChannelLimits,
    FallbackPolicy,
    TargetDirectory,
    channel_targets,
    fitting,
    fold,
    retarget,
)
from notifier.clock import utc_now
from notifier.events import MessageLimit, SendResult
from notifier.settings import ChannelSettings, DeliverySettings
from notifier.store import OutboxItem, StateStore

log = logging.getLogger(__name__)

UNKNOWN_TARGET = "target no longer configured"  # and the sender cannot list its channel's
CHANNEL_GONE = "target and its channel no longer configured"
RESCAN_EVERY = 30.0  # seconds between looks at the outbox when nothing announced new rows


class Sender(Protocol):
    """What the engine needs from the channels (apprise lives behind it)."""

    def knows(self, target: str) -> bool:
        """Whether this target is still configured."""
        ...

    def channel_of(self, target: str) -> str | None:
        """The configured channel name of a target, or None if unknown."""
        ...

    async def send(
        self, target: str, title: str, body: str, *, message: str | None = None
    ) -> SendResult:
        """One attempt; a service failure is a failed result, never an exception.

        `message` names the alert(s) sent for good, the same on every retry: a sender may use
        it to recognise a retry of a message it has delivered after all.
        """
        ...


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


class Deliverer:
    """Delivers every outbox row once, with per-target order and per-target back-off."""

    def __init__(
        self,
        store: StateStore,
        sender: Sender,
        settings: DeliverySettings,
        *,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        on_sent: Callable[[OutboxItem], None] | None = None,
        channels: Mapping[str, ChannelSettings] | None = None,
    ) -> None:
        self._store = store
        self._sender = sender
        self._settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_sent = on_sent
        self.stats = DeliveryStats()
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._notified = asyncio.Event()
        self._stopping = False
        self._failure: Exception | None = None
        self._limits = ChannelLimits(channels)
        self._fallbacks = FallbackPolicy(store)

    # -- control -----------------------------------------------------------------------------

    def notify(self, targets: Iterable[str] | None = None) -> None:
        """New rows were recorded (or the clock moved): start lanes and let waiting ones look again.

        Given the targets that got rows (the pipeline knows them), their lanes are woken or
        started here: the alert leaves on the next turn of the loop, without a supervisor turn
        and an outbox scan in between. Without, only an event is set, and the supervisor
        coalesces a burst of notifications into one look at the whole outbox.
        """
        if targets is None or self._stopping:
            self._notified.set()
            return
        for target in targets:
            wake = self._wakes.get(target)
            if wake is not None:
                wake.set()
            else:
                self._start_lane(target)

    @property
    def sender(self) -> Sender:
        """The sender new sends go through."""
        return self._sender

    def swap_sender(
        self,
        sender: Sender,
        channels: Mapping[str, ChannelSettings] | None = None,
        settings: DeliverySettings | None = None,
    ) -> None:
        """Config reload: sends that start from now on go through `sender` (and new limits).

        New `settings` (max_age, retries, timeout, concurrency) apply from the next decision
        on: raising max_age during an outage must save the alerts still pending.
        """
        self._sender = sender
        if channels is not None:
            self._limits.update(channels)
        if settings is not None:
            if settings.concurrency != self._settings.concurrency:
                self._semaphores.clear()  # sends in flight release their old semaphore
            self._settings = settings
        self.notify()

    def pending(self) -> int:
        """Rows waiting in the outbox."""
        return self._store.pending_count()

    async def run(self) -> None:
        """Deliver until cancelled or drained, starting with rows left pending by an earlier run."""
        try:
            self._spawn_lanes()
            while not self._stopping:
                # Also look again now and then: `notifier outbox --retry-dead`, run beside the
                # daemon, requeues rows that no notify() announces.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RESCAN_EVERY):
                        await self._notified.wait()
                self._notified.clear()
                if self._failure is not None:
                    raise self._failure
                self._spawn_lanes()
                for wake in self._wakes.values():
                    wake.set()
            while self._lanes:  # drain() is bounding these by its grace period
                await asyncio.wait(list(self._lanes.values()))
            if self._failure is not None:
                raise self._failure
        finally:
            self._stopping = True  # notify() starts no lane from now on
            await self._cancel_lanes()

    async def drain(self, grace: float) -> None:
        """Start no new sends; give in-flight ones up to `grace` seconds; the rest stay pending."""
        self._stopping = True
        self._notified.set()
        for wake in self._wakes.values():
            wake.set()
        lanes = list(self._lanes.values())
        if not lanes:
            return
        _, late = await asyncio.wait(lanes, timeout=grace)
        if late:
            log.warning(
                "%d send(s) still in flight after %.1fs; their alerts stay pending",
                len(late),
                grace,
            )
            for task in late:
                task.cancel()
            await asyncio.wait(late)

    def _spawn_lanes(self) -> None:
        if self._stopping:
            return
        for target in self._store.pending_targets():
            if target not in self._lanes:
                self._start_lane(target)

    def _start_lane(self, target: str) -> None:
        wake = asyncio.Event()
        self._wakes[target] = wake
        self._lanes[target] = asyncio.create_task(
            self._lane(target, wake), name=f"deliver-lane-{len(self._lanes)}"
        )

    async def _cancel_lanes(self) -> None:
        lanes = list(self._lanes.values())
        for task in lanes:
            task.cancel()
        if lanes:
            await asyncio.wait(lanes)

    # -- one lane ----------------------------------------------------------------------------

    async def _lane(self, target: str, wake: asyncio.Event) -> None:
        """Send one target's rows in order until none is pending (or the engine stops)."""
        me = asyncio.current_task()
        folding = False  # set once the lane waited on its channel's rate: fold what piled up
        try:
            while not self._stopping:
                wake.clear()  # anything that happens after this is seen by the wait below
                head = self._store.head(target)
                if not head:
                    return  # the finally below forgets this lane before anyone else runs
                item = head[0]
                wait = self._due_in(item)
                if wait is None:
                    await asyncio.sleep(0)  # dead-lettered; let others run, then the next row
                    continue
                channel = self._channel(item)
                hold = wait or self._limits.wait(channel, self._clock())
                if hold > 0:
                    folding = folding or (not wait and self._limits.limited(channel))
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                    # cancellation that lands as the wait ends, and the lane would run on.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(hold):
                            await wake.wait()
                    continue
                await self._send(item, folding=folding)
                folding = False
        except Exception as exc:  # a store failure: hand it to run(), which stops the engine
            self._failure = exc
            self._notified.set()
        finally:
            if self._lanes.get(target) is me:
                del self._lanes[target]
                del self._wakes[target]

    def _message_limit(self, target: str) -> MessageLimit:
        """What one message to the target may hold, if the sender knows; else what any takes."""
        limit = getattr(self._sender, "message_limit", None)
        known = limit(target) if callable(limit) else None
        return known if isinstance(known, MessageLimit) else SAFE_LIMIT

    def _channel(self, item: OutboxItem) -> str:
        return self._sender.channel_of(item.target) or item.channel

    def _due_in(self, item: OutboxItem) -> float | None:
        """Seconds until the row may be sent (0: now); None when it was dead-lettered instead."""
        now = self._clock()
        expires = item.created_at + self._settings.max_age
        if now >= expires:  # before any retarget: a re-queued row would start a new max_age
            last = item.last_error or "never attempted"
            self._dead(item, f"undelivered after {self._settings.max_age}: {last}")
            return None
        if not self._sender.knows(item.target):
            self._retarget(item)
            return None
        wake = min(item.next_at, expires)
        falls_back = self._fallbacks.due_at(item, self._limits, self._channel(item))
        if falls_back is not None:
            if now >= falls_back:
                self._escalate(item)
            else:
                wake = min(wake, falls_back)
        if item.next_at <= now:
            return 0.0
        # Wake at the retry time, expiry or fallback time, whichever comes first.
        return (wake - now).total_seconds()

    async def _send(self, item: OutboxItem, *, folding: bool = False) -> None:
        """Send the row; when `folding`, with every due row of its target as one message."""
        channel = self._channel(item)
        semaphore = self._semaphores.get(channel)
        if semaphore is None:
            semaphore = self._semaphores[channel] = asyncio.Semaphore(self._settings.concurrency)
        async with semaphore:
            now = self._clock()
            # While this lane queued here, a reload may have dropped its URL, or other lanes
            # may have spent the channel's rate: the lane's loop sees to either.
            if (
                self._stopping
                or not self._sender.knows(item.target)
                or self._limits.wait(channel, now) > 0
            ):
                return
            self._store.flush()  # the row must be on disk before anyone can have seen it
            items = [item]
            if folding:
                # The due rows from the head up to the first one still in back-off: folding a
                # newer row past it would let the chat see the newer alert first.
                head = self._store.head(item.target, FOLD_LIMIT)
                due = list(itertools.takewhile(lambda i: i.next_at <= now, head))
                if due and due[0] == item:
                    items = fitting(due, self._message_limit(item.target))
            self.stats.retried += sum(1 for i in items if i.attempts)
            self._limits.take(channel, now)
            title, body = fold(items)
            message = "\n".join(each.identity for each in items)
            result = await self._attempt(self._sender, item, title, body, message)
        for each in items:
            if result.ok:
                self._sent(each, channel)
            else:
                self._failed(each, channel, result)

    async def _attempt(
        self, sender: Sender, item: OutboxItem, title: str, body: str, message: str
    ) -> SendResult:
        """One bounded send (by `send_backstop`); a timeout or a stray exception counts as a
        failed attempt."""
        deadline = self._settings.send_backstop
        try:
            async with asyncio.timeout(deadline):
                return await sender.send(item.target, title, body, message=message)
        except TimeoutError:
            return SendResult(ok=False, error=f"no outcome within {deadline:g}s")
        except Exception as exc:  # the Sender promised not to raise: a bug, yet no reason to stall
            # Only the type: an exception's text from an HTTP stack may carry the URL.
            log.error("sender raised %s for channel %s", type(exc).__name__, item.channel)
            return SendResult(ok=False, error=f"sender raised {type(exc).__name__}")

    def _sent(self, item: OutboxItem, channel: str) -> None:
        self._store.mark_sent(item.id)
        self.stats.sent += 1
        _bump(self.stats.sent_by_channel, channel)
        log.debug("alert sent: channel %s, rule %s", channel, item.rule)
        if self._on_sent is not None:
            try:
                self._on_sent(item)
            except Exception:  # a metrics hook must not stop delivery
                log.exception("on_sent hook failed")

    def _failed(self, item: OutboxItem, channel: str, result: SendResult) -> None:
        attempts = item.attempts + 1
        s = self._settings
        delay = retry_delay(attempts, base=s.retry_base, cap=s.retry_cap, rng=self._rng)
        now = self._clock()
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)
            self._limits.pause(channel, now + timedelta(seconds=result.retry_after))
        error = result.error or "failed"
        next_at = now + timedelta(seconds=delay)
        self._store.mark_failed(item.id, error=error, next_at=next_at)
        self.stats.failed += 1
        _bump(self.stats.failed_by_channel, channel)
        log.warning(
            "delivery failed: channel %s, rule %s, attempt %d: %s; retrying in %.1fs",
            channel,
            item.rule,
            attempts,
            error,
            delay,
        )
        fallback = self._limits.fallback(channel)
        if fallback is not None and now - item.created_at >= fallback[1]:
            self._escalate(item)

    def _retarget(self, item: OutboxItem) -> None:
        """The row's URL left the config: re-queue it for its channel's current URLs, or die."""
        targets = channel_targets(self._sender, item.channel)
        if targets is None:
            gone = isinstance(self._sender, TargetDirectory)
            self._dead(item, CHANNEL_GONE if gone else UNKNOWN_TARGET)
            return
        retarget(self._store, item, targets)
        self._store.mark_sent(item.id)  # commits the records too; a replay after a crash adds none
        self.stats.retargeted += 1
        log.info(
            "alert re-queued for the current URL(s) of channel %s (its URL left the config): "
            "rule %s",
            item.channel,
            item.rule,
        )
        self.notify()

    def _dead(self, item: OutboxItem, error: str) -> None:
        channel = self._channel(item)
        self._store.mark_dead(item.id, error=error)
        self.stats.dead += 1
        _bump(self.stats.dead_by_channel, channel)
        log.error("alert dead-lettered: channel %s, rule %s: %s", channel, item.rule, error)
        self._escalate(item)

    def _escalate(self, item: OutboxItem) -> None:
        """Queue the alert for its channel's fallback (once); wake lanes to send it."""
        channel = self._channel(item)
        if self._fallbacks.escalate(item, self._limits, channel, self._sender):
            fallback = self._limits.fallback(channel)
            log.warning(
                "channel %s failing for rule %s: alert also queued for %s",
                channel,
                item.rule,
                fallback[0] if fallback else "?",
            )
            self.notify()
