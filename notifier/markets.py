"""Market titles: `GET /v1/markets/{id}` once per market, cached, never raising.

Fills carry only the hex market id; alerts want the question. Titles do not change, so a
hit is kept (LRU-bounded); a miss is remembered and then tried again, so a venue hiccup costs
one fallback, not a request per fill: an unknown market for `retry_after` seconds, a timeout,
server error or other failure for `TRANSIENT_RETRY`, a 429 for its Retry-After.

REST calls share the key's rate limit (5/s on the free tier) with token minting and history:
at most `MAX_IN_FLIGHT` look-ups run at once, and after a 429 no look-up is made until its
Retry-After has passed (a fill meanwhile goes on without its title, or waits for it where a
`market_title` rule needs it: title_gate.py), so a burst over many new markets costs a few
429s, not a stream of them, and leaves history its share.

Only a 404 (or 410) or an answer without a question says the market has no title (`absent`);
any other failure is one to wait out. The question is the title (not the event's title, which
many markets share, nor the slug): a rule on `market_title` matches what the venue shows.
Its control characters and line breaks become spaces, as it is shown in messages and listings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote

import httpx

from notifier.normalize import showable
from notifier.venue_pages import retry_after_seconds

log = logging.getLogger(__name__)

TRANSIENT_RETRY = 30.0  # seconds before a market whose look-up timed out or failed is asked again
MAX_IN_FLIGHT = 4  # look-ups at once: a burst queues here, and a 429 stops the queued ones

_V = TypeVar("_V")


class MarketTitles:
    """A bounded cache of market id -> human title, filled on demand."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        max_entries: int = 10_000,
        timeout: float = 2.0,
        retry_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._max = max(1, max_entries)
        self._timeout = timeout
        self._retry_after = retry_after
        self._clock = clock
        self._paused_until = 0.0  # monotonic: no look-up before (a 429's Retry-After)
        self._titles: OrderedDict[str, str] = OrderedDict()
        # id -> (monotonic retry time, whether the venue said the market has no title)
        self._misses: OrderedDict[str, tuple[float, bool]] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[str | None]] = {}
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.stats: dict[str, int] = {"lookups": 0, "failures": 0}

    def cached(self, market_id: str) -> str | None:
        """The title if already known; never does I/O."""
        title = self._titles.get(market_id)
        if title is not None:
            self._titles.move_to_end(market_id)
        return title

    def absent(self, market_id: str) -> bool:
        """Whether the venue's last answer was that this market has no title (not a failure).

        A fill waiting for a title (title_wait.py) waits out failures, not this answer.
        """
        miss = self._misses.get(market_id)
        return miss is not None and miss[1]

    async def title(self, market_id: str) -> str | None:
        """The market's title, looked up at most once at a time; None when unknown for now."""
        known = self.cached(market_id)
        if known is not None or not market_id:
            return known
        miss = self._misses.get(market_id)
        now = self._clock()
        if (miss is not None and now < miss[0]) or now < self._paused_until:
            return None
        task = self._inflight.get(market_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._lookup(market_id))
            self._inflight[market_id] = task
            task.add_done_callback(lambda _t: self._inflight.pop(market_id, None))
        # shield: one caller giving up must not cancel the look-up the others are waiting on.
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        """Cancel look-ups still in flight (at shutdown)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _lookup(self, market_id: str) -> str | None:
        async with self._slots:
            if self._clock() < self._paused_until:  # a 429 came while this one queued
                self._remember(
                    self._misses, market_id, (self._paused_until, self.absent(market_id))
                )
                return None
            self.stats["lookups"] += 1
            title, why, retry_in = await self._fetch(market_id)
        if title is not None:
            self._misses.pop(market_id, None)
            self._remember(self._titles, market_id, title)
            return title
        self.stats["failures"] += 1
        # The venue says it has no title for it (not a failure to wait out); a failure says
        # nothing about the market, so an earlier answer that it has none still holds.
        absent = retry_in is None or self.absent(market_id)
        if retry_in is None:
            retry_in = self._retry_after
        self._remember(self._misses, market_id, (self._clock() + retry_in, absent))
        log.info(
            # Neutral on what happens meanwhile: an alert shows the id, a fill a
            # market_title rule must judge waits (title_gate.py says so).
            "market %s: no title (%s); asking again in %.0fs",
            market_id[:80],
            why,
            retry_in,
        )
        return None

    async def _fetch(self, market_id: str) -> tuple[str | None, str, float | None]:
        """(title, "", 0) on success, else (None, why, seconds before asking again); None
        seconds when the venue answered that the market has no title (404/410, no question)."""
        try:
            url = f"{self._base}/v1/markets/{quote(market_id, safe='')}"
            # httpx's timeout bounds each connect and read, not the request: a server sending
            # a byte a second would hold the look-up (and a connection of the client the feed
            # shares) forever. The whole exchange gets the timeout.
            async with asyncio.timeout(self._timeout):
                response = await self._http.get(
                    url, headers={"X-API-Key": self._api_key}, timeout=self._timeout
                )
        except (httpx.TimeoutException, TimeoutError):
            return None, "timeout", TRANSIENT_RETRY
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
            return None, type(exc).__name__, TRANSIENT_RETRY
        status = response.status_code
        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            wait = 1.0 if wait is None else max(wait, 0.5)
            self._paused_until = max(self._paused_until, self._clock() + wait)
            return None, "HTTP 429", wait
        if status in (404, 410):
            return None, f"HTTP {status}", None
        if status != 200:  # a 5xx, or a proxy's 403 or 408: nothing said about the market
            return None, f"HTTP {status}", TRANSIENT_RETRY
        try:
            body = response.json()
        except (ValueError, RecursionError):  # RecursionError: nested deeper than json can
            return None, "answer is not JSON", TRANSIENT_RETRY
        question = body.get("question") if isinstance(body, dict) else None
        title = showable(question) if isinstance(question, str) else ""
        if title:
            return title, "", 0.0
        return None, "answer has no question", None

    def _remember(self, table: OrderedDict[str, _V], key: str, value: _V) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self._max:
            table.popitem(last=False)
