"""A fake PolySimulator on loopback: token endpoint, execution feed, history, market look-ups.

Package code, not a test helper, because `notifier demo` and the benchmarks drive it too.
websockets' server parses only GET requests, and the token endpoint is a POST, so the public
port is a small HTTP front (`simfront`) that answers REST here and pipes WebSocket upgrades
to an internal websockets server on a second loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from notifier.simfront import HttpFront
from notifier.simulator_data import (
    DEFAULT_API_KEY,
    DEFAULT_MARKETS,
    Shape,
    demo_fills,
    feed_message,
    notional,
)
from notifier.simulator_pages import Answer, history_page, market_detail, orders_page

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_MARKETS",
    "SimulatedPolySim",
    "demo_fills",
    "feed_message",
]


class _Quiet(logging.LoggerAdapter[logging.Logger]):
    """The internal server's own chatter (ports, handshakes with tokens) is not for the demo."""

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.WARNING and self.logger.isEnabledFor(level)


class SimulatedPolySim:
    """The venue, faithful where the notifier depends on it, with knobs for every fault."""

    def __init__(
        self,
        *,
        api_keys: Collection[str] = (DEFAULT_API_KEY,),
        markets: Mapping[str, str] | None = None,
        token_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api_keys = frozenset(api_keys)
        self.markets = dict(DEFAULT_MARKETS if markets is None else markets)  # "": no question
        self.event_titles: dict[str, str] = {}  # market id -> its event's title, when it has one
        self.token_ttl = token_ttl
        self._clock = clock
        self._now = now
        # Fault knobs: counts are consumed one connection at a time; the rest stay until reset.
        self.reject_tokens = 0  # next N valid tokens are closed with 4001 anyway
        self.close_with_4002 = 0  # next N connections are closed with 4002
        self.max_connections: int | None = None  # tier limit: more at once get 4002
        self.accept_and_close = False  # accept, then close at once (1011)
        self.silent = False  # feed connections swallow bytes both ways, never closing
        self.answer_app_pings = True  # False: {"action": "ping"} goes unanswered (pings work)
        self.throttle_connects = 0  # next N WebSocket handshakes get HTTP 429 + Retry-After
        self.redirect_connects: list[str] = []  # next handshakes get a 302 to each, in turn
        self.token_status: int | None = None  # e.g. 401, 429, 503 instead of a token
        self.retry_after: str = "1"  # Retry-After sent with a 429
        self.history_status: int | None = None
        self.orders_status: int | None = None  # GET /v1/orders answers this instead
        self.market_status: int | None = None
        self.market_delay = 0.0
        self.market_retry_after: str | None = None  # Retry-After with market_status (a 429)
        # Counters.
        self.token_mints = 0
        self.connections = 0
        self.app_pings = 0  # {"action": "ping"} messages received
        self.app_ping_times: list[float] = []  # and when (loop time)
        self.history_requests = 0
        self.orders_requests: list[dict[str, str]] = []  # the query of each order-list request
        self.market_requests = 0
        self.issued_tokens: list[str] = []  # every token minted, so tests can look for leaks
        self.base_url = ""
        self._tokens: dict[str, float] = {}  # unused token -> monotonic expiry
        self._history: list[dict[str, object]] = []
        self._order_ids = itertools.count(1001)
        self._clients: set[ServerConnection] = set()
        self._changed = asyncio.Event()
        self._front = HttpFront(
            self._route, silent=lambda: self.silent, refuse_upgrade=self._refuse_upgrade
        )
        self._ws: Server | None = None
        self._log = _Quiet(logging.getLogger(__name__), {})

    # -- lifetime -------------------------------------------------------------------------

    async def start(self, *, port: int = 0) -> None:
        """Listen on two loopback ports, the public one `port` (0: any free), which
        `base_url` names; the internal one is ephemeral."""
        self._ws = await serve(
            self._feed, "127.0.0.1", 0, ping_interval=None, logger=self._log, close_timeout=2
        )
        ws_port = next(iter(self._ws.sockets)).getsockname()[1]
        try:
            port = await self._front.start(upgrade_port=ws_port, port=port)
        except BaseException:  # the public port taken (or none): nothing left listening
            await self.stop()
            raise
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Close every connection and both listeners."""
        await self._front.stop()
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
            self._ws = None

    async def __aenter__(self) -> SimulatedPolySim:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- driving the feed -----------------------------------------------------------------

    @property
    def clients(self) -> int:
        """Feed connections open now."""
        return len(self._clients)

    async def emit(self, message: Mapping[str, object] | str | bytes) -> None:
        """Send one raw frame to every connected feed client (dicts as JSON text)."""
        payload = message if isinstance(message, str | bytes) else json.dumps(message, default=str)
        for client in list(self._clients):
            with contextlib.suppress(ConnectionClosed):
                await client.send(payload)

    async def fill(self, *, shape: Shape = "fill", **fields: object) -> dict[str, object]:
        """A fill happens: it enters history and goes out on the feed in `shape`."""
        item = self.record_history(self.history_item(**fields))
        await self.emit(feed_message(item, shape))
        return item

    def record_history(
        self, item: Mapping[str, object] | None = None, **fields: object
    ) -> dict[str, object]:
        """A fill seen only in history (as if nobody was connected); returns the stored item."""
        stored = dict(item) if item is not None else self.history_item(**fields)
        self._history.append(stored)
        return stored

    def history_item(self, **fields: object) -> dict[str, object]:
        """A complete history item, defaults filled in; any field may be overridden (or bad)."""
        item: dict[str, object] = {
            "order_id": next(self._order_ids),
            "market_id": next(iter(self.markets), "0x00"),
            "side": "BUY",
            "outcome": "Yes",
            "price": "0.65",
            "quantity": "10",
            "fee": "0",
            "status": "FILLED",
            "filled_at": self._now().isoformat().replace("+00:00", "Z"),
        }
        item.update(fields)
        if isinstance(item["filled_at"], datetime):
            item["filled_at"] = item["filled_at"].isoformat().replace("+00:00", "Z")
        item.setdefault("created_at", item["filled_at"])
        item.setdefault("notional", notional(item.get("price"), item.get("quantity")))
        return item

    async def close_all(self, code: int = 1000, reason: str = "") -> None:
        """Close every feed connection with `code`."""
        await asyncio.gather(*(c.close(code, reason) for c in list(self._clients)))

    async def wait_connected(self, n: int = 1, timeout: float = 5) -> None:  # noqa: ASYNC109 - a test helper's bound, in the API tests use
        """Wait until at least `n` feed clients are connected."""
        async with asyncio.timeout(timeout):
            while len(self._clients) < n:
                await self._changed.wait()

    async def wait_disconnected(self, timeout: float = 5) -> None:  # noqa: ASYNC109 - as above
        """Wait until no feed client is connected."""
        async with asyncio.timeout(timeout):
            while self._clients:
                await self._changed.wait()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the feed (internal websockets server) -------------------------------------------

    def _refuse_upgrade(self) -> tuple[int, dict[str, str]] | None:
        if self.redirect_connects:
            self.connections += 1
            return 302, {"Location": self.redirect_connects.pop(0)}
        if self.throttle_connects <= 0:
            return None
        self.throttle_connects -= 1
        self.connections += 1
        return 429, {"Retry-After": self.retry_after}

    async def _feed(self, conn: ServerConnection) -> None:
        self.connections += 1
        path, _, query = (conn.request.path if conn.request else "").partition("?")
        if path != "/v1/ws/executions":
            await conn.close(1008, "unknown channel")
            return
        token = parse_qs(query).get("token", [""])[0]
        expiry = self._tokens.pop(token, None)  # single use: a second connect finds nothing
        valid = expiry is not None and self._clock() < expiry
        if valid and self.reject_tokens > 0:
            self.reject_tokens -= 1
            valid = False
        if not valid:
            await conn.close(4001, "invalid or expired token")
            return
        too_many = self.max_connections is not None and self.clients >= self.max_connections
        if self.close_with_4002 > 0 or too_many:
            self.close_with_4002 = max(0, self.close_with_4002 - 1)
            await conn.close(4002, "too many connections for tier")
            return
        if self.accept_and_close:
            await conn.close(1011, "server going away")
            return
        self._clients.add(conn)
        self._signal()
        try:
            async for message in conn:
                await self._on_client_message(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(conn)
            self._signal()

    async def _on_client_message(self, conn: ServerConnection, message: str | bytes) -> None:
        with contextlib.suppress(ValueError):
            request = json.loads(message)
            if isinstance(request, dict) and request.get("action") == "ping":
                self.app_pings += 1
                self.app_ping_times.append(asyncio.get_running_loop().time())
                if self.answer_app_pings:
                    await conn.send(json.dumps({"type": "pong", "ts": int(time.time() * 1000)}))

    async def _route(self, method: str, target: str, headers: Mapping[str, str]) -> Answer:
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if not self._authorized(headers):
            return 401, {"detail": "Invalid or missing API key"}, {}
        if method == "POST" and parts.path == "/v1/keys/ws-token":
            return self._mint()
        if method == "GET" and parts.path == "/v1/account/history":
            return self._history_page(query)
        if method == "GET" and parts.path == "/v1/orders":
            return self._orders_page(query)
        if method == "GET" and parts.path.startswith("/v1/markets/"):
            return await self._market(unquote(parts.path.removeprefix("/v1/markets/")))
        return 404, {"detail": "Not Found"}, {}

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        return key in self.api_keys

    def _mint(self) -> Answer:
        if self.token_status is not None:
            extra = {"Retry-After": self.retry_after} if self.token_status == 429 else {}
            return self.token_status, {"detail": "token refused"}, extra
        self.token_mints += 1
        token = secrets.token_urlsafe(24)
        self._tokens[token] = self._clock() + self.token_ttl
        self.issued_tokens.append(token)
        return 200, {"token": token, "expires_in": int(self.token_ttl)}, {}

    def _history_page(self, query: Mapping[str, str]) -> Answer:
        self.history_requests += 1
        if self.history_status is not None:
            return self.history_status, {"detail": "history unavailable"}, {}
        return history_page(self._history, query)

    def _orders_page(self, query: Mapping[str, str]) -> Answer:
        self.orders_requests.append(dict(query))
        if self.orders_status is not None:
            return self.orders_status, {"detail": "orders unavailable"}, {}
        return orders_page(self._history, query)

    async def _market(self, market_id: str) -> Answer:
        self.market_requests += 1
        if self.market_delay:
            await asyncio.sleep(self.market_delay)
        if self.market_status is not None:
            headers = {"Retry-After": self.market_retry_after} if self.market_retry_after else {}
            return self.market_status, {"detail": "market look-up failed"}, headers
        question = self.markets.get(market_id)
        if question is None:
            return 404, {"detail": "Market not found"}, {}
        return 200, market_detail(market_id, question, self.event_titles.get(market_id)), {}
