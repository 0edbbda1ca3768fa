"""The venue's REST reads behind backfill: history and order-list pages, paced and bounded.

Pages of one run are paced (the free tier allows 5 requests a second in all); a 429 waits its
Retry-After and asks for the same page again, unless the wait is long: then the run ends and
live reading goes on. Every exchange is bounded as a whole, not only each read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import httpx

from notifier.errors import RateLimited, TransientFeedError
from notifier.normalize import decode_json
from notifier.settings import FeedSettings

log = logging.getLogger(__name__)

PAGE_SIZE = 200  # the endpoint's maximum
PAGE_PACE = 0.25  # seconds between pages: the free tier allows 5 requests/s in all
MAX_RATE_LIMITED = 5  # 429s in a row on one page before the run counts as failed
MAX_INLINE_WAIT = 5.0  # a longer Retry-After ends the run: live reading goes on meanwhile
_MAX_RETRY_AFTER = 3600.0


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds (the delta form; an HTTP date or garbage gives None)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


class VenuePages:
    """Paced GETs of history and order-list pages for one feed client's backfill runs."""

    def __init__(
        self,
        settings: FeedSettings,
        *,
        http: httpx.AsyncClient,
        pause: Callable[[float], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._http = http
        self._pause = pause
        self._requests = 0  # requests in the current run (for pacing)

    def new_run(self) -> None:
        """A run starts: its first request goes out at once."""
        self._requests = 0

    async def history(self, offset: int) -> list[object]:
        """One page, paced; a 429 waits its Retry-After and asks for the same page again."""
        wait = PAGE_PACE if self._requests else 0.0
        for tries in range(1, MAX_RATE_LIMITED + 1):
            await self._pause(wait)
            self._requests += 1
            try:
                return await self._get(offset)
            except RateLimited as exc:
                if exc.retry_after > MAX_INLINE_WAIT:
                    # A long pause must not hold up live reading: give up this run; the gap
                    # is kept and retried beside the read loop once the venue allows.
                    raise
                wait = max(exc.retry_after, PAGE_PACE)
                if tries < MAX_RATE_LIMITED:
                    log.warning("history rate-limited; same page again in %.1fs", wait)
        raise TransientFeedError(f"history still rate-limited after {MAX_RATE_LIMITED} tries")

    async def orders(self, params: Mapping[str, str]) -> object:
        """One page of the venue's order list, paced with history's requests."""
        await self._pause(PAGE_PACE if self._requests else 0.0)
        self._requests += 1
        return await self._get_json("/v1/orders", params, "order list")

    async def _get(self, offset: int) -> list[object]:
        params = {"limit": str(PAGE_SIZE), "offset": str(offset)}
        body = await self._get_json("/v1/account/history", params, "history")
        if not isinstance(body, list):
            raise TransientFeedError("history answer is not a list")
        return body

    async def _get_json(self, path: str, params: Mapping[str, str], what: str) -> object:
        """A GET's JSON answer (numbers exact); TransientFeedError (RateLimited) otherwise."""
        url = self._settings.base_url.rstrip("/") + path
        timeout = self._settings.request_timeout
        try:
            # The whole exchange is bounded: httpx times each read, and a trickling answer
            # would hold the connect-time backfill, and with it live reading, indefinitely.
            async with asyncio.timeout(timeout):
                response = await self._http.get(
                    url,
                    params=params,
                    headers={"X-API-Key": self._settings.api_key},
                    timeout=timeout,
                )
        except TimeoutError as exc:
            raise TransientFeedError(f"{what} request timed out") from exc
        except httpx.HTTPError as exc:
            raise TransientFeedError(f"{what} request failed ({type(exc).__name__})") from exc
        if response.status_code == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            raise RateLimited(
                f"{what} answered HTTP 429", retry_after=1.0 if wait is None else wait
            )
        if response.status_code != 200:
            raise TransientFeedError(f"{what} answered HTTP {response.status_code}")
        try:
            return decode_json(response.text)  # numbers exact, as the feed reads them
        except ValueError as exc:
            raise TransientFeedError(f"{what} answer is not JSON") from exc
