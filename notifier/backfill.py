"""Recovering the fills a feed gap hid: page `GET /v1/account/history` back to the watermark.

The feed has no replay, so after every connect the client asks history for everything since
the last processed fill (less an overlap, for fills stamped slightly out of order) and hands
it on oldest first; the pipeline dedupes what the feed also delivers. If history stays down
after a few tries, live reading goes on (a history outage must not also silence live alerts)
and the gap's start is kept, so the next try (periodic, or at the next connect) still covers
it. Fills older than `backfill_horizon` are never recovered: their identities may have been
pruned from the state store, so they could not be deduped.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Protocol

import httpx

from notifier.backoff import retry_delay
from notifier.errors import TransientFeedError
from notifier.events import Fill
from notifier.normalize import Rejected, normalize_history_item
from notifier.settings import FeedSettings

log = logging.getLogger(__name__)

PAGE_SIZE = 200  # the endpoint's maximum
MAX_PAGES = 50  # 10,000 fills: a bound, so a broken paging answer cannot loop forever
ATTEMPTS = 3  # tries per backfill at connect, with back-off between
RETRY_EVERY = 60.0  # seconds between further tries while a gap is still open

FillSink = Callable[[Fill, str], Awaitable[None]]


class WatermarkStore(Protocol):
    """Where the newest processed fill time lives (the state store, in production)."""

    def load_watermark(self) -> datetime | None:
        """Newest filled_at already processed; None on the very first start."""
        ...

    def save_watermark(self, at: datetime) -> None:
        """Record a watermark; the store only ever moves it forward."""
        ...


class Backfill:
    """One feed client's gap recovery; `run()` after each connect."""

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
    ) -> None:
        self._settings = settings
        self._http = http
        self._watermark = watermark
        self._sink = sink
        self._clock = clock
        self._on_reject = on_reject
        self._pause = pause
        self._rng = rng
        self._monotonic = monotonic
        self._open_since: datetime | None = None  # start of a gap not yet recovered
        self._retry_at = 0.0
        self.delivered = 0
        self.failures = 0

    @property
    def due(self) -> bool:
        """A gap is still open and it is time to try it again."""
        return self._open_since is not None and self._monotonic() >= self._retry_at

    async def run(self, *, attempts: int = ATTEMPTS) -> None:
        """Deliver every history fill since the watermark, oldest first; never raises."""
        since = self._since()
        if since is None:
            log.info("first start, no backfill: fills before now are not alerted")
            return
        for attempt in range(1, attempts + 1):
            try:
                fills = await self._fetch(since)
            except TransientFeedError as exc:
                self.failures += 1
                if attempt < attempts:
                    delay = retry_delay(attempt, base=1.0, cap=30.0, rng=self._rng)
                    log.warning("history request failed (%s); retrying in %.1fs", exc, delay)
                    await self._pause(delay)
                    continue
                self._open_since = since
                self._retry_at = self._monotonic() + RETRY_EVERY
                log.error(
                    "history unavailable (%s); reading live fills, will retry the gap since %s",
                    exc,
                    since.isoformat(),
                )
                return
            self._open_since = None
            for fill in fills:
                self.delivered += 1
                await self._sink(fill, "backfill")
            log.info("backfill: %d fill(s) since %s", len(fills), since.isoformat())
            return

    def _since(self) -> datetime | None:
        """Where history must be read back to; None when there is nothing to recover."""
        settings = self._settings
        now = self._clock()
        mark = self._watermark.load_watermark()
        if mark is None:
            # First start: history before now - catch_up is not alerted. The stored mark is
            # put one overlap later so that later backfills (mark - overlap) start exactly at
            # the same floor instead of reaching back before the first start.
            floor = now - settings.catch_up
            self._watermark.save_watermark(floor + settings.backfill_overlap)
            if settings.catch_up <= timedelta(0):
                return None
            since = floor
        else:
            since = mark - settings.backfill_overlap
        if self._open_since is not None:
            since = min(since, self._open_since)
        return max(since, now - settings.backfill_horizon)

    async def _fetch(self, since: datetime) -> list[Fill]:
        """History fills at or after `since`, oldest first, each once."""
        found: dict[str, Fill] = {}
        for page in range(MAX_PAGES):
            items = await self._page(page * PAGE_SIZE)
            reached_older = False
            for item in items:
                fill = self._normalize(item)
                if fill is None:
                    continue
                if fill.filled_at < since:
                    reached_older = True  # newest first: the rest of history is older still
                    continue
                found.setdefault(fill.key, fill)
            if reached_older or len(items) < PAGE_SIZE:
                break
        else:
            log.warning("history paging stopped at %d pages", MAX_PAGES)
        # Newest first from the venue: reverse, then a stable sort keeps ties in venue order.
        ordered = list(reversed(found.values()))
        ordered.sort(key=lambda f: f.filled_at)
        return ordered

    def _normalize(self, item: object) -> Fill | None:
        if not isinstance(item, Mapping):
            self._on_reject(Rejected("not_object", "history item is not an object"), "history")
            return None
        result = normalize_history_item(item)
        if isinstance(result, Rejected):
            self._on_reject(result, "history")
            return None
        return result

    async def _page(self, offset: int) -> list[object]:
        url = self._settings.base_url.rstrip("/") + "/v1/account/history"
        try:
            response = await self._http.get(
                url,
                params={"limit": PAGE_SIZE, "offset": offset},
                headers={"X-API-Key": self._settings.api_key},
                timeout=self._settings.request_timeout,
            )
        except httpx.HTTPError as exc:
            raise TransientFeedError(f"history request failed ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise TransientFeedError(f"history answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise TransientFeedError("history answer is not JSON") from exc
        if not isinstance(body, list):
            raise TransientFeedError("history answer is not a list")
        return body
