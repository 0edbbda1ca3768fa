"""How the feed client gets (back) on: token minting, the WebSocket URL, and when to try again.

Apart from `feed.py`'s read loop, which only needs a token, a URL and a delay from here.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from notifier.backoff import Backoff
from notifier.errors import (
    URL_SCHEME,
    FatalFeedError,
    KeyRefused,
    RateLimited,
    TransientFeedError,
    key_prefix,
)
from notifier.normalize import decode_json
from notifier.settings import FeedSettings
from notifier.venue_pages import retry_after_seconds


async def mint_token(
    http: httpx.AsyncClient, settings: FeedSettings, *, floor: Callable[[], float]
) -> str:
    """A fresh single-use token (POST /v1/keys/ws-token); a 429's wait is at least `floor()`.

    Only a 401 refuses the key for good (the venue's documented answer): a 403 may come from
    a proxy or firewall in front of it, and stopping the daemon for it would end alerting.
    """
    key = settings.api_key
    url = settings.base_url.rstrip("/") + "/v1/keys/ws-token"
    try:
        # httpx bounds each read, not the exchange: a server trickling its answer would hold
        # the feed (and its reconnects) for as long as it likes.
        async with asyncio.timeout(settings.request_timeout):
            response = await http.post(
                url, headers={"X-API-Key": key}, timeout=settings.request_timeout
            )
    except TimeoutError as exc:
        raise TransientFeedError("token request timed out") from exc
    except httpx.InvalidURL:  # config checks refuse such a base_url: no retry changes it
        raise FatalFeedError(
            "feed.base_url is not a URL the HTTP client can use: run `notifier check-config`"
        ) from None
    except httpx.HTTPError as exc:
        raise TransientFeedError(f"token request failed ({type(exc).__name__})") from exc
    status = response.status_code
    if status == 401:
        raise KeyRefused(
            f"PolySimulator refused the API key {key_prefix(key)} (HTTP {status}): "
            "check feed.api_key or POLYSIM_API_KEY"
        )
    if status == 429:
        # Floored at the back-off: `Retry-After: 0` must not make a tight mint loop.
        wait = retry_after_seconds(response.headers.get("Retry-After")) or 0.0
        raise RateLimited("token endpoint answered HTTP 429", retry_after=max(wait, floor()))
    if status == 404:
        # No such endpoint: the base URL names something other than the venue's API (a wrong
        # host, a proxy's prefix). Retried all the same, in case a deploy is under way.
        raise TransientFeedError(
            "token endpoint answered HTTP 404: feed.base_url may not name the venue's API"
        )
    if status != 200:
        raise TransientFeedError(f"token endpoint answered HTTP {status}")
    try:
        body = decode_json(response.text)
    except ValueError:
        body = None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise TransientFeedError("token endpoint answered without a token")
    return token


class ReconnectPolicy:
    """The pause before the next connect: back-off, except at once after a first 4001."""

    def __init__(self, rng: random.Random) -> None:
        self._backoff = Backoff(1.0, 30.0, rng=rng)
        # 4001s with no stable period between: only the first is the token's fault (a server
        # that acks and closes 4001, even after a fill, must not get reconnects at once).
        self._token_rejections = 0
        self._delivered = False  # the current connection delivered a fill

    def next_delay(self) -> float:
        """The next back-off delay (counts one more failure)."""
        return self._backoff.next_delay()

    def delay_after(self, cause: str) -> float:
        """0 for a first 4001 (the token, not the server, was the problem), else back-off."""
        delivered, self._delivered = self._delivered, False
        if cause == "stopped":
            return 0.0
        if cause == "close_4001":
            self._token_rejections += 1
            if self._token_rejections == 1:
                if delivered:
                    self._backoff.reset()  # it worked until its token did not
                return 0.0
        elif delivered:
            self._backoff.reset()  # it worked, then dropped: earlier failures are forgotten
        return self._backoff.next_delay()

    def fill_seen(self) -> None:
        """A fill arrived: earlier failures are forgotten when the connection ends, unless
        it ends with a second 4001 in a row. A server that accepts and closes at once sends
        no fill, and one that closes 4001 after every fill is not a token expiring: both
        back off."""
        self._delivered = True

    def stayed_up(self) -> None:
        """A connection stayed up long enough: forget earlier failures; its 4001 (a token
        expiring on a live socket) reconnects at once."""
        self._backoff.reset()
        self._token_rejections = 0


def ws_url(base_url: str) -> str:
    """The feed's WebSocket URL from the REST base URL (http -> ws, https -> wss)."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise FatalFeedError(f"feed.base_url {base_url!r} is not an http(s) URL")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/v1/ws/executions", "", ""))


def redact(text: str, token: str) -> str:
    """Exception text with the token (raw or URL-quoted) blotted out; also its start, cut
    short (a WebSocket close reason holds at most 123 bytes, less than a JWT). The user
    part of any URL in it goes too: a proxy's credentials, from the environment."""
    text = _USERINFO.sub(r"\1***@", text)
    for form in {token, quote(token, safe="")}:
        if form:
            text = text.replace(form, "***")
            for end in range(len(form) - 1, MIN_TOKEN_PART - 1, -1):
                if form[:end] in text:
                    text = text.replace(form[:end], "***")
                    break
    return text


_USERINFO = re.compile(rf"(\b{URL_SCHEME}://)[^/@\s'\"]+@")
MIN_TOKEN_PART = 8  # a shorter piece of a token is too likely to be ordinary text
