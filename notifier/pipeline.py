"""The one path every fill takes: dedupe, market title, rules, render, outbox.

`run` and `demo` go through `Pipeline`; `plan.plan_alerts` is its pure middle, shared with
the `test` command, so a dry run renders what production would (shaping aside: see replay).
The feed reader only enqueues (`submit` never waits on I/O); a separate task does the rest.

A fill that a `market_title` rule cannot judge for want of its title waits for it, durably
(title_wait.py), and comes back through the same path once it can be judged.

Shaped rules (group/throttle/active) go through the shaping stage instead of rendering at once.
Durability: a fill that enters the shaper is recorded as seen, and what the shaper's state
changed is written to the store right after, in the same synchronous stretch (no await in
between). The service's store group-commits, so both land in one transaction: after kill -9 a
held fill is either in the stored state and seen, or neither (then backfill brings it again) --
never lost, never doubled. What the shaper releases is recorded by shaping_release.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from notifier import fill_trace
from notifier.clock import utc_now
from notifier.events import Fill
from notifier.fanout import TargetLookup
from notifier.plan import plan_alerts
from notifier.rules import Rule, RuleSet
from notifier.shaping_release import ReleaseStore, ShapingReleaser
from notifier.shaping_stage import ShapingStage
from notifier.title_gate import TitleGate, TitleSource
from notifier.title_wait import HeldFills, TitleWaits

log = logging.getLogger(__name__)

# How many queued fills one store transaction takes at most: a burst is committed in groups,
# so the outbox does not cost one commit per fill, while a lone fill is still handled at once.
BATCH_LIMIT = 500
TITLE_RETRY = 10.0  # seconds between two looks at the fills waiting for their market title


class FillRecorder(ReleaseStore, Protocol):
    """The state store's part in the pipeline: dedupe and the durable outbox, in one transaction
    (and, as ReleaseStore says, the shaping state)."""

    def remember(self, fills: Sequence[tuple[str, datetime]]) -> int: ...

    def unseen(self, fill_keys: Sequence[str]) -> set[str]: ...

    @property
    def title_waits(self) -> HeldFills: ...


@dataclass(slots=True)
class PipelineStats:
    """Counters the shutdown summary and the metrics endpoint read."""

    received: Counter[str] = field(default_factory=Counter)  # by source: live, backfill
    duplicates: int = 0
    processed: int = 0
    matched: Counter[str] = field(default_factory=Counter)  # by rule
    matched_fills: int = 0
    alerts: int = 0
    released: int = 0  # shaped messages (digests included) recorded for delivery


class Pipeline:
    """Takes fills from the feed (any source), and turns each new one into durable alerts."""

    def __init__(
        self,
        *,
        rules: RuleSet,
        targets: TargetLookup,
        store: FillRecorder,
        titles: TitleSource | None,
        on_recorded: Callable[[set[str]], None],
        title_timeout: float = 2.0,
        title_retry: float = TITLE_RETRY,
        title_waits: TitleWaits | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._rules = rules
        self.shaping = ShapingStage(
            rules.rules,
            clock=clock,
            stored=store.shaping.entries(),
            snapshot=store.shaping.legacy_snapshot(),
        )
        self._timer_error: BaseException | None = None
        self._targets = targets
        self._store = store
        self._on_recorded = on_recorded
        self._title_retry = title_retry
        self.waits = (
            TitleWaits(store.title_waits, clock=clock) if title_waits is None else title_waits
        )
        self._gate = TitleGate(self.waits, titles, store, offer=self._offer, timeout=title_timeout)
        self._known_title = titles.cached if titles is not None else _no_title
        self._queue: asyncio.Queue[tuple[Fill, str] | None] = asyncio.Queue()
        self._queued: set[str] = set()
        self._taken = self._done = 0  # fills queued, fills recorded: when a catch-up is in
        self._catch_up: int | None = None  # `_taken` when the start's catch-up was handed on
        self.stats = PipelineStats()
        self._releases = ShapingReleaser(
            self.shaping,
            store,
            targets=lambda: self._targets,
            counts=self.stats,
            on_recorded=on_recorded,
            clock=clock,
        )
        self._releases.record_orphans(self.shaping.take_orphans())

    @property
    def rules(self) -> RuleSet:
        """The rules fills are judged by now (a reload swaps them)."""
        return self._rules

    def swap(self, *, rules: RuleSet, targets: TargetLookup) -> None:
        """Use a new rule set and channel set from the next fill on (config reload)."""
        self._rules = rules
        self._targets = targets
        self._releases.reconfigure(rules)
        self._gate.offer_due(rules)  # the new rules may not need the titles fills wait for

    def tick(self) -> None:
        """The clock moved or the shaper changed: look at the shaping deadlines again."""
        self._releases.tick()

    def hold_releases(self) -> None:
        """Release no shaped message before `caught_up` says the start's catch-up is in (or
        CATCH_UP_HOLD passes): a day's summary due while the daemon was down would go out
        without the fills made before its time that the catch-up brings."""
        self._releases.hold()

    def caught_up(self) -> None:
        """The feed handed on its first catch-up: releases resume once those are recorded."""
        self._catch_up = self._taken
        self._check_caught_up()

    def _check_caught_up(self) -> None:
        # A fill waiting for its market's title is counted done but not yet recorded: the
        # catch-up is in when none waits (or CATCH_UP_HOLD passes).
        if self._catch_up is not None and self._done >= self._catch_up and not self.waits:
            self._catch_up = None
            self._releases.caught_up()

    def release_due(self) -> None:
        """Record what the shaper releases by now (see ShapingReleaser.release_due)."""
        self._releases.release_due()

    async def submit(self, fill: Fill, source: str) -> None:
        """Accept a fill from the feed; returns at once (the feed never waits on I/O here)."""
        self.stats.received[source] += 1
        key = fill.key
        if key in self._queued:
            self.stats.duplicates += 1
            return
        self._queued.add(key)
        self._queue.put_nowait((fill, source))
        self._taken += 1

    def _offer(self, fill: Fill) -> None:
        """Queue a held fill again (unless it is queued already): not a new arrival."""
        if fill.key not in self._queued:
            self._queued.add(fill.key)
            self._queue.put_nowait((fill, "held"))
            self._taken += 1

    def backlog(self) -> int:
        """Fills accepted but not yet recorded."""
        return self._queue.qsize()

    def close(self) -> None:
        """Ask `run` to return once every fill submitted so far is recorded."""
        self._queue.put_nowait(None)

    async def run(self) -> None:
        """Process queued fills a batch at a time, until `close` (or cancellation).

        A timer task beside it releases held alerts at the shaper's deadlines, another looks at
        the fills waiting for a title; what is still held at the end stays in the store for the
        next start.
        """
        self._gate.offer_due(self._rules)  # fills held at the last stop: their titles, now
        timers = [
            asyncio.create_task(self._releases.release_forever(), name="shaping-timer"),
            asyncio.create_task(
                self._gate.retry_forever(lambda: self._rules, self._title_retry),
                name="title-retry",
            ),
        ]
        for timer in timers:
            timer.add_done_callback(self._timer_done)
        try:
            await self._consume()
        finally:
            for timer in timers:
                timer.cancel()
            await asyncio.wait(timers)
            if self.waits:
                log.info("%d fills wait for their market title, kept for later", len(self.waits))

    def _timer_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._timer_error = task.exception()
            self._queue.put_nowait(None)

    async def _consume(self) -> None:
        closing = False
        while not closing:
            batch: list[tuple[Fill, str]] = []
            item = await self._queue.get()
            while True:
                if item is None:
                    if self._timer_error is not None:
                        raise self._timer_error
                    closing = True
                    break
                batch.append(item)
                if len(batch) >= BATCH_LIMIT or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                await self._process(batch)
                self._done += len(batch)
                self._check_caught_up()

    async def _process(self, batch: list[tuple[Fill, str]]) -> None:
        self._store.flush()  # a batch's records commit together with its shaping state
        # No "seen before?" query up front: the inserts below say it (INSERT OR IGNORE), and
        # matching a duplicate again costs less than asking the store about every fill.
        fills = [fill for fill, _ in batch]
        # One config for the whole batch. A reload during a title look-up (the only await)
        # would pair old rules with new channels and a shaping stage that no longer knows
        # them: match again with the config now in force (titles are cached by then).
        while True:
            rules, targets = self._rules, self._targets
            hits, quiet, waiting, untitled = await self._match(fills, rules)
            if rules is self._rules and targets is self._targets:
                break
        self._gate.note_untitled(untitled)
        fill_trace.trace_batch(batch, hits, waiting, self._known_title)
        if waiting:
            arrived = {fill.key for fill, source in batch if source != "held"}
            self.stats.duplicates += self._gate.hold(waiting, arrived)
        # Held past the store's batch limit: records commit with the state that holds them.
        with self._store.hold_batch():
            remembered = self._store.remember(quiet)
            self.stats.processed += remembered
            self.stats.duplicates += len(quiet) - remembered
            # A held fill is released with its record, before any shaping-state write commits the
            # batch: recorded and held at once, a restart would judge it again.
            if self.waits:
                self._gate.judged(key for key, _ in quiet)
            recorded: set[str] = set()  # targets with new outbox rows
            shaped = False
            for fill, matched in hits:
                planned = plan_alerts(
                    fill, rules=rules, targets=targets, defer_shaped=True, matched=matched
                )
                new = self._store.record(
                    fill_key=fill.key, filled_at=fill.filled_at, alerts=planned.alerts
                )
                if self.waits:
                    self._gate.judged((fill.key,))
                if new:
                    self.stats.processed += 1
                    self.stats.alerts += len(planned.alerts)
                    self.stats.matched.update(rule.name for rule in planned.rules)
                    self.stats.matched_fills += bool(planned.rules)
                    recorded.update(alert.target for alert in planned.alerts)
                    for rule in planned.shaped:
                        shaped = True
                        recorded |= self._releases.offer(rule, fill)
                    if planned.shaped:
                        self._releases.offered()
                else:
                    self.stats.duplicates += 1
                    fill_trace.trace_repeat(fill)
            if shaped:
                self._releases.save()  # no await since the records: one transaction with them
                self.tick()
        for fill, _ in batch:
            self._queued.discard(fill.key)
        if recorded:
            self._on_recorded(recorded)

    async def _match(
        self, fills: list[Fill], rules: RuleSet
    ) -> tuple[list[tuple[Fill, tuple[Rule, ...]]], list[tuple[str, datetime]], list[Fill], int]:
        """The batch's matches (titled fills), its quiet fills (key and time), the fills that
        wait for a title before they can be judged, and how many go on untitled after a wait."""
        waiting: list[Fill] = []
        untitled = 0
        # Titles are looked up (REST calls, on the key's rate limit) only for the fills whose
        # verdict a title could change and for those with a message to render, all in one
        # wait: two in a row made a hung venue hold the batch's alerts twice the timeout.
        needy = [fill for fill in fills if rules.needs_title(fill)] if rules.uses_title else []
        asking = {fill.key for fill in needy}
        verdicts = {fill.key: rules.match(fill) for fill in fills if fill.key not in asking}
        ask = needy + [fill for fill in fills if verdicts.get(fill.key)]
        titled = {fill.key: fill for fill in await self._gate.titled(ask)} if ask else {}
        if needy:
            judged, waiting, untitled = self._gate.split([titled[f.key] for f in needy], rules)
            titled.update((fill.key, fill) for fill in judged)
            held = {fill.key for fill in waiting}
            fills = [fill for fill in fills if fill.key not in held]
        hits: list[tuple[Fill, tuple[Rule, ...]]] = []
        quiet: list[tuple[str, datetime]] = []
        for fill in fills:
            matched = verdicts.get(fill.key)
            if matched is None:  # judged after its title was looked up
                fill = titled[fill.key]
                matched = rules.match(fill)
            if matched:
                hits.append((titled.get(fill.key, fill), matched))
            else:
                quiet.append((fill.key, fill.filled_at))
        return hits, quiet, waiting, untitled

    def offer_waiting(self) -> None:
        """Queue the held fills that can be judged now; look some other titles up again."""
        self._gate.offer_due(self._rules)


def _no_title(_market_id: str) -> None:
    """No title source (tests, `notifier test`): no market's title is known."""
    return
