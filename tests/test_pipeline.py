"""The pipeline: dedupe, titles, rules, render and the durable outbox, on a real state file."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from fakes import DeskAndPhone, OnlyPhone, Titles

from notifier.conditions import MATCH_ALL, FieldMatch
from notifier.events import Fill
from notifier.pipeline import Pipeline
from notifier.plan import plan_alerts
from notifier.render import DEFAULT_BODY, Template
from notifier.rules import Rule, RuleSet
from notifier.store import StateStore


def _fill(order_id: str = "42", market: str = "0xabc1", quantity: str = "150") -> Fill:
    return Fill(
        order_id=order_id,
        market_id=market,
        side="BUY",
        outcome="Yes",
        price=Decimal("0.42"),
        quantity=Decimal(quantity),
        filled_at=datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC),
    )


def _rules() -> RuleSet:
    return RuleSet(
        [
            Rule(
                name="buys",
                condition=FieldMatch("side", ("BUY",)),
                notify=("desk", "phone"),
                title=Template.parse("Buy on {market_title}"),
                body=Template.parse("{quantity} @ {price} #{order_id}"),
            ),
            Rule(
                name="all",
                condition=MATCH_ALL,
                notify=("desk",),
                title=Template.parse("{rule}"),
                body=Template.parse(DEFAULT_BODY),
            ),
        ]
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.db") as opened:
        yield opened


def _pipeline(store: StateStore, titles: Titles | None, wakes: list[set[str]]) -> Pipeline:
    return Pipeline(
        rules=_rules(),
        targets=DeskAndPhone(),
        store=store,
        titles=titles,
        on_recorded=wakes.append,
        title_timeout=0.05,
    )


async def _drain(pipeline: Pipeline) -> None:
    runner = asyncio.create_task(pipeline.run())
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)


def test_plan_renders_one_alert_per_rule_and_target() -> None:
    """Each matching rule yields one alert per URL of each channel it names, rendered."""
    planned = plan_alerts(_fill().with_title("BTC 100k?"), rules=_rules(), targets=DeskAndPhone())
    assert [r.name for r in planned.rules] == ["buys", "all"]
    assert [(a.rule, a.channel, a.target) for a in planned.alerts] == [
        ("buys", "desk", "desk-1"),
        ("buys", "phone", "phone-1"),
        ("buys", "phone", "phone-2"),
        ("all", "desk", "desk-1"),
    ]
    assert planned.alerts[0].title == "Buy on BTC 100k?"
    assert planned.alerts[0].body == "150 @ 0.42 #42"
    assert planned.alerts[3].title == "all"


async def test_new_fill_becomes_durable_alerts(store: StateStore) -> None:
    """A new fill is recorded with its alerts in the outbox, titled; its targets are announced."""
    titles = Titles({"0xabc1": "BTC 100k?"})
    wakes: list[set[str]] = []
    pipeline = _pipeline(store, titles, wakes)
    await pipeline.submit(_fill(), "live")
    await _drain(pipeline)
    rows = store.outbox(state="pending")
    assert sorted((r.rule, r.target) for r in rows) == [
        ("all", "desk-1"),
        ("buys", "desk-1"),
        ("buys", "phone-1"),
        ("buys", "phone-2"),
    ]
    assert {r.title for r in rows if r.rule == "buys"} == {"Buy on BTC 100k?"}
    assert store.seen(_fill().key)
    assert wakes == [{"desk-1", "phone-1", "phone-2"}]
    assert pipeline.stats.processed == 1
    assert pipeline.stats.matched == {"buys": 1, "all": 1}
    assert pipeline.stats.matched_fills == 1


async def test_same_fill_twice_is_processed_once(store: StateStore) -> None:
    """The same fill from feed and backfill, queued or recorded, yields one set of alerts."""
    pipeline = _pipeline(store, None, [])
    await pipeline.submit(_fill(), "live")
    await pipeline.submit(_fill(), "backfill")  # still queued: skipped at once
    await _drain(pipeline)
    again = _pipeline(store, None, [])
    await again.submit(_fill(quantity="150.0"), "backfill")  # same identity, other spelling
    await _drain(again)
    assert len(store.outbox(state="pending")) == 4
    assert pipeline.stats.duplicates == 1
    assert again.stats.duplicates == 1
    assert again.stats.processed == 0


async def test_fill_matching_nothing_is_still_remembered(store: StateStore) -> None:
    """A fill no rule matches leaves no alert, but it is marked seen and moves the watermark."""
    pipeline = Pipeline(
        rules=RuleSet([]), targets=DeskAndPhone(), store=store, titles=None, on_recorded=list
    )
    await pipeline.submit(_fill(), "live")
    await _drain(pipeline)
    assert store.outbox() == []
    assert store.seen(_fill().key)
    assert store.load_watermark() == _fill().filled_at


async def test_a_fill_seen_quiet_stays_seen_when_rules_change(store: StateStore) -> None:
    """A fill recorded when no rule matched it is a duplicate later, even for rules that do.

    The pipeline asks the store nothing up front: the inserts say what was new. A backfill
    after a config edit must not alert fills from before the edit, nor count them as new.
    """
    quiet = Pipeline(
        rules=RuleSet([]), targets=DeskAndPhone(), store=store, titles=None, on_recorded=list
    )
    await quiet.submit(_fill(), "live")
    await _drain(quiet)
    watermark = store.load_watermark()
    wakes: list[set[str]] = []
    matching = _pipeline(store, None, wakes)
    await matching.submit(_fill(quantity="150.00"), "backfill")  # same fill, other spelling
    await matching.submit(_fill(order_id="43"), "backfill")
    await _drain(matching)
    assert {row.fill_key for row in store.outbox()} == {_fill("43").key}
    assert (matching.stats.duplicates, matching.stats.processed) == (1, 1)
    assert matching.stats.matched == {"buys": 1, "all": 1}
    assert store.load_watermark() == watermark
    assert wakes == [{"desk-1", "phone-1", "phone-2"}]


async def test_slow_title_lookup_does_not_stall_fills(store: StateStore) -> None:
    """A title look-up slower than its bound is left behind; the alert falls back to the id."""
    titles = Titles({"0xabc1": "BTC 100k?"})
    titles.gate.clear()
    pipeline = _pipeline(store, titles, [])
    await pipeline.submit(_fill(), "live")
    await _drain(pipeline)
    (row,) = [r for r in store.outbox() if r.rule == "buys" and r.target == "desk-1"]
    assert row.title == "Buy on 0xabc1"
    titles.gate.set()  # the look-up finishes in the background and fills the cache
    for _ in range(100):
        if titles.cached("0xabc1"):
            break
        await asyncio.sleep(0)
    later = _pipeline(store, titles, [])
    await later.submit(_fill(order_id="43"), "live")
    await _drain(later)
    assert {r.title for r in store.outbox() if r.fill_key == _fill("43").key} >= {
        "Buy on BTC 100k?"
    }
    assert titles.lookups == ["0xabc1"]


async def test_close_returns_after_everything_submitted_is_recorded(store: StateStore) -> None:
    """`close` lets `run` finish the fills already submitted, then return."""
    pipeline = _pipeline(store, None, [])
    runner = asyncio.create_task(pipeline.run())
    for n in range(1200):  # more than one batch
        await pipeline.submit(_fill(order_id=str(n)), "live")
    pipeline.close()
    await asyncio.wait_for(runner, timeout=10)
    assert pipeline.stats.processed == 1200
    assert pipeline.backlog() == 0


async def test_reload_during_a_title_lookup_keeps_the_batch_consistent(
    store: StateStore,
) -> None:
    """A reload while a batch waits for a title: it is planned with the new config, never a mix."""
    titles = Titles({"0xabc1": "BTC 100k?"})
    titles.gate.clear()
    pipeline = _pipeline(store, titles, [])
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(_fill(), "live")
    for _ in range(100):  # until the batch waits on the look-up
        if titles.lookups:
            break
        await asyncio.sleep(0)
    only_phone = Rule(
        name="p",
        condition=MATCH_ALL,
        notify=("phone",),
        title=Template.parse("{rule}"),
        body=Template.parse("{rule}"),
    )
    pipeline.swap(rules=RuleSet([only_phone]), targets=OnlyPhone("phone-9"))
    titles.gate.set()
    await pipeline.submit(_fill(order_id="43"), "live")
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)
    rows = sorted((r.fill_key, r.rule, r.target) for r in store.outbox())
    assert rows == [(_fill().key, "p", "phone-9"), (_fill("43").key, "p", "phone-9")]
