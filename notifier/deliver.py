"""The delivery engine: drains the outbox to the channels, one ordered lane per target.

A lane sends its target's oldest pending row, waits for the result, then the next, so alerts
leave a target in fill order and a retry holds its place at the head. Lanes of different targets
run side by side, so a failing target never delays a healthy one; a semaphore per channel bounds
concurrent sends. A row is marked only after its result: a send cut short by cancellation or
shutdown leaves the row pending, to go out after the restart (at least once, never lost).

Channel limits (`channel_limits.py`): a channel's `rate` is a sliding window on the injected
clock; a lane that had to wait for room in it folds its target's due rows into one message
(`message_fold.py`). A Retry-After pauses the channel. A row its channel has failed for
`fallback_after` (or dead-lettered) is also queued for the channel's `fallback`, once
(`reroute.py`). When a lane's head row may go, or is settled instead (expired, moved to its
channel's current URLs), is `due_decision.py`; what becomes of a row after its attempt (marked,
backed off, re-queued for a changed URL, dead-lettered) is `delivery_outcomes.py`. The channels
are reached through the `Sender` protocol (`sender.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from notifier.channel_limits import ChannelLimits
from notifier.clock import utc_now
from notifier.delivery_outcomes import DeliveryStats, Outcomes
from notifier.due_decision import behind_a_move, due_in
from notifier.events import SendResult
from notifier.message_fold import (
    FOLD_LIMIT,
    fitting,
    fold,
    foldable,
    message_limit,
    written_in,
)
from notifier.render import escape_for, line_break
from notifier.sender import Sender
from notifier.settings import ChannelSettings, DeliverySettings
from notifier.store import OutboxItem, StateStore
from notifier.wording import counted

log = logging.getLogger(__name__)

RESCAN_EVERY = 30.0  # seconds between looks at the outbox when nothing announced new rows
# Seconds between asking the state file whether another program wrote to it: `notifier outbox
# --retry-dead`, run beside the daemon, requeues rows that no notify() announces. Well under
# any max_age (at least one attempt's timeout), so a requeued row is tried before it expires.
LOOK_EVERY = 1.0


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
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._notified = asyncio.Event()
        self._stopping = False
        self._failure: Exception | None = None
        self._limits = ChannelLimits(channels)
        self._outcomes = Outcomes(
            store,
            self._limits,
            clock=clock,
            rng=rng or random.Random(),
            notify=self.notify,
            on_sent=on_sent,
        )

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
    def stats(self) -> DeliveryStats:
        """What was sent, failed, dead-lettered and re-queued so far."""
        return self._outcomes.stats

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

    def pending_by_channel(self) -> dict[str, tuple[int, datetime]]:
        """Per channel (as now named): rows waiting and when the oldest was queued."""
        by_channel: dict[str, tuple[int, datetime]] = {}
        for (channel, _), figures in self.pending_by_target().items():
            by_channel[channel] = _together(by_channel.get(channel), figures)
        return by_channel

    def pending_by_target(self) -> dict[tuple[str, str], tuple[int, datetime]]:
        """Per channel and target: rows waiting and when the oldest was queued. A row names
        the channel it was recorded for; one renamed since, its URL kept, delivers that row
        under its new name (`_channel`), and is reported under it, as its sends are."""
        by_target: dict[tuple[str, str], tuple[int, datetime]] = {}
        for (channel, target), figures in self._store.pending_by_target().items():
            key = (self._sender.channel_of(target) or channel, target)
            by_target[key] = _together(by_target.get(key), figures)
        return by_target

    async def run(self) -> None:
        """Deliver until cancelled or drained, starting with rows left pending by an earlier run."""
        try:
            # From here on: read before the first look, so a write between the two is seen.
            self._store.changed_elsewhere()
            self._spawn_lanes()
            loop = asyncio.get_running_loop()
            looked = loop.time()
            while not self._stopping:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LOOK_EVERY):
                        await self._notified.wait()
                # A look at the whole outbox when asked, when another program wrote to it, and
                # now and then regardless (cheap: one indexed query).
                if not (
                    self._notified.is_set()
                    or self._store.changed_elsewhere()
                    or loop.time() - looked >= RESCAN_EVERY
                ):
                    continue
                looked = loop.time()
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

    @property
    def failure(self) -> Exception | None:
        """The store error a lane hit, if any (run() raises it; after a drain, ask here)."""
        return self._failure

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
                "%s still in flight after %.1fs: their alerts stay pending and go again at "
                "the next start, so one a service took before the stop arrives twice",
                counted(len(late), "send"),
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
                wait = due_in(item, self._sender, self._settings, self._outcomes, self._clock)
                if wait is None:
                    await asyncio.sleep(0)  # settled; let others run, then the next row
                    continue
                channel = self._channel(item)
                if behind_a_move(item, channel, self._lanes, self._sender, self._store):
                    # Woken when the older row is re-queued here (or dead-lettered).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(RESCAN_EVERY):
                            await wake.wait()
                    continue
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

    def _channel(self, item: OutboxItem) -> str:
        return self._sender.channel_of(item.target) or item.channel

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
            written = written_in(item, self._sender, channel, self._settings.body_format)
            newline = line_break(escape_for(written))
            items = self._batch(item, channel, now, newline) if folding else [item]
            if not items:
                return  # every one was delivered after all: marked sent
            self.stats.retried += sum(1 for i in items if i.attempts)
            self._limits.take(channel, now)
            title, body = fold(items, newline)
            message = "\n".join(each.identity for each in items)
            result = await self._attempt(self._sender, items[0], (title, body, written), message)
        for each in items:
            if result.ok:
                self._outcomes.sent(each, channel)
            else:
                self._outcomes.failed(each, channel, result, self._settings, self._sender)

    def _batch(
        self, item: OutboxItem, channel: str, now: datetime, newline: str
    ) -> list[OutboxItem]:
        """The row and the due rows behind it, as many as fit one message (`message_fold.py`);
        none when every one was delivered after all."""
        due = foldable(self._store.head(item.target, FOLD_LIMIT), now, self._settings.max_age)
        if not due or due[0] != item:
            return [item]
        # Less those an attempt given up on delivered after all (marked sent now): a fold must
        # not repeat them beside new ones.
        late = self._outcomes.delivered_after_all
        items = [row for row in due if not late(row, channel, self._sender)]
        if not items:
            return []
        return fitting(items, message_limit(self._sender, item.target), newline)

    async def _attempt(
        self, sender: Sender, item: OutboxItem, text: tuple[str, str, str], message: str
    ) -> SendResult:
        """One bounded send (by `send_backstop`) of `text` (title, body and the format they are
        written in); a timeout or a stray exception counts as a failed attempt."""
        deadline = self._settings.send_backstop
        title, body, written = text
        try:
            async with asyncio.timeout(deadline):
                return await sender.send(
                    item.target,
                    title,
                    body,
                    message=message,
                    body_format=written,
                    diagnose=item.attempts > 0,  # failed before: say why, at a retry's cost
                )
        except TimeoutError:
            return SendResult(ok=False, error=f"no outcome within {deadline:g}s")
        except Exception as exc:  # the Sender promised not to raise: a bug, yet no reason to stall
            # Only the type: an exception's text from an HTTP stack may carry the URL.
            channel = sender.channel_of(item.target) or item.channel  # as now named
            log.error("sender raised %s for channel %s", type(exc).__name__, channel)
            return SendResult(ok=False, error=f"sender raised {type(exc).__name__}")


def _together(
    figures: tuple[int, datetime] | None, more: tuple[int, datetime]
) -> tuple[int, datetime]:
    """Rows waiting and the oldest queued time, of two groups counted as one."""
    if figures is None:
        return more
    return figures[0] + more[0], min(figures[1], more[1])
