"""Fills waiting for their market title: held durably, judged once the title comes, never lost.

On a real state file; the title source is a stand-in the test turns on and off, except in the
test that looks titles up from the fake venue over loopback. The debug line each fill gets
(fill_trace.py) says which of these it met: matched, missed, or waiting for its title.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fakes import DeskAndPhone, HandClock, MonoClock, OnlyPhone, Titles, settle, spin_until

from notifier.conditions import MATCH_ALL, AllOf, Bounds, FieldMatch
from notifier.digests import fill_to_data
from notifier.events import Fill
from notifier.markets import MarketTitles
from notifier.pipeline import Pipeline
from notifier.render import Template
from notifier.rules import Rule, RuleSet
from notifier.shapingspecs import GroupSpec, RuleShaping, ThrottleSpec
from notifier.simulator import DEFAULT_API_KEY, DEFAULT_MARKETS, SimulatedPolySim
from notifier.store import StateStore
from notifier.title_gate import LOOKUPS_PER_ROUND, TitleSource
from notifier.title_wait import TitleWaits

BTC = "0xb7c"
OTHER = "0x07e"


def _fill(order_id: str = "1", market: str = BTC, quantity: str = "10") -> Fill:
    return Fill(
        order_id=order_id,
        market_id=market,
        side="BUY",
        outcome="Yes",
        price=Decimal("0.42"),
        quantity=Decimal(quantity),
        filled_at=HandClock().now,
    )


def _rule(name: str, notify: str = "desk", **when: tuple[str, ...]) -> Rule:
    condition = FieldMatch(*next(iter(when.items()))) if when else MATCH_ALL
    return Rule(
        name=name,
        condition=condition,
        notify=(notify,),
        title=Template.parse("{rule} on {market_title}"),
        body=Template.parse("{quantity} @ {price}"),
    )


BITCOIN = _rule("bitcoin", market_title=("*bitcoin*",))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.db") as opened:
        yield opened


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture
def titles() -> Titles:
    return Titles()


def _pipeline(
    store: StateStore,
    titles: TitleSource,
    clock: HandClock,
    rules: tuple[Rule, ...] = (BITCOIN,),
    **kw: object,
) -> Pipeline:
    """A pipeline whose retry timer stays quiet (the tests call offer_waiting() themselves),
    unless `title_retry` is given."""
    options: dict[str, object] = {"title_timeout": 1.0, "title_retry": 3600.0, **kw}
    return Pipeline(
        rules=RuleSet(rules),
        targets=DeskAndPhone(),
        store=store,
        titles=titles,
        on_recorded=lambda _targets: None,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def running(store: StateStore, titles: Titles, clock: HandClock) -> AsyncIterator[Pipeline]:
    pipeline = _pipeline(store, titles, clock)
    runner = asyncio.create_task(pipeline.run())
    yield pipeline
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)


def _alerts(store: StateStore) -> list[tuple[str, str, str]]:
    return sorted((row.fill_key, row.rule, row.title) for row in store.outbox())


async def test_a_fill_waits_for_its_title_then_alerts_once(
    running: Pipeline, store: StateStore, titles: Titles
) -> None:
    """Title look-up failing: no guess, no loss; the fill is alerted once its title comes."""
    await running.submit(_fill(), "live")
    await spin_until(lambda: len(running.waits) == 1)
    assert store.outbox() == []
    assert not store.seen(_fill().key)
    assert store.unseen([_fill().key]) == set()  # held durably: backfill may close its gap
    assert running.stats.processed == 0
    running.offer_waiting()  # the venue still fails: the fill stays held, asked again
    await spin_until(lambda: titles.lookups.count(BTC) == 2)
    assert len(running.waits) == 1
    titles.titles[BTC] = "Will Bitcoin close above $100k?"
    running.offer_waiting()
    await spin_until(lambda: bool(store.outbox()))
    await spin_until(lambda: not running.waits)
    assert _alerts(store) == [
        (_fill().key, "bitcoin", "bitcoin on Will Bitcoin close above $100k?")
    ]
    assert store.seen(_fill().key)
    assert store.title_waits.held() == []
    assert (running.stats.processed, running.stats.duplicates, running.waits.gave_up) == (
        1,
        0,
        0,
    )


async def test_a_held_fill_that_arrives_again_is_a_duplicate(
    running: Pipeline, store: StateStore, titles: Titles
) -> None:
    """The feed or backfill bringing a held fill again neither alerts twice nor re-holds it."""
    await running.submit(_fill(), "live")
    await spin_until(lambda: len(running.waits) == 1)
    await running.submit(_fill(quantity="10.0"), "backfill")  # same fill, other spelling
    await spin_until(lambda: running.stats.duplicates == 1)
    titles.titles[BTC] = "Bitcoin?"
    await running.submit(_fill(), "backfill")  # the title is had now: judged on this arrival
    await spin_until(lambda: not running.waits)
    running.offer_waiting()
    await running.submit(_fill(), "live")
    await spin_until(lambda: running.stats.duplicates == 2)
    assert _alerts(store) == [(_fill().key, "bitcoin", "bitcoin on Bitcoin?")]
    assert running.stats.received == {"live": 2, "backfill": 2}
    assert running.stats.processed == 1


async def test_held_fills_survive_a_restart(
    store: StateStore, titles: Titles, clock: HandClock
) -> None:
    """Stopped while fills wait: the next start tries their titles at once and alerts them."""
    first = _pipeline(store, titles, clock)
    runner = asyncio.create_task(first.run())
    await first.submit(_fill("1"), "live")
    await first.submit(_fill("2", market=OTHER), "live")
    await spin_until(lambda: len(first.waits) == 2)
    first.close()
    await asyncio.wait_for(runner, timeout=5)
    assert len(store.title_waits.held()) == 2

    titles.titles[BTC] = "Bitcoin?"
    titles.titles[OTHER] = "Rain?"
    clock.advance(minutes=5)
    second = _pipeline(store, titles, clock)
    assert len(second.waits) == 2
    runner = asyncio.create_task(second.run())  # looks the held markets up at once
    await spin_until(lambda: not second.waits)
    second.close()
    await asyncio.wait_for(runner, timeout=5)
    assert _alerts(store) == [(_fill("1").key, "bitcoin", "bitcoin on Bitcoin?")]
    assert store.seen(_fill("2", market=OTHER).key)  # judged: the title does not match
    assert store.title_waits.held() == []
    assert second.stats.processed == 2


async def test_equal_held_fills_survive_a_restart_as_two(
    store: StateStore, titles: Titles, clock: HandClock
) -> None:
    """Two equal partial fills held for their title: each keeps its occurrence in the state
    file, so after a restart they are still two fills, alerted twice."""
    second_fill = dataclasses.replace(_fill(), occurrence=2)
    first = _pipeline(store, titles, clock)
    runner = asyncio.create_task(first.run())
    await first.submit(_fill(), "live")
    await first.submit(second_fill, "live")
    await spin_until(lambda: len(first.waits) == 2)
    first.close()
    await asyncio.wait_for(runner, timeout=5)

    titles.titles[BTC] = "Bitcoin?"
    second = _pipeline(store, titles, clock)
    runner = asyncio.create_task(second.run())
    await spin_until(lambda: not second.waits)
    second.close()
    await asyncio.wait_for(runner, timeout=5)
    assert _alerts(store) == [
        (_fill().key, "bitcoin", "bitcoin on Bitcoin?"),
        (_fill().key + "#2", "bitcoin", "bitcoin on Bitcoin?"),
    ]
    assert second.stats.processed == 2


async def test_a_market_the_venue_has_no_title_for_is_judged_at_once(
    store: StateStore, titles: Titles, clock: HandClock
) -> None:
    """`absent` is an answer, not a failure: the fill is judged without a title, nothing held."""
    titles.gone.add(BTC)
    pipeline = _pipeline(store, titles, clock, rules=(BITCOIN, _rule("all")))
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(_fill(), "live")
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    assert _alerts(store) == [(_fill().key, "all", f"all on {BTC}")]
    assert not pipeline.waits
    assert pipeline.waits.gave_up == 0


async def test_a_fill_waits_whole_and_is_judged_untitled_after_the_limit(
    store: StateStore, titles: Titles, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Its other rules' alerts wait with it; after the limit it is judged without a title."""
    pipeline = _pipeline(store, titles, clock, rules=(BITCOIN, _rule("all")))
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(_fill(), "live")
    await spin_until(lambda: len(pipeline.waits) == 1)
    assert store.outbox() == []  # `all` waits too: one fill is recorded once
    clock.advance(minutes=59)
    pipeline.offer_waiting()
    await spin_until(lambda: titles.lookups.count(BTC) == 2)
    assert len(pipeline.waits) == 1
    clock.advance(minutes=1)
    with caplog.at_level(logging.WARNING, logger="notifier.title_gate"):
        pipeline.offer_waiting()
        await spin_until(lambda: not pipeline.waits)
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    assert _alerts(store) == [(_fill().key, "all", f"all on {BTC}")]
    assert pipeline.waits.gave_up == 1
    assert store.title_waits.held() == []
    assert "1 fills judged without their market title" in caplog.text


async def test_beyond_capacity_a_fill_is_judged_at_once(
    store: StateStore, titles: Titles, clock: HandClock
) -> None:
    """Held fills are bounded: one more is judged untitled at once and counted."""
    pipeline = _pipeline(
        store,
        titles,
        clock,
        rules=(BITCOIN, _rule("all")),
        title_waits=TitleWaits(store.title_waits, clock=clock, capacity=1),
    )
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(_fill("1"), "live")
    await spin_until(lambda: len(pipeline.waits) == 1)
    await pipeline.submit(_fill("2"), "live")
    await spin_until(lambda: bool(store.outbox()))
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    assert _alerts(store) == [(_fill("2").key, "all", f"all on {BTC}")]
    assert [key for key, _, _ in store.title_waits.held()] == [_fill("1").key]
    assert pipeline.waits.gave_up == 1


async def test_a_reload_to_rules_without_titles_lets_held_fills_go(
    running: Pipeline, store: StateStore
) -> None:
    """Rules that no longer test titles judge the held fills at once, with the new channels."""
    await running.submit(_fill(), "live")
    await spin_until(lambda: len(running.waits) == 1)
    running.swap(rules=RuleSet([_rule("p", notify="phone")]), targets=OnlyPhone("phone-9"))
    await spin_until(lambda: bool(store.outbox()))
    assert [(r.rule, r.target) for r in store.outbox()] == [("p", "phone-9")]
    assert not running.waits


async def test_fills_a_title_cannot_change_do_not_wait(
    store: StateStore, titles: Titles, clock: HandClock
) -> None:
    """With the title unknown, a fill the rules settle anyway is judged at once."""
    sells = Rule(
        name="sells",
        condition=FieldMatch("side", ("SELL",)),
        notify=("desk",),
        title=Template.parse("{rule}"),
        body=Template.parse("{rule}"),
        stop=True,  # a SELL never reaches the title rule
    )
    big_bitcoin = Rule(
        name="big-bitcoin",
        condition=AllOf((Bounds("quantity", min=Decimal("1000")), BITCOIN.condition)),
        notify=("desk",),
        title=Template.parse("{rule}"),
        body=Template.parse("{rule}"),
    )
    pipeline = _pipeline(store, titles, clock, rules=(sells, big_bitcoin))
    runner = asyncio.create_task(pipeline.run())
    sell = dataclasses.replace(_fill("1"), side="SELL")
    small = _fill("2")
    big = _fill("3", quantity="5000")
    for fill in (sell, small, big):
        await pipeline.submit(fill, "live")
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    assert [(r.fill_key, r.rule) for r in store.outbox()] == [(sell.key, "sells")]
    assert store.seen(sell.key)
    assert store.seen(small.key)
    assert pipeline.waits.fills() == [big]  # only a title can tell whether it is on Bitcoin


async def test_only_fills_a_title_could_judge_or_that_alert_are_looked_up(
    store: StateStore, titles: Titles, clock: HandClock
) -> None:
    """Look-ups are REST calls on the key's rate limit: a `market_title` rule pinned to one
    market makes no look-up for fills on others that no rule alerts; a fill that alerts gets
    its title to render, and one the venue sent with its title keeps it, unasked."""
    pinned = Rule(
        name="pinned",
        condition=AllOf((FieldMatch("market", (BTC,)), BITCOIN.condition)),
        notify=("desk",),
        title=Template.parse("{rule} on {market_title}"),
        body=Template.parse("{rule}"),
    )
    big = _rule("big", market=(OTHER,))
    big = dataclasses.replace(
        big, condition=AllOf((big.condition, Bounds("quantity", min=Decimal(1000))))
    )
    titles.titles |= {BTC: "Bitcoin 100k?", OTHER: "Other?"}
    pipeline = _pipeline(store, titles, clock, rules=(pinned, big))
    runner = asyncio.create_task(pipeline.run())
    quiet = [_fill(str(n), market) for n, market in enumerate((OTHER, "0x3d", OTHER), 1)]
    sent_titled = dataclasses.replace(_fill("4", OTHER, quantity="2000"), market_title="As sent")
    for fill in (*quiet, sent_titled, _fill("5", BTC), _fill("6", OTHER, quantity="5000")):
        await pipeline.submit(fill, "live")
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    assert sorted(titles.lookups) == sorted([BTC, OTHER])  # the pinned rule's, one to render
    assert sorted(row.title for row in store.outbox()) == [
        "big on As sent",
        "big on Other?",
        "pinned on Bitcoin 100k?",
    ]
    assert all(store.seen(fill.key) for fill in quiet)


def test_unreadable_held_rows_are_dropped_and_the_rest_kept(
    store: StateStore, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged row is dropped with an error; good rows load with their waiting time."""
    good = _fill()
    since = clock.now - timedelta(minutes=3)
    store.title_waits.hold(
        [
            (good.key, since, json.dumps(fill_to_data(good))),
            ("bad", since, "{not json"),
            ("odd", since, json.dumps({"price": "1"})),
        ]
    )
    with caplog.at_level(logging.ERROR, logger="notifier.title_wait"):
        waits = TitleWaits(store.title_waits, clock=clock)
    assert waits.fills() == [good]
    assert not waits.expired(good.key)
    assert [key for key, _, _ in store.title_waits.held()] == [good.key]
    assert "2 held fills unreadable" in caplog.text


def test_a_row_under_an_old_key_is_filed_under_the_fill_key(
    store: StateStore, clock: HandClock
) -> None:
    """A row keyed differently (an older notifier) is kept, under the key fills have now."""
    fill = _fill()
    store.title_waits.hold([("legacy-key", clock.now, json.dumps(fill_to_data(fill)))])
    waits = TitleWaits(store.title_waits, clock=clock)
    assert fill.key in waits
    assert [key for key, _, _ in store.title_waits.held()] == [fill.key]


async def test_the_venue_failing_then_recovering_loses_no_alert(
    venue: SimulatedPolySim, http: httpx.AsyncClient, store: StateStore, clock: HandClock
) -> None:
    """Real look-ups: the venue answers 503, then titles again; the fill alerts exactly once."""
    market = next(iter(DEFAULT_MARKETS))
    venue.market_status = 503
    mono = MonoClock()
    lookups = MarketTitles(http, base_url=venue.base_url, api_key=DEFAULT_API_KEY, clock=mono)
    title_rule = _rule("titled", market_title=(DEFAULT_MARKETS[market],))
    pipeline = _pipeline(store, lookups, clock, rules=(title_rule,), title_timeout=2.0)
    runner = asyncio.create_task(pipeline.run())
    fill = _fill(market=market)
    await pipeline.submit(fill, "live")
    await spin_until(lambda: len(pipeline.waits) == 1, spins=50_000)
    venue.market_status = None
    pipeline.offer_waiting()  # within the look-up's retry pause: nothing asked yet
    await settle()
    assert venue.market_requests == 1
    assert len(pipeline.waits) == 1
    mono.t += 31
    pipeline.offer_waiting()
    await spin_until(lambda: bool(store.outbox()), spins=50_000)
    await pipeline.submit(fill, "backfill")
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    assert _alerts(store) == [
        (fill.key, "titled", f"titled on {DEFAULT_MARKETS[market]}"),
    ]
    assert (pipeline.stats.processed, pipeline.stats.duplicates) == (1, 1)
    assert venue.market_requests == 2


async def test_fills_held_for_a_failing_look_up_are_logged_as_a_running_count(
    venue: SimulatedPolySim,
    http: httpx.AsyncClient,
    store: StateStore,
    clock: HandClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An operator saw "1 fills wait for their market title" three times for three fills,
    after "no title (HTTP 500); using the id", which the held fills contradicted: the lines
    now count up, and the look-up's line says only that it will ask again."""
    market = next(iter(DEFAULT_MARKETS))
    venue.market_status = 500
    lookups = MarketTitles(
        http, base_url=venue.base_url, api_key=DEFAULT_API_KEY, clock=MonoClock()
    )
    title_rule = _rule("titled", market_title=(DEFAULT_MARKETS[market],))
    pipeline = _pipeline(store, lookups, clock, rules=(title_rule,), title_timeout=2.0)
    runner = asyncio.create_task(pipeline.run())
    with caplog.at_level(logging.INFO):
        await pipeline.submit(_fill("1", market=market), "live")
        await spin_until(lambda: len(pipeline.waits) == 1, spins=50_000)
        await pipeline.submit(_fill("2", market=market), "live")
        await spin_until(lambda: len(pipeline.waits) == 2, spins=50_000)
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    lines = [r.getMessage() for r in caplog.records]
    held = [line for line in lines if "wait for their market title" in line]
    assert held == [
        "1 more fill(s) wait for their market title before rules judge them (1 waiting in all)",
        "1 more fill(s) wait for their market title before rules judge them (2 waiting in all)",
    ]
    looked_up = [line for line in lines if line.startswith(f"market {market}: ")]
    assert looked_up == [f"market {market}: no title (HTTP 500); asking again in 30s"]
    assert store.outbox() == []


async def test_held_fills_are_looked_at_again_on_their_own(
    store: StateStore, titles: Titles, clock: HandClock
) -> None:
    """Without anyone calling offer_waiting, the retry timer finds the title and alerts."""
    pipeline = _pipeline(store, titles, clock, title_timeout=2.0, title_retry=0.001)
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(_fill(), "live")
    await spin_until(lambda: len(pipeline.waits) == 1)
    titles.titles[BTC] = "Bitcoin?"
    async with asyncio.timeout(10):  # a bound, not a timing assumption
        while not store.outbox():
            await asyncio.sleep(0.001)
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    assert _alerts(store) == [(_fill().key, "bitcoin", "bitcoin on Bitcoin?")]


async def test_a_fill_recorded_before_is_not_held_again(
    store: StateStore, titles: Titles, clock: HandClock
) -> None:
    """A backfill re-reading judged fills in a title outage counts duplicates, holds nothing."""
    titles.titles[BTC] = "Bitcoin?"
    first = _pipeline(store, titles, clock)
    runner = asyncio.create_task(first.run())
    await first.submit(_fill(), "live")
    first.close()
    await asyncio.wait_for(runner, timeout=5)
    outage = Titles()  # a new start, and the venue's market look-ups now fail
    again = _pipeline(store, outage, clock)
    runner = asyncio.create_task(again.run())
    await again.submit(_fill(), "backfill")
    again.close()
    await asyncio.wait_for(runner, timeout=5)
    assert (again.stats.duplicates, len(again.waits), store.title_waits.held()) == (1, 0, [])
    assert _alerts(store) == [(_fill().key, "bitcoin", "bitcoin on Bitcoin?")]


async def test_held_markets_are_looked_up_a_few_at_a_time_in_turn(
    running: Pipeline, titles: Titles
) -> None:
    """Each round asks for at most LOOKUPS_PER_ROUND markets, and the next round the next ones."""
    markets = [f"0x{n:03x}" for n in range(LOOKUPS_PER_ROUND + 4)]
    for n, market in enumerate(markets):
        await running.submit(_fill(str(n), market=market), "live")
    await spin_until(lambda: len(running.waits) == len(markets))
    titles.lookups.clear()
    running.offer_waiting()
    await settle()
    assert titles.lookups == markets[:LOOKUPS_PER_ROUND]
    titles.lookups.clear()
    running.offer_waiting()
    await settle()
    assert titles.lookups == (markets[LOOKUPS_PER_ROUND:] + markets)[:LOOKUPS_PER_ROUND]


async def test_a_duplicate_at_capacity_is_not_counted_as_judged_untitled(
    store: StateStore, titles: Titles, clock: HandClock
) -> None:
    """A recorded fill re-read while the room is full is a duplicate, not a give-up."""
    titles.cache[BTC] = "Bitcoin?"
    pipeline = _pipeline(
        store, titles, clock, title_waits=TitleWaits(store.title_waits, clock=clock, capacity=1)
    )
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(_fill("old"), "live")
    await spin_until(lambda: bool(store.outbox()))
    titles.cache.clear()  # the title is no longer known, and the venue fails
    await pipeline.submit(_fill("held", market=OTHER), "live")
    await spin_until(lambda: len(pipeline.waits) == 1)
    await pipeline.submit(_fill("old"), "backfill")
    await spin_until(lambda: pipeline.stats.duplicates == 1)
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    assert pipeline.waits.gave_up == 0
    assert len(store.outbox()) == 1


async def test_one_batch_holds_no_more_than_the_room_left(
    store: StateStore, titles: Titles, clock: HandClock
) -> None:
    """Ten fills in one batch with room for two: two are held, eight judged untitled."""
    pipeline = _pipeline(
        store, titles, clock, title_waits=TitleWaits(store.title_waits, clock=clock, capacity=2)
    )
    for n in range(10):  # submitted before run: one batch
        await pipeline.submit(_fill(str(n)), "live")
    runner = asyncio.create_task(pipeline.run())
    await spin_until(lambda: pipeline.backlog() == 0 and bool(pipeline.waits))
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    assert [fill.order_id for fill in pipeline.waits.fills()] == ["0", "1"]
    assert pipeline.waits.gave_up == 8
    assert pipeline.stats.processed == 8


async def test_a_reload_during_a_look_up_counts_a_give_up_once(
    store: StateStore, clock: HandClock
) -> None:
    """A batch matched again after a reload does not count its untitled fills twice."""
    titles = Titles()
    pipeline = _pipeline(store, titles, clock)
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(_fill(), "live")
    await spin_until(lambda: len(pipeline.waits) == 1)
    titles.gate.clear()
    clock.advance(hours=1)
    pipeline.offer_waiting()
    await spin_until(lambda: pipeline.backlog() == 0)  # the batch waits inside its look-up
    pipeline.swap(rules=RuleSet([BITCOIN]), targets=DeskAndPhone())
    titles.gate.set()
    await spin_until(lambda: not pipeline.waits)
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    assert pipeline.waits.gave_up == 1


async def test_a_restart_looks_up_a_few_held_markets_at_a_time(
    store: StateStore, titles: Titles, clock: HandClock
) -> None:
    """Many markets held at the last stop: the start asks for one round's worth, not all."""
    first = _pipeline(store, titles, clock)
    runner = asyncio.create_task(first.run())
    count = 3 * LOOKUPS_PER_ROUND
    for n in range(count):
        await first.submit(_fill(str(n), market=f"0x{n:03x}"), "live")
    await spin_until(lambda: len(first.waits) == count)
    first.close()
    await asyncio.wait_for(runner, timeout=5)
    outage = Titles()
    second = _pipeline(store, outage, clock)
    runner = asyncio.create_task(second.run())
    await settle()
    second.close()
    await asyncio.wait_for(runner, timeout=5)
    assert len(outage.lookups) == LOOKUPS_PER_ROUND
    assert len(second.waits) == count


async def test_a_slow_look_up_that_ends_lets_its_held_fills_go(
    store: StateStore, clock: HandClock
) -> None:
    """A batch's look-up past its timeout: once it finds the title, the held fill goes on."""
    titles = Titles()
    titles.titles[BTC] = "Bitcoin?"
    titles.gate.clear()
    pipeline = _pipeline(store, titles, clock, title_timeout=0.01)
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(_fill(), "live")
    async with asyncio.timeout(10):  # the batch gives the look-up 10 ms, then holds the fill
        while not pipeline.waits:
            await asyncio.sleep(0.005)
    titles.gate.set()  # the look-up the batch left behind now finds the title
    await spin_until(lambda: bool(store.outbox()))
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    assert _alerts(store) == [(_fill().key, "bitcoin", "bitcoin on Bitcoin?")]


def test_a_fill_recorded_and_still_held_is_not_restored(
    store: StateStore, clock: HandClock
) -> None:
    """Recorded and held (a crash between two commits): judged already, so not held again."""
    fill = _fill()
    store.title_waits.hold([(fill.key, clock.now, json.dumps(fill_to_data(fill)))])
    store.record(fill_key=fill.key, filled_at=fill.filled_at, alerts=[])
    assert TitleWaits(store.title_waits, clock=clock).fills() == []
    assert store.title_waits.held() == []


def _committed(path: Path, table: str) -> set[str]:
    """Keys another connection sees in `table`: what a kill -9 now would leave."""
    db = sqlite3.connect(path)
    try:
        return {key for (key,) in db.execute(f"SELECT key FROM {table}")}
    finally:
        db.close()


async def test_a_judged_fill_leaves_the_held_table_in_its_record_s_transaction(
    tmp_path: Path, clock: HandClock
) -> None:
    """With group commit and a shaped rule (whose snapshot write commits the batch), the
    record and the release commit together: never recorded and still held after a kill."""
    path = tmp_path / "state.db"
    flushes: list[Callable[[], None]] = []
    throttled = dataclasses.replace(
        BITCOIN,
        shaping=RuleShaping(throttle=ThrottleSpec(by=("market_id",), every=timedelta(minutes=10))),
    )
    titles = Titles()
    with StateStore(path, clock=clock, defer_commit=flushes.append) as store:
        pipeline = _pipeline(store, titles, clock, rules=(throttled,))
        runner = asyncio.create_task(pipeline.run())
        await pipeline.submit(_fill(), "live")
        await spin_until(lambda: len(pipeline.waits) == 1)
        store.flush()
        assert _committed(path, "title_waits") == {_fill().key}
        titles.titles[BTC] = "Bitcoin?"
        pipeline.offer_waiting()
        await spin_until(lambda: not pipeline.waits)
        assert _fill().key in _committed(path, "fills")
        assert _committed(path, "title_waits") == set()
        pipeline.close()
        await asyncio.wait_for(runner, timeout=5)


async def test_a_batch_waits_once_for_the_titles_it_judges_and_renders(
    store: StateStore, titles: Titles, clock: HandClock
) -> None:
    """The title a verdict needs and the title an alert shows are asked for together: asked
    one after the other, a hung venue held the batch's alerts for twice the timeout."""
    titles.titles |= {BTC: "Bitcoin 100k?", OTHER: "Other?"}
    titles.gate.clear()  # the venue holds every look-up
    pinned = dataclasses.replace(
        BITCOIN, condition=AllOf((FieldMatch("market", (BTC,)), BITCOIN.condition))
    )
    pipeline = _pipeline(store, titles, clock, rules=(pinned, _rule("other", market=(OTHER,))))
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(_fill("1", BTC), "live")  # its verdict needs the title
    await pipeline.submit(_fill("2", OTHER), "live")  # matches anyway; its alert shows it
    await spin_until(lambda: BTC in titles.lookups)
    await settle()
    assert sorted(titles.lookups) == sorted([BTC, OTHER])  # both asked in the first wait
    titles.gate.set()
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    assert _alerts(store) == [
        (_fill("1", BTC).key, "bitcoin", "bitcoin on Bitcoin 100k?"),
        (_fill("2", OTHER).key, "other", "other on Other?"),
    ]


async def test_a_start_s_catch_up_is_in_only_once_no_fill_waits_for_its_title(
    store: StateStore, titles: Titles, clock: HandClock
) -> None:
    """A summary due while the daemon was down waits at the start for the catch-up: a
    catch-up fill still waiting for its market's title is not in yet, so the summary waits
    for it too (or CATCH_UP_HOLD), and then holds both fills, not one now and one later."""
    grouped = dataclasses.replace(
        BITCOIN, shaping=RuleShaping(group=GroupSpec(by=(), wait=timedelta(seconds=30)))
    )
    titles.titles[BTC] = "Will Bitcoin close above $100k?"
    pipeline = _pipeline(store, titles, clock, rules=(grouped,))
    pipeline.hold_releases()
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(_fill("1"), "live")
    await spin_until(lambda: store.seen(_fill("1").key))
    del titles.titles[BTC]  # the catch-up's fill is of a market whose title is not had
    await pipeline.submit(_fill("2", OTHER), "backfill")
    await spin_until(lambda: len(pipeline.waits) == 1)
    pipeline.caught_up()
    clock.advance(seconds=31)
    pipeline.tick()
    await settle(100)
    assert store.outbox() == []  # due, but a fill of the catch-up is not recorded yet
    titles.titles[OTHER] = "Bitcoin above $100k in March?"
    pipeline.offer_waiting()
    await spin_until(lambda: bool(store.outbox()))
    [digest] = store.outbox()
    assert digest.title == "bitcoin on 2 markets"
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)


async def test_each_fill_s_verdict_is_a_debug_line(
    running: Pipeline, titles: Titles, caplog: pytest.LogCaptureFixture
) -> None:
    """At debug level, a line a fill: a match names its rules, a miss says so, a fill of a
    market whose title cannot be had says it waits, and a match read again says it was
    handled before."""
    caplog.set_level(logging.DEBUG, logger="notifier.fills")
    titles.titles.update({BTC: "Will Bitcoin close above $100k?", OTHER: "Lakers win?"})
    btc, lakers, unknown = _fill("1"), _fill("2", OTHER), _fill("3", "0x0dd")
    for fill, source in ((btc, "live"), (lakers, "live"), (unknown, "backfill"), (btc, "backfill")):
        await running.submit(fill, source)
        await spin_until(lambda: running.backlog() == 0)
    made = "filled 2026-02-06T12:00:00+00:00"
    bitcoin = f"order 1 BUY 10 Yes @ 0.42 on 'Will Bitcoin close above $100k?' ({BTC}), {made}"
    assert [r.getMessage() for r in caplog.records if r.name == "notifier.fills"] == [
        f"fill (live) {bitcoin}: matched bitcoin",
        f"fill (live) order 2 BUY 10 Yes @ 0.42 on 'Lakers win?' ({OTHER}), {made}: "
        "matched no rule",
        f"fill (backfill) order 3 BUY 10 Yes @ 0.42 on 0x0dd, {made}: waits for its market "
        "title before the rules judge it",
        f"fill (backfill) {bitcoin}: matched bitcoin",
        f"fill {bitcoin}: handled before, no alert again",
    ]


async def test_at_info_no_fill_is_logged(
    running: Pipeline, titles: Titles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="notifier")
    titles.titles[BTC] = "Will Bitcoin close above $100k?"
    for fill in (_fill("1"), _fill("2", OTHER)):
        await running.submit(fill, "live")
        await spin_until(lambda: running.backlog() == 0)
    assert [r for r in caplog.records if r.name == "notifier.fills"] == []
