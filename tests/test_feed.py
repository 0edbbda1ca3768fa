"""The feed client against the fake PolySimulator on real loopback sockets."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from fakes import MonoClock, grows, settle
from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

from notifier.backfill import REREAD_AFTER
from notifier.errors import FatalFeedError, KeyRefused, StateBusyError, key_prefix
from notifier.events import Fill
from notifier.feed import KEY_RETRY, FeedClient
from notifier.feed_connect import mint_token, redact
from notifier.order_refs import MAX_ORDER_PAGES
from notifier.settings import FeedSettings
from notifier.simulator import DEFAULT_API_KEY, SimulatedPolySim
from notifier.simulator_data import sort_time
from notifier.venue_pages import PAGE_PACE

T0 = datetime(2026, 2, 6, 12, 0, tzinfo=UTC)


class Wall:
    """A settable wall clock shared by the venue (fill times) and the client."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class Watermark:
    """In-memory WatermarkStore: moves only forward; knows the gap and the recorded keys."""

    def __init__(self, at: datetime | None = None) -> None:
        self.at = at
        self.gap: datetime | None = None
        self.recorded: set[str] = set()

    def load_watermark(self) -> datetime | None:
        return self.at

    def save_watermark(self, at: datetime) -> None:
        if self.at is None or at > self.at:
            self.at = at

    def forget_watermark(self) -> None:
        self.at = None

    def load_gap(self) -> datetime | None:
        return self.gap

    def save_gap(self, at: datetime | None) -> None:
        self.gap = at

    def unseen(self, fill_keys: Sequence[str]) -> set[str]:
        return set(fill_keys) - self.recorded


class Sink:
    """Stands in for the pipeline: records every call, dedupes by key, advances the watermark."""

    def __init__(self, watermark: Watermark) -> None:
        self.calls: list[tuple[Fill, str]] = []
        self.unique: list[tuple[Fill, str]] = []
        self._keys: set[str] = set()
        self._watermark = watermark
        self._changed = asyncio.Event()

    async def __call__(self, fill: Fill, source: str) -> None:
        self.calls.append((fill, source))
        if fill.key not in self._keys:
            self._keys.add(fill.key)
            self.unique.append((fill, source))
            self._watermark.save_watermark(fill.filled_at)
            self._watermark.recorded.add(fill.key)
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, n: int) -> None:
        async with asyncio.timeout(5):
            while len(self.unique) < n:
                await self._changed.wait()

    def order_ids(self, source: str | None = None) -> list[str]:
        return [f.order_id for f, s in self.unique if source in (None, s)]


class SteppedClock(MonoClock):
    """The feed's monotonic clock, moved by hand. `sleep` ends once the clock reaches its end,
    so the gap tender's timer ticks on this clock, not on real seconds; `advance` moves the
    clock through each tick on the way, as real time would, letting the tender act at each."""

    def __init__(self, t: float) -> None:
        self._moved = asyncio.Event()
        self._ends: list[float] = []  # of the sleeps under way
        super().__init__(t)

    @property  # type: ignore[override]
    def t(self) -> float:
        return self._t

    @t.setter
    def t(self, value: float) -> None:
        self._t = value
        self._moved.set()
        self._moved = asyncio.Event()

    async def sleep(self, delay: float) -> None:
        end = self._t + delay
        self._ends.append(end)
        try:
            while self._t < end:
                await self._moved.wait()
        finally:
            self._ends.remove(end)

    async def advance(self, seconds: float) -> None:
        target = self._t + seconds
        while ticks := [end for end in self._ends if self._t < end <= target]:
            self.t = min(ticks)
            await settle()  # the woken sleeper acts and sleeps again
        self.t = target


class Sleeps:
    """Injected sleep: records each delay, returns at once; `hook(n)` runs on the n-th call."""

    def __init__(self, hook: Callable[[int], Awaitable[object] | None] | None = None) -> None:
        self.delays: list[float] = []
        self.hook = hook

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.hook is not None:
            result = self.hook(len(self.delays))
            if result is not None:
                await result
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) for a condition on client or venue state."""
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.002)


@pytest.fixture
async def polysim() -> AsyncIterator[SimulatedPolySim]:
    """The fake venue, with fill times from a fixed wall clock (set `polysim.wall`)."""
    wall = Wall()
    async with SimulatedPolySim(now=wall) as sim:
        sim.wall = wall  # type: ignore[attr-defined]
        yield sim


class Harness:
    """A FeedClient wired to the venue, a list sink and an in-memory watermark."""

    def __init__(
        self,
        sim: SimulatedPolySim,
        http: httpx.AsyncClient,
        *,
        watermark: datetime | None = None,
        sleeps: Sleeps | None = None,
        store: Watermark | None = None,
        order_refs: bool = False,
        gap: Sequence[Mapping[str, object]] = (),
        **settings: object,
    ) -> None:
        self.watermark = store or Watermark(watermark)
        self.sink = Sink(self.watermark)
        if gap:  # history items made while the feed is down: at its first pause

            def record(n: int) -> None:
                if n == 1:
                    for fields in gap:
                        sim.record_history(**fields)

            sleeps = Sleeps(record)
        self.sleeps = sleeps or Sleeps()
        self.mono = SteppedClock(1000.0)
        base = FeedSettings(base_url=sim.base_url, api_key=DEFAULT_API_KEY, request_timeout=5)
        self.client = FeedClient(
            replace(base, **settings),  # type: ignore[arg-type]
            http=http,
            sink=self.sink,
            watermark=self.watermark,
            clock=sim.wall,  # type: ignore[attr-defined]
            monotonic=self.mono,
            sleep=self.sleeps,
            tend_sleep=self.mono.sleep,
            rng=random.Random(7),
            wants_order_refs=lambda: order_refs,  # the rules read client_order_id
        )

    async def live_then_drop(self, sim: SimulatedPolySim, *, then: int, **fill: object) -> None:
        """Once reading, one live fill; then the connection dropped, and `then` fills in all
        handed on (those of the gap, recovered)."""
        await until(lambda: self.client.stats.reading)
        await sim.fill(**fill)
        await self.sink.wait(1)
        await sim.close_all(1011, "restart")
        await self.sink.wait(then)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Task[None]]:
        task = asyncio.create_task(self.client.run())
        try:
            yield task
        finally:
            self.client.request_stop()
            async with asyncio.timeout(5):
                await asyncio.gather(task, return_exceptions=True)


async def test_each_wire_shape_reaches_the_sink_as_one_fill(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """Flat fill, flat execution and nested execution all arrive as live Fills."""
    h = Harness(polysim, http)
    async with h.running():
        await until(lambda: h.client.stats.reading)
        assert h.client.last_frame_age is None  # the metric's gauge is absent until a frame
        await polysim.fill(shape="fill", order_id=1, price="0.65", quantity="10.0")
        await polysim.fill(shape="execution", order_id=2, side="SELL", status="PARTIALLY_FILLED")
        await polysim.fill(shape="nested", order_id=3, outcome="No", client_order_id="bot-3")
        await polysim.emit({"type": "pong", "ts": 1})
        await h.sink.wait(3)
        await until(lambda: h.client.stats.non_fill == 1)
        assert h.client.last_frame_age == 0.0
        h.mono.t += 12.5
        assert h.client.last_frame_age == 12.5  # a pong counts: the feed is alive
    fills = {f.order_id: f for f, _ in h.sink.unique}
    assert [s for _, s in h.sink.unique] == ["live"] * 3
    assert fills["1"].price == Decimal("0.65")
    assert fills["1"].notional == Decimal("6.5")
    assert fills["2"].side == "SELL"
    assert fills["2"].status == "PARTIALLY_FILLED"
    assert fills["3"].client_order_id == "bot-3"
    assert fills["3"].filled_at == T0
    assert h.client.stats.fills == 3
    assert h.client.stats.non_fill == 1


async def test_first_start_does_not_alert_history(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """No watermark and catch_up 0: history before the start is not alerted, live fills are."""
    polysim.record_history(order_id=1, filled_at=T0 - timedelta(minutes=5))
    h = Harness(polysim, http)
    async with h.running():
        await until(lambda: h.client.stats.reading)
        await polysim.fill(order_id=2)
        await h.sink.wait(1)
    assert h.sink.order_ids() == ["2"]
    assert h.watermark.at == T0 + timedelta(seconds=60)  # later backfills start at T0


async def test_first_start_counts_from_daemon_start_not_first_connect(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """Fresh install, token endpoint down for minutes: fills made meanwhile are recovered."""

    def outage(n: int) -> None:
        polysim.wall.at = T0 + timedelta(minutes=n)  # type: ignore[attr-defined]
        if n == 2:
            polysim.record_history(order_id=7)  # made while the daemon could not connect
        if n == 3:
            polysim.token_status = None

    polysim.record_history(order_id=1, filled_at=T0 - timedelta(minutes=5))
    polysim.token_status = 503
    h = Harness(polysim, http, sleeps=Sleeps(outage))
    async with h.running():
        await until(lambda: h.client.stats.reading)
        await polysim.fill(order_id=8)
        await h.sink.wait(2)
    assert h.sink.order_ids() == ["7", "8"]
    assert h.sink.order_ids("backfill") == ["7"]


async def test_catch_up_widens_the_first_start(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """catch_up 1h on first start recovers the last hour of history, nothing older."""
    polysim.record_history(order_id=1, filled_at=T0 - timedelta(hours=2))
    polysim.record_history(order_id=2, filled_at=T0 - timedelta(minutes=30))
    h = Harness(polysim, http, catch_up=timedelta(hours=1))
    async with h.running():
        await h.sink.wait(1)
        await until(lambda: h.client.stats.backfilled == 1)
    assert h.sink.order_ids("backfill") == ["2"]


async def test_restart_with_state_recovers_the_gap_oldest_first(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """With a watermark, history since it (less the overlap) is delivered oldest first."""
    mark = T0 - timedelta(hours=1)
    for n, minutes in enumerate([-120, 3, 1, 2, 30]):
        polysim.record_history(order_id=100 + n, filled_at=mark + timedelta(minutes=minutes))
    h = Harness(polysim, http, watermark=mark)
    async with h.running():
        await h.sink.wait(4)
        await polysim.fill(order_id=200)
        await h.sink.wait(5)
    assert h.sink.order_ids("backfill") == ["102", "103", "101", "104"]
    assert h.sink.order_ids("live") == ["200"]


async def test_backfill_pages_through_long_history(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """More than one page of history (200 a page) is read in full, in time order."""
    mark = T0 - timedelta(hours=2)
    for n in range(450):
        polysim.record_history(order_id=n, filled_at=mark + timedelta(seconds=n + 1))
    h = Harness(polysim, http, watermark=mark)
    async with h.running():
        await h.sink.wait(450)
    assert h.sink.order_ids() == [str(n) for n in range(450)]
    # Pages of 200, 200 and 50: the 50, shorter than the pages before it, ends history.
    assert polysim.history_requests == 3


async def test_backfill_never_reaches_past_the_horizon(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """A very old watermark is clamped to backfill_horizon: older fills cannot be deduped."""
    polysim.record_history(order_id=1, filled_at=T0 - timedelta(days=10))
    polysim.record_history(order_id=2, filled_at=T0 - timedelta(days=1))
    h = Harness(polysim, http, watermark=T0 - timedelta(days=30))
    async with h.running():
        await h.sink.wait(1)
        await until(lambda: h.client.stats.connected)
    assert h.sink.order_ids() == ["2"]


async def test_fills_during_a_drop_are_recovered_exactly_once(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """A drop with fills in the gap: backfill delivers them, in order, each once."""

    def during_gap(n: int) -> None:
        if n != 1:  # the back-off; the next pause paces the reconnect's history pages
            return
        polysim.wall.at = T0 + timedelta(minutes=1)  # type: ignore[attr-defined]
        polysim.record_history(order_id=11)
        polysim.wall.at = T0 + timedelta(minutes=2)  # type: ignore[attr-defined]
        polysim.record_history(order_id=12)

    h = Harness(polysim, http, watermark=T0 - timedelta(minutes=1), sleeps=Sleeps(during_gap))
    async with h.running():
        await h.live_then_drop(polysim, then=3, order_id=10)
        polysim.wall.at = T0 + timedelta(minutes=3)  # type: ignore[attr-defined]
        await polysim.fill(order_id=13)
        await h.sink.wait(4)
    assert h.sink.order_ids() == ["10", "11", "12", "13"]
    assert [s for _, s in h.sink.unique] == ["live", "backfill", "backfill", "live"]
    assert h.client.stats.reconnects == {"closed": 1}
    # One back-off, then the pause before the backfill's empty last page (a page of fills
    # does not end history): two pauses, one of them a reconnect's.
    assert len(h.sleeps.delays) == 2
    assert h.sleeps.delays[1] == PAGE_PACE
    # The read also lists fill 10, delivered live before the drop: it was not recovered.
    assert [s for _, s in h.sink.calls].count("backfill") == 3
    assert h.client.stats.backfilled == 2


async def test_a_close_reason_cannot_forge_a_log_line(
    polysim: SimulatedPolySim, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The venue's close reason is logged quoted: its newline stays an escape, not a line."""
    caplog.set_level(logging.INFO, logger="notifier")
    h = Harness(polysim, http)
    async with h.running():
        await until(lambda: h.client.stats.reading)
        await polysim.close_all(1011, "restart\nERROR forged line")
        await until(lambda: h.client.stats.connects == 2 and h.client.stats.reading)
    closed = [r.getMessage() for r in caplog.records if "server closed" in r.getMessage()]
    assert closed[0] == "server closed the connection (1011, reason 'restart\\nERROR forged line')"


async def test_a_close_reason_quoting_the_token_logs_it_blotted_out(
    polysim: SimulatedPolySim, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A 4001 whose reason quotes the connection's token: the logged reason has `***`."""
    caplog.set_level(logging.DEBUG)
    h = Harness(polysim, http)
    async with h.running():
        await until(lambda: h.client.stats.reading)
        token = polysim.issued_tokens[-1]
        await polysim.close_all(4001, f"invalid token {token}")
        await until(lambda: h.client.stats.connects == 2 and h.client.stats.reading)
        cut = polysim.issued_tokens[-1]
        await polysim.close_all(4001, f"invalid token {cut[:20]}")  # a reason cut short
        await until(lambda: h.client.stats.connects == 3 and h.client.stats.reading)
    closed = [r.getMessage() for r in caplog.records if "server closed" in r.getMessage()]
    assert closed[:2] == ["server closed the connection (4001, reason 'invalid token ***')"] * 2
    assert not any(token in r.getMessage() for r in caplog.records)
    assert not any(cut[:20] in r.getMessage() for r in caplog.records)


async def test_history_outage_keeps_live_fills_and_retries_the_gap(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """History down at connect: a few tries, live fills still flow, the gap is retried later."""
    polysim.history_status = 503
    polysim.record_history(order_id=1, filled_at=T0 - timedelta(seconds=30))
    h = Harness(polysim, http, watermark=T0 - timedelta(minutes=5))
    async with h.running():
        await until(lambda: h.client.stats.reading)
        await polysim.fill(order_id=2)
        await h.sink.wait(1)
        assert h.sink.order_ids() == ["2"]
        assert h.client.stats.backfill_failures == 3
        assert len(h.sleeps.delays) == 2  # back-off between the three tries
        polysim.history_status = None
        await h.mono.advance(61)  # the retry falls due; the tender's timer runs it
        await h.sink.wait(2)
    assert h.sink.order_ids() == ["2", "1"]
    assert h.client.stats.connects == 1


class BusyGapStore(Watermark):
    """A watermark store whose gap cannot be cleared once `busy` (a locked state file)."""

    busy = False

    def save_gap(self, at: datetime | None) -> None:
        if self.busy and at is None:
            raise StateBusyError("state file s.db: write meta: busy")
        super().save_gap(at)


async def test_a_gap_retry_that_fails_stops_the_feed_with_its_error_at_once(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """The state store failing inside a gap retry ends `run()` with that error right away,
    not whenever the connection happens to end (no retry would ever run again meanwhile)."""
    polysim.history_status = 503
    store = BusyGapStore(T0 - timedelta(minutes=5))
    h = Harness(polysim, http, store=store)
    async with h.running() as task:
        await until(lambda: h.client.stats.reading)
        polysim.history_status = None
        store.busy = True
        h.mono.t += 61  # the retry falls due; the next frame runs it
        await polysim.emit({"type": "pong", "ts": 1})
        with pytest.raises(StateBusyError, match="busy"):
            await asyncio.wait_for(asyncio.shield(task), timeout=5)
    assert h.client.stats.connects == 1


class HeldHistory(SimulatedPolySim):
    """A venue whose history answers only once `release` is set: a slow connect backfill.
    It counts the protocol pings its feed connections receive (websockets answers them)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.release = asyncio.Event()
        self.pings = 0

    async def _route(
        self, method: str, target: str, headers: Mapping[str, str]
    ) -> tuple[int, object, dict[str, str]]:
        if target.startswith("/v1/account/history"):
            await self.release.wait()
        return await super()._route(method, target, headers)

    async def _feed(self, conn: ServerConnection) -> None:
        process = conn.process_event

        def counted(event: Event) -> None:
            if isinstance(event, Frame) and event.opcode is Opcode.PING:
                self.pings += 1
            process(event)

        conn.process_event = counted  # type: ignore[method-assign]
        await super()._feed(conn)


async def test_a_long_connect_backfill_keeps_a_busy_connection_alive(
    http: httpx.AsyncClient,
) -> None:
    """Live fills queued during a backfill longer than the keepalive do not kill the connection.

    The keepalive is websockets' own, on real time (it cannot take the test's clock): it pings,
    waits for the pong, and only then pings again. So three more pings reaching the venue after
    the 40 fills were sent prove their pongs, queued behind those fills, were read. With
    websockets' default queue (16 frames) it stopped reading the socket, and the second ping
    never came. ping_timeout is generous: a slow machine does not miss a pong that came.
    """
    wall = Wall()
    async with HeldHistory(now=wall) as sim:
        sim.wall = wall  # type: ignore[attr-defined]
        h = Harness(sim, http, watermark=T0 - timedelta(minutes=5), ping_interval=0.05,
                    ping_timeout=2.0)  # fmt: skip
        async with h.running():
            await sim.wait_connected()
            for n in range(40):  # the bot trades on while history is paged
                await sim.fill(order_id=n + 1)
            pings = sim.pings
            await until(lambda: sim.pings >= pings + 3 or h.client.stats.connects > 1)
            assert h.client.stats.connects == 1
            assert not h.sink.calls  # history is still held: the backfill has not ended
            sim.release.set()
            await h.sink.wait(40)
            await sim.fill(order_id=41)  # read live on the same connection
            await h.sink.wait(41)
        assert h.client.stats.reconnects == {}
        assert h.client.stats.connects == 1
        # Each fill once (history brings the first 40; their live copies are deduped).
        assert sorted(h.sink.order_ids(), key=int) == [str(n + 1) for n in range(41)]
        assert h.sink.order_ids("live") == ["41"]


async def test_a_first_4001_reconnects_at_once(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """One 4001 close: a new token is minted and used without any pause."""
    polysim.reject_tokens = 1
    h = Harness(polysim, http)
    async with h.running():
        await until(lambda: h.client.stats.connects == 2 and h.client.stats.connected)
    assert h.sleeps.delays == []
    assert h.client.stats.reconnects == {"close_4001": 1}
    assert polysim.token_mints == 2


async def test_repeated_4001_backs_off(polysim: SimulatedPolySim, http: httpx.AsyncClient) -> None:
    """4001 again and again with no frame between: the second and later ones back off."""
    polysim.reject_tokens = 5
    h = Harness(polysim, http)
    async with h.running():
        await until(lambda: h.client.stats.connects == 6 and h.client.stats.connected)
    assert len(h.sleeps.delays) == 4
    assert grows(h.sleeps.delays)


async def test_4002_backs_off(polysim: SimulatedPolySim, http: httpx.AsyncClient) -> None:
    """4002 (too many connections) backs off before each retry."""
    polysim.close_with_4002 = 2
    h = Harness(polysim, http)
    async with h.running():
        await until(lambda: h.client.stats.connects == 3 and h.client.stats.connected)
    assert h.client.stats.reconnects == {"close_4002": 2}
    assert len(h.sleeps.delays) == 2
    assert grows(h.sleeps.delays)


async def test_a_redirect_to_a_host_idna_cannot_encode_is_a_failed_connect(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """A handshake redirected to a host name with a 70-letter label (UnicodeError from IDNA,
    where an unresolvable name is an OSError): a failed connect, backed off, not a crash."""
    # The second, refused on loopback: an OSError, for comparison (no name to look up).
    polysim.redirect_connects = [f"ws://\u00e4{'a' * 70}.invalid/x", "ws://127.0.0.1:1/x"]
    h = Harness(polysim, http)
    async with h.running():
        await until(lambda: h.client.stats.connects == 1 and h.client.stats.reading)
    assert h.client.stats.reconnects == {"connect_failed": 2}
    assert len(h.sleeps.delays) == 2


async def test_accept_and_drop_cannot_cause_a_reconnect_storm(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """A server that accepts and closes at once: every retry waits longer, up to the cap."""

    def heal(n: int) -> None:
        if n == 8:
            polysim.accept_and_close = False

    polysim.accept_and_close = True
    h = Harness(polysim, http, sleeps=Sleeps(heal))
    async with h.running():
        await until(lambda: h.client.stats.connects == 9 and h.client.stats.connected)
    assert h.client.stats.reconnects == {"closed": 8}
    assert len(h.sleeps.delays) == 8
    assert grows(h.sleeps.delays)
    assert max(h.sleeps.delays) <= 30


async def test_backoff_resets_only_after_a_stable_connection(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """Short-lived connections keep growing the back-off; one up for stable_after resets it."""

    def heal(n: int) -> None:
        if n == 3:
            polysim.accept_and_close = False

    polysim.accept_and_close = True
    h = Harness(polysim, http, sleeps=Sleeps(heal), stable_after=60)
    async with h.running():
        await until(lambda: h.client.stats.connects == 4 and h.client.stats.reading)
        h.mono.t += 61
        await polysim.close_all(1011)
        await until(lambda: h.client.stats.connects == 5 and h.client.stats.connected)
    assert len(h.sleeps.delays) == 4
    assert grows(h.sleeps.delays[:3])
    assert 0.5 <= h.sleeps.delays[3] <= 1.0


async def test_a_connection_that_delivered_a_fill_resets_the_backoff(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """Connections that each deliver a fill, then are closed (a venue restarting, a token
    expiring on a live socket), wait about a second each time, not ever longer."""
    h = Harness(polysim, http, stable_after=60)
    async with h.running():
        for n in range(1, 6):
            await until(lambda n=n: h.client.stats.connects == n and h.client.stats.reading)  # type: ignore[misc]
            await polysim.fill(order_id=n)
            await h.sink.wait(n)
            await polysim.close_all(1011)
        await until(lambda: h.client.stats.connects == 6 and h.client.stats.reading)
    assert h.client.stats.reconnects == {"closed": 5}
    # Each back-off is followed by the pause before its reconnect's empty last history page.
    assert len(h.sleeps.delays) == 10
    assert h.sleeps.delays[1::2] == [PAGE_PACE] * 5
    assert all(0.5 <= d <= 1.0 for d in h.sleeps.delays[::2]), h.sleeps.delays


async def test_silent_connection_is_replaced(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """A peer that stops answering (no frames, no pongs) is noticed and replaced.

    On real time: the watchdog and websockets' keepalive, which cannot take the test's clock,
    both go by these settings. ping_timeout leaves a slow machine ample time for the healed
    connection's pongs, so only the silent one is replaced."""

    def heal(n: int) -> None:
        polysim.silent = False

    h = Harness(polysim, http, sleeps=Sleeps(heal), ping_interval=0.05, ping_timeout=0.5)
    async with h.running():
        await until(lambda: h.client.stats.reading)
        polysim.silent = True
        await until(lambda: h.client.stats.connects == 2 and h.client.stats.connected)
        await until(lambda: h.client.stats.reading)
        await polysim.fill(order_id=5)
        await h.sink.wait(1)
    assert h.client.stats.reconnects == {"silent": 1}
    assert h.sink.order_ids() == ["5"]


async def test_refused_key_is_fatal_and_shows_only_the_prefix(
    polysim: SimulatedPolySim, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """401 from the token endpoint ends run() with KeyRefused naming only the key's prefix."""
    caplog.set_level(logging.DEBUG)
    key = "ps_live_" + "s3cr3t" * 6
    h = Harness(polysim, http, api_key=key)
    with pytest.raises(KeyRefused) as info:
        await h.client.run()
    assert key_prefix(key) in str(info.value)
    assert key not in str(info.value)
    assert all(key not in r.getMessage() for r in caplog.records)
    assert h.client.stats.connects == 0
    assert h.watermark.at is None  # the start after the key is fixed is a first start again


async def test_a_key_refused_after_it_was_taken_is_asked_about_again(
    polysim: SimulatedPolySim, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A key the venue took and then refuses (revoked, or the venue's passing fault): run()
    does not end, which would end alerting for good, but asks every KEY_RETRY seconds, saying
    so at ERROR; once the venue takes the key again, the fills made meanwhile are recovered."""
    refused_while_paused: list[bool] = []

    def heal(n: int) -> None:
        refused_while_paused.append(h.client.stats.key_refused)
        if n == 2:
            polysim.token_status = None

    h = Harness(polysim, http, sleeps=Sleeps(heal))
    async with h.running() as task:
        await until(lambda: h.client.stats.reading)
        polysim.token_status = 401
        polysim.record_history(order_id=7)  # filled while the key is refused
        await polysim.close_all(4001)
        await until(lambda: h.client.stats.connects == 2 and h.client.stats.reading)
        await h.sink.wait(1)
        assert not task.done()
        await polysim.close_all(1000)  # an ordinary drop after: the back-off's first step
        await until(lambda: h.client.stats.connects == 3 and h.client.stats.reading)
    assert h.sleeps.delays[:2] == [KEY_RETRY, KEY_RETRY]
    # Each reconnect's backfill reads fill 7's page, then pauses before the empty one.
    assert len(h.sleeps.delays) == 5
    assert h.sleeps.delays[2] == h.sleeps.delays[4] == PAGE_PACE
    assert 0.5 <= h.sleeps.delays[3] <= 1.0  # not the third step (2 to 4 s) of the refusals
    assert refused_while_paused == [True, True, False, False, False]
    assert not h.client.stats.key_refused
    assert h.client.stats.reconnects == {"close_4001": 1, "key_refused": 2, "closed": 1}
    assert h.client.stats.token_mints == 3
    assert h.sink.order_ids() == ["7"]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2
    assert all("refused the API key" in e and "asking in 60s" in e for e in errors), errors


async def test_a_key_refused_before_any_connection_is_still_fatal(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """A token minted but no connection ever made (the handshake refused), then the key
    refused: the key never served in this run, so run() ends as at a refused start, and the
    next start (with a fixed key) is a first start again, not a backfill of the days between."""

    def revoke(n: int) -> None:
        polysim.token_status = 401

    polysim.throttle_connects = 1
    h = Harness(polysim, http, sleeps=Sleeps(revoke))
    with pytest.raises(KeyRefused):
        await asyncio.wait_for(h.client.run(), 10)
    assert (h.client.stats.token_mints, h.client.stats.connects) == (1, 0)
    assert h.client.stats.reconnects == {"rate_limited": 1}
    assert h.watermark.at is None


async def test_rate_limited_token_honours_retry_after(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """429 on the token endpoint: the client waits exactly Retry-After, then goes on."""

    def heal(n: int) -> None:
        polysim.token_status = None

    polysim.token_status, polysim.retry_after = 429, "7"
    h = Harness(polysim, http, sleeps=Sleeps(heal))
    async with h.running():
        await until(lambda: h.client.stats.connected)
    assert h.sleeps.delays == [7.0]
    assert h.client.stats.reconnects == {"rate_limited": 1}


async def test_a_throttled_handshake_waits_its_retry_after(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """HTTP 429 on the WebSocket handshake itself: the reconnect waits the Retry-After (past
    the 1 s back-off), counted as rate-limited, then connects."""
    polysim.throttle_connects, polysim.retry_after = 1, "20"
    h = Harness(polysim, http)
    async with h.running():
        await until(lambda: h.client.stats.connected)
    assert h.sleeps.delays == [20.0]
    assert h.client.stats.reconnects == {"rate_limited": 1}
    assert polysim.connections == 2


async def test_a_socks_proxy_without_its_package_ends_the_feed_as_fatal(
    polysim: SimulatedPolySim, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """websockets reads the proxy from the environment; a SOCKS one needs python-socks: a
    fatal, worded error instead of an ImportError traceback."""
    monkeypatch.setenv("ws_proxy", "socks5://127.0.0.1:9")  # read by websockets, not httpx
    h = Harness(polysim, http)
    with pytest.raises(FatalFeedError, match="cannot use the proxy the environment names"):
        await asyncio.wait_for(h.client.run(), timeout=5)


async def test_a_proxy_websockets_refuses_is_fatal_and_its_credentials_never_said(
    polysim: SimulatedPolySim,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A token-style proxy (a user, no password) that httpx takes and websockets refuses:
    one fatal error naming the problem, not a warning with the credential on every retry."""
    monkeypatch.setenv("ws_proxy", "http://PROXYTOKEN12345@127.0.0.1:9")
    h = Harness(polysim, http)
    with pytest.raises(FatalFeedError) as info:
        await asyncio.wait_for(h.client.run(), timeout=5)
    assert str(info.value) == (
        "cannot use the proxy the environment names for the feed: "
        "username provided without password"
    )
    assert "PROXYTOKEN" not in caplog.text
    assert polysim.connections == 0


def test_exception_text_loses_the_user_part_of_any_url() -> None:
    """The backstop for what a library puts in its errors: a proxy's credentials go."""
    text = "ProxyError: http://user:pw@proxy:3128 and https://TOKEN@p/x, tok-123456789"
    assert redact(text, "tok-123456789") == (
        "ProxyError: http://***@proxy:3128 and https://***@p/x, ***"
    )


async def test_server_errors_on_the_token_endpoint_are_transient(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """503 from the token endpoint backs off and retries until a token comes."""

    def heal(n: int) -> None:
        if n == 3:
            polysim.token_status = None

    polysim.token_status = 503
    h = Harness(polysim, http, sleeps=Sleeps(heal))
    async with h.running():
        await until(lambda: h.client.stats.connected)
    assert h.client.stats.reconnects == {"token_failed": 3}
    assert grows(h.sleeps.delays)


BAD_FRAMES: list[tuple[str | bytes, str]] = [
    ("{not json", "not_json"),
    ('{"type": "pong", "x": 1e99999999999999999999}', "not_json"),  # past a Decimal: it raised
    ("[1, 2]", "not_object"),
    (b"\x00\x01", "binary"),
    ('{"type": "fill", "pad": "' + "x" * 3000 + '"}', "oversized"),
    ('{"type": "fill", "order_id": 1}', "missing_field"),
]


def _bad_fill(**override: object) -> str:
    fill: dict[str, object] = {
        "type": "fill",
        "order_id": 1,
        "market_id": "0xabc",
        "side": "BUY",
        "outcome": "Yes",
        "price": "0.5",
        "quantity": "1",
        "filled_at": "2026-02-06T12:00:00Z",
    }
    fill.update(override)
    return json.dumps(fill)


BAD_FILLS = [
    (_bad_fill(price="abc"), "bad_decimal"),
    (_bad_fill(price="1.5"), "price_range"),
    (_bad_fill(quantity="0"), "quantity"),
    (_bad_fill(side="HOLD"), "side"),
    (_bad_fill(filled_at="yesterday"), "time"),
    (_bad_fill(outcome=7), "type"),
]


async def test_bad_frames_are_dropped_counted_and_the_feed_goes_on(
    polysim: SimulatedPolySim, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Each kind of bad frame is counted by reason and logged; the connection survives."""
    h = Harness(polysim, http, max_frame_bytes=2000)
    async with h.running():
        await until(lambda: h.client.stats.reading)
        for frame, _ in BAD_FRAMES + BAD_FILLS:
            await polysim.emit(frame)
        await polysim.fill(order_id=9)
        await h.sink.wait(1)
    reasons = [reason for _, reason in BAD_FRAMES + BAD_FILLS]
    assert h.client.stats.rejected == dict(Counter(reasons))
    assert h.client.stats.connects == 1
    assert h.sink.order_ids() == ["9"]
    logged = [r.getMessage() for r in caplog.records if r.name == "notifier.rejections"]
    assert all(any(f"({reason})" in line for line in logged) for reason in reasons)


async def test_a_bad_history_item_is_counted_once_however_often_it_is_read(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """Each reconnect re-reads the overlap: a malformed item in it is one rejection, not one
    a read, while a second bad item, different, still counts."""
    h = Harness(polysim, http, watermark=T0)
    async with h.running():
        await until(lambda: h.client.stats.reading)
        polysim.record_history(order_id=7, price="abc")
        await polysim.fill(order_id=8)
        await h.sink.wait(1)
        for n in (2, 3, 4):
            if n == 4:
                polysim.record_history(order_id=9, price="xyz")
            await polysim.close_all(1011, "restart")
            await until(lambda n=n: h.client.stats.connects == n and h.client.stats.reading)
    assert h.client.stats.rejected == {"bad_decimal": 2}
    assert h.sink.order_ids() == ["8"]


async def test_a_flood_of_bad_frames_logs_one_line_per_window(
    polysim: SimulatedPolySim, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Rejections are logged at most once per reason per 10 s, with the suppressed count."""
    h = Harness(polysim, http)
    async with h.running():
        await until(lambda: h.client.stats.reading)
        for _ in range(50):
            await polysim.emit("garbage")
        await until(lambda: h.client.stats.rejected.get("not_json") == 50)
        h.mono.t += 11
        await polysim.emit("garbage")
        await until(lambda: h.client.stats.rejected.get("not_json") == 51)
    lines = [r.getMessage() for r in caplog.records if "(not_json)" in r.getMessage()]
    assert len(lines) == 2
    assert "49 more like it suppressed" in lines[1]


async def test_no_token_or_key_reaches_any_log_record(
    polysim: SimulatedPolySim, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG, through 4001s, reconnects and fills, no log record holds a token or the key."""
    caplog.set_level(logging.DEBUG)
    polysim.reject_tokens = 2
    h = Harness(polysim, http)
    async with h.running():
        await until(lambda: h.client.stats.connects == 3 and h.client.stats.reading)
        await polysim.fill(order_id=1)
        await h.sink.wait(1)
        await polysim.close_all(1011)
        await until(lambda: h.client.stats.connects == 4 and h.client.stats.connected)
    assert len(polysim.issued_tokens) == 4
    texts = [r.getMessage() + repr(r.args) for r in caplog.records]
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # DEBUG really was captured
    for secret in [*polysim.issued_tokens, DEFAULT_API_KEY]:
        assert all(secret not in text for text in texts), secret


async def test_request_stop_ends_run_cleanly(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """request_stop() closes the socket and run() returns; also during a back-off pause."""
    h = Harness(polysim, http)
    task = asyncio.create_task(h.client.run())
    await polysim.wait_connected()
    h.client.request_stop()
    async with asyncio.timeout(5):
        await task
    await polysim.wait_disconnected()
    assert h.client.stats.connected is False

    never = asyncio.Event()
    h2 = Harness(polysim, http, sleeps=Sleeps(lambda n: never.wait()))
    polysim.token_status = 503
    task = asyncio.create_task(h2.client.run())
    await until(lambda: h2.client.stats.in_backoff)
    h2.client.request_stop()
    async with asyncio.timeout(5):
        await task


async def test_a_frame_over_the_hard_limit_costs_one_reconnect(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """A frame beyond websockets' hard cap closes the socket; it is counted and the feed resumes."""
    h = Harness(polysim, http, max_frame_bytes=1000)
    async with h.running():
        await until(lambda: h.client.stats.reading)
        await polysim.emit('{"pad": "' + "x" * 70_000 + '"}')
        await until(lambda: h.client.stats.connects == 2 and h.client.stats.reading)
        await polysim.fill(order_id=3)
        await h.sink.wait(1)
    assert h.client.stats.rejected == {"oversized": 1}
    assert h.client.stats.reconnects == {"oversized": 1}
    assert len(h.sleeps.delays) == 1


async def test_a_burst_of_buffered_frames_lets_other_tasks_run(
    polysim: SimulatedPolySim, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """recv() hands out buffered frames without suspending; once the read loop's turn is used
    up (here: after every frame) it yields, so delivery and the pipeline run during a burst."""
    monkeypatch.setattr("notifier.feed.YIELD_AFTER", 0.0)
    ticks = 0
    seen_at: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    h = Harness(polysim, http)
    record = h.sink.__call__

    async def sink(fill: Fill, source: str) -> None:
        seen_at.append(ticks)
        await record(fill, source)

    h.client._sink = sink  # the harness's own sink, observed on the way
    async with h.running():
        await until(lambda: h.client.stats.reading)
        side = asyncio.create_task(ticker())
        try:
            await asyncio.gather(*(polysim.fill(order_id=n) for n in range(200)))
            await h.sink.wait(200)
        finally:
            side.cancel()
    assert len(seen_at) == 200
    assert all(a < b for a, b in itertools.pairwise(seen_at))


async def test_two_equal_partial_fills_live_are_two_fills_and_a_backfill_adds_none(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """Two partial fills of one order, same second, size and price: the feed has no replay, so
    the second frame is a second fill (the one that completes the order), not a copy. History
    lists both after a reconnect: each is the same fill again, and nothing is added."""
    h = Harness(polysim, http, watermark=T0 - timedelta(minutes=1))
    async with h.running():
        await until(lambda: h.client.stats.reading)
        for status in ("PARTIALLY_FILLED", "FILLED"):
            await polysim.fill(shape="execution", order_id=7, status=status)
        await h.sink.wait(2)
        await polysim.close_all(1011, "restart")
        await until(lambda: h.client.stats.connects == 2 and h.client.stats.reading)
        await polysim.fill(order_id=8)
        await h.sink.wait(3)
    assert [(f.order_id, f.status, s) for f, s in h.sink.unique] == [
        ("7", "PARTIALLY_FILLED", "live"),
        ("7", "FILLED", "live"),
        ("8", None, "live"),  # the flat shape carries no status
    ]
    first, second = (f for f, _ in h.sink.unique[:2])
    assert second.key == first.key + "#2"
    backfilled = [f.key for f, s in h.sink.calls if s == "backfill"]
    assert backfilled == [first.key, second.key]  # both read again, both already recorded


class ShiftingHistory(SimulatedPolySim):
    """A venue where a fill lands at the front of history right after the first page is read,
    so offset paging serves the first page's oldest item again at the top of the next page."""

    async def _route(
        self, method: str, target: str, headers: Mapping[str, str]
    ) -> tuple[int, object, dict[str, str]]:
        answer = await super()._route(method, target, headers)
        if target.startswith("/v1/account/history") and self.history_requests == 1:
            self.record_history(order_id=999, filled_at=T0 + timedelta(hours=1))
        return answer


async def test_an_item_shifted_onto_the_next_history_page_is_not_taken_for_a_repeat(
    http: httpx.AsyncClient,
) -> None:
    """Occurrences are counted within a page: the copy of an item that paging shows twice is
    the same fill, whereas counting across pages would alert it twice."""
    wall = Wall()
    async with ShiftingHistory(now=wall) as sim:
        sim.wall = wall  # type: ignore[attr-defined]
        for n in range(200):
            sim.record_history(order_id=n + 1, filled_at=T0 - timedelta(seconds=200 - n))
        h = Harness(sim, http, watermark=T0 - timedelta(minutes=3))
        async with h.running():
            await until(lambda: h.client.stats.reading)
            await h.sink.wait(200)
        backfilled = [f for f, s in h.sink.calls if s == "backfill"]
        # The first page, then the shifted item alone on the next: shorter, so the end.
        assert sim.history_requests == 2
        assert len(backfilled) == 200  # the first item, read on both pages, goes on once
        assert sorted(f.order_id for f in backfilled) == sorted(str(n + 1) for n in range(200))
        assert all(f.occurrence == 1 for f in backfilled)
        assert len(h.sink.unique) == 200


def _recovered(sink: Sink) -> dict[str, str | None]:
    """order id -> client_order_id of each fill backfill handed on."""
    return {f.order_id: f.client_order_id for f, s in sink.unique if s == "backfill"}


async def test_recovered_fills_get_their_client_order_id_from_the_order_list(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """History has no client_order_id: when the rules read it, backfill asks the order list,
    once per market of the recovered fills; an order without one stays without."""
    other = "0x" + "ab" * 32

    h = Harness(
        polysim,
        http,
        watermark=T0 - timedelta(minutes=1),
        gap=[
            {"order_id": 21, "client_order_id": "bot-21"},
            {"order_id": 22},
            {"order_id": 23, "client_order_id": "bot-23", "market_id": other},
        ],
        order_refs=True,
    )
    async with h.running():
        await h.live_then_drop(polysim, then=4, order_id=20)
    assert _recovered(h.sink) == {"21": "bot-21", "22": None, "23": "bot-23"}
    assert h.client.order_lookups == (2, 0)
    markets = [q["market_id"] for q in polysim.orders_requests]
    assert sorted(markets) == sorted([next(iter(polysim.markets)), other])
    assert all(q["limit"] == "50" and "cursor" not in q for q in polysim.orders_requests)


async def test_an_order_the_feed_named_needs_no_order_list_request(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """A partial fill arrives live with its client_order_id; the order's next fill, missed in
    a drop, is recovered with the same id, without asking the venue."""

    h = Harness(
        polysim,
        http,
        watermark=T0 - timedelta(minutes=1),
        gap=[{"order_id": 30, "client_order_id": "bot-30", "quantity": "4"}],
        order_refs=True,
    )
    async with h.running():
        await h.live_then_drop(
            polysim, then=2, shape="nested", order_id=30, client_order_id="bot-30", quantity="6"
        )
    assert [(f.quantity, f.client_order_id, s) for f, s in h.sink.unique] == [
        (Decimal(6), "bot-30", "live"),
        (Decimal(4), "bot-30", "backfill"),
    ]
    assert polysim.orders_requests == []


async def test_the_order_list_failing_lets_recovered_fills_go_on_without_it(
    polysim: SimulatedPolySim, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The order list answering 503: recovered fills are handed on all the same, without the
    id, and live reading goes on; no retry storm (one request)."""
    polysim.orders_status = 503

    h = Harness(
        polysim,
        http,
        watermark=T0 - timedelta(minutes=1),
        gap=[{"order_id": 41, "client_order_id": "bot-41"}],
        order_refs=True,
    )
    async with h.running():
        await h.live_then_drop(polysim, then=2, order_id=40)
        await until(lambda: h.client.stats.reading)
    assert _recovered(h.sink) == {"41": None}
    assert len(polysim.orders_requests) == 1
    assert h.client.order_lookups == (1, 1)  # requests, failed: for /metrics
    warned = [r.getMessage() for r in caplog.records if "order list unavailable" in r.getMessage()]
    assert warned == [
        "order list unavailable (order list answered HTTP 503): recovered fills of 1 order(s) "
        "go on without client_order_id"
    ]


async def test_rules_that_do_not_read_client_order_id_cost_no_order_list_request(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """Backfill asks the order list for no ids while no rule reads client_order_id."""
    h = Harness(
        polysim,
        http,
        watermark=T0 - timedelta(minutes=1),
        gap=[{"order_id": 51, "client_order_id": "bot-51"}],
    )
    async with h.running():
        await h.live_then_drop(polysim, then=2, order_id=50)
    assert _recovered(h.sink) == {"51": None}
    assert polysim.orders_requests == []


async def test_the_order_list_is_paged_by_cursor_within_a_budget(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """An order far down its market's list is reached by cursor; across many markets the
    look-up stops after MAX_ORDER_PAGES requests, and the rest go on without the id."""
    for n in range(60):  # older orders of the first market, listed after the recent ones
        polysim.record_history(order_id=1000 + n, filled_at=T0 - timedelta(hours=2, seconds=n))
    markets = ["0x" + f"{n:02d}" * 32 for n in range(6)]

    def during_gap(n: int) -> None:
        if n == 1:  # a later fill of the first market's oldest order, then the other markets
            polysim.record_history(order_id=1059, client_order_id="bot-1059")
            for m, market in enumerate(markets):
                polysim.record_history(order_id=60 + m, client_order_id=f"bot-{60 + m}",
                                       market_id=market)  # fmt: skip

    h = Harness(polysim, http, watermark=T0 - timedelta(minutes=1), sleeps=Sleeps(during_gap),
                order_refs=True)  # fmt: skip
    async with h.running():
        await h.live_then_drop(polysim, then=8, order_id=59)
    recovered = _recovered(h.sink)
    assert len(recovered) == 7
    assert len(polysim.orders_requests) == MAX_ORDER_PAGES
    assert sum(value is not None for value in recovered.values()) == MAX_ORDER_PAGES - 1
    first_market = [
        q for q in polysim.orders_requests if q["market_id"] == next(iter(polysim.markets))
    ]
    assert [q.get("cursor") for q in first_market] == [None, "at-50"]
    assert recovered["1059"] == "bot-1059"


async def test_a_late_gap_read_recovers_the_missed_partial_fill_not_the_live_one_again(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """The partial fill happens while the feed is away; history is down at connect, so live
    reading goes on and the equal completing fill arrives live. The gap read later lists
    both: its FILLED item is the live fill again, its partial fill the one to recover."""
    polysim.history_status = 503
    polysim.record_history(order_id=7, status="PARTIALLY_FILLED")
    h = Harness(polysim, http, watermark=T0 - timedelta(minutes=5))
    async with h.running():
        await until(lambda: h.client.stats.reading)
        await polysim.fill(shape="execution", order_id=7, status="FILLED")
        await h.sink.wait(1)
        polysim.history_status = None
        await h.mono.advance(61)  # the gap's retry is due
        await h.sink.wait(2)
    assert [(f.status, f.occurrence, s) for f, s in h.sink.unique] == [
        ("FILLED", 1, "live"),
        ("PARTIALLY_FILLED", 2, "backfill"),
    ]


class TiesOldestFirst(SimulatedPolySim):
    """Newest first by filled_at, as documented; of equal times, the earlier recorded first
    (the venue does not say which way ties go)."""

    def _history_page(self, query: Mapping[str, str]) -> tuple[int, object, dict[str, str]]:
        self.history_requests += 1
        limit, offset = int(query.get("limit", "50")), int(query.get("offset", "0"))
        order = sorted(enumerate(self._history), key=lambda p: (sort_time(p[1]), -p[0]))
        page = [item for _, item in reversed(order)][offset : offset + limit]
        return 200, [{k: v for k, v in item.items() if k != "client_order_id"} for item in page], {}


@pytest.mark.parametrize("venue", [SimulatedPolySim, TiesOldestFirst])
async def test_the_equal_partial_fill_missed_in_a_drop_is_recovered_as_the_second(
    http: httpx.AsyncClient, venue: type[SimulatedPolySim]
) -> None:
    """The first partial fill arrives live, the equal second one while the feed is down:
    history holds both, and the recovered fill is the second (FILLED), whichever way the
    venue lists equal times."""
    wall = Wall()
    async with venue(now=wall) as sim:
        sim.wall = wall  # type: ignore[attr-defined]
        gap = [{"order_id": 7, "status": "FILLED"}]
        h = Harness(sim, http, watermark=T0 - timedelta(minutes=1), gap=gap)
        async with h.running():
            await h.live_then_drop(
                sim, then=2, shape="execution", order_id=7, status="PARTIALLY_FILLED"
            )
        assert [(f.status, f.occurrence, s) for f, s in h.sink.unique] == [
            ("PARTIALLY_FILLED", 1, "live"),
            ("FILLED", 2, "backfill"),
        ]
        assert len(h.sink.calls) == 3  # the first, read again from history, added nothing


async def test_history_giving_a_fill_another_status_does_not_alert_it_again(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """History's status is a free string, perhaps the order's: a fill delivered live as
    PARTIALLY_FILLED and listed later as FILLED is the same fill, not a second one."""
    h = Harness(polysim, http, watermark=T0 - timedelta(minutes=1))
    async with h.running():
        await until(lambda: h.client.stats.reading)
        item = await polysim.fill(shape="execution", order_id=7, status="PARTIALLY_FILLED")
        await h.sink.wait(1)
        item["status"] = "FILLED"  # how history lists it once the order is complete
        await polysim.close_all(1011, "restart")
        await until(lambda: h.client.stats.connects == 2 and h.client.stats.reading)
        await polysim.fill(order_id=8)
        await h.sink.wait(2)
    assert [(f.order_id, f.occurrence, s) for f, s in h.sink.unique] == [
        ("7", 1, "live"),
        ("8", 1, "live"),
    ]
    assert [f.order_id for f, s in h.sink.calls if s == "backfill"] == ["7"]


async def test_an_equal_fill_taken_for_a_listed_one_is_found_by_a_fresh_read(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """The partial fill is recovered from history at connect; the equal completing fill then
    comes live and is first taken for it (the live frame of a fill the read listed looks the
    same). A read REREAD_AFTER later counts two, and the completing fill is alerted."""

    h = Harness(
        polysim,
        http,
        watermark=T0 - timedelta(minutes=1),
        gap=[{"order_id": 7, "status": "PARTIALLY_FILLED"}],
    )
    async with h.running():
        await h.live_then_drop(polysim, then=2, order_id=6)
        await until(lambda: h.client.stats.connects == 2 and h.client.stats.reading)
        requests = polysim.history_requests
        await polysim.fill(shape="execution", order_id=7, status="FILLED")
        await until(lambda: ("7", "live") in {(f.order_id, s) for f, s in h.sink.calls})
        assert len(h.sink.unique) == 2  # taken for the listed partial fill, for now
        await h.mono.advance(REREAD_AFTER)
        await h.sink.wait(3)
    assert [(f.order_id, f.status, f.occurrence, s) for f, s in h.sink.unique] == [
        ("6", None, 1, "live"),
        ("7", "PARTIALLY_FILLED", 1, "backfill"),
        ("7", "FILLED", 2, "backfill"),
    ]
    assert polysim.history_requests == requests + 2  # one read: its page, then the empty one


async def test_a_reread_reads_back_to_the_fill_it_is_for_past_a_short_overlap(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """With a 1 s overlap, a later fill moves the watermark past the equal pair before the
    reread runs: it still reads back to them, and counts two."""
    h = Harness(
        polysim,
        http,
        watermark=T0 - timedelta(minutes=1),
        gap=[{"order_id": 7, "status": "PARTIALLY_FILLED"}],
        backfill_overlap=timedelta(seconds=1),
    )
    async with h.running():
        await h.live_then_drop(polysim, then=2, order_id=6)
        await until(lambda: h.client.stats.connects == 2 and h.client.stats.reading)
        await polysim.fill(shape="execution", order_id=7, status="FILLED")
        polysim.wall.at = T0 + timedelta(seconds=5)  # type: ignore[attr-defined]
        await polysim.fill(order_id=8)
        await h.sink.wait(3)
        await h.mono.advance(REREAD_AFTER)
        await h.sink.wait(4)
    assert [(f.order_id, f.status, f.occurrence, s) for f, s in h.sink.unique] == [
        ("6", None, 1, "live"),
        ("7", "PARTIALLY_FILLED", 1, "backfill"),
        ("8", None, 1, "live"),
        ("7", "FILLED", 2, "backfill"),
    ]


async def test_a_base_url_httpx_refuses_stops_the_feed_with_a_clear_error() -> None:
    """Config checks refuse such a URL; one that got past them is fatal with a word on what to
    check, not a traceback (exit 70, a restart loop under systemd)."""
    settings = FeedSettings(base_url="https://[::1]x:80", api_key=DEFAULT_API_KEY)
    async with httpx.AsyncClient() as http:
        with pytest.raises(FatalFeedError, match=r"feed\.base_url is not a URL the HTTP client"):
            await mint_token(http, settings, floor=lambda: 1.0)


async def test_a_stop_during_a_rate_limited_connect_backfill_sends_nothing_more(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """Stopped while history answers 429: the backfill ends there, its remaining retries and
    pages never sent (its pauses end at once when stopping: they went out back to back)."""
    polysim.history_status = 429
    at_stop: list[int] = []
    h: Harness

    def stop_at_the_first_pause(n: int) -> None:
        if n == 1:
            at_stop.append(polysim.history_requests)
            h.client.request_stop()

    h = Harness(
        polysim, http, watermark=T0 - timedelta(minutes=5), sleeps=Sleeps(stop_at_the_first_pause)
    )
    async with asyncio.timeout(10):
        await h.client.run()
    assert at_stop == [1]
    assert polysim.history_requests == 1


async def test_a_stop_during_a_slow_connect_backfill_returns_at_once(
    http: httpx.AsyncClient,
) -> None:
    """Stopped while the connect-time history read hangs: run() returns without waiting out
    that read's timeout and two more attempts."""
    wall = Wall()
    async with HeldHistory(now=wall) as sim:
        sim.wall = wall  # type: ignore[attr-defined]
        h = Harness(sim, http, watermark=T0 - timedelta(minutes=5), request_timeout=30.0)
        task = asyncio.create_task(h.client.run())
        await until(lambda: sim.clients == 1 and h.client.stats.connects == 1)
        await settle()  # the history request is in flight
        h.client.request_stop()
        async with asyncio.timeout(5):  # the read alone would hold it 30 s
            await task
        assert h.client.stats.reconnects == {}
