"""Fault injection: the real daemon path against a misbehaving venue, channel, process and input.

Every test counts exactly: which alerts arrived, how many times each, and that nothing else did.
The feed's back-off sleep and the deliverer's clock are injected (Service test hooks), so the
suite runs in seconds; the venue, the webhook and SQLite are real, on loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemon import Daemon, child_env
from fakes import MonoClock, grows
from faults import (
    RULES,
    Clock,
    Gate,
    Hook,
    config_text,
    delivered_exactly,
    quiet,
    running,
    started,
    step_until_delivered,
    until,
)
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from receivers import WebhookReceiver, http_response, read_request

from notifier import gap_tender
from notifier.backfill import RETRY_EVERY, SETTLE_EVERY
from notifier.config import SAMPLE_FILL, parse
from notifier.drain_watch import STALL_AFTER
from notifier.errors import ConfigError, StateBusyError
from notifier.events import Fill, Side
from notifier.feed import KEY_RETRY, FeedClient
from notifier.health import FEED_DOWN_AFTER
from notifier.metrics import Metrics
from notifier.normalize import Rejected, decode_frame, normalize_message
from notifier.service import Service
from notifier.simulator import DEFAULT_API_KEY, SimulatedPolySim


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    """A webhook receiver answering 200 unless a test plans otherwise."""
    receiver = Hook()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.close()


def ids(*ranges: range) -> Counter[str]:
    """Each order id in `ranges`, once."""
    return Counter(str(n) for r in ranges for n in r)


def gap_fill(venue: SimulatedPolySim, first: int) -> Callable[[int], None]:
    """A back-off hook recording one history-only fill per sleep, order ids from `first`."""

    def record(n: int) -> None:
        venue.record_history(order_id=first + n - 1)

    return record


def reading_on(feed: FeedClient, *, connect: int) -> Callable[[], bool]:
    """Whether the feed is reading live frames on its `connect`-th connection."""
    return lambda: feed.stats.connects == connect and feed.stats.reading


# -- feed faults ------------------------------------------------------------------------------


async def test_fifty_drops_with_fills_in_every_gap(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """50 drops, a live fill before and a history-only fill during each gap: 100 alerts, once."""
    gate = Gate(auto=False)
    async with running(venue, {"hook": hook}, tmp_path, sleep=gate) as service:
        feed = service.feed
        assert feed is not None
        for i in range(50):
            await venue.fill(order_id=1000 + i)
            await venue.close_all(1011, "going away")
            await venue.wait_disconnected()
            venue.record_history(order_id=2000 + i)  # nobody connected: history only
            gate.release()
            await until(reading_on(feed, connect=i + 2))
        await hook.wait_for(100, timeout=20)
        await delivered_exactly(service, 100)
        stats = feed.stats
    assert hook.titles() == ids(range(1000, 1050), range(2000, 2050))
    assert hook.titles(200) == hook.titles()
    assert stats.reconnects == {"closed": 50}
    assert len(gate.delays) == 50
    assert max(gate.delays) <= 30
    assert gate.paces == 50  # each reconnect's backfill: its page of fills, then an empty one
    assert venue.connections == venue.token_mints == 51


async def test_a_fill_stamped_ahead_of_the_clock_hides_no_fill_of_the_next_gap(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """A live fill stamped five minutes ahead (the venue's clock, a late stamp) moved the
    watermark there; the next gap's backfill read from it less the 60 s overlap, so a fill
    made in the gap, stamped now, was never read back. Each of the three alerts once."""
    gate = Gate(auto=False)
    async with running(venue, {"hook": hook}, tmp_path, sleep=gate) as service:
        feed = service.feed
        assert feed is not None
        await venue.fill(order_id="ahead", filled_at=datetime.now(UTC) + timedelta(minutes=5))
        await hook.wait_for(1, timeout=10)
        await venue.close_all(1011, "going away")
        await venue.wait_disconnected()
        venue.record_history(order_id="gap")  # nobody connected: history only, stamped now
        gate.release()
        await until(reading_on(feed, connect=2))
        await venue.fill(order_id="after")
        await delivered_exactly(service, 3)
    assert hook.titles() == {"ahead": 1, "gap": 1, "after": 1}
    assert gate.paces == 1  # the reconnect's backfill: its page of fills, then an empty one


async def test_equal_partial_fills_across_drops_are_each_alerted_once(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """20 orders, each filled in two equal parts in one second (same size and price), one part
    live and one while the feed is down, either way round: two alerts an order. Where history
    gave the first part before the second came live, the next overlap read finds the second."""
    gate = Gate(auto=False)
    async with running(venue, {"hook": hook}, tmp_path, sleep=gate) as service:
        feed = service.feed
        assert feed is not None
        # One second for all (orders differ), after the first start's floor.
        at = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
        part = {"quantity": "5", "price": "0.5", "filled_at": at, "shape": "execution"}
        for i in range(20):
            order = 3000 + i
            if i % 2 == 0:  # the partial fill live, the completing one while away
                await venue.fill(order_id=order, status="PARTIALLY_FILLED", **part)
                await venue.close_all(1011, "going away")
                await venue.wait_disconnected()
                venue.record_history(order_id=order, status="FILLED", **part)
            else:  # the partial fill while away, the completing one live
                await venue.close_all(1011, "going away")
                await venue.wait_disconnected()
                venue.record_history(order_id=order, status="PARTIALLY_FILLED", **part)
            gate.release()
            await until(reading_on(feed, connect=i + 2))
            if i % 2:
                await venue.fill(order_id=order, status="FILLED", **part)
        await venue.close_all(1011, "going away")  # one more overlap read, for the last one
        gate.release()
        await until(reading_on(feed, connect=22))
        await hook.wait_for(40, timeout=20)
        await delivered_exactly(service, 40)
    assert hook.titles() == Counter({str(3000 + i): 2 for i in range(20)})


async def test_4001_on_live_connections_reconnects_at_once(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """10 live connections closed 4001 as their token expires (a minute after it was minted;
    a fill never pushed each time): no back-off, every fill once."""
    gate = Gate()
    mono = MonoClock()
    async with running(venue, {"hook": hook}, tmp_path, sleep=gate, feed_clock=mono) as service:
        feed = service.feed
        assert feed is not None
        for i in range(10):
            await venue.fill(order_id=1000 + i)
            venue.record_history(order_id=2000 + i)  # happened, never pushed
            mono.t += 60.0  # the token's lifetime
            await venue.close_all(4001, "token expired")
            await until(reading_on(feed, connect=i + 2))
        await hook.wait_for(20)
        await delivered_exactly(service, 20)
    assert hook.titles() == ids(range(1000, 1010), range(2000, 2010))
    assert feed.stats.reconnects == {"close_4001": 10}
    assert gate.delays == []
    assert gate.paces == 10  # each reconnect's backfill: its page of fills, then an empty one
    assert venue.token_mints == 11


async def test_a_venue_closing_4001_after_every_fill_gets_a_growing_back_off(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """Closed 4001 moments after each connect, a fill between: not a token expiring (it lives
    a minute), so only the first reconnects at once; the rest back off, growing (it was a
    tight reconnect loop: mint, connect and a history read each time), and every fill once."""
    gate = Gate()
    async with running(venue, {"hook": hook}, tmp_path, sleep=gate, feed_clock=MonoClock()) as s:
        feed = s.feed
        assert feed is not None
        for i in range(6):
            await venue.fill(order_id=1000 + i)
            await venue.close_all(4001, "invalid or expired token")
            await until(reading_on(feed, connect=i + 2))
        await hook.wait_for(6)
        await delivered_exactly(s, 6)
    assert hook.titles() == ids(range(1000, 1006))
    assert feed.stats.reconnects == {"close_4001": 6}
    assert len(gate.delays) == 5
    assert grows(gate.delays)


async def test_tokens_dead_on_arrival_back_off_then_recover_the_gap(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """A 4001 then 4 refused fresh tokens: one immediate retry, 4 growing back-offs, gap alerted."""
    gate = Gate(hook=gap_fill(venue, 2000))
    async with running(venue, {"hook": hook}, tmp_path, sleep=gate) as service:
        feed = service.feed
        assert feed is not None
        await venue.fill(order_id=1000)
        venue.reject_tokens = 4
        await venue.close_all(4001, "token expired")
        await until(lambda: sum(feed.stats.reconnects.values()) == 5 and feed.stats.reading)
        await venue.fill(order_id=1001)
        await hook.wait_for(6)
        await delivered_exactly(service, 6)
    assert hook.titles() == ids(range(1000, 1002), range(2000, 2004))
    assert feed.stats.reconnects == {"close_4001": 5}
    assert len(gate.delays) == 4
    assert grows(gate.delays)
    assert venue.token_mints == 6


async def test_4002_backs_off_and_loses_nothing(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """A live 4002 and 2 more refusals: 3 growing back-offs; fills in each gap alerted once."""
    gate = Gate(hook=gap_fill(venue, 2000))
    async with running(venue, {"hook": hook}, tmp_path, sleep=gate) as service:
        feed = service.feed
        assert feed is not None
        await venue.fill(order_id=1000)
        venue.close_with_4002 = 2
        await venue.close_all(4002, "too many connections")
        await until(lambda: sum(feed.stats.reconnects.values()) == 3 and feed.stats.reading)
        await venue.fill(order_id=1001)
        await hook.wait_for(5)
        await delivered_exactly(service, 5)
    assert hook.titles() == ids(range(1000, 1002), range(2000, 2003))
    assert feed.stats.reconnects == {"close_4002": 3}
    assert grows(gate.delays)
    assert len(gate.delays) == 3


async def test_accept_and_close_backs_off_without_a_storm(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """A venue that accepts and closes at once: 8 growing back-offs (no storm), gaps alerted."""

    def heal(n: int) -> None:
        venue.record_history(order_id=2000 + n - 1)
        if n == 8:
            venue.accept_and_close = False

    gate = Gate(hook=heal)
    async with running(venue, {"hook": hook}, tmp_path, sleep=gate) as service:
        feed = service.feed
        assert feed is not None
        venue.accept_and_close = True
        await venue.close_all(1011, "going away")
        await until(lambda: feed.stats.reading and len(gate.delays) == 8, timeout=15)
        await venue.fill(order_id=1000)
        await hook.wait_for(9)
        await delivered_exactly(service, 9)
    assert hook.titles() == ids(range(1000, 1001), range(2000, 2008))
    assert feed.stats.reconnects == {"closed": 8}  # the 1011, then seven accept-and-closes
    assert grows(gate.delays)
    assert venue.token_mints == venue.connections == 9


async def test_server_that_stops_answering_is_replaced(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """A connection gone silent (no close) is replaced once; the fill lost on it is backfilled."""

    def heal(n: int) -> None:
        venue.silent = False
        venue.record_history(order_id=2000)

    gate = Gate(hook=heal)
    feed_knobs = "  ping_interval: 0.3s\n  ping_timeout: 0.3s\n"
    async with running(venue, {"hook": hook}, tmp_path, sleep=gate, feed=feed_knobs) as service:
        feed = service.feed
        assert feed is not None
        await venue.fill(order_id=999)
        await hook.wait_for(1)
        venue.silent = True
        await venue.fill(order_id=1000)  # into the void
        await until(lambda: sum(feed.stats.reconnects.values()) == 1 and feed.stats.reading)
        await hook.wait_for(3)
        await delivered_exactly(service, 3)
    assert hook.titles() == ids(range(999, 1001), range(2000, 2001))
    assert feed.stats.reconnects == {"silent": 1}
    assert len(gate.delays) == 1


async def test_a_venue_answering_only_protocol_pings_keeps_its_connection(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """A quiet feed whose venue ignores {"action": "ping"} but answers WebSocket pings is
    alive: three idle watchdog rounds later, still the first connection.

    On real time: the watchdog and websockets' keepalive, which cannot take the test's clock,
    both go by these settings. ping_timeout leaves a slow machine ample time for each pong."""
    venue.answer_app_pings = False
    feed_knobs = "  ping_interval: 0.05s\n  ping_timeout: 0.2s\n"
    async with running(venue, {"hook": hook}, tmp_path, feed=feed_knobs) as service:
        feed = service.feed
        assert feed is not None
        await venue.fill(order_id=999)
        await hook.wait_for(1)
        pinged = venue.app_pings
        await until(lambda: venue.app_pings >= pinged + 3 or feed.stats.connects > 1)
        await venue.fill(order_id=1000)
        await hook.wait_for(2)
        await delivered_exactly(service, 2)
    assert hook.titles() == ids(range(999, 1001))
    assert feed.stats.reconnects == {}
    assert venue.connections == 1


async def test_a_protocol_pong_resets_the_idle_clock(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """Answered by a protocol pong, the watchdog waits a whole ping_interval before the next
    ping, not ping_timeout (it pinged every ping_timeout). On real time: the watchdog goes by
    the loop's clock, beside websockets' keepalive on the same settings, which cannot take the
    test's. Gaps are bounded below only (a sleep never ends early), and ping_timeout leaves a
    slow machine ample time for each pong: the one connection lasts throughout."""
    venue.answer_app_pings = False
    feed_knobs = "  ping_interval: 0.3s\n  ping_timeout: 0.1s\n"
    async with running(venue, {"hook": hook}, tmp_path, feed=feed_knobs) as service:
        await until(lambda: venue.app_pings >= 3)
        feed = service.feed
        assert feed is not None
        assert feed.stats.reconnects == {}
    times = venue.app_ping_times
    assert min(b - a for a, b in itertools.pairwise(times[:3])) >= 0.3
    assert venue.connections == 1


async def test_a_scheduled_commit_that_fails_stops_the_service_with_its_error(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """A group commit run by the loop that fails (a full disk) has no caller to raise to; on
    a quiet feed the next write might be an hour off. The service stops at once and `run`
    raises it, so the unit restarts it (exit 70)."""
    text = config_text(venue, {"hook": hook}, tmp_path / "state.db")
    settings = parse(text, source=tmp_path / "c.yaml", env={"POLYSIM_API_KEY": DEFAULT_API_KEY})
    service = Service(settings, install_signals=False)
    task = asyncio.create_task(service.run())
    await until(lambda: bool(service.feed and service.feed.stats.reading))
    assert service.store is not None
    full = StateBusyError("state file s.db: commit: database or disk is full")
    service.store._file._on_broken(full)  # type: ignore[misc]  # what a failed flush does
    with pytest.raises(StateBusyError, match="disk is full"):
        await asyncio.wait_for(task, timeout=15)


class GatedHook(Hook):
    """Answers each request 200 only once `gate` is set: a send held in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        if request is None:
            return
        self.requests.append(request)
        await self._notify_arrival()
        await self.gate.wait()
        writer.write(http_response(200, b"{}", {"Content-Type": "application/json"}))
        await writer.drain()


async def test_a_store_error_while_draining_ends_the_run_with_it(
    venue: SimulatedPolySim, tmp_path: Path
) -> None:
    """A send that finishes during the stop's drain and cannot be marked sent (the state
    file failed meanwhile) ends `run` with the error: exit 70 or 1, not a clean 0."""
    hook = GatedHook()
    await hook.start()
    try:
        text = config_text(venue, {"hook": hook}, tmp_path / "state.db")
        env = {"POLYSIM_API_KEY": DEFAULT_API_KEY}
        service = Service(parse(text, source=tmp_path / "c.yaml", env=env), install_signals=False)
        task = asyncio.create_task(service.run())
        await until(lambda: bool(service.feed and service.feed.stats.reading))
        await venue.fill(order_id=1)
        await hook.wait_for(1)  # the send is in flight
        assert service.store is not None
        full = StateBusyError("state file s.db: commit: database or disk is full")
        service.store._file._broken = full  # as a failed commit leaves it
        service.request_stop()
        await asyncio.sleep(0)
        hook.gate.set()
        with pytest.raises(BaseException) as info:  # noqa: PT011 -- checked below
            await asyncio.wait_for(task, timeout=15)
    finally:
        hook.gate.set()
        await hook.close()
    errors = info.value.exceptions if isinstance(info.value, BaseExceptionGroup) else [info.value]
    assert [type(e) for e in errors] == [StateBusyError]


# -- delivery faults --------------------------------------------------------------------------


async def test_channel_down_for_a_minute(venue: SimulatedPolySim, tmp_path: Path) -> None:
    """A webhook failing for 60 simulated seconds: back-off retries, then each alert once."""
    clock = Clock()
    start = clock.now
    down_until = start.timestamp() + 60
    hook = Hook(status=lambda: 500 if clock.now.timestamp() < down_until else 200, clock=clock)
    await hook.start()
    try:
        async with running(venue, {"hook": hook}, tmp_path, clock=clock) as service:
            for i in range(5):
                await venue.fill(order_id=1000 + i)
            await until(lambda: service.summary().fills == 5 and service.summary().pending == 5)
            await step_until_delivered(service, clock)
            stats = service.deliverer.stats if service.deliverer else None
    finally:
        await hook.close()
    assert stats is not None
    failures = [(t, at) for t, s, at in hook.answers if s == 500]
    assert hook.titles(200) == ids(range(1000, 1005))
    assert Counter(t for t, _ in failures) == {"1000": len(failures)}  # the head waits, in order
    # Back-off without jitter (NoJitter): 1, 2, 4, 8, 16 s apart; the next would be at 63 s.
    assert [(at - start).total_seconds() for _, at in failures if at] == [0, 1, 3, 7, 15, 31]
    assert len(hook.answers) == len(failures) + 5
    assert (stats.sent, stats.failed, stats.dead) == (5, len(failures), 0)


async def test_a_restart_retries_at_once_what_waited_out_a_back_off(
    venue: SimulatedPolySim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A webhook failing until the daemon is stopped (the usual fix-and-restart): the start
    tries the alerts again at once, not at the retry the outage scheduled (up to retry_cap
    off), in fill order; each arrives once, and attempts stay counted."""
    clock = Clock()
    failing = [True]
    hook = Hook(status=lambda: 500 if failing[0] else 200, clock=clock)
    await hook.start()
    try:
        async with running(venue, {"hook": hook}, tmp_path, clock=clock) as svc:
            for i in range(3):
                await venue.fill(order_id=1000 + i)
            await until(lambda: svc.summary().pending == 3 and hook.titles(500) == {"1000": 1})
        failing[0] = False  # the clock stands still: the next try stays a second off
        caplog.clear()
        caplog.set_level(logging.INFO, logger="notifier")
        async with running(venue, {"hook": hook}, tmp_path, clock=clock) as svc:
            await until(lambda: svc.summary().sent == 3)
            assert svc.store is not None
            [row] = [r for r in svc.store.outbox(state="sent") if r.title == "1000"]
            assert row.attempts == 1
    finally:
        await hook.close()
    assert hook.titles(200) == ids(range(1000, 1003))
    assert [t for t, s, _ in hook.answers if s == 200] == ["1000", "1001", "1002"]
    assert hook.titles(500) == {"1000": 1}
    assert "1 alert waiting out a back-off from the last run: trying again now" in caplog.text


async def test_shaping_runs_on_the_service_s_clock(venue: SimulatedPolySim, tmp_path: Path) -> None:
    """A digest rule under the simulated clock: nothing goes out until 30 simulated seconds
    pass, then the three fills as one message (shaping reads the clock the outbox reads)."""
    clock = Clock()
    hook = Hook(clock=clock)
    await hook.start()
    digest = RULES.replace("    title:", "    group: {{by: [market_id], wait: 30s}}\n    title:")
    digest = digest.replace('"{{order_id}}"', '"{{count}} fills"')
    try:
        async with running(venue, {"hook": hook}, tmp_path, clock=clock, rules=digest) as service:
            for i in range(3):
                await venue.fill(order_id=1000 + i)
            await until(lambda: service.summary().fills == 3)
            assert service.pipeline is not None
            service.pipeline.tick()
            await until(lambda: quiet(service, clock))
            assert service.summary().pending == 0  # held by shaping, not yet an alert
            clock.advance(30)
            service.pipeline.tick()
            await until(lambda: service.summary().pending == 1)
            await step_until_delivered(service, clock)
    finally:
        await hook.close()
    assert hook.titles() == {"3 fills": 1}  # one message, once, and nothing else


@pytest.mark.parametrize("before_stop", [1, 0])
async def test_a_summary_due_while_down_takes_the_fills_the_catch_up_brings(
    venue: SimulatedPolySim, tmp_path: Path, before_stop: int
) -> None:
    """A day's summary at 17:00 with the daemon down from 16:52 to 17:05: a fill made at
    16:58, which only the venue's history has, is in the summary sent at the start (the
    release waits for the catch-up), not in the next day's; with a fill before the stop
    (the summary open) and without (the catch-up's fill opens it, due already)."""
    # Tomorrow: the feed's first start alerts no fill made before the real now.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)

    def at(hh: int, mm: int) -> datetime:
        return tomorrow.replace(hour=hh, minute=mm)

    clock = Clock()
    clock.now = at(16, 50)
    hook = Hook(clock=clock)
    await hook.start()
    day = RULES.replace("    title:", '    group: {{at: "17:00"}}\n    title:')
    day = day.replace('"{{order_id}}"', '"{{count}} fills"')
    try:
        async with running(venue, {"hook": hook}, tmp_path, clock=clock, rules=day) as service:
            if before_stop:
                await venue.fill(order_id=1000, filled_at=at(16, 51).isoformat())
                await until(lambda: service.summary().fills == 1)
            clock.now = at(16, 52)
        venue.record_history(order_id=1001, filled_at=at(16, 58).isoformat())
        clock.now = at(17, 5)
        async with running(venue, {"hook": hook}, tmp_path, clock=clock, rules=day) as service:
            await until(lambda: service.summary().pending == 1)
            await step_until_delivered(service, clock)
            assert service.pipeline is not None
            assert service.pipeline.shaping.next_deadline() is None  # nothing for tomorrow
    finally:
        await hook.close()
    assert hook.titles() == {f"{before_stop + 1} fills": 1}


async def test_health_names_a_stuck_channel_while_another_delivers(
    venue: SimulatedPolySim, tmp_path: Path
) -> None:
    """One channel failing for 15 simulated minutes, one healthy: /healthz's check is 503 and
    names the stuck one once its oldest alert waited STALL_AFTER; ok again once it drains."""
    clock = Clock()
    recovers = clock.now.timestamp() + 15 * 60
    down = Hook(status=lambda: 500 if clock.now.timestamp() < recovers else 200, clock=clock)
    up = Hook(clock=clock)
    await down.start()
    await up.start()
    try:
        hooks: dict[str, Hook] = {"down": down, "up": up}
        delivery = "  retry_cap: 60s\n"
        async with running(venue, dict(hooks), tmp_path, clock=clock, delivery=delivery) as svc:
            await venue.fill(order_id=1000)
            await up.wait_for(1)
            await until(lambda: bool(down.answers))
            assert svc.health() == (True, "ok")
            clock.advance(STALL_AFTER - 60)
            await venue.fill(order_id=1001)  # `up` keeps delivering all along
            await up.wait_for(2)
            assert svc.health() == (True, "ok")  # nothing has waited STALL_AFTER yet
            clock.advance(61)
            await venue.fill(order_id=1002)
            await up.wait_for(3)
            await until(lambda: svc.summary().pending == 3)
            assert svc.health() == (
                False,
                "outbox not draining: channel down has 3 alerts pending, none sent for 10 minutes",
            )
            oldest = svc.snapshot().oldest_pending
            assert list(oldest) == ["down"]
            assert oldest == {"down": STALL_AFTER + 1}  # the store stamps rows by the same clock
            clock.advance(recovers - clock.now.timestamp())
            await step_until_delivered(svc, clock)
            assert svc.health() == (True, "ok")
            assert svc.snapshot().oldest_pending == {}
    finally:
        await down.close()
        await up.close()
    assert up.titles() == up.titles(200) == ids(range(1000, 1003))
    assert down.titles(200) == ids(range(1000, 1003))


class _Urls(WebhookReceiver):
    """Stands in for a receiver in `config_text`: one channel of several receivers' URLs."""

    def __init__(self, *hooks: WebhookReceiver) -> None:
        super().__init__()
        self.hooks = hooks

    @property
    def json_url(self) -> str:
        return "{urls: [" + ", ".join(hook.json_url for hook in self.hooks) + "]}"


async def test_health_names_a_channel_one_of_whose_urls_is_stuck_while_another_delivers(
    venue: SimulatedPolySim, tmp_path: Path
) -> None:
    """Each URL is delivered on its own: one URL of a channel failing for 15 minutes is 503,
    however well the channel's other URL delivers meanwhile."""
    clock = Clock()
    down = Hook(status=lambda: 500, clock=clock)
    up = Hook(clock=clock)
    await down.start()
    await up.start()
    try:
        hooks: dict[str, WebhookReceiver] = {"desk": _Urls(down, up)}
        delivery = "  retry_cap: 60s\n"
        async with running(venue, hooks, tmp_path, clock=clock, delivery=delivery) as svc:
            await venue.fill(order_id=1000)
            await up.wait_for(1)
            await until(lambda: bool(down.answers))
            clock.advance(STALL_AFTER - 60)
            await venue.fill(order_id=1001)
            await up.wait_for(2)
            assert svc.health() == (True, "ok")
            clock.advance(61)
            await venue.fill(order_id=1002)  # the other URL delivers, as it did all along
            await up.wait_for(3)
            await until(lambda: svc.summary().pending == 3)
            assert svc.health() == (
                False,
                "outbox not draining: channel desk has 3 alerts pending for 1 of its 2 URLs, "
                "none sent there for 10 minutes",
            )
    finally:
        await down.close()
        await up.close()
    assert up.titles() == ids(range(1000, 1003))


async def test_health_says_stopping_from_the_moment_a_stop_is_asked_for(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """SIGTERM's stop finishes what was received, which can take a while: /healthz says so at
    once (a balancer or probe stops counting on this daemon) instead of ok until it exits."""
    async with running(venue, {"hook": hook}, tmp_path) as service:
        await venue.fill(order_id=1000)
        await hook.wait_for(1)
        assert service.health() == (True, "ok")
        service.request_stop("SIGTERM")
        assert service.health() == (False, "stopping (SIGTERM)")
        service.request_stop("SIGINT")  # a second signal keeps the first reason
        assert service.health() == (False, "stopping (SIGTERM)")
    assert service.health() == (False, "stopping (SIGTERM)")
    assert hook.titles() == ids([1000])


async def test_health_says_when_the_feed_has_been_down_too_long(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The venue's token endpoint failing: each failure is a warning naming the host; /healthz
    stays 200 while the back-off is short, and says 503 once the feed has been down
    FEED_DOWN_AFTER; the first connection after makes it 200 again."""
    venue.token_status = 503
    mono, sleep = MonoClock(1000.0), Gate(auto=False)
    hooks = {"hook": hook}
    async with started(venue, hooks, tmp_path, feed_sleep=sleep, feed_clock=mono) as service:
        await until(lambda: len(sleep.delays) == 1)
        assert service.health() == (True, "ok")
        mono.t += FEED_DOWN_AFTER + 60
        assert service.health() == (False, "feed not connected for 6 minutes")
        venue.token_status = None
        sleep.release()
        await until(lambda: bool(service.feed and service.feed.stats.reading))
        assert service.health() == (True, "ok")
    host = venue.base_url.split("//", 1)[1]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned[0].startswith(f"token endpoint answered HTTP 503 at {host}; reconnecting in"), (
        warned
    )


async def test_health_says_at_once_when_the_venue_refuses_a_key_it_took(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """A key the venue took and then refuses: /healthz says 503 at once (a person must look;
    FEED_DOWN_AFTER is for outages that heal themselves) while the daemon stays up and still
    delivers what it recorded; the key taken again makes it 200."""
    mono, sleep = MonoClock(1000.0), Gate(auto=False)
    hooks = {"hook": hook}
    async with started(venue, hooks, tmp_path, feed_sleep=sleep, feed_clock=mono) as service:
        await until(lambda: bool(service.feed and service.feed.stats.reading))
        feed = service.feed
        assert feed is not None
        venue.token_status = 401
        await venue.close_all(4001)
        await until(lambda: len(sleep.delays) == 1)
        assert service.health() == (
            False,
            "the venue refuses the API key (it took it earlier in this run)",
        )
        venue.token_status = None
        sleep.release()
        await until(lambda: feed.stats.reading and feed.stats.connects == 2)
        assert service.health() == (True, "ok")
        await venue.fill(order_id="after")
        await delivered_exactly(service, 1)
    assert hook.titles() == {"after": 1}
    assert sleep.delays == [KEY_RETRY]


async def test_health_stays_ok_through_a_hanging_reconnect_attempt(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """A handshake the venue never answers is part of reconnecting, as the pause between
    attempts is: /healthz stays 200 until the feed has been down FEED_DOWN_AFTER."""
    venue.silent = True
    mono, sleep = MonoClock(1000.0), Gate(auto=False)
    hooks = {"hook": hook}
    async with started(venue, hooks, tmp_path, feed_sleep=sleep, feed_clock=mono) as service:
        # The venue has taken the handshake (its answer is lost): the client waits on it.
        await until(lambda: venue.connections == 1 and service.feed is not None)
        feed = service.feed
        assert feed is not None
        assert (feed.stats.connected, feed.stats.in_backoff) == (False, False)  # it hangs
        assert (venue.token_mints, feed.stats.connects, sleep.delays) == (1, 0, [])
        assert service.health() == (True, "ok")
        mono.t += FEED_DOWN_AFTER + 60
        assert service.health() == (False, "feed not connected for 6 minutes")


def _exposition(service: Service) -> list[str]:
    """The daemon's /metrics text, as lines (the service's own registry, no socket)."""
    return Metrics(service.snapshot).exposition().decode().splitlines()


async def test_the_last_frame_gauge_is_the_wall_clock_less_the_feed_s_quiet_time(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path
) -> None:
    """notifier_feed_last_frame_timestamp_seconds: the service's wall clock less the feed's
    monotonic time since its last frame; absent before one, unmoved by a reconnect."""
    clock, mono = Clock(), MonoClock(1000.0)
    gauge = "notifier_feed_last_frame_timestamp_seconds"
    async with running(venue, {"hook": hook}, tmp_path, clock=clock, feed_clock=mono) as service:
        feed = service.feed
        assert feed is not None
        assert not [line for line in _exposition(service) if line.startswith(gauge)]
        await venue.fill(order_id=1)
        await until(lambda: feed.stats.fills == 1)
        read_at = clock.now.timestamp()
        mono.t += 12.5
        clock.advance(12.5)
        assert service.snapshot().last_frame_unix == pytest.approx(read_at, abs=1e-6)
        await venue.close_all(4001, "token expired")
        await until(reading_on(feed, connect=2))
        mono.t += 5.0
        clock.advance(5.0)
        assert service.snapshot().last_frame_unix == pytest.approx(read_at, abs=1e-6)
        [line] = [line for line in _exposition(service) if line.startswith(gauge)]
        assert float(line.split()[1]) == pytest.approx(read_at, abs=1e-6)


async def test_a_failed_backfill_is_retried_on_time_though_no_frame_comes(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """History down as the feed connects, and the bot quiet (no frame for the read loop to
    wake on): the gap is retried RETRY_EVERY later all the same, and its fill alerted once."""
    monkeypatch.setattr(gap_tender, "TEND_EVERY", 0.01)
    venue.history_status = 503
    mono = MonoClock(1000.0)
    gate = Gate()  # the connect-time tries' back-off, at once
    hooks = {"hook": hook}
    async with started(venue, hooks, tmp_path, feed_sleep=gate, feed_clock=mono) as service:
        await until(lambda: bool(service.feed and service.feed.stats.backfill_failures == 3))
        assert "notifier_backfill_gap_open 1.0" in _exposition(service)
        frames = service.feed.stats.frames if service.feed else None
        venue.record_history(order_id=3000)  # as if sent while the feed was not listening
        venue.history_status = None
        mono.t += RETRY_EVERY + 1
        await hook.wait_for(1)
        await delivered_exactly(service, 1)
        assert service.feed is not None
        assert service.feed.stats.frames == frames == 0  # no frame woke it
        mono.t += SETTLE_EVERY  # the gap closes once its fills are recorded: still no frame
        await until(lambda: service.store is not None and service.store.load_gap() is None)
        assert "notifier_backfill_gap_open 0.0" in _exposition(service)
        failures = [n for n in _exposition(service) if n.startswith("notifier_backfill_fail")]
        assert failures == ["notifier_backfill_failures_total 3.0"]  # the tries at connect
    assert hook.titles() == ids(range(3000, 3001))
    assert venue.connections == 1


@pytest.mark.parametrize(
    ("status", "gaps"),
    [
        # A 429 rests the channel RATE_LIMIT_PAUSE (apprise hides Retry-After), a floor under
        # the back-off, which grows past it.
        (429, [30, 30, 30, 30, 30, 32, 60, 60, 60, 60, 60]),
        # Any other refusal: plain back-off 1, 2, 4 … capped at retry_cap.
        (503, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60]),
    ],
)
async def test_a_storm_of_refusals_backs_off_and_delivers_each_once(
    venue: SimulatedPolySim, tmp_path: Path, status: int, gaps: list[int]
) -> None:
    """Twelve refusals in a row: retries with growing pauses, then every alert exactly once."""
    clock = Clock()
    hook = Hook(clock=clock)
    hook.respond(status, retry_after=30, times=12)
    await hook.start()
    try:
        delivery = "  retry_cap: 60s\n"
        async with running(venue, {"hook": hook}, tmp_path, clock=clock, delivery=delivery) as svc:
            for i in range(3):
                await venue.fill(order_id=1000 + i)
            await until(lambda: svc.summary().pending == 3)
            await step_until_delivered(svc, clock)
            summary = svc.summary()
    finally:
        await hook.close()
    assert hook.titles(status) == {"1000": 12}
    assert hook.titles(200) == ids(range(1000, 1003))
    assert [s for _, s, _ in hook.answers] == [status] * 12 + [200] * 3
    times = [at for _, _, at in hook.answers if at]
    # The twelve refusals, then the first delivery after the twelfth's back-off (60 s).
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(times[:13])] == [*gaps, 60]
    assert (summary.sent, summary.failed, summary.dead, summary.pending) == (3, 12, 0, 0)


async def test_a_hanging_channel_delays_only_itself(
    venue: SimulatedPolySim, tmp_path: Path
) -> None:
    """A webhook that hangs twice: the other channel gets all at once; the hung alert repeats."""
    clock = Clock()
    slow, fast = Hook(clock=clock), Hook(clock=clock)
    slow.hang(times=2)
    await slow.start()
    await fast.start()
    try:
        hooks: dict[str, Hook] = {"slow": slow, "fast": fast}
        delivery = "  timeout: 0.3s\n"
        async with running(venue, dict(hooks), tmp_path, clock=clock, delivery=delivery) as svc:
            for i in range(3):
                await venue.fill(order_id=1000 + i)
            await fast.wait_for(3)
            assert slow.titles(200) == {}  # fast delivered all while slow's first send hung
            await step_until_delivered(svc, clock)
            summary = svc.summary()
    finally:
        await slow.close()
        await fast.close()
    assert fast.titles() == fast.titles(200) == ids(range(1000, 1003))
    assert slow.titles(200) == ids(range(1000, 1003))
    # A send whose answer never came may have been delivered: the documented repeat.
    assert slow.titles(0) == {"1000": 2}
    assert (summary.sent, summary.failed, summary.dead, summary.pending) == (6, 2, 0, 0)


async def kill_and_restart(
    venue: SimulatedPolySim, hook: Hook, tmp_path: Path, *, fills: int, kills: int, seed: int
) -> None:
    """Kill -9 the daemon `kills` times at random points with alerts pending, then finish.

    Kills alternate: mid-delivery (after a random number of sends), then as soon as the
    restarted daemon says it started; while it is down, two more fills happen (history only, for the
    backfill to find). Every alert arrives; an alert arrives again only if it was in flight at
    a kill: one lane, one send in flight, so only the last alert a killed daemon sent, once.
    """
    rng = random.Random(seed)
    config = tmp_path / "config.yaml"
    config.write_text(config_text(venue, {"hook": hook}, tmp_path / "state.db"), "utf-8")
    env = child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
    daemon = await Daemon.start("run", "--config", str(config), env=env)
    orders = list(range(1000, 1000 + fills))
    in_flight: Counter[str] = Counter()  # the last alert each killed daemon sent
    started_at = 0  # arrivals before the running daemon started
    try:
        await daemon.wait_log("backfill", timeout=15)
        for order in orders:
            await venue.fill(order_id=order)
        for n in range(kills):
            if n % 2 == 1:
                await daemon.wait_log("started", timeout=15)  # its outbox still all pending
            else:
                await hook.wait_for(len(hook.requests) + rng.randint(1, 4), timeout=15)
            await daemon.kill()
            await hook.drained()
            sent = [title for title, _, _ in hook.answers[started_at:]]
            in_flight.update(sent[-1:])
            for _ in range(2):
                orders.append(2000 + len(orders))
                venue.record_history(order_id=orders[-1])
            started_at = len(hook.answers)
            daemon = await Daemon.start("run", "--config", str(config), env=env)
        await until(lambda: set(hook.titles()) == {str(n) for n in orders}, 30)
        daemon.signal(signal.SIGTERM)
        code, _ = await daemon.wait()
        assert code == 0
        assert "0 pending" in daemon.lines[-1]
    finally:
        if daemon.proc.returncode is None:
            await daemon.kill()
    arrived = hook.titles()
    assert set(arrived) == {str(n) for n in orders}
    repeats = arrived - Counter(set(arrived))
    assert repeats <= in_flight, (repeats, in_flight)


async def test_kill_9_with_alerts_pending_then_restart(
    venue: SimulatedPolySim, tmp_path: Path
) -> None:
    """Four kill -9s, mid-delivery and at start-up, fills while down: every alert arrives;
    only the one in flight at a kill arrives again, once per kill."""
    hook = Hook()
    await hook.start()
    try:
        await kill_and_restart(venue, hook, tmp_path, fills=30, kills=4, seed=7)
    finally:
        await hook.close()


# -- input faults -----------------------------------------------------------------------------


def _json_nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # A named function, not a lambda: hypothesis describes a lambda by reading this file's
    # source, and a run while the file changed once warned (an error under -W error).
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8), _json_nest, max_leaves=6
)
_FIELDS = ("order_id", "market_id", "side", "outcome", "price", "quantity", "filled_at")


# A fill whose market id JSON spells with a lone surrogate, which no UTF-8 encodes: taken
# as a fill, the state file refused it (in its order id, with the fill's key) and the
# daemon stopped.
_LONE_SURROGATE = (
    '{"type": "fill", "order_id": 1, "market_id": "0x\\ud800", "side": "BUY", "outcome": "Yes",'
    ' "price": "0.5", "quantity": "10", "filled_at": "2026-02-06T12:00:00Z"}'
)


@st.composite
def frames(draw: st.DrawFn) -> tuple[str | bytes, str]:
    """A frame as a broken or hostile venue might send: valid, mutated, junk JSON, or noise;
    with its kind, what the frame was made as (the test's own oracle, apart from normalize)."""
    kind = draw(st.sampled_from(("fill", "mutated", "json", "text", "bytes")))
    order = draw(st.integers(1, 10**6))
    fill: dict[str, object] = {
        "type": draw(st.sampled_from(("fill", "execution"))),
        "order_id": order,
        "market_id": "0xabc",
        "side": draw(st.sampled_from(("BUY", "SELL"))),
        "outcome": "Yes",
        "price": draw(st.sampled_from(("0.5", "0.01", "1"))),
        "quantity": draw(st.sampled_from(("10", "0.5", "1e3"))),
        "filled_at": draw(st.sampled_from(("2026-02-06T12:00:00Z", "2026-02-06T12:00:01+00:00"))),
    }
    bad = st.sampled_from(
        ("1.5", "-0.1", "NaN", "abc", "", "yesterday", "buy", "0", "0x\ud800", "a\u2028b")
    )
    if kind == "fill":
        return json.dumps(fill), kind
    if kind == "mutated":
        fill[draw(st.sampled_from(_FIELDS))] = draw(_json | bad)
        return json.dumps(fill), kind
    if kind == "json":
        return json.dumps(draw(_json)), kind
    if kind == "text":
        return draw(st.text(max_size=40)), kind
    return draw(st.binary(max_size=40)), kind


def classify(frame: str | bytes) -> Fill | str | None:
    """The pure core's verdict on a frame: a Fill, a rejection reason, or None (not a fill)."""
    obj = decode_frame(frame, max_bytes=1 << 20)
    if isinstance(obj, Rejected):
        return obj.reason
    result = normalize_message(obj)
    return result.reason if isinstance(result, Rejected) else result


async def push_frames(made: list[tuple[str | bytes, str]], tmp_path: Path) -> None:
    batch = [frame for frame, _ in made]
    async with SimulatedPolySim() as venue:
        hook = Hook()
        await hook.start()
        try:
            async with running(venue, {"hook": hook}, tmp_path) as service:
                feed = service.feed
                assert feed is not None
                for frame in batch:
                    await venue.emit(frame)
                await venue.fill(order_id="sentinel")
                await hook.wait_for(1)
                await until(lambda: any(t == "sentinel" for t, _, _ in hook.answers))
                verdicts = [classify(f) for f in batch]
                # The feed has no replay: a repeated fill frame is another equal fill.
                fills = [v for v in verdicts if isinstance(v, Fill)]
                await until(lambda: len(hook.answers) == len(fills) + 1)
                rejected = Counter(v for v in verdicts if isinstance(v, str))
                assert feed.stats.rejected == dict(rejected)
                assert feed.stats.non_fill == sum(v is None for v in verdicts)
                assert feed.stats.fills == sum(isinstance(v, Fill) for v in verdicts) + 1
                assert feed.stats.reconnects == {}
                expected = Counter(f.order_id for f in fills) + Counter(["sentinel"])
                assert hook.titles() == expected
                # Apart from normalize's own verdicts: every frame is counted once; each valid
                # fill alerts under its order id; junk never becomes a fill.
                counted = feed.stats.fills + feed.stats.non_fill + sum(rejected.values())
                assert counted == len(batch) + 1
                valid = {str(json.loads(f)["order_id"]) for f, kind in made if kind == "fill"}
                assert valid <= set(hook.titles())
                could_be_fills = sum(kind in ("fill", "mutated") for _, kind in made)
                assert feed.stats.fills <= could_be_fills + 1
        finally:
            await hook.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(frames(), min_size=1, max_size=25))
@example(
    batch=[
        (_LONE_SURROGATE, "mutated"),
        (_LONE_SURROGATE.replace('"order_id": 1', '"order_id": "\\udfff"'), "mutated"),
    ]
)
def test_hostile_frames_through_the_real_feed(
    batch: list[tuple[str | bytes, str]], tmp_path: Path
) -> None:
    """Any frames: the feed stays up, counts each reject by reason, alerts each fill frame
    once (an equal frame again is another fill: the feed has no replay)."""
    for old in tmp_path.glob("state.db*"):
        old.unlink()
    asyncio.run(push_frames(batch, tmp_path))


_KEYS = (
    "feed", "state", "delivery", "metrics", "log", "channels", "rules", "base_url", "api_key",
    "catch_up", "backfill_overlap", "ping_interval", "path", "retry_base", "retry_cap",
    "concurrency", "timeout", "body_format", "overflow", "listen", "level", "format", "urls",
    "rate", "fallback", "name", "when", "notify", "title", "body", "enabled", "stop", "side",
    "quantity", "price", "notional", "min", "max", "above", "below", "market", "outcome", "any",
    "all", "not", "tz",
)  # fmt: skip
_scalar = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.sampled_from(("BUY", "10s", "-1", "json://127.0.0.1/", "{order_id}", "{nope", "${X}"))
    | st.text(max_size=10)
)


def _tree_nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(_KEYS) | st.text(max_size=6), inner, max_size=4
    )


_tree = st.recursive(
    _scalar,
    _tree_nest,
    max_leaves=12,
)
_configs = (
    st.dictionaries(st.sampled_from(_KEYS[:7]), _tree, max_size=7).map(
        lambda tree: yaml.safe_dump(tree, allow_unicode=True)
    )
    | st.text(max_size=80)
    | st.sampled_from(
        ("rules: [", "a: &x\n  b: *x\n", "feed: {api_key: ${POLY", "rules:\n- {name: a, name: b}\n")
    )
)


@settings(max_examples=300, deadline=None)
@given(text=_configs)
def test_any_config_text_is_settings_or_a_config_error(text: str) -> None:
    """config.parse on arbitrary text returns Settings or raises ConfigError, nothing else."""
    problems: tuple[object, ...] = ("none raised",)
    try:
        parse(text, source=Path("/tmp/c.yaml"), env={"POLYSIM_API_KEY": DEFAULT_API_KEY})
    except ConfigError as exc:
        problems = exc.problems
    assert problems  # a refusal names at least one problem


@st.composite
def valid_configs(draw: st.DrawFn) -> tuple[str, list[tuple[str, Side, Decimal, Decimal]]]:
    """A config written as a person would (quantity bounds as typed decimals, either side),
    with the rules it must load: (name, side, min, max)."""
    amounts = st.decimals(min_value=0, max_value=10**6, places=draw(st.integers(0, 6)))
    rules = []
    lines = ["channels:", "  d: json://127.0.0.1:9/", "rules:"]
    for i in range(draw(st.integers(1, 4))):
        side: Side = draw(st.sampled_from(("BUY", "SELL")))
        low, high = sorted((draw(amounts), draw(amounts)))
        assume(high > 0)  # `max: 0` is refused: no fill has a quantity of 0
        rules.append((f"rule {i}", side, low, high))
        lines += [
            f"  - name: rule {i}",
            f"    when: {{side: {side}, quantity: {{min: {low}, max: {high}}}}}",
            "    notify: [d]",
        ]
    return "\n".join(lines) + "\n", rules


@settings(max_examples=100, deadline=None)
@given(case=valid_configs())
def test_a_valid_config_loads_and_means_what_it_says(
    case: tuple[str, list[tuple[str, Side, Decimal, Decimal]]],
) -> None:
    """The other half of the fuzz: valid text is accepted, and each rule's bounds hold
    exactly as typed (inclusive, no float rounding), on its side only."""
    text, rules = case
    settings = parse(text, source=Path("/tmp/c.yaml"), env={"POLYSIM_API_KEY": DEFAULT_API_KEY})
    assert [r.name for r in settings.rules.rules] == [name for name, *_ in rules]
    tick = Decimal("0.0000001")
    for name, side, low, high in rules:
        other: Side = "SELL" if side == "BUY" else "BUY"
        for quantity, hit in ((low, True), (high, True), (low - tick, False), (high + tick, False)):
            fill = dataclasses.replace(SAMPLE_FILL, side=side, quantity=quantity)
            assert (name in {r.name for r in settings.rules.match(fill)}) is hit, (name, quantity)
        fill = dataclasses.replace(SAMPLE_FILL, side=other, quantity=low)
        assert name not in {r.name for r in settings.rules.match(fill)}
