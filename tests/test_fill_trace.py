"""At debug level the daemon logs a line a fill: what the rules made of it; at info, none."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from fakes import DeskAndPhone, Titles, spin_until

from notifier.conditions import FieldMatch
from notifier.events import Fill
from notifier.pipeline import Pipeline
from notifier.render import Template
from notifier.rules import Rule, RuleSet
from notifier.store import StateStore

BITCOIN = Rule(
    name="bitcoin",
    condition=FieldMatch("market_title", ("*bitcoin*",)),
    notify=("desk",),
    title=Template.parse("{rule}"),
    body=Template.parse("{quantity} @ {price}"),
)
AT = datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC)


def _fill(order_id: str, market: str) -> Fill:
    return Fill(
        order_id=order_id,
        market_id=market,
        side="BUY",
        outcome="Yes",
        price=Decimal("0.42"),
        quantity=Decimal("10.0"),
        filled_at=AT,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.db") as opened:
        yield opened


async def _run(store: StateStore, fills: list[tuple[Fill, str]]) -> None:
    titles = Titles({"0xb7c": "Will Bitcoin close above $100k?", "0x1a4": "Lakers win?"})
    pipeline = Pipeline(
        rules=RuleSet((BITCOIN,)),
        targets=DeskAndPhone(),
        store=store,
        titles=titles,
        on_recorded=lambda _targets: None,
        title_timeout=1.0,
        title_retry=3600.0,
    )
    runner = asyncio.create_task(pipeline.run())
    for fill, source in fills:
        await pipeline.submit(fill, source)
        await spin_until(lambda: pipeline.backlog() == 0)
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)


async def test_each_fill_s_verdict_is_a_debug_line(
    store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A match names its rules, a miss says so, a fill of a market whose title cannot be had
    says it waits, and a match read again says it was handled before."""
    caplog.set_level(logging.DEBUG, logger="notifier.fills")
    btc, lakers, unknown = _fill("1", "0xb7c"), _fill("2", "0x1a4"), _fill("3", "0x0dd")
    await _run(store, [(btc, "live"), (lakers, "live"), (unknown, "backfill"), (btc, "backfill")])
    made = "filled 2026-02-06T12:00:45+00:00"
    assert [r.getMessage() for r in caplog.records if r.name == "notifier.fills"] == [
        "fill (live) order 1 BUY 10.0 Yes @ 0.42 on 'Will Bitcoin close above $100k?' (0xb7c), "
        f"{made}: matched bitcoin",
        f"fill (live) order 2 BUY 10.0 Yes @ 0.42 on 'Lakers win?' (0x1a4), {made}: "
        "matched no rule",
        f"fill (backfill) order 3 BUY 10.0 Yes @ 0.42 on 0x0dd, {made}: waits for its market "
        "title before the rules judge it",
        "fill (backfill) order 1 BUY 10.0 Yes @ 0.42 on 'Will Bitcoin close above $100k?' "
        f"(0xb7c), {made}: matched bitcoin",
        "fill order 1 BUY 10.0 Yes @ 0.42 on 'Will Bitcoin close above $100k?' (0xb7c), "
        f"{made}: handled before, no alert again",
    ]


async def test_at_info_no_fill_is_logged(
    store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="notifier")
    await _run(store, [(_fill("1", "0xb7c"), "live"), (_fill("2", "0x1a4"), "live")])
    assert [r for r in caplog.records if r.name == "notifier.fills"] == []
