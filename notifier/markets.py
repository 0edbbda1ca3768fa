"""Market titles: `GET /v1/markets/{id}` once per market, cached, never raising.

Fills carry only the hex market id; alerts want the question. Titles do not change, so a
hit is kept (LRU-bounded); a miss (404, timeout, error) is remembered for `retry_after`
seconds and then tried again, so a venue hiccup costs one fallback, not a request per fill.
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

log = logging.getLogger(__name__)

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
        self._titles: OrderedDict[str, str] = OrderedDict()
        self._misses: OrderedDict[str, float] = OrderedDict()  # id -> monotonic retry time
        self._inflight: dict[str, asyncio.Task[str | None]] = {}
        self.stats: dict[str, int] = {"lookups": 0, "failures": 0}

    def cached(self, market_id: str) -> str | None:
        """The title if already known; never does I/O."""
        title = self._titles.get(market_id)
        if title is not None:
            self._titles.move_to_end(market_id)
        return title

    async def title(self, market_id: str) -> str | None:
        """The market's title, looked up at most once at a time; None when unknown for now."""
        known = self.cached(market_id)
        if known is not None or not market_id:
            return known
        retry_at = self._misses.get(market_id)
        if retry_at is not None and self._clock() < retry_at:
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
        self.stats["lookups"] += 1
        title, why = await self._fetch(market_id)
        if title is not None:
            self._misses.pop(market_id, None)
            self._remember(self._titles, market_id, title)
            return title
        self.stats["failures"] += 1
        self._remember(self._misses, market_id, self._clock() + self._retry_after)
        log.info(
            "market %s: no title (%s); using the id, retrying in %.0fs",
            market_id[:80],
            why,
            self._retry_after,
        )
        return None

    async def _fetch(self, market_id: str) -> tuple[str | None, str]:
        """(title, "") on success, else (None, why)."""
        url = f"{self._base}/v1/markets/{quote(market_id, safe='')}"
        try:
            response = await self._http.get(
                url, headers={"X-API-Key": self._api_key}, timeout=self._timeout
            )
        except httpx.TimeoutException:
            return None, "timeout"
        except httpx.HTTPError as exc:
            return None, type(exc).__name__
        if response.status_code != 200:
            return None, f"HTTP {response.status_code}"
        try:
            body = response.json()
        except ValueError:
            return None, "answer is not JSON"
        if isinstance(body, dict):
            for field in ("question", "event_title", "slug"):
                value = body.get(field)
                if isinstance(value, str) and value.strip():
                    return value.strip(), ""
        return None, "answer has no question"

    def _remember(self, table: OrderedDict[str, _V], key: str, value: _V) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self._max:
            table.popitem(last=False)
