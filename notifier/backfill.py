"""Recovering the fills a feed gap hid: page `GET /v1/account/history` back to the watermark.

The feed has no replay, so after every connect the client asks history for everything since
the last processed fill (less an overlap, for fills stamped slightly out of order) and hands
it on oldest first; the pipeline dedupes what the feed also delivers. If history stays down
after a few tries, live reading goes on (a history outage must not also silence live alerts)
and the gap is retried later. Fills older than `backfill_horizon` are never recovered: their
identities may have been pruned from the state store, so they could not be deduped. History
lacks `client_order_id`; when the rules read it, recovered fills take it from their orders
(order_refs.py) before they are handed on.

The gap invariant (no fill lost across restarts): live fills move the watermark past fills
that history still owes us, so the watermark alone cannot say where to read back to. The
gap's start is therefore stored durably (`save_gap`) before a run hands on any fill, and
before live reading resumes after a failed run; every run reads back to
`min(watermark - overlap, stored gap)`. The stored gap is cleared only once every fill of a
complete run is recorded (`unseen()` on the store is empty); that clearing write follows the
records on the same store, so it can never be durable before them. The sink returning is not
enough: the pipeline only queues.

Paging history back to a time, and the venue's ordering it relies on: history_walk.py.
Fill identity relies on history and feed giving `filled_at` with the same precision, so one
fill has one identity (order_id, filled_at, quantity, price, and its occurrence among equal
fills: see recurrence.py) on both paths and the pipeline dedupes it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

import httpx

from notifier.backoff import retry_delay
from notifier.durations import format_duration
from notifier.errors import RateLimited, TransientFeedError
from notifier.events import Fill
from notifier.history_walk import HistoryRead, HistoryWalker
from notifier.normalize import Rejected
from notifier.order_refs import ClientOrderIds
from notifier.recurrence import Recurrences
from notifier.settings import FeedSettings
from notifier.venue_pages import VenuePages

log = logging.getLogger(__name__)

ATTEMPTS = 3  # tries per backfill at connect, with back-off between
RETRY_EVERY = 60.0  # seconds between further tries while history fails
CONTINUE_AFTER = 5.0  # seconds before a run cut at the page cap goes on
SETTLE_EVERY = 1.0  # seconds between checks that a run's fills are recorded
REREAD_AFTER = 2.0  # seconds before history is read again to count fills a live frame matched
# At most one such read this often: with steady trading, each read lists fills whose frames
# are still on their way, and each would ask for the next. Within the overlap, so none is late.
REREAD_EVERY = 30.0

FillSink = Callable[[Fill, str], Awaitable[None]]


class WatermarkStore(Protocol):
    """The state the backfill keeps in the store: watermark, open gap, recorded fills."""

    def load_watermark(self) -> datetime | None:
        """Newest filled_at already processed; None on the very first start."""
        ...

    def save_watermark(self, at: datetime) -> None:
        """Record a watermark; the store only ever moves it forward."""
        ...

    def forget_watermark(self) -> None:
        """Drop the watermark, as on a fresh store."""
        ...

    def load_gap(self) -> datetime | None:
        """Start of a gap history has not yet been recovered from, or None."""
        ...

    def save_gap(self, at: datetime | None) -> None:
        """Store (durably) or clear the gap's start."""
        ...

    def unseen(self, fill_keys: Sequence[str]) -> set[str]:
        """Those of `fill_keys` not recorded yet (a fill held for its title is recorded)."""
        ...


class Backfill:
    """One feed client's gap recovery: `begin()` at start, `run()` after each connect."""

    def __init__(
        self,
        settings: FeedSettings,
        *,
        http: httpx.AsyncClient,
        watermark: WatermarkStore,
        sink: FillSink,
        clock: Callable[[], datetime],
        on_reject: Callable[[Rejected, str], None],
        pause: Callable[[float], Awaitable[None]],
        rng: random.Random,
        monotonic: Callable[[], float] = time.monotonic,
        order_refs: ClientOrderIds | None = None,
        recurrences: Recurrences | None = None,
        wants_order_refs: Callable[[], bool] = lambda: False,
    ) -> None:
        self._settings = settings
        self._pages = VenuePages(settings, http=http, pause=pause)
        self._store = watermark
        self._first_start = False  # begin() set the first-start floor
        self._sink = sink
        self._clock = clock
        self._pause = pause
        self._rng = rng
        self._monotonic = monotonic
        self._order_refs = order_refs
        self._history = HistoryWalker(
            self._pages,
            # Shared with the live feed: one fill gets one number on both paths.
            recurrences=Recurrences() if recurrences is None else recurrences,
            on_reject=on_reject,
            unseen=watermark.unseen,
        )
        self._wants_order_refs = wants_order_refs  # the rules read client_order_id
        self._gap: datetime | None = None  # the stored gap start, mirrored
        self._retry_at: float | None = None  # when an unfinished gap is tried again
        self._reread_at: float | None = None  # when the last reread_soon() read was set for
        self._reread_since: datetime | None = None  # how far back the next run must read
        self._settling: list[tuple[str, datetime]] | None = None  # a complete run's fills
        self._settle_at = 0.0
        self._resume: int | None = None  # offset where a run cut at the page cap stopped
        self._warned_horizon = False  # the "away longer than the horizon" warning, given
        self.delivered = 0
        self.failures = 0

    def begin(self) -> None:
        """At daemon start: load the stored gap; on a fresh store, the first-start floor is now.

        Set before the first connect attempt, so fills made while the token endpoint or the
        network is still down count as missed (and are recovered), not as old history.
        """
        self._gap = self._store.load_gap()
        if self._store.load_watermark() is None:
            # History before now - catch_up is not alerted. The stored mark is put one overlap
            # later so that backfills (mark - overlap) start exactly at that floor.
            floor = self._clock() - self._settings.catch_up
            self._store.save_watermark(floor + self._settings.backfill_overlap)
            self._first_start = True
            log.info("first start: fills before %s are not alerted", floor.isoformat())

    def undo_first_start(self) -> None:
        """The key was refused before any connection: this start's floor goes, so the start
        after the key is fixed is a first start again, not a backfill of the days between."""
        if self._first_start:
            self._store.forget_watermark()
            self._first_start = False

    @property
    def due(self) -> bool:
        """Something to do between frames: check a run's fills are recorded, or retry a gap."""
        now = self._monotonic()
        if self._settling is not None:
            return now >= self._settle_at
        return self._retry_at is not None and now >= self._retry_at

    def reread_soon(self, back_to: datetime) -> None:
        """Read history again shortly, back to `back_to` at least (the watermark may have moved
        on by then): a live fill made then was taken for one a read listed, and a fresh count
        tells whether it was an equal fill after it."""
        if self._reread_since is None or back_to < self._reread_since:
            self._reread_since = back_to
        if self._retry_at is not None:
            return  # a run is due anyway
        at = self._monotonic() + REREAD_AFTER
        if self._reread_at is not None:
            at = max(at, self._reread_at + REREAD_EVERY)
        self._retry_at = self._reread_at = at

    @property
    def gap_open(self) -> bool:
        """Fills missed in a gap may still be owed: stored until history's are all recorded."""
        return self._gap is not None

    @property
    def settling(self) -> bool:
        """A complete run's fills are handed on; the gap closes once they are recorded."""
        return self._settling is not None

    def settle(self) -> None:
        """Clear the stored gap if every fill of the last complete run is recorded."""
        pending = self._settling
        if pending is None:
            return
        # Keys older than the horizon may be pruned already; they are past recovering anyway.
        horizon = self._clock() - self._settings.backfill_horizon
        if self._store.unseen([key for key, at in pending if at >= horizon]):
            self._settle_at = self._monotonic() + SETTLE_EVERY
            return
        self._settling = None
        self._set_gap(None)

    async def run(self, *, attempts: int = ATTEMPTS) -> None:
        """Deliver history fills since the watermark or the open gap, oldest first; never raises."""
        self._retry_at = None
        self.settle()
        # Whatever settle() could not close, this run re-reads from the stored gap; only a
        # complete run may later clear it (an earlier run's fills must never close a gap a
        # failed later run still owes).
        self._settling = None
        mark = self._store.load_watermark()
        if mark is None:
            return  # begin() was not called: nothing says where history starts
        settings = self._settings
        floor = self._clock() - settings.backfill_horizon
        recent = max(mark - settings.backfill_overlap, floor)
        since = recent if self._gap is None else max(min(recent, self._gap), floor)
        reread, self._reread_since = self._reread_since, None
        if reread is not None:  # a failed run stores `since` as its gap: still owed then
            since = max(min(since, reread), floor)
        owed = mark if self._gap is None else min(mark, self._gap)
        if owed < floor and not self._warned_horizon:
            self._warned_horizon = True  # once a run of the process: retries would repeat it
            log.warning(
                "away since %s, longer than feed.backfill_horizon (%s): fills before %s are "
                "not recovered",
                owed.isoformat(),
                format_duration(settings.backfill_horizon),
                floor.isoformat(timespec="seconds"),
            )
        try:
            await self._attempts(since, recent, attempts)
        except asyncio.CancelledError:
            # Cut short (a drop ends the retry task): the next run, the reconnect's, owes it.
            if reread is not None and (self._reread_since is None or reread < self._reread_since):
                self._reread_since = reread
            raise

    async def _attempts(self, since: datetime, recent: datetime, attempts: int) -> None:
        """Read history back to `since` and hand it on, retrying a failure `attempts` times;
        a run that still fails stores `since` as the gap, to be read again later."""
        for attempt in range(1, attempts + 1):
            try:
                read = await self._history.read_back(since, recent, self._resume)
            except TransientFeedError as exc:
                self.failures += 1
                long_wait = exc.retry_after if isinstance(exc, RateLimited) else 0.0
                if attempt < attempts and not long_wait:
                    delay = retry_delay(attempt, base=1.0, cap=30.0, rng=self._rng)
                    log.warning("history request failed (%s); retrying in %.1fs", exc, delay)
                    await self._pause(delay)
                    continue
                self._set_gap(since)  # before live reading moves the watermark past the gap
                # A cut run's continuation trusts the front to hold nothing new below its
                # first recorded page; a failed read leaves this gap's fills under the live
                # fills recorded meanwhile, so the next run reads by time all the way.
                self._resume = None
                self._retry_at = self._monotonic() + max(RETRY_EVERY, long_wait)
                log.error(
                    "history unavailable (%s); reading live fills, will retry the gap since %s",
                    exc,
                    since.isoformat(),
                )
                return
            await self._deliver(since, read)
            return

    async def _deliver(self, since: datetime, read: HistoryRead) -> None:
        # Newest first from the venue: reverse, then a stable sort keeps ties in venue order.
        fills = list(reversed(read.fills.values()))
        fills.sort(key=lambda f: f.filled_at)
        if fills or not read.complete:
            self._set_gap(since)  # durable before any of these fills can move the watermark
        self._settling = None
        # Most of a read is the overlap the live feed delivered already: only fills not yet
        # recorded count as recovered (the metric and the log line would otherwise say each
        # reconnect recovered fills when none were missed).
        new = self._store.unseen([fill.key for fill in fills]) if fills else set()
        if fills and self._order_refs is not None and self._wants_order_refs():
            fills = await self._order_refs.fill_in(fills, self._pages.orders, new=new)
        for fill in fills:
            await self._sink(fill, "backfill")
        self.delivered += len(new)
        log.info(
            "backfill: %d fill(s) since %s, %d of them new",
            len(fills),
            since.isoformat(),
            len(new),
        )
        if not read.complete:
            self._resume = read.next_offset
            self._retry_at = self._monotonic() + CONTINUE_AFTER
            oldest = fills[0].filled_at.isoformat() if fills else "-"
            log.warning(
                "history paging stopped at %d pages (oldest fill read %s); the gap since %s "
                "stays open and paging goes on in %.0fs",
                read.pages,
                oldest,
                since.isoformat(),
                CONTINUE_AFTER,
            )
            return
        self._resume = None
        if fills:
            self._settling = [(f.key, f.filled_at) for f in fills]
            self._settle_at = self._monotonic() + SETTLE_EVERY
        else:
            self._set_gap(None)

    def _set_gap(self, at: datetime | None) -> None:
        if at != self._gap:
            self._store.save_gap(at)
            self._gap = at
