"""The execution-feed client: mint a token, connect, backfill the gap, read; forever.

websockets' reconnecting iterator cannot mint a single-use token per attempt and resets its
back-off after every handshake, so this owns a short loop instead and classifies each end:
4001 (token) reconnects at once unless it repeats before a connection has stayed up
`stable_after` seconds, everything else backs off, and the back-off resets once a
connection has delivered a fill or stayed up `stable_after` seconds.
The feed has no replay, so every connect is followed by a history backfill before live frames
are read (frames arriving meanwhile wait in the socket; the pipeline dedupes the overlap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from notifier.backfill import Backfill, FillSink, WatermarkStore
from notifier.clock import utc_now
from notifier.errors import KeyRefused, RateLimited, TransientFeedError
from notifier.feed_connect import ReconnectPolicy, mint_token, ws_url
from notifier.feed_socket import Refused, close_cause, open_socket
from notifier.feed_watchdog import Watchdog
from notifier.gap_tender import GapTender
from notifier.live_frames import read_live_frame
from notifier.normalize import Rejected
from notifier.order_refs import ClientOrderIds
from notifier.recurrence import Recurrences
from notifier.rejections import Rejections
from notifier.settings import FeedSettings

log = logging.getLogger(__name__)

__all__ = ["FeedClient", "FeedStats"]

# Seconds of reading buffered frames before the read loop lets other tasks run.
YIELD_AFTER = 0.005
# Seconds between token requests while the venue refuses a key it took earlier in this run.
KEY_RETRY = 60.0


@dataclass
class FeedStats:
    """Counters for metrics and the shutdown summary line."""

    frames: int = 0
    fills: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    non_fill: int = 0
    connects: int = 0
    reconnects: dict[str, int] = field(default_factory=dict)
    backfilled: int = 0
    backfill_failures: int = 0
    token_mints: int = 0
    connected: bool = False
    reading: bool = False  # connected, backfill done: live frames flow to the sink
    last_frame_at: float | None = None
    in_backoff: bool = False
    key_refused: bool = False  # the venue refuses the key it took earlier in this run


class FeedClient:
    """Holds the feed: every fill reaches `sink` as (fill, "live" | "backfill")."""

    def __init__(
        self,
        settings: FeedSettings,
        *,
        http: httpx.AsyncClient,
        sink: FillSink,
        watermark: WatermarkStore,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tend_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,  # the gap tender's timer
        rng: random.Random | None = None,
        wants_order_refs: Callable[[], bool] = lambda: False,
        on_caught_up: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        # Told once, after the first connect's backfill has handed on what it found: what was
        # due while the daemon was down waits for those fills (Pipeline.caught_up).
        self._on_caught_up: Callable[[], None] | None = on_caught_up
        self._http = http
        self._sink = sink
        self._monotonic = monotonic
        self._sleep = sleep
        self._tend_sleep = tend_sleep
        self._rng = rng or random.Random()
        self._reconnect = ReconnectPolicy(self._rng)
        self.stats = FeedStats()
        self._reject = Rejections(self.stats.rejected, monotonic=monotonic)
        self._recurrences = Recurrences()  # across reconnects: the feed has no replay
        self._order_refs = ClientOrderIds()  # live frames name them; history does not
        self._backfill = Backfill(
            settings,
            http=http,
            watermark=watermark,
            sink=sink,
            clock=clock,
            on_reject=self._reject,
            pause=self._pause,
            rng=self._rng,
            monotonic=monotonic,
            order_refs=self._order_refs,
            recurrences=self._recurrences,
            wants_order_refs=wants_order_refs,
        )
        self._stopping = False
        self._stop = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._closer: asyncio.Task[None] | None = None
        self._recovering: asyncio.Task[None] | None = None  # the connect-time backfill
        self._handshake_wait = 0.0  # a refused handshake's Retry-After, for the next pause
        self._down_since: float | None = monotonic()  # None while connected
        self._host = urlsplit(settings.base_url).netloc.rpartition("@")[2]  # for log lines

    async def run(self) -> None:
        """Hold the feed until cancelled or stopped; KeyRefused (fatal) when the key is refused
        before a connection was ever made with it in this run.

        A key the venue took before and now refuses is asked about again every KEY_RETRY
        seconds: a revoked key needs a person either way, but a venue's passing fault must
        not end alerting for good (a supervisor does not restart a refused key), and the
        alerts already recorded still go out meanwhile. /healthz says so at once.
        """
        url = ws_url(self._settings.base_url)
        if not self._settings.api_key:
            raise KeyRefused("no API key: set feed.api_key or the POLYSIM_API_KEY variable")
        self._backfill.begin()  # the first-start floor is daemon start, not the first connect
        try:
            while not self._stopping:
                try:
                    token = await self._mint()
                except KeyRefused as exc:
                    if self.stats.connects == 0:
                        raise  # never held a connection in this run: a wrong key, for good
                    self._count("key_refused")
                    self.stats.key_refused = True
                    # Not the back-off's next step: that would outlast the refusal, and make
                    # the first drop after it wait as long.
                    log.error(
                        "%s; it was taken earlier in this run: asking in %.0fs", exc, KEY_RETRY
                    )
                    await self._pause(KEY_RETRY)
                    continue
                except RateLimited as exc:
                    self._count("rate_limited")
                    log.warning("token endpoint rate-limited; waiting %.1fs", exc.retry_after)
                    await self._pause(exc.retry_after)
                    continue
                except TransientFeedError as exc:
                    # A warning: the venue (or the way to it) is failing, not a routine close.
                    self._count("token_failed")
                    why = f"{exc} at {self._host}"
                    await self._pause(self._reconnect.next_delay(), why, level=logging.WARNING)
                    continue
                cause = await self._session(url, token)
                if self._stopping:
                    break
                self._count(cause)
                delay = max(self._reconnect.delay_after(cause), self._handshake_wait)
                self._handshake_wait = 0.0
                await self._pause(delay, f"connection ended ({cause})")
        except KeyRefused:
            if self.stats.connects == 0:
                self._backfill.undo_first_start()
            raise
        finally:
            if self._closer is not None:
                await self._closer

    def down_for(self) -> float:
        """Seconds since the feed was last connected (or since start); 0 while connected."""
        if self._down_since is None:
            return 0.0
        return max(self._monotonic() - self._down_since, 0.0)

    @property
    def order_lookups(self) -> tuple[int, int]:
        """Order-list requests made for recovered fills' client_order_id, and those failed."""
        return self._order_refs.requests, self._order_refs.failures

    @property
    def last_frame_age(self) -> float | None:
        """Seconds since the last frame was read (by the feed's clock); None before the first."""
        last = self.stats.last_frame_at
        return None if last is None else max(0.0, self._monotonic() - last)

    @property
    def gap_open(self) -> bool:
        """Fills missed while away may still be owed (history has not given them all yet)."""
        return self._backfill.gap_open

    def request_stop(self) -> None:
        """Finish the frame in hand, close the socket, and return from `run()`."""
        self._stopping = True
        self._stop.set()
        if self._ws is not None and self._closer is None:
            ws = self._ws
            self._closer = asyncio.get_running_loop().create_task(ws.close(1000, "stopping"))
        if self._recovering is not None:
            # Its pauses end at once when stopping: left to run, its remaining pages and
            # retries would go out back to back, or wait out their timeouts one by one. What
            # it owes stays the stored gap, read at the next start.
            self._recovering.cancel()

    # -- one connection ------------------------------------------------------------------

    async def _mint(self) -> str:
        """A fresh single-use token (see `feed_connect.mint_token`), counted."""
        token = await mint_token(self._http, self._settings, floor=self._reconnect.next_delay)
        self.stats.token_mints += 1
        if self.stats.key_refused:
            log.warning("PolySimulator takes the API key again")
            self.stats.key_refused = False
        return token

    async def _session(self, ws_url: str, token: str) -> str:
        """Connect, backfill, read until the connection ends; returns why it ended."""
        opened = await open_socket(ws_url, token, self._settings)
        if isinstance(opened, Refused):
            self._handshake_wait = opened.wait
            return opened.cause
        ws = opened
        started = self._monotonic()
        self._ws = ws
        self.stats.connects += 1
        self.stats.connected = True
        self._down_since = None
        log.info("connected to the execution feed (connect #%d)", self.stats.connects)
        try:
            async with ws:
                if not self._stopping and not await self._connect_backfill():
                    return "stopped"
                if self._on_caught_up is not None:
                    told, self._on_caught_up = self._on_caught_up, None
                    told()
                return await self._read(ws, token)
        finally:
            self._ws = None
            self.stats.connected = self.stats.reading = False
            self._down_since = self._monotonic()
            if self._monotonic() - started >= self._settings.stable_after:
                self._reconnect.stayed_up()

    async def _read(self, ws: ClientConnection, token: str) -> str:
        """Frames to the sink until the connection ends.

        Liveness is watched by a task beside the loop, not by a timeout around each
        `recv()`: a timer per frame cost more than everything else done per frame.
        """
        loop_time = asyncio.get_running_loop().time
        turn = loop_time()
        watchdog = Watchdog(ws, self._settings, alive_at=turn)
        self.stats.reading = True
        watching = asyncio.create_task(watchdog.run(), name="feed-watchdog")
        tender = GapTender(
            ws, self._backfill, retry=lambda: self._recover(attempts=1), sleep=self._tend_sleep
        )
        try:
            while not self._stopping:
                if self._backfill.due:
                    tender.tend()
                data = await ws.recv()
                watchdog.alive_at = now = loop_time()
                await self._on_frame(data)
                if now - turn >= YIELD_AFTER:
                    # recv() returns buffered frames without suspending, and one socket read
                    # can buffer a thousand: give the pipeline and delivery their turn.
                    await asyncio.sleep(0)
                    turn = loop_time()
        except ConnectionClosed as exc:
            return "silent" if watchdog.silent else close_cause(exc, token, self._reject)
        finally:
            watching.cancel()
            helpers = tender.cancel()  # its timer, and a retry if one was started
            await asyncio.wait([watching, *helpers])
            for helper in helpers:
                failed = None if helper.cancelled() else helper.exception()
                if failed is not None:
                    raise failed  # e.g. the state store failed: as if it ran inline
        return "stopped"

    async def _connect_backfill(self) -> bool:
        """The backfill after a connect; False if `request_stop()` cut it short."""
        self._recovering = asyncio.ensure_future(self._recover())
        try:
            await self._recovering
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._stopping or (task is not None and task.cancelling()):
                raise  # not the stop's doing: this task itself is cancelled
            return False
        finally:
            self._recovering = None
        return True

    async def _recover(self, *, attempts: int = 3) -> None:
        await self._backfill.run(attempts=attempts)
        self.stats.backfilled = self._backfill.delivered
        self.stats.backfill_failures = self._backfill.failures

    async def _on_frame(self, data: str | bytes) -> None:
        self.stats.frames += 1
        self.stats.last_frame_at = self._monotonic()
        result = read_live_frame(data, max_bytes=self._settings.max_frame_bytes)
        if result is None:
            self.stats.non_fill += 1
        elif isinstance(result, Rejected):
            self._reject(result, "live")
        else:
            self.stats.fills += 1
            self._reconnect.fill_seen()
            if result.client_order_id is not None:
                self._order_refs.remember(result)
            numbered = self._recurrences.number_live(result)
            if self._recurrences.unsure:
                self._recurrences.unsure = False
                self._backfill.reread_soon(numbered.filled_at)
            await self._sink(numbered, "live")

    # -- policy and bookkeeping ----------------------------------------------------------

    async def _pause(self, delay: float, why: str = "", *, level: int = logging.INFO) -> None:
        """Sleep through the injected sleep, cut short by `request_stop()`."""
        if delay <= 0 or self._stopping:
            return
        if why:
            log.log(level, "%s; reconnecting in %.1fs", why, delay)
        self.stats.in_backoff = True
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.stats.in_backoff = False
            for task in (sleeper, stopper):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(sleeper, stopper, return_exceptions=True)

    def _count(self, cause: str) -> None:
        self.stats.reconnects[cause] = self.stats.reconnects.get(cause, 0) + 1
