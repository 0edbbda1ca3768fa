"""The one path every fill takes: dedupe, market title, rules, render, outbox.

`run`, `demo` and `test --send` all go through `Pipeline`; `plan_alerts` is its pure middle,
shared with the dry-run `test` command, so a dry run shows exactly what production would send.
The feed reader only enqueues (`submit` never waits on I/O); a separate task does the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from notifier.events import Alert, Fill
from notifier.render import fill_values
from notifier.rules import Rule, RuleSet

log = logging.getLogger(__name__)

# How many queued fills one store transaction takes at most: a burst is committed in groups,
# so the outbox does not cost one commit per fill, while a lone fill is still handled at once.
BATCH_LIMIT = 500


class TargetLookup(Protocol):
    """What the pipeline needs of the channel set: the delivery targets behind a channel name."""

    def targets(self, channel: str) -> Sequence[TargetLike]: ...


class TargetLike(Protocol):
    """One URL of a channel, known by an opaque key."""

    @property
    def key(self) -> str: ...


class TitleSource(Protocol):
    """Market titles: a cache answer without I/O, or a bounded look-up that never raises."""

    def cached(self, market_id: str) -> str | None: ...

    def title(self, market_id: str) -> Awaitable[str | None]: ...


class FillRecorder(Protocol):
    """The state store's part in the pipeline: dedupe and the durable outbox, in one transaction."""

    def seen(self, fill_key: str) -> bool: ...

    def record(self, *, fill_key: str, filled_at: datetime, alerts: Sequence[Alert]) -> bool: ...


@dataclass(frozen=True, slots=True)
class Planned:
    """What one fill produces: the rules it matched and the alerts (one per target) to send."""

    fill: Fill
    rules: tuple[Rule, ...]
    alerts: tuple[Alert, ...]


def plan_alerts(fill: Fill, *, rules: RuleSet, targets: TargetLookup) -> Planned:
    """Match `fill` against `rules` and render one alert per rule and target (pure)."""
    matched = rules.match(fill)
    alerts: list[Alert] = []
    for rule in matched:
        values = fill_values(fill, rule=rule.name)
        title = rule.title.render(values)
        body = rule.body.render(values)
        for channel in rule.notify:
            alerts.extend(
                Alert(
                    fill_key=fill.key,
                    rule=rule.name,
                    channel=channel,
                    target=target.key,
                    title=title,
                    body=body,
                    filled_at=fill.filled_at,
                )
                for target in targets.targets(channel)
            )
    return Planned(fill=fill, rules=matched, alerts=tuple(alerts))


@dataclass(slots=True)
class PipelineStats:
    """Counters the shutdown summary and the metrics endpoint read."""

    received: Counter[str] = field(default_factory=Counter)  # by source: live, backfill
    duplicates: int = 0
    processed: int = 0
    matched: Counter[str] = field(default_factory=Counter)  # by rule
    matched_fills: int = 0
    alerts: int = 0


class Pipeline:
    """Takes fills from the feed (any source), and turns each new one into durable alerts."""

    def __init__(
        self,
        *,
        rules: RuleSet,
        targets: TargetLookup,
        store: FillRecorder,
        titles: TitleSource | None,
        on_recorded: Callable[[], None],
        title_timeout: float = 2.0,
    ) -> None:
        self._rules = rules
        self._targets = targets
        self._store = store
        self._titles = titles
        self._on_recorded = on_recorded
        self._title_timeout = title_timeout
        self._queue: asyncio.Queue[tuple[Fill, str] | None] = asyncio.Queue()
        self._queued: set[str] = set()
        self._lookups: set[asyncio.Task[str | None]] = set()
        self.stats = PipelineStats()

    def swap(self, *, rules: RuleSet, targets: TargetLookup) -> None:
        """Use a new rule set and channel set from the next fill on (config reload)."""
        self._rules = rules
        self._targets = targets

    async def submit(self, fill: Fill, source: str) -> None:
        """Accept a fill from the feed; returns at once (the feed never waits on I/O here)."""
        self.stats.received[source] += 1
        key = fill.key
        if key in self._queued:
            self.stats.duplicates += 1
            return
        self._queued.add(key)
        self._queue.put_nowait((fill, source))

    def backlog(self) -> int:
        """Fills accepted but not yet recorded."""
        return self._queue.qsize()

    def close(self) -> None:
        """Ask `run` to return once every fill submitted so far is recorded."""
        self._queue.put_nowait(None)

    async def run(self) -> None:
        """Process queued fills a batch at a time, until `close` (or cancellation)."""
        closing = False
        while not closing:
            batch: list[tuple[Fill, str]] = []
            item = await self._queue.get()
            while True:
                if item is None:
                    closing = True
                    break
                batch.append(item)
                if len(batch) >= BATCH_LIMIT or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                await self._process(batch)

    async def _process(self, batch: list[tuple[Fill, str]]) -> None:
        fresh = [fill for fill, _ in batch if not self._is_duplicate(fill)]
        titled = await self._with_titles(fresh)
        recorded = False
        for fill in titled:
            planned = plan_alerts(fill, rules=self._rules, targets=self._targets)
            if self._store.record(
                fill_key=fill.key, filled_at=fill.filled_at, alerts=planned.alerts
            ):
                self.stats.processed += 1
                self.stats.alerts += len(planned.alerts)
                self.stats.matched.update(rule.name for rule in planned.rules)
                self.stats.matched_fills += bool(planned.rules)
                recorded = recorded or bool(planned.alerts)
            else:
                self.stats.duplicates += 1
        for fill, _ in batch:
            self._queued.discard(fill.key)
        if recorded:
            self._on_recorded()

    def _is_duplicate(self, fill: Fill) -> bool:
        if self._store.seen(fill.key):
            self.stats.duplicates += 1
            return True
        return False

    async def _with_titles(self, fills: list[Fill]) -> list[Fill]:
        """Fills carrying their market title; a slow or failing look-up falls back to none."""
        titles = self._titles
        if titles is None or not fills:
            return fills
        missing = {f.market_id for f in fills if titles.cached(f.market_id) is None}
        if missing:
            # Look-ups left running past the timeout finish in the background and fill the
            # cache for later fills; this batch goes on without them.
            lookups = {asyncio.ensure_future(titles.title(m)) for m in missing}
            self._lookups |= lookups
            for task in lookups:
                task.add_done_callback(self._lookups.discard)
            _, slow = await asyncio.wait(lookups, timeout=self._title_timeout)
            if slow:
                log.warning(
                    "market title look-up slower than %.1fs for %d market(s); alerting with ids",
                    self._title_timeout,
                    len(slow),
                )
        return [f.with_title(titles.cached(f.market_id)) for f in fills]
