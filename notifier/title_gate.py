"""Market titles for the pipeline: looking them up for a batch, and when a fill waits for its
title and when it goes on (the policy; title_wait.py keeps the held fills).

A batch waits for its look-ups `timeout` seconds at most; those still running finish in the
background and fill the cache for later fills.

A fill waits when its title is unknown, the venue has not said the market has none, and a
`market_title` test could change its verdict (`RuleSet.needs_title`). It goes on once its
market's title is cached, the venue says there is none, the rules stop needing it, or it has
waited its limit. Held markets are looked up again a few at a time, in turn: look-ups share
the API key's rate limit with token minting and history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from notifier.events import Fill
from notifier.rules import RuleSet
from notifier.title_wait import TitleWaits

log = logging.getLogger(__name__)

LOOKUPS_PER_ROUND = 16  # markets of held fills looked up again per round, at most


class TitleSource(Protocol):
    """Market titles: a cache answer without I/O, or a bounded look-up that never raises."""

    def cached(self, market_id: str) -> str | None: ...

    def absent(self, market_id: str) -> bool: ...

    def title(self, market_id: str) -> Awaitable[str | None]: ...


class SeenFills(Protocol):
    """The state store's answer to "recorded (or held) before?"."""

    def unseen(self, fill_keys: Sequence[str]) -> set[str]: ...


class TitleGate:
    """Holds back the fills a title must judge, and offers them again when they can go on."""

    def __init__(
        self,
        waits: TitleWaits,
        titles: TitleSource | None,
        store: SeenFills,
        *,
        offer: Callable[[Fill], None],
        timeout: float = 2.0,
    ) -> None:
        self.waits = waits
        self._timeout = timeout
        self._titles = titles
        self._store = store
        self._offer = offer  # queues a held fill for the pipeline again
        self._turn = 0  # where the next round of look-ups starts
        self._lookups: set[asyncio.Future[str | None]] = set()

    async def titled(self, fills: list[Fill]) -> list[Fill]:
        """Fills carrying their market title; a slow or failing look-up falls back to none.

        A fill that came with its title (the venue may send one) keeps it, unasked.
        """
        titles = self._titles
        if titles is None or not fills:
            return fills
        missing = {
            f.market_id
            for f in fills
            if f.market_title is None and titles.cached(f.market_id) is None
        }
        if missing:
            lookups = [self._look_up(titles, market) for market in missing]
            _, slow = await asyncio.wait(lookups, timeout=self._timeout)
            if slow:
                log.warning(
                    "market title look-up slower than %.1fs for %d market(s); going on without",
                    self._timeout,
                    len(slow),
                )
        return [
            f if f.market_title is not None else f.with_title(titles.cached(f.market_id))
            for f in fills
        ]

    def split(self, fills: list[Fill], rules: RuleSet) -> tuple[list[Fill], list[Fill], int]:
        """The fills to judge now, those that wait for a title still unknown, and how many of
        those judged now are so without the title they waited for (`note_untitled` them).

        Pure but for one store read, so a batch can be split again after a reload. A fill
        recorded before is judged now, not held: a backfill re-reading history in a title
        outage would otherwise fill the room for held fills with duplicates.
        """
        titles, waits = self._titles, self.waits
        if titles is None:
            return fills, [], 0
        asking = {
            fill.key
            for fill in fills
            if fill.market_title is None
            and rules.needs_title(fill)
            and not titles.absent(fill.market_id)
        }
        if not asking:
            return fills, [], 0
        fresh = self._store.unseen([key for key in asking if key not in waits])
        room = waits.room()
        judge: list[Fill] = []
        waiting: list[Fill] = []
        untitled = 0
        for fill in fills:
            key = fill.key
            if key not in asking:
                judge.append(fill)
            elif key in waits:
                expired = waits.expired(key)
                (judge if expired else waiting).append(fill)
                untitled += expired
            elif key not in fresh:
                judge.append(fill)  # recorded before: the store counts it a duplicate
            elif room > 0:
                waiting.append(fill)
                room -= 1
            else:
                judge.append(fill)
                untitled += 1
        return judge, waiting, untitled

    def note_untitled(self, count: int) -> None:
        """Count and report fills judged without the title they waited for."""
        if count:
            self.waits.gave_up += count
            log.warning(
                "%d fills judged without their market title: held %s, or %d fills held already",
                count,
                self.waits.limit,
                len(self.waits),
            )

    def hold(self, waiting: list[Fill], arrived: set[str]) -> int:
        """Hold fills until their titles can be had; how many were held already and `arrived`
        again (from the feed, not offered back from here): duplicates."""
        again = sum(fill.key in arrived for fill in waiting if fill.key in self.waits)
        held = self.waits.hold(waiting)
        if held:
            log.info(
                "%d more fill(s) wait for their market title before rules judge them "
                "(%d waiting in all)",
                held,
                len(self.waits),
            )
        return again

    def judged(self, fill_keys: Iterable[str]) -> None:
        """These fills are recorded now: those held are held no more."""
        self.waits.release(key for key in fill_keys if key in self.waits)

    def offer_due(self, rules: RuleSet) -> None:
        """Offer the held fills that can be judged now; look some other titles up again."""
        titles, waits = self._titles, self.waits
        unknown: list[str] = []
        for market in waits.markets():
            known = titles is None or titles.cached(market) is not None or titles.absent(market)
            for fill in waits.of_market(market):
                if known or waits.expired(fill.key) or not rules.needs_title(fill):
                    self._offer(fill)
            if not known:
                unknown.append(market)
        if titles is None or not unknown:
            return
        start = self._turn % len(unknown)
        for market in (unknown[start:] + unknown[:start])[:LOOKUPS_PER_ROUND]:
            self._look_up(titles, market)
        self._turn = start + LOOKUPS_PER_ROUND

    async def retry_forever(self, rules: Callable[[], RuleSet], every: float) -> None:
        """Offer what is due every `every` seconds, under the rules then in force."""
        while True:
            await asyncio.sleep(every)
            self.offer_due(rules())

    def _look_up(self, titles: TitleSource, market: str) -> asyncio.Future[str | None]:
        """Ask for a market's title in the background; once found, its held fills go on."""

        def found(task: asyncio.Future[str | None]) -> None:
            if not task.cancelled() and task.exception() is None and task.result() is not None:
                for fill in self.waits.of_market(market):
                    self._offer(fill)

        lookup = asyncio.ensure_future(titles.title(market))
        self._lookups.add(lookup)  # a strong reference until it is done
        lookup.add_done_callback(self._lookups.discard)
        lookup.add_done_callback(found)
        return lookup
