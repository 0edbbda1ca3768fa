"""Backfill review fixes on real loopback sockets: durable gaps, paging under limits, liveness."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fakes import MonoClock, grows
from test_feed import T0, Harness, Sleeps, SteppedClock, Wall, until
from websockets.asyncio.server import ServerConnection

from notifier import backfill, history_walk
from notifier.events import Fill
from notifier.feed import FeedClient
from notifier.normalize import normalize_history_item
from notifier.settings import FeedSettings
from notifier.simulator import DEFAULT_API_KEY, SimulatedPolySim
from notifier.store import StateStore


class Venue(SimulatedPolySim):
    """The fake venue with history faults the base class lacks: 429s, a hang, ack-then-4001."""

    def __init__(self, wall: Wall) -> None:
        super().__init__(now=wall)
        self.wall = wall
        self.offsets: list[int] = []  # offset of every history request, in order
        self.limit_requests: set[int] = set()  # these request numbers (1-based) answer 429
        self.limit_retry_after = "3"  # the Retry-After those 429s carry
        self.history_gate: asyncio.Event | None = None  # history waits for it when set
        self.ack_then_4001 = 0  # next N connections get an ack frame, then close 4001
        self.served: list[dict[str, object]] | None = None  # history exactly in this order
        self.held = 0  # history requests waiting at the gate now
        self.page_cap: int | None = None  # answer at most this many items a page

    def _history_page(self, query: Mapping[str, str]) -> tuple[int, object, dict[str, str]]:
        self.offsets.append(int(query.get("offset", "0")))
        if len(self.offsets) in self.limit_requests:
            self.history_requests += 1
            return 429, {"detail": "slow down"}, {"Retry-After": self.limit_retry_after}
        if self.served is not None:
            self.history_requests += 1
            offset, limit = self.offsets[-1], int(query.get("limit", "50"))
            return 200, self.served[offset : offset + limit], {}
        if self.page_cap is not None:
            query = {**query, "limit": str(min(int(query.get("limit", "50")), self.page_cap))}
        return super()._history_page(query)

    async def _route(
        self, method: str, target: str, headers: Mapping[str, str]
    ) -> tuple[int, object, dict[str, str]]:
        if self.history_gate is not None and target.startswith("/v1/account/history"):
            self.held += 1
            try:
                await self.history_gate.wait()
            finally:
                self.held -= 1
        return await super()._route(method, target, headers)

    async def _feed(self, conn: ServerConnection) -> None:
        if self.ack_then_4001 > 0:
            self.ack_then_4001 -= 1
            self.connections += 1
            await conn.send('{"type": "ack"}')
            await conn.close(4001, "token expired")
            return
        await super()._feed(conn)


class StoreSink:
    """The pipeline's contract: a fill counts as processed once recorded in the store.

    With `hold`, fills are only queued (the pipeline before its batch commits).
    """

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.hold = False
        self.queued: list[Fill] = []
        self.seen: list[tuple[str, str]] = []  # (order_id, source) of every fill recorded new

    async def __call__(self, fill: Fill, source: str) -> None:
        if self.hold:
            self.queued.append(fill)
            return
        if self.store.remember([(fill.key, fill.filled_at)]):
            self.seen.append((fill.order_id, source))

    def ids(self, source: str | None = None) -> list[str]:
        return [order_id for order_id, s in self.seen if source in (None, s)]


@pytest.fixture
async def venue() -> AsyncIterator[Venue]:
    """The venue with a settable wall clock."""
    async with Venue(Wall()) as sim:
        yield sim


class Daemon:
    """One process lifetime: a FeedClient over a real state file."""

    def __init__(
        self,
        venue: Venue,
        http: httpx.AsyncClient,
        path: Path,
        *,
        sleeps: Sleeps | None = None,
        **settings: object,
    ) -> None:
        self.store = StateStore(path)
        self.sink = StoreSink(self.store)
        self.sleeps = sleeps or Sleeps()
        self.mono = SteppedClock(1000.0)
        base = FeedSettings(base_url=venue.base_url, api_key=DEFAULT_API_KEY, request_timeout=5)
        self.client = FeedClient(
            replace(base, **settings),  # type: ignore[arg-type]
            http=http,
            sink=self.sink,
            watermark=self.store,
            clock=venue.wall,
            monotonic=self.mono,
            sleep=self.sleeps,
            tend_sleep=self.mono.sleep,
            rng=random.Random(7),
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FeedClient]:
        task = asyncio.create_task(self.client.run())
        try:
            yield self.client
        finally:
            self.client.request_stop()
            async with asyncio.timeout(5):
                await asyncio.gather(task, return_exceptions=True)
            self.store.close()

    async def fills(self, n: int) -> None:
        await until(lambda: len(self.sink.seen) >= n)


def fill_b_missed(venue: Venue, tmp_path: Path) -> Path:
    """A state file watermarked an hour before T0, fill B (order 2) since then in history only."""
    path = tmp_path / "state.db"
    with StateStore(path) as earlier:
        earlier.save_watermark(T0 - timedelta(hours=1))
    venue.record_history(order_id=2, filled_at=T0 - timedelta(minutes=30))
    return path


async def outage_then_live_fill(venue: Venue, d: Daemon) -> None:
    """History down at connect (3 failed tries), then a live fill C at T0 is recorded."""
    await until(lambda: d.client.stats.reading)
    assert d.client.stats.backfill_failures == 3
    await venue.fill(order_id=3)
    await d.fills(1)
    assert d.store.load_watermark() == T0


async def test_gap_left_by_a_history_outage_survives_a_restart(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Fill B missed, history down, live fill C recorded, restart: B is still recovered."""
    path = fill_b_missed(venue, tmp_path)
    venue.history_status = 503
    first = Daemon(venue, http, path)
    async with first.running():
        await outage_then_live_fill(venue, first)
    venue.history_status = None
    second = Daemon(venue, http, path)
    async with second.running():
        await second.fills(1)
    assert second.sink.ids("backfill") == ["2"]


async def test_gap_retried_but_not_yet_recorded_is_recovered_after_a_restart(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The periodic retry hands B on, the process dies before B is recorded: B comes back."""
    path = fill_b_missed(venue, tmp_path)
    venue.history_status = 503
    first = Daemon(venue, http, path)
    async with first.running():
        await outage_then_live_fill(venue, first)
        venue.history_status = None
        first.sink.hold = True  # queued in the pipeline, never committed
        first.mono.t += 61
        await venue.emit({"type": "pong", "ts": 1})  # a frame: the read loop looks again
        await until(lambda: "2" in [f.order_id for f in first.sink.queued])
    second = Daemon(venue, http, path)
    async with second.running():
        await second.fills(1)
        assert second.sink.ids("backfill") == ["2"]
        assert second.store.load_gap() is not None  # open until B is known recorded
        second.mono.t += 2
        await venue.emit({"type": "pong", "ts": 2})
        await until(lambda: second.store.load_gap() is None)


async def test_reconnect_backfill_closes_the_gap_only_once_recorded(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A gap stays stored while recovered fills are only queued; recorded, it is cleared."""
    path = fill_b_missed(venue, tmp_path)
    d = Daemon(venue, http, path)
    d.sink.hold = True
    async with d.running() as client:
        await until(lambda: client.stats.reading)
        assert len(d.sink.queued) == 1
        d.mono.t += 2
        await venue.emit({"type": "pong", "ts": 1})
        await until(lambda: client.stats.frames == 1)
        assert d.store.load_gap() == T0 - timedelta(hours=1, minutes=1)
        d.sink.hold = False
        await d.sink(d.sink.queued[0], "backfill")  # the pipeline commits it
        d.mono.t += 2
        await venue.emit({"type": "pong", "ts": 2})
        await until(lambda: d.store.load_gap() is None)


async def test_rate_limited_page_is_asked_again_after_retry_after(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Pages are paced 0.25 s apart; a 429 waits Retry-After and repeats only that page."""
    mark = T0 - timedelta(hours=2)
    with StateStore(tmp_path / "state.db") as earlier:
        earlier.save_watermark(mark)
    for n in range(450):
        venue.record_history(order_id=n, filled_at=mark + timedelta(seconds=n + 1))
    venue.limit_requests = {2}
    d = Daemon(venue, http, tmp_path / "state.db")
    async with d.running():
        await d.fills(450)
    assert d.sink.ids() == [str(n) for n in range(450)]
    # The page at 400 holds 50, fewer than the 200 of the pages before it: history's end.
    assert venue.offsets == [0, 200, 200, 400]
    assert d.sleeps.delays == [0.25, 3.0, 0.25]


async def test_a_venue_answering_short_pages_still_has_every_fill_read(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A venue that answers at most 100 items a page (fewer than the 200 asked, with more
    behind them): a short page was taken for history's end, the run counted as complete, and
    the gap's older fills were never read, its stored start cleared for good."""
    mark = T0 - timedelta(hours=2)
    with StateStore(tmp_path / "state.db") as earlier:
        earlier.save_watermark(mark)
    for n in range(450):
        venue.record_history(order_id=n, filled_at=mark + timedelta(seconds=n + 1))
    venue.page_cap = 100
    d = Daemon(venue, http, tmp_path / "state.db")
    async with d.running() as client:
        await until(lambda: client.stats.reading)
        await until(lambda: len(d.sink.seen) >= 100)
    assert d.sink.ids() == [str(n) for n in range(450)]
    # Pages of 100 (the venue's cap) go on; the 50 at 400, shorter than those, is the end.
    assert venue.offsets == [0, 100, 200, 300, 400]


async def _paging_goes_on(d: Daemon, venue: Venue, *, fills: int) -> None:
    """Past the pause after a cut run: its continuation reads on until `fills` arrived and
    the gap is closed (a frame wakes the read loop, whose tender starts it)."""
    d.mono.t += backfill.CONTINUE_AFTER
    await venue.emit({"type": "pong", "ts": 1})
    await d.fills(fills)
    d.mono.t += 2
    await venue.emit({"type": "pong", "ts": 2})
    await until(lambda: d.store.load_gap() is None)


async def test_page_cap_keeps_the_gap_open_and_paging_goes_on(
    venue: Venue,
    http: httpx.AsyncClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A gap longer than MAX_PAGES: the newest part now, the rest in the next run, none lost."""
    monkeypatch.setattr(history_walk, "MAX_PAGES", 4)
    mark = T0 - timedelta(days=1)
    with StateStore(tmp_path / "state.db") as earlier:
        earlier.save_watermark(mark)
    for n in range(1000):
        venue.record_history(order_id=n, filled_at=mark + timedelta(minutes=n + 1))
    d = Daemon(venue, http, tmp_path / "state.db")
    async with d.running() as client:
        await d.fills(800)
        await until(lambda: client.stats.reading)
        assert d.sink.ids() == [str(n) for n in range(200, 1000)]
        assert d.store.load_gap() == mark - timedelta(seconds=60)
        assert any("paging stopped at 4 pages" in r.getMessage() for r in caplog.records)
        await _paging_goes_on(d, venue, fills=1000)
    assert sorted(d.sink.ids(), key=int) == [str(n) for n in range(1000)]
    # The continuation's look at the front ends at its first page of recorded fills.
    assert venue.offsets == [0, 200, 400, 600, 0, 800, 1000]


async def test_more_fills_in_one_second_than_a_run_s_pages_are_all_recovered(
    venue: Venue,
    http: httpx.AsyncClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gap holding more fills stamped in one second than one run's pages: each continuation
    re-read the front down to `recent` by time, and all of them were at or after it, so it
    spent every page there, never reached where the cut run stopped, and asked the venue
    again every few seconds for ever, the oldest fills never alerted."""
    monkeypatch.setattr(history_walk, "MAX_PAGES", 4)
    mark = T0 - timedelta(days=1)
    with StateStore(tmp_path / "state.db") as earlier:
        earlier.save_watermark(mark)
    burst = mark + timedelta(minutes=1)
    for n in range(1000):
        venue.record_history(order_id=n, filled_at=burst)
    d = Daemon(venue, http, tmp_path / "state.db")
    async with d.running() as client:
        await d.fills(800)
        await until(lambda: client.stats.reading)
        await _paging_goes_on(d, venue, fills=1000)
    assert sorted(d.sink.ids(), key=int) == [str(n) for n in range(1000)]
    assert venue.offsets == [0, 200, 400, 600, 0, 800, 1000]


async def test_stop_condition_reads_one_page_past_the_first_older_item(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A fill out of order across a page boundary is still found (one extra page is read)."""
    mark = T0 - timedelta(hours=2)
    with StateStore(tmp_path / "state.db") as earlier:
        earlier.save_watermark(mark + timedelta(seconds=60))  # since = mark

    def item(order_id: int, seconds: int) -> dict[str, object]:
        at = mark + timedelta(seconds=seconds)
        return venue.history_item(order_id=order_id, filled_at=at.isoformat())

    newer = [item(n, 1000 - n) for n in range(199)]  # newest first
    # Page 0 ends with an older fill; page 1 starts with a newer one the venue misplaced.
    venue.served = [*newer, item(900, -5), item(999, 10), item(901, -6), item(902, -7)]
    d = Daemon(venue, http, tmp_path / "state.db")
    async with d.running() as client:
        await until(lambda: client.stats.reading)
    assert sorted(d.sink.ids(), key=int) == [*map(str, range(199)), "999"]
    assert venue.offsets == [0, 200]


async def test_gap_retry_does_not_stop_reading_or_trip_the_watchdog(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """While a gap retry waits on a slow history, pongs are read and the connection lives."""
    path = fill_b_missed(venue, tmp_path)
    venue.history_status = 503
    d = Daemon(venue, http, path, ping_interval=0.02, ping_timeout=0.05)
    async with d.running() as client:
        await until(lambda: client.stats.reading)
        venue.history_status = None
        venue.history_gate = asyncio.Event()
        asked = venue.history_requests
        d.mono.t += 61
        await until(lambda: client.stats.non_fill > 0)  # a pong: the retry has started
        pongs = client.stats.non_fill
        await until(lambda: client.stats.non_fill >= pongs + 5)  # read meanwhile
        assert venue.history_requests == asked  # the retry is still waiting on history
        venue.history_gate.set()
        await d.fills(1)
    assert d.sink.ids("backfill") == ["2"]
    assert client.stats.connects == 1


async def test_ack_then_4001_backs_off_instead_of_reconnecting_at_once(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A server that acks then closes 4001: only the first 4001 reconnects without a pause."""
    venue.ack_then_4001 = 4
    d = Daemon(venue, http, tmp_path / "state.db")
    async with d.running() as client:
        await until(lambda: client.stats.connects == 5 and client.stats.reading)
    assert client.stats.reconnects == {"close_4001": 4}
    assert len(d.sleeps.delays) == 3
    assert grows(d.sleeps.delays)


async def test_token_retry_after_zero_is_floored_at_the_back_off(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """429 with Retry-After: 0 from the token endpoint waits the back-off, not zero."""
    caplog.set_level(logging.INFO)

    def heal(n: int) -> None:
        if n == 2:
            venue.token_status = None

    venue.token_status, venue.retry_after = 429, "0"
    d = Daemon(venue, http, tmp_path / "state.db", sleeps=Sleeps(heal))
    async with d.running() as client:
        await until(lambda: client.stats.reading)
    assert client.stats.reconnects == {"rate_limited": 2}
    assert grows(d.sleeps.delays)


def _a_day_owed(
    venue: Venue,
    http: httpx.AsyncClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    name: str,
) -> tuple[StateStore, StoreSink, MonoClock, backfill.Backfill]:
    """A backfill owed a day: 1,000 fills a minute apart since the watermark (order ids
    `name` formatted with their number), four pages a run, the venue's clock at T0."""
    monkeypatch.setattr(history_walk, "MAX_PAGES", 4)
    store = StateStore(tmp_path / "state.db", clock=venue.wall)
    sink = StoreSink(store)
    mono = MonoClock(1000.0)
    bf = _backfill(venue, http, store, sink, mono)
    mark = T0 - timedelta(days=1)
    store.save_watermark(mark)
    bf.begin()
    for n in range(1000):
        venue.record_history(order_id=name.format(n), filled_at=mark + timedelta(minutes=n + 1))
    venue.wall.at = T0
    return store, sink, mono, bf


def _backfill(
    venue: Venue, http: httpx.AsyncClient, store: StateStore, sink: StoreSink, mono: MonoClock
) -> backfill.Backfill:
    """A Backfill over the real venue and state file, with no real pauses."""

    async def no_pause(_: float) -> None:
        return None

    settings = FeedSettings(base_url=venue.base_url, api_key=DEFAULT_API_KEY, request_timeout=5)
    return backfill.Backfill(
        settings,
        http=http,
        watermark=store,
        sink=sink,
        clock=venue.wall,
        on_reject=lambda rejected, source: None,
        pause=no_pause,
        rng=random.Random(3),
        monotonic=mono,
    )


async def test_a_failed_run_keeps_the_gap_an_earlier_runs_fills_would_close(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """An earlier complete run's fills, recorded late, never close a gap a later failed run owes."""
    store = StateStore(tmp_path / "state.db", clock=venue.wall)
    sink = StoreSink(store)
    mono = MonoClock(1000.0)
    bf = _backfill(venue, http, store, sink, mono)
    store.save_watermark(T0)
    bf.begin()
    venue.record_history(order_id="F1", filled_at=T0 + timedelta(seconds=10))
    venue.wall.at = T0 + timedelta(seconds=30)
    sink.hold = True  # the pipeline has queued F1 but not recorded it yet
    await bf.run()
    assert bf.settling
    venue.record_history(order_id="M", filled_at=T0 + timedelta(seconds=40))  # during a drop
    venue.wall.at = T0 + timedelta(seconds=50)
    venue.history_status = 503
    await bf.run()  # the reconnect's backfill fails: M is owed
    for fill in sink.queued:  # now the pipeline records F1, and live fills move on
        store.remember([(fill.key, fill.filled_at)])
    sink.queued.clear()
    sink.hold = False
    venue.wall.at = T0 + timedelta(minutes=10)
    store.remember([("live", T0 + timedelta(minutes=10))])
    mono.t += 2
    bf.settle()
    assert store.load_gap() is not None  # still owed
    venue.history_status = None
    mono.t += 120
    assert bf.due
    await bf.run(attempts=1)
    assert "M" in sink.ids()
    store.close()


async def test_a_long_history_retry_after_does_not_hold_up_live_reading(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A 429 asking for more than a few seconds ends the run at once; the gap waits for later."""
    store = StateStore(tmp_path / "state.db", clock=venue.wall)
    sink = StoreSink(store)
    mono = MonoClock(1000.0)
    bf = _backfill(venue, http, store, sink, mono)
    store.save_watermark(T0)
    bf.begin()
    venue.record_history(order_id="F1", filled_at=T0 + timedelta(seconds=10))
    venue.wall.at = T0 + timedelta(seconds=30)
    venue.limit_requests = set(range(1, 100))
    venue.limit_retry_after = "600"
    await bf.run()
    assert len(venue.offsets) == 1  # one request, no waiting it out, no further attempts
    assert store.load_gap() is not None
    mono.t += backfill.RETRY_EVERY + 1
    assert not bf.due  # the venue asked for 600 s
    mono.t += 600
    assert bf.due
    store.close()


async def test_away_longer_than_the_horizon_is_said_once(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Down ten days with a 7-day horizon: what history still holds within it is recovered,
    and a warning says from when on fills are not (it was an INFO line among others)."""
    path = tmp_path / "state.db"
    with StateStore(path) as earlier:
        earlier.save_watermark(T0 - timedelta(days=10))
    venue.record_history(order_id=1, filled_at=T0 - timedelta(days=9))  # past the horizon
    venue.record_history(order_id=2, filled_at=T0 - timedelta(days=2))
    d = Daemon(venue, http, path)
    with caplog.at_level(logging.WARNING, logger="notifier.backfill"):
        async with d.running():
            await d.fills(1)
    assert d.sink.ids() == ["2"]
    warnings = [r.getMessage() for r in caplog.records if "backfill_horizon" in r.getMessage()]
    assert warnings == [
        f"away since {(T0 - timedelta(days=10)).isoformat()}, longer than "
        f"feed.backfill_horizon (7d): fills before {(T0 - timedelta(days=7)).isoformat()} "
        "are not recovered"
    ]


async def test_rereads_for_unsure_counts_come_at_most_every_reread_every(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Steady trading keeps live frames matching fills a read listed; each asks for a fresh
    read, but one comes REREAD_AFTER after the first ask, then at most every REREAD_EVERY."""
    store = StateStore(tmp_path / "state.db", clock=venue.wall)
    mono = MonoClock(1000.0)
    bf = _backfill(venue, http, store, StoreSink(store), mono)
    store.save_watermark(T0)
    bf.begin()
    runs = []
    for _ in range(40):  # a second apart: an ask each time
        bf.reread_soon(T0)
        if bf.due:
            runs.append(mono.t)
            await bf.run(attempts=1)
        mono.t += 1.0
    assert runs == [1000.0 + backfill.REREAD_AFTER, 1000.0 + backfill.REREAD_AFTER + 30.0]
    assert backfill.REREAD_EVERY == 30.0


async def test_a_reread_cut_short_by_a_drop_is_read_by_the_reconnect(
    http: httpx.AsyncClient,
) -> None:
    """The partial fill (A1) is missed and recovered at connect; its equal completing fill
    (A2) comes live and is first taken for it; a later fill moves the watermark past the pair
    (a 1 s overlap). The drop cancels the reread mid-request: the reconnect's run reads back
    to the pair instead, and counts two."""
    async with Venue(Wall()) as venue:
        h = Harness(venue, http, watermark=T0 - timedelta(minutes=1),
                    gap=[{"order_id": 7, "status": "PARTIALLY_FILLED"}],
                    backfill_overlap=timedelta(seconds=1))  # fmt: skip
        async with h.running():
            await h.live_then_drop(venue, then=2, order_id=6)
            await until(lambda: h.client.stats.connects == 2 and h.client.stats.reading)
            await venue.fill(shape="execution", order_id=7, status="FILLED")
            venue.wall.at = T0 + timedelta(seconds=5)
            await venue.fill(order_id=8)
            await h.sink.wait(3)
            venue.history_gate = asyncio.Event()
            await h.mono.advance(backfill.REREAD_AFTER)
            await until(lambda: venue.held == 1)  # the reread's request, in flight
            await venue.close_all(1011, "restart")
            await until(lambda: h.client.stats.connects == 3)
            venue.history_gate.set()
            await h.sink.wait(4)
        alerted = [(f.order_id, f.status, f.occurrence, s) for f, s in h.sink.unique]
        assert alerted == [
            ("6", None, 1, "live"),
            ("7", "PARTIALLY_FILLED", 1, "backfill"),
            ("8", None, 1, "live"),
            ("7", "FILLED", 2, "backfill"),
        ]


async def test_a_failed_read_after_a_cut_run_leaves_its_gap_to_a_walk_by_time(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run cut at the page cap, then a drop with fill M made while away, then the
    reconnect's read fails and live fills are recorded above M (a page and more): the
    continuation's front walk stopped at their recorded page, jumped to where the cut run
    stopped, and closed the gap with M never read. After a failed read, the next run reads
    by time instead."""
    store, sink, mono, bf = _a_day_owed(venue, http, tmp_path, monkeypatch, name="old{}")
    await bf.run()  # cut: the newest 800 read, the rest owed
    venue.record_history(order_id="M", filled_at=T0 + timedelta(seconds=40))  # while away
    venue.wall.at = T0 + timedelta(seconds=45)
    venue.history_status = 503
    await bf.run()  # the reconnect's read fails; live reading goes on
    venue.history_status = None
    for n in range(250):  # live fills, recorded: more than a page above M
        at = T0 + timedelta(seconds=50, milliseconds=10 * n)
        item = venue.record_history(order_id=f"live{n}", filled_at=at)
        live = normalize_history_item(item)
        assert isinstance(live, Fill)
        store.remember([(live.key, live.filled_at)])
    venue.wall.at = T0 + timedelta(seconds=60)
    mono.t += backfill.RETRY_EVERY + 1
    for _ in range(6):
        await bf.run(attempts=1)
        mono.t += 2
        bf.settle()
        if store.load_gap() is None:
            break
    assert store.load_gap() is None
    recovered = sink.ids()
    assert recovered.count("M") == 1
    assert sorted(i for i in recovered if i.startswith("old")) == sorted(
        f"old{n}" for n in range(1000)
    )
    store.close()


async def test_a_cut_run_over_short_pages_resumes_at_the_items_it_read(
    venue: Venue, http: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages capped at 100 by the venue and a gap longer than a run's pages: each continuation
    resumes at the offset of the items read, not of the pages asked for, so none is skipped."""
    store, sink, mono, bf = _a_day_owed(venue, http, tmp_path, monkeypatch, name="{}")
    venue.page_cap = 100
    await bf.run()  # cut at 4 pages: the newest 400 read
    for _ in range(3):  # each looks at the front (one page, all recorded), then resumes
        mono.t += backfill.CONTINUE_AFTER
        assert bf.due
        await bf.run(attempts=1)
    mono.t += 2
    bf.settle()
    assert store.load_gap() is None
    assert sorted(sink.ids(), key=int) == [str(n) for n in range(1000)]
    assert venue.offsets == [0, 100, 200, 300, 0, 400, 500, 600, 0, 700, 800, 900, 0, 1000]
    store.close()
