"""Shaping in the pipeline: held fills, timed releases, restarts and reloads, on a real store."""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fakes import T0, DeskAndPhone, HandClock, OnlyPhone, settle, spin_until

from notifier import shaping_release
from notifier.config import parse
from notifier.digests import Bunch, make_release
from notifier.errors import StateBusyError
from notifier.events import Fill
from notifier.pipeline import Pipeline
from notifier.plan import plan_alerts
from notifier.release_render import render_release
from notifier.render import escape_for
from notifier.rules import Rule, RuleSet
from notifier.shaping_release import SHAPING_SAVE_EVERY
from notifier.shaping_state import StateChanges
from notifier.shaping_table import LEGACY_KEY
from notifier.store import OutboxItem, StateStore


def put_back(store: StateStore, entries: list[tuple[str, str, str, str]]) -> None:
    """The shaping table as it was when `entries` were read (as if killed before a save)."""
    store.shaping.save(StateChanges(replace=True, puts=entries))


def rules(text: str) -> RuleSet:
    config = "channels:\n  desk: json://localhost/d\n  phone: json://localhost/p\n"
    settings = parse(
        config + textwrap.dedent(text),
        source=Path("config.yaml"),
        env={"POLYSIM_API_KEY": "k"},
        check_url=lambda url: None,
    )
    return settings.rules


DIGEST = """\
rules:
  - name: digest
    notify: [desk]
    when: {market: "0xbtc"}
    group: {by: [market_id], wait: 30s}
    title: "{count} fills on {market_title}"
    body: "{total_quantity} @ avg {vwap:.4f}\\n{lines}"
    line: "{side} {quantity} @ {price}"
  - name: plain
    notify: [phone]
    when: {quantity: {min: 100}}
"""


def fill(
    order: str, price: str, quantity: str, market: str = "0xbtc", *, at: datetime = T0
) -> Fill:
    return Fill(
        order_id=order,
        market_id=market,
        side="BUY",
        outcome="Yes",
        price=Decimal(price),
        quantity=Decimal(quantity),
        filled_at=at,
        market_title="BTC 100k?",
    )


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.db") as opened:
        yield opened


def make(
    store: StateStore, clock: HandClock, text: str = DIGEST, targets: DeskAndPhone | None = None
) -> Pipeline:
    return Pipeline(
        rules=rules(text),
        targets=targets or DeskAndPhone(),
        store=store,
        titles=None,
        on_recorded=lambda _targets: None,
        clock=clock,
    )


async def feed(pipeline: Pipeline, *fills: Fill) -> None:
    """Submit fills and let the pipeline record them (its run ends at close)."""
    for f in fills:
        await pipeline.submit(f, "live")
    runner = asyncio.create_task(pipeline.run())
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)


def rows(store: StateStore, rule: str) -> list[OutboxItem]:
    return [r for r in store.outbox(state="pending") if r.rule == rule]


async def test_three_fills_in_the_wait_become_one_digest(
    store: StateStore, clock: HandClock
) -> None:
    """Three fills of one market within the wait: held, then one digest with count and VWAP."""
    pipeline = make(store, clock)
    await feed(pipeline, fill("1", "0.60", "10"))
    clock.advance(seconds=10)
    await feed(pipeline, fill("2", "0.70", "30"), fill("3", "0.65", "100"))
    assert rows(store, "digest") == []
    assert len(rows(store, "plain")) == 2  # the unshaped rule sends at once, as before
    assert all(store.seen(f.key) for f in (fill("1", "0.60", "10"), fill("3", "0.65", "100")))
    clock.advance(seconds=19)
    pipeline.release_due()
    assert rows(store, "digest") == []
    clock.advance(seconds=1)  # exactly opened + wait
    pipeline.release_due()
    (row,) = rows(store, "digest")
    assert row.title == "3 fills on BTC 100k?"
    assert row.body == "140 @ avg 0.6571\nBUY 10 @ 0.60\nBUY 30 @ 0.70\nBUY 100 @ 0.65"
    assert row.fill_key.startswith("digest:")
    assert pipeline.stats.released == 1


async def test_fill_exactly_at_wait_opens_the_next_digest(
    store: StateStore, clock: HandClock
) -> None:
    """A fill arriving exactly at opened + wait is not in the first digest but starts the next."""
    pipeline = make(store, clock)
    await feed(pipeline, fill("1", "0.60", "10"))
    clock.advance(seconds=30)
    await feed(pipeline, fill("2", "0.70", "20", at=clock.now))
    (first,) = rows(store, "digest")  # the due group went out when the next match came
    assert first.title == "1 fills on BTC 100k?"
    clock.advance(seconds=30)
    pipeline.release_due()
    assert [r.body.splitlines()[0] for r in rows(store, "digest")] == [
        "10 @ avg 0.6000",
        "20 @ avg 0.7000",
    ]


async def test_timer_task_releases_at_the_deadline(store: StateStore, clock: HandClock) -> None:
    """While run() is running, a tick after the clock passes the deadline records the digest."""
    woken: list[int] = []
    pipeline = Pipeline(
        rules=rules(DIGEST),
        targets=DeskAndPhone(),
        store=store,
        titles=None,
        on_recorded=lambda _targets: woken.append(1),
        clock=clock,
    )
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(fill("1", "0.60", "10"), "live")
    await spin_until(lambda: store.seen(fill("1", "0.60", "10").key))
    await settle(100)
    assert rows(store, "digest") == []
    clock.advance(seconds=31)
    pipeline.tick()
    await spin_until(lambda: bool(rows(store, "digest")))
    assert woken == [1]
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)


async def test_a_start_holds_releases_until_its_catch_up_is_recorded(
    store: StateStore, clock: HandClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With releases held (a start), a due group waits for `caught_up` and for the fills
    queued before it to be recorded; a catch-up that never comes holds it CATCH_UP_HOLD."""
    pipeline = make(store, clock)
    pipeline.hold_releases()
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(fill("1", "0.60", "10"), "live")
    await spin_until(lambda: store.seen(fill("1", "0.60", "10").key))
    clock.advance(seconds=31)
    pipeline.tick()
    await settle(100)
    assert rows(store, "digest") == []  # due, but the catch-up is not in
    await pipeline.submit(fill("2", "0.70", "20"), "backfill")
    pipeline.caught_up()
    await spin_until(lambda: bool(rows(store, "digest")))
    [digest] = rows(store, "digest")
    assert digest.title == "2 fills on BTC 100k?"  # the catch-up's fill, made before its time
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)

    monkeypatch.setattr(shaping_release, "CATCH_UP_HOLD", 0.05)
    again = make(store, clock)
    again.hold_releases()
    runner = asyncio.create_task(again.run())
    await again.submit(fill("3", "0.60", "10"), "live")
    await spin_until(lambda: store.seen(fill("3", "0.60", "10").key))
    clock.advance(seconds=31)
    again.tick()
    async with asyncio.timeout(5):  # no catch-up: after the hold, in real time
        while len(rows(store, "digest")) < 2:
            await asyncio.sleep(0.01)
    again.close()
    await asyncio.wait_for(runner, timeout=5)


async def test_a_wall_clock_stepped_back_does_not_hold_a_group_for_the_step(
    store: StateStore, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The wall clock steps back an hour while a 30 s group waits: the timer notices the
    deadline lies beyond the rule's wait, brings it to now + 30 s (saved), and the digest
    leaves 30 s later, not an hour and a half."""
    pipeline = make(store, clock)
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(fill("1", "0.60", "10"), "live")
    await spin_until(lambda: store.seen(fill("1", "0.60", "10").key))
    stepped = clock.now - timedelta(hours=1)
    clock.now = stepped
    pipeline.tick()
    await spin_until(lambda: pipeline.shaping.next_deadline() == stepped + timedelta(seconds=30))
    assert "1 shaping deadline(s) lay further off than their rule now allows" in caplog.text
    ((_, _, _, data),) = [e for e in store.shaping.entries() if e[1] == "group"]
    assert (stepped + timedelta(seconds=30)).isoformat() in data  # saved, for a restart too
    clock.advance(seconds=30)
    pipeline.tick()
    await spin_until(lambda: bool(rows(store, "digest")))
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)


BUSY = (
    DIGEST
    + """\
  - name: busy
    notify: [desk]
    when: {market: "0xeth"}
    group: {by: [order_id], wait: 40s}
"""
)


async def test_a_clock_stepped_back_is_noticed_while_another_rule_keeps_the_timer_busy(
    store: StateStore, clock: HandClock
) -> None:
    """The wall clock steps back an hour while a 30 s group waits, and another rule's groups
    keep a deadline under a minute away: the step is still noticed and the digest leaves
    30 s after it, not an hour later (pull_in ran only when the next deadline was far)."""
    pipeline = make(store, clock, BUSY)
    runner = asyncio.create_task(pipeline.run())
    await pipeline.submit(fill("1", "0.60", "10"), "live")
    await spin_until(lambda: store.seen(fill("1", "0.60", "10").key))
    await settle()  # the timer sleeps towards the digest's deadline, 30 s off
    clock.now -= timedelta(hours=1)
    for n in range(2, 12):  # a fill of the busy rule every 30 s: a deadline always near
        eth = fill(str(n), "0.50", "1", market="0xeth")
        await pipeline.submit(eth, "live")
        await spin_until(lambda: store.seen(eth.key))  # noqa: B023  # awaited in this turn
        await settle()
        clock.advance(seconds=30)
        pipeline.tick()
        await settle()
    assert len(rows(store, "busy")) == 9  # the timer kept up with them
    assert [r.title for r in rows(store, "digest")] == ["1 fills on BTC 100k?"]
    pipeline.close()
    await asyncio.wait_for(runner, timeout=5)


async def test_a_batch_past_the_store_s_limit_commits_records_with_their_state(
    tmp_path: Path, clock: HandClock
) -> None:
    """One shaped fill and more plain ones than the store's batch limit, and the shaping-state
    write fails (a full disk, or a kill at that instant): nothing of the batch is committed,
    so a restart has the backfill bring the shaped fill again. Before, the limit committed
    its record on its own, and it was seen, held nowhere, never sent."""
    path = tmp_path / "s.db"
    loop = asyncio.get_running_loop()
    store = StateStore(path, clock=clock, defer_commit=loop.call_soon, batch_limit=5)
    shaped = fill("1", "0.60", "10")
    plain = [fill(str(n), "0.50", "100", market="0xeth") for n in range(2, 14)]

    def full(changes: StateChanges) -> None:
        raise StateBusyError("state file s.db: write: database or disk is full")

    store.shaping.save = full  # type: ignore[method-assign]
    pipeline = make(store, clock)
    for each in (shaped, *plain):
        await pipeline.submit(each, "live")
    runner = asyncio.create_task(pipeline.run())
    with pytest.raises(StateBusyError):
        await asyncio.wait_for(runner, timeout=5)
    store._file.db.close()  # the process ends here: nothing more is committed
    with StateStore(path, clock=clock) as again:
        assert not again.seen(shaped.key)
        assert not any(again.seen(p.key) for p in plain)
        assert again.outbox() == []


async def test_restart_releases_held_alerts_on_time_and_once(
    tmp_path: Path, clock: HandClock
) -> None:
    """Held fills survive a restart (state file reopened): released at their deadline, once."""
    with StateStore(tmp_path / "s.db") as first:
        await feed(make(first, clock), fill("1", "0.60", "10"), fill("2", "0.70", "30"))
        assert first.shaping.entries() != []
    clock.advance(seconds=29)
    with StateStore(tmp_path / "s.db") as second:
        again = make(second, clock)
        again.release_due()
        assert rows(second, "digest") == []
        clock.advance(seconds=1)
        again.release_due()
        again.release_due()
        (row,) = rows(second, "digest")
        assert row.title == "2 fills on BTC 100k?"
    with StateStore(tmp_path / "s.db") as third:
        clock.advance(hours=1)
        make(third, clock).release_due()
        assert len(rows(third, "digest")) == 1


async def test_release_recorded_twice_is_queued_once(store: StateStore, clock: HandClock) -> None:
    """A release recorded again (as after a crash before its state was saved) is ignored."""
    pipeline = make(store, clock)
    await feed(pipeline, fill("1", "0.60", "10"))
    saved = store.shaping.entries()
    assert saved != []
    clock.advance(seconds=30)
    pipeline.release_due()
    assert store.shaping.entries() == []
    put_back(store, saved)  # the state as it was before the release
    make(store, clock).release_due()
    assert len(rows(store, "digest")) == 1


HOURS = """\
rules:
  - name: calm
    notify: [desk]
    active: {hours: "08:00-22:00", tz: Europe/London, outside: hold}
    title: "{count} held"
"""


async def test_hold_outside_hours_releases_across_midnight(store: StateStore) -> None:
    """Fills after 22:00 London are held over midnight and sent as one digest at 08:00."""
    clock = HandClock(datetime(2026, 2, 6, 22, 30, tzinfo=UTC))
    pipeline = make(store, clock, HOURS)
    await feed(pipeline, fill("1", "0.5", "1"))
    clock.now = datetime(2026, 2, 7, 0, 30, tzinfo=UTC)
    await feed(pipeline, fill("2", "0.5", "1"))
    assert pipeline.shaping.next_deadline() == datetime(2026, 2, 7, 8, 0, tzinfo=UTC)
    clock.now = datetime(2026, 2, 7, 7, 59, 59, tzinfo=UTC)
    pipeline.release_due()
    assert rows(store, "calm") == []
    clock.now = datetime(2026, 2, 7, 8, 0, tzinfo=UTC)
    pipeline.release_due()
    assert [r.title for r in rows(store, "calm")] == ["2 held"]


async def test_hold_window_opening_in_the_spring_forward_gap(store: StateStore) -> None:
    """A window starting at 01:30 London on the spring-forward day opens when clocks jump."""
    text = HOURS.replace("08:00-22:00", "01:30-06:00")
    clock = HandClock(datetime(2026, 3, 29, 0, 50, tzinfo=UTC))  # 00:50 GMT, before the jump
    pipeline = make(store, clock, text)
    await feed(pipeline, fill("1", "0.5", "1"))
    assert pipeline.shaping.next_deadline() == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    clock.now = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 02:00 BST
    pipeline.release_due()
    assert [r.title for r in rows(store, "calm")] == ["1 held"]


async def test_throttle_reports_suppressed_in_the_trailing_message(
    store: StateStore, clock: HandClock
) -> None:
    """The first alert goes at once; the rest of the period arrive as one, saying how many."""
    text = """\
    rules:
      - name: t
        notify: [desk]
        throttle: {by: [market_id], every: 10m}
        title: "{count} fills, {suppressed} suppressed"
    """
    pipeline = make(store, clock, text)
    await feed(pipeline, fill("1", "0.5", "1"))
    for n in range(2, 5):
        clock.advance(minutes=1)
        await feed(pipeline, fill(str(n), "0.5", "1"))
    assert [r.title for r in rows(store, "t")] == ["1 fills, 0 suppressed"]
    clock.advance(minutes=7)
    pipeline.release_due()
    assert [r.title for r in rows(store, "t")] == ["1 fills, 0 suppressed", "3 fills, 2 suppressed"]
    # The title says it: the body gets no note repeating it.
    assert not any("folded into this one" in r.body for r in rows(store, "t"))


async def test_a_digest_under_one_fill_templates_still_shows_every_fill(
    store: StateStore, clock: HandClock
) -> None:
    """A grouped rule whose title and body name one fill's fields (no {count}, no {lines}):
    the digest lists its other fills after the body, not the last one alone."""
    text = """\
    rules:
      - name: big
        notify: [desk]
        group: {by: [market_id], wait: 30s}
        title: "Large buy on {market_id}"
        body: "{side} {quantity} @ {price} #{order_id}"
      - name: counted
        notify: [desk]
        group: {by: [market_id], wait: 30s}
        title: "Large buy on {market_id}"
        body: "{count} fills, last #{order_id}"
    """
    pipeline = make(store, clock, text)
    await feed(pipeline, fill("1", "0.5", "10"), fill("2", "0.5", "20"), fill("3", "0.5", "30"))
    clock.advance(seconds=30)
    pipeline.release_due()
    [digest] = rows(store, "big")
    assert digest.title == "Large buy on 0xbtc"
    lines = digest.body.split("\n")
    assert lines[:2] == ["BUY 30 @ 0.5 #3", "(3 fills in this message:)"]
    assert len(lines) == 5
    for n, quantity in (("1", "10"), ("2", "20"), ("3", "30")):
        assert any(quantity in line and f"#{n}" in line for line in lines[2:]), lines
    # Templates that say how many (or list them) get no note.
    assert [r.body for r in rows(store, "counted")] == ["3 fills, last #3"]


async def test_throttled_message_says_what_it_folded_whatever_the_body(
    store: StateStore, clock: HandClock
) -> None:
    """A body without {suppressed} still gets a note of the messages the throttle held back."""
    text = """\
    rules:
      - name: t
        notify: [desk]
        throttle: {by: [market_id], every: 10m}
        body: "{count} fills"
    """
    pipeline = make(store, clock, text)
    await feed(pipeline, fill("1", "0.5", "1"))
    for n in range(2, 5):
        clock.advance(minutes=1)
        await feed(pipeline, fill(str(n), "0.5", "1"))
    clock.advance(minutes=7)
    pipeline.release_due()
    assert [r.body for r in rows(store, "t")] == [
        "1 fills",
        "3 fills\n(3 messages held back by the throttle, sent as one)",
    ]


async def test_a_throttle_s_one_held_back_alert_says_why_it_comes_late(
    store: StateStore, clock: HandClock
) -> None:
    """The one alert a throttle period held back comes at the period's end, minutes after its
    fill: it says the throttle held it back."""
    text = """\
    rules:
      - name: t
        notify: [desk]
        throttle: {by: [market_id], every: 10m}
        body: "{side} {quantity} #{order_id}"
    """
    pipeline = make(store, clock, text)
    await feed(pipeline, fill("1", "0.5", "1"))
    clock.advance(minutes=1)
    await feed(pipeline, fill("2", "0.5", "2"))
    clock.advance(minutes=9)
    pipeline.release_due()
    assert [r.body for r in rows(store, "t")] == [
        "BUY 1 #1",
        "BUY 2 #2\n(held back by the throttle)",
    ]


async def test_a_throttled_message_under_one_fill_templates_lists_its_fills_and_the_note(
    store: StateStore, clock: HandClock
) -> None:
    """A throttle's trailing message under templates for one fill lists every fill it kept
    and says what it folded: the note alone left the other fills unseen in any message."""
    text = """\
    rules:
      - name: calm
        notify: [desk]
        throttle: {by: [market_id], every: 10m}
        title: "{side} on {market_id}"
        body: "{side} {quantity} @ {price} #{order_id}"
    """
    pipeline = make(store, clock, text)
    await feed(pipeline, fill("1", "0.61", "10"))
    for n, quantity in (("2", "20"), ("3", "30")):
        clock.advance(minutes=1)
        await feed(pipeline, fill(n, "0.62", quantity))
    clock.advance(minutes=8)
    pipeline.release_due()
    first, trailing = (r.body for r in rows(store, "calm"))
    assert first == "BUY 10 @ 0.61 #1"
    lines = trailing.split("\n")
    assert lines[:2] == ["BUY 30 @ 0.62 #3", "(2 fills in this message:)"]
    assert any("20" in line and "#2" in line for line in lines[2:4]), lines
    assert any("30" in line and "#3" in line for line in lines[2:4]), lines
    assert lines[4:] == ["(2 messages held back by the throttle, sent as one)"]


async def test_reload_keeps_held_fills_of_surviving_rules(
    store: StateStore, clock: HandClock
) -> None:
    """swap(): a surviving rule keeps its group and deadline, and nothing is released early."""
    pipeline = make(store, clock)
    await feed(pipeline, fill("1", "0.60", "10"))
    pipeline.swap(rules=rules(DIGEST.replace("30s", "5m")), targets=DeskAndPhone())
    assert pipeline.shaping.next_deadline() == T0 + timedelta(seconds=30)
    assert rows(store, "digest") == []


async def test_a_rule_disabled_by_a_reload_still_sends_what_it_held_when_due(
    store: StateStore, clock: HandClock
) -> None:
    """`enabled: false` skips later fills, but the group the rule gathered goes out at its
    time, as the reload line says, not dropped; a fill after the reload joins nothing."""
    pipeline = make(store, clock)
    await feed(pipeline, fill("1", "0.60", "10"))
    disabled = DIGEST.replace("    notify: [desk]\n", "    notify: [desk]\n    enabled: false\n", 1)
    pipeline.swap(rules=rules(disabled), targets=DeskAndPhone())
    await feed(pipeline, fill("2", "0.70", "30"))
    clock.advance(seconds=30)
    pipeline.release_due()
    (row,) = rows(store, "digest")
    assert row.title == "1 fills on BTC 100k?"
    assert row.body == "10 @ avg 0.6000\nBUY 10 @ 0.60"


ORPHAN_BODY = (
    "2 fills on BTC 100k?: 40 @ avg 0.6750\nBUY 10 Yes @ 0.60 #1\nBUY 30 Yes @ 0.70 #2\n"
    "(held by rule 'digest', whose shaping is no longer configured)"
)


async def test_reload_removing_a_rule_sends_what_it_held(
    store: StateStore, clock: HandClock
) -> None:
    """A removed rule's open group goes out at once, default digest, to the channels it named."""
    pipeline = make(store, clock)
    await feed(pipeline, fill("1", "0.60", "10"), fill("2", "0.70", "30"))
    pipeline.swap(rules=rules("rules: []\n"), targets=DeskAndPhone())
    assert pipeline.shaping.next_deadline() is None
    (row,) = rows(store, "digest")
    assert (row.channel, row.target, row.title) == ("desk", "desk-1", "Fills on BTC 100k? (2)")
    assert row.body == ORPHAN_BODY
    assert make(store, clock).shaping.next_deadline() is None  # the stored state agrees
    assert len(rows(store, "digest")) == 1


async def test_a_removed_rule_s_one_held_fill_goes_out_as_one_fill(
    store: StateStore, clock: HandClock
) -> None:
    """What a removed rule held, when it is one fill: the plain default message with the
    note saying why it comes now, not "Fills on X (1)"."""
    pipeline = make(store, clock)
    await feed(pipeline, fill("1", "0.60", "10"))
    pipeline.swap(rules=rules("rules: []\n"), targets=DeskAndPhone())
    (row,) = rows(store, "digest")
    assert (row.title, row.body) == (
        "BUY Yes on BTC 100k?",
        "BUY 10 Yes @ 0.60 on BTC 100k? (order #1)\n"
        "(held by rule 'digest', whose shaping is no longer configured)",
    )


async def test_the_stored_state_follows_a_reload_that_moves_a_rule_to_another_channel(
    store: StateStore, clock: HandClock
) -> None:
    """The channels kept with held state are the current ones: a reload that moves a shaped
    rule from desk to phone, then a restart without the rule, sends its group to phone."""
    pipeline = make(store, clock)
    await feed(pipeline, fill("1", "0.60", "10"))
    moved = DIGEST.replace("notify: [desk]", "notify: [phone]", 1)
    pipeline.swap(rules=rules(moved), targets=DeskAndPhone())
    make(store, clock, "rules: []\n")
    released = rows(store, "digest")
    assert [(r.channel, r.target) for r in released] == [("phone", "phone-1"), ("phone", "phone-2")]


async def test_channels_moved_while_down_are_the_ones_kept_with_held_state(
    store: StateStore, clock: HandClock
) -> None:
    """Held for desk; restarted with the rule on phone and desk gone (a save follows);
    restarted again without the rule: the held group goes to phone, not lost with desk."""
    await feed(make(store, clock), fill("1", "0.60", "10"))
    moved = DIGEST.replace("notify: [desk]", "notify: [phone]", 1)
    second = Pipeline(
        rules=rules(moved),
        targets=OnlyPhone("phone-1"),
        store=store,
        titles=None,
        on_recorded=lambda _targets: None,
        clock=clock,
    )
    second.release_due()  # any save: nothing is due, the rule entries are written again
    third = Pipeline(
        rules=rules("rules: []\n"),
        targets=OnlyPhone("phone-1"),
        store=store,
        titles=None,
        on_recorded=lambda _targets: None,
        clock=clock,
    )
    assert third.shaping.lost == {}
    assert [(r.channel, r.target) for r in rows(store, "digest")] == [("phone", "phone-1")]


async def test_a_failed_state_save_rolls_its_batch_back(
    tmp_path: Path, clock: HandClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shaping state fails to save (a full disk at that statement, simulated): the
    batch's records of the held fills must not commit without it, or a restart would find
    them seen and held nowhere. The batch rolls back; backfill brings them again."""
    path = tmp_path / "s.db"
    calls: list[Callable[[], None]] = []
    with StateStore(path, defer_commit=calls.append) as store:

        def full(changes: StateChanges) -> None:
            raise StateBusyError(f"state file {path}: write shaping state: disk is full")

        monkeypatch.setattr(store.shaping, "save", full)
        with pytest.raises(StateBusyError, match="disk is full"):
            await feed(make(store, clock), fill("1", "0.60", "10"))
        for call in calls:
            call()  # the scheduled commit, as the loop would run it: nothing to commit
        with pytest.raises(StateBusyError, match="its batch rolled back"):
            store.record(fill_key="later", filled_at=T0, alerts=[])
    with StateStore(path) as again:
        assert not again.seen(fill("1", "0.60", "10").key)


def test_an_entry_with_an_impossible_number_is_dropped_not_fatal(
    store: StateStore, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    """`"dropped": 1e999` (a float infinity) raised OverflowError out of the start itself."""
    store.shaping.save(
        StateChanges(puts=[("digest", "rule", "[]", '{"dropped": 1e999, "held": null}')])
    )
    pipeline = make(store, clock)
    assert "shaping state of rule digest unreadable, dropped" in caplog.text
    pipeline.release_due()
    assert store.shaping.entries() == []


async def test_reload_making_a_rule_plain_sends_its_group_to_its_new_channels(
    store: StateStore, clock: HandClock
) -> None:
    """A rule left without group/throttle/active sends its held group now, to its new notify."""
    pipeline = make(store, clock)
    await feed(pipeline, fill("1", "0.60", "10"), fill("2", "0.70", "30"))
    plain = """\
    rules:
      - name: digest
        notify: [phone]
        when: {market: "0xbtc"}
    """
    pipeline.swap(rules=rules(plain), targets=DeskAndPhone())
    released = rows(store, "digest")
    assert [(r.channel, r.target) for r in released] == [("phone", "phone-1"), ("phone", "phone-2")]
    assert {r.body for r in released} == {ORPHAN_BODY}


async def test_restart_without_the_rule_sends_what_it_held_once(
    store: StateStore, clock: HandClock
) -> None:
    """Restarting on a config without a shaped rule sends its held fills once, even replayed."""
    pipeline = make(store, clock)
    await feed(pipeline, fill("1", "0.60", "10"), fill("2", "0.70", "30"))
    saved = store.shaping.entries()
    assert saved != []
    make(store, clock, "rules: []\n")
    (row,) = rows(store, "digest")
    assert (row.channel, row.body) == ("desk", ORPHAN_BODY)
    assert store.shaping.entries() == []
    put_back(store, saved)  # as if killed before the new state was written
    make(store, clock, "rules: []\n")
    assert len(rows(store, "digest")) == 1


async def test_reload_removing_rule_and_channel_warns_and_counts_the_loss(
    store: StateStore, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Rule and channel both gone: the only drop, logged with rule and count, and counted."""
    pipeline = make(store, clock)
    await feed(pipeline, fill("1", "0.60", "10"), fill("2", "0.70", "30"))
    pipeline.swap(rules=rules("rules: []\n"), targets=OnlyPhone("phone-1"))
    assert rows(store, "digest") == []
    assert "rule digest: 2 held fill(s) lost" in caplog.text
    assert pipeline.shaping.lost == {"digest": 2}
    assert pipeline.shaping.next_deadline() is None


def test_dry_run_renders_a_shaped_rule_as_a_one_fill_digest() -> None:
    """plan_alerts (the `test` command) shows a shaped rule's message for the fill alone."""
    planned = plan_alerts(fill("1", "0.60", "10"), rules=rules(DIGEST), targets=DeskAndPhone())
    (alert,) = planned.alerts
    assert (alert.title, alert.body) == ("1 fills on BTC 100k?", "10 @ avg 0.6000\nBUY 10 @ 0.60")
    deferred = plan_alerts(
        fill("1", "0.60", "10"), rules=rules(DIGEST), targets=DeskAndPhone(), defer_shaped=True
    )
    assert deferred.alerts == ()
    assert [r.name for r in deferred.shaped] == ["digest"]


def test_unreadable_snapshot_starts_empty_and_says_so(
    store: StateStore, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An older notifier's snapshot that cannot be read is logged; shaping starts empty."""
    store.set_meta(LEGACY_KEY, '{"version": 9}')
    pipeline = make(store, clock)
    assert pipeline.shaping.next_deadline() is None
    assert "shaping state unreadable" in caplog.text
    pipeline.release_due()  # the first save replaces it
    assert store.get_meta(LEGACY_KEY) is None


async def test_an_older_snapshot_is_read_then_replaced_by_entries(
    tmp_path: Path, clock: HandClock
) -> None:
    """A state file from before entries: its held group survives the upgrade, and the blob
    is replaced by rows at the first save (in one transaction)."""
    with StateStore(tmp_path / "s.db") as first:
        await feed(make(first, clock), fill("1", "0.60", "10"), fill("2", "0.70", "30"))
        [(_, _, _, data)] = [e for e in first.shaping.entries() if e[1] == "group"]
        [(_, _, _, own)] = [e for e in first.shaping.entries() if e[1] == "rule"]
        legacy = (
            '{"version":1,"rules":{"digest":{"groups":[{"key":["0xbtc"],'
            + data[1:]
            + '],"throttles":[],"held":null,"dropped":0}},"notify":{"digest":["desk"]}}'
        )
        assert '"notify":["desk"]' in own
        first.shaping.save(StateChanges(replace=True))
        first.set_meta(LEGACY_KEY, legacy)
    with StateStore(tmp_path / "s.db") as second:
        again = make(second, clock)
        assert again.shaping.next_deadline() == T0 + timedelta(seconds=30)
        again.release_due()  # nothing due yet; the blob becomes entries
        assert second.get_meta(LEGACY_KEY) is None
        assert [e[:3] for e in second.shaping.entries()] == [
            ("digest", "group", '["0xbtc"]'),
            ("digest", "rule", "[]"),
        ]
        clock.advance(seconds=30)
        again.release_due()
        (row,) = rows(second, "digest")
        assert row.title == "2 fills on BTC 100k?"
        assert second.shaping.entries() == []


async def test_an_unreadable_entry_is_dropped_and_said_the_rest_kept(
    store: StateStore, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    """One bad row loses what it held (logged), not the rest; it is deleted at the next save."""
    config = DIGEST.replace('    when: {market: "0xbtc"}\n', "", 1)
    await feed(make(store, clock, config), fill("1", "0.6", "10"), fill("2", "0.7", "3", "0xeth"))
    entries = store.shaping.entries()
    bad = next(e for e in entries if e[1] == "group" and "0xeth" in e[2])
    put_back(store, [e for e in entries if e != bad] + [(*bad[:3], '{"due": "soon"}')])
    pipeline = make(store, clock, config)
    assert "shaping state of rule digest unreadable, dropped" in caplog.text
    assert pipeline.shaping.stats()["digest"]["grouped"] == 1
    pipeline.release_due()
    assert bad[:3] not in [e[:3] for e in store.shaping.entries()]
    clock.advance(seconds=30)
    pipeline.release_due()
    (row,) = rows(store, "digest")
    assert row.title == "1 fills on BTC 100k?"


def test_a_digest_lists_the_first_fills_and_counts_the_rest() -> None:
    """25 fills in one digest: 20 lines, then a line saying how many more; figures over all."""
    rule = next(r for r in rules(DIGEST).rules if r.name == "digest")
    fills = [fill(str(n), "0.60", "10") for n in range(1, 26)]
    release = make_release("digest", ("0xbtc",), Bunch.of(*fills), 0, "group")
    title, body = render_release(rule, release, None)
    assert title == "25 fills on BTC 100k?"
    assert body.splitlines() == ["250 @ avg 0.6000", *["BUY 10 @ 0.60"] * 20, "… and 5 more"]


def test_html_messages_escape_the_venue_s_text_in_plain_and_digest_rules() -> None:
    """A channel whose format is html: a title with "<" reaches the service as text, in a
    plain rule's message and in each line and field of a digest; the templates' tags stay."""
    config = DIGEST.replace('title: "{count} fills', 'title: "<b>{count}</b> fills', 1)
    html_rules = rules(config + '    title: "<b>{market_title}</b>"\n')
    odd = dataclasses.replace(fill("1", "0.60", "150"), market_title="BTC < 100k?")
    planned = plan_alerts(odd, rules=html_rules, targets=DeskAndPhone(phone="html"))
    plain = next(a for a in planned.alerts if a.rule == "plain")
    assert plain.title == "<b>BTC &lt; 100k?</b>"
    digest = next(r for r in html_rules.rules if r.name == "digest")
    release = make_release("digest", (), Bunch.of(odd), 0, "group")
    title, body = render_release(digest, release, escape_for("html"))
    assert title == "<b>1</b> fills on BTC &lt; 100k?"
    assert "BUY 150 @ 0.60" in body


async def test_each_channel_gets_the_message_in_its_own_format(
    store: StateStore, clock: HandClock
) -> None:
    """One rule, a channel in html and one in text: the html channel's copy has the venue's
    "<" escaped and the digest's lines ended with <br>, the text channel's has them as sent;
    phone's two URLs get the same text."""
    config = """\
rules:
  - name: both
    notify: [desk, phone]
    group: {by: [market_id], wait: 30s}
  - name: plain
    notify: [desk, phone]
    when: {quantity: {min: 100}}
"""
    pipeline = make(store, clock, config, DeskAndPhone(desk="html"))
    odd = [
        dataclasses.replace(fill(n, p, q), market_title="BTC < 100k?")
        for n, p, q in (("1", "0.60", "10"), ("2", "0.70", "300"))
    ]
    await feed(pipeline, *odd)
    clock.advance(seconds=30)
    pipeline.release_due()
    plain = {row.target: row.body for row in rows(store, "plain")}
    assert plain == {
        "desk-1": "BUY 300 Yes @ 0.70 on BTC &lt; 100k? (order #2)",
        "phone-1": "BUY 300 Yes @ 0.70 on BTC < 100k? (order #2)",
        "phone-2": "BUY 300 Yes @ 0.70 on BTC < 100k? (order #2)",
    }
    digest = {row.target: (row.title, row.body) for row in rows(store, "both")}
    assert digest["desk-1"] == (
        "Fills on BTC &lt; 100k? (2)",
        "2 fills on BTC &lt; 100k?: 310 @ avg 0.6968<br>BUY 10 Yes @ 0.60 #1"
        "<br>BUY 300 Yes @ 0.70 #2",
    )
    assert (
        digest["phone-1"]
        == digest["phone-2"]
        == (
            "Fills on BTC < 100k? (2)",
            "2 fills on BTC < 100k?: 310 @ avg 0.6968\nBUY 10 Yes @ 0.60 #1\nBUY 300 Yes @ 0.70 #2",
        )
    )


def test_a_digest_lists_its_fills_in_the_order_they_were_filled() -> None:
    """A held digest merges what came in arrival order (a backfilled fill after later ones,
    a throttle's kept fills after the night's): its lines follow the fills' own times."""
    (rule,) = rules(
        "rules:\n  - {name: d, notify: [desk], group: {wait: 30s}, line: '{order_id}'}\n"
    ).rules
    late, early = fill("2", "0.60", "10"), fill("1", "0.70", "10")
    early = dataclasses.replace(early, filled_at=late.filled_at - timedelta(minutes=5))
    release = make_release("d", (), Bunch.of(late, early), 0, "group")
    _, body = render_release(rule, release, None)
    assert body.splitlines()[1:] == ["1", "2"]


HTML_DIGEST = """\
rules:
  - name: digest
    notify: [desk]
    group: {by: [market_id], wait: 30s}
    throttle: {by: [market_id], every: 5m}
"""


async def test_html_digests_end_their_lines_with_br(store: StateStore, clock: HandClock) -> None:
    """In HTML a newline is a space: a digest's lines and its notes end with <br>, or every
    service that converts HTML (Slack, ntfy, Discord, an HTML mail) runs them into one line."""
    pipeline = make(store, clock, HTML_DIGEST, DeskAndPhone(desk="html"))
    odd = dataclasses.replace(fill("1", "0.60", "10"), market_title="BTC < 100k?")
    await feed(pipeline, odd)
    clock.advance(seconds=30)
    pipeline.release_due()  # the first group: sent, and opens the throttle period
    for n in (2, 3):
        await feed(pipeline, fill(str(n), "0.70", "30"))
        clock.advance(seconds=30)
        pipeline.release_due()  # a group each: held by the throttle
    clock.advance(minutes=4)
    pipeline.release_due()  # the period ends: one message of both groups
    assert [r.body for r in rows(store, "digest")] == [
        "BUY 10 Yes @ 0.60 on BTC &lt; 100k? (order #1)",  # one fill: the plain default
        "2 fills on BTC 100k?: 60 @ avg 0.7000<br>BUY 30 Yes @ 0.70 #2<br>BUY 30 Yes @ 0.70 #3"
        "<br>(2 messages held back by the throttle, sent as one)",
    ]


async def test_a_day_s_fills_go_out_as_one_summary_at_its_time_even_across_a_restart(
    store: StateStore, clock: HandClock
) -> None:
    """`group: {at: "17:00"}` in London: the day's fills are one message at 17:00 (winter:
    17:00 UTC), not before; a pipeline restarted from the state file in between keeps them."""
    config = """\
rules:
  - name: day
    notify: [desk]
    tz: Europe/London
    group: {at: "17:00"}
"""
    await feed(make(store, clock, config), fill("1", "0.60", "10"))  # at 12:00
    clock.advance(hours=3)
    await feed(make(store, clock, config), fill("2", "0.70", "30"))  # restarted: 15:00
    restarted = make(store, clock, config)
    clock.advance(hours=2, seconds=-1)
    restarted.release_due()
    assert rows(store, "day") == []
    clock.advance(seconds=1)
    restarted.release_due()
    (summary,) = rows(store, "day")
    assert summary.title == "Fills on BTC 100k? (2)"
    assert summary.body.splitlines()[1:] == ["BUY 10 Yes @ 0.60 #1", "BUY 30 Yes @ 0.70 #2"]


ZONED_DIGEST = """rules:
  - name: digest
    notify: [desk]
    tz: Europe/London
    group: {by: [market_id], wait: 30s}
    title: "{count} fills from {first_filled_at:%H:%M:%S %Z}"
    line: "{order_id} at {filled_at:%H:%M:%S}"
"""


async def test_a_rule_s_zone_shows_a_digest_s_times_and_lines_there(
    store: StateStore, clock: HandClock
) -> None:
    """A shaped rule's `tz:` applies to its digest figures (first/last time) and to each
    line's `filled_at`, as to a plain rule's message."""
    clock.now = clock.now.replace(month=7, hour=12, minute=0, second=0, microsecond=0)
    pipeline = make(store, clock, ZONED_DIGEST)
    july = clock.now
    await feed(
        pipeline,
        dataclasses.replace(fill("1", "0.60", "10"), filled_at=july),
        dataclasses.replace(fill("2", "0.70", "20"), filled_at=july + timedelta(seconds=5)),
    )
    clock.advance(seconds=30)
    pipeline.release_due()
    (row,) = rows(store, "digest")
    assert row.title == "2 fills from 13:00:00 BST"
    assert row.body.splitlines()[-2:] == ["1 at 13:00:00", "2 at 13:00:05"]


PER_FILL_BODY = """rules:
  - name: digest
    notify: [desk]
    throttle: {by: [market_id], every: 2m}
    body: "{side} {quantity} {outcome} @ {price} notional {notional}"
"""


async def test_a_body_written_for_one_fill_gets_every_fill_listed_under_the_default_title(
    store: StateStore, clock: HandClock
) -> None:
    """A throttled rule with a one-fill body and the default title: the title's "({count})"
    stopped the list of fills being added, so the message showed its last fill alone (that
    fill's notional, not the sum), the other fill nowhere. The body decides."""
    pipeline = make(store, clock, PER_FILL_BODY)
    await feed(pipeline, fill("1", "0.60", "10"))  # opens the period: sent at once
    await feed(pipeline, fill("2", "0.70", "20"), fill("3", "0.50", "30"))  # kept back
    clock.advance(minutes=3)
    pipeline.release_due()
    assert [(r.title, r.body) for r in rows(store, "digest")] == [
        ("BUY Yes on BTC 100k?", "BUY 10 Yes @ 0.60 notional 6.00"),
        (
            "Fills on BTC 100k? (2)",
            "BUY 30 Yes @ 0.50 notional 15.00\n(2 fills in this message:)\n"
            "BUY 20 Yes @ 0.70 #2\nBUY 30 Yes @ 0.50 #3\n"
            "(2 messages held back by the throttle, sent as one)",
        ),
    ]


QUIET_HOURS = """rules:
  - name: digest
    notify: [desk]
    active: {hours: "08:00-22:00", tz: UTC, outside: hold}
"""


async def test_one_fill_looks_like_one_fill_whatever_the_rule_s_shaping(
    store: StateStore, clock: HandClock
) -> None:
    """A rule with quiet hours (and no templates of its own) sent each daytime fill as a
    digest of one, "Fills on X (1)" / "1 fills on X: ...", and so did a throttle's first
    message: a message of one fill now takes the plain default templates, and only a message
    of several the digest ones."""
    clock.now = clock.now.replace(hour=21, minute=59, second=0, microsecond=0)
    pipeline = make(store, clock, QUIET_HOURS)
    await feed(pipeline, fill("1", "0.60", "10", at=clock.now))  # daytime: at once
    clock.advance(minutes=2)
    await feed(pipeline, fill("2", "0.70", "20", at=clock.now))  # the night holds these two
    clock.advance(hours=3)
    await feed(pipeline, fill("3", "0.70", "30", at=clock.now))
    clock.advance(hours=7)
    pipeline.release_due()  # 08:01: what the night held, in one message, saying so
    assert [(r.title, r.body) for r in rows(store, "digest")] == [
        ("BUY Yes on BTC 100k?", "BUY 10 Yes @ 0.60 on BTC 100k? (order #1)"),
        (
            "Fills on BTC 100k? (2)",
            "2 fills on BTC 100k?: 50 @ avg 0.7000\nBUY 20 Yes @ 0.70 #2\nBUY 30 Yes @ 0.70 #3"
            "\n(held outside active hours: made 2026-02-06 22:01 to 2026-02-07 01:01 UTC)",
        ),
    ]


async def test_an_html_digest_of_a_removed_rule_is_escaped_too(
    store: StateStore, clock: HandClock
) -> None:
    """What a rule held goes out when the rule goes: in its channel's format, like any digest,
    its venue text escaped and its lines ended with <br> (there is no rule left to ask)."""
    pipeline = make(store, clock, HTML_DIGEST, DeskAndPhone(desk="html"))
    odd = [
        dataclasses.replace(fill(n, p, q), market_title="BTC < $100k & <b>?")
        for n, p, q in (("1", "0.60", "10"), ("2", "0.70", "30"))
    ]
    await feed(pipeline, *odd)
    pipeline.swap(rules=rules("rules: []\n"), targets=DeskAndPhone(desk="html"))
    (row,) = rows(store, "digest")
    assert row.title == "Fills on BTC &lt; $100k &amp; &lt;b&gt;? (2)"
    assert row.body == (
        "2 fills on BTC &lt; $100k &amp; &lt;b&gt;?: 40 @ avg 0.6750<br>BUY 10 Yes @ 0.60 #1"
        "<br>BUY 30 Yes @ 0.70 #2<br>"
        "(held by rule &#x27;digest&#x27;, whose shaping is no longer configured)"
    )


def test_a_digest_of_different_markets_or_sides_has_no_sums_and_names_each_market() -> None:
    """The default digest of fills on two markets (what quiet hours hold overnight) sums
    nothing across them and each line names its market; of one market but both sides, no
    sums either, lines as usual; a body or line the rule wrote is kept as written."""

    def calm_rule(keys: str = "") -> Rule:
        """The quiet-hours rule `calm`, with `keys` (", body: ...") added to it."""
        calm = f"name: calm, notify: [desk], active: {{hours: '08:00-09:00'}}{keys}"
        return rules(f"rules:\n  - {{{calm}}}\n").rules[0]

    calm = calm_rule()
    eth = dataclasses.replace(fill("2", "0.30", "50", market="0xeth"), market_title="ETH 5k?")
    release = make_release("calm", (), Bunch.of(fill("1", "0.60", "10"), eth), 0, "held")
    held_note = "\n(held outside active hours: made 2026-02-06 12:00 UTC)"
    assert render_release(calm, release, None) == (
        "Fills on 2 markets (2)",
        "2 fills on 2 markets\nBUY 10 Yes @ 0.60 on BTC 100k? #1\nBUY 50 Yes @ 0.30 on ETH 5k? #2"
        + held_note,
    )
    sold = dataclasses.replace(fill("2", "0.30", "50"), side="SELL")
    both = make_release("calm", (), Bunch.of(fill("1", "0.60", "10"), sold), 0, "held")
    assert render_release(calm, both, None)[1] == (
        "2 fills on BTC 100k?\nBUY 10 Yes @ 0.60 #1\nSELL 50 Yes @ 0.30 #2" + held_note
    )
    written = calm_rule(", body: '{total_quantity} in all', line: '{side} {quantity}'")
    assert render_release(written, release, None) == (
        "Fills on 2 markets (2)",
        "60 in all" + held_note,
    )
    lines = calm_rule(", line: '{side} {quantity}'")
    assert render_release(lines, release, None)[1] == (
        "2 fills on 2 markets\nBUY 10\nBUY 50" + held_note
    )
    since = calm_rule(", body: 'since {first_filled_at:%H:%M}: {count}'")
    assert render_release(since, release, None)[1] == "since 12:00: 2"  # its own times


THREE = """\
rules:
  - name: s1
    notify: [desk]
    group: {by: [market_id], wait: 30s}
    title: "{count}"
  - name: s2
    notify: [desk]
    group: {by: [market_id], wait: 30s}
    title: "{count}"
  - name: s3
    notify: [desk]
    group: {by: [market_id], wait: 30s}
    title: "{count}"
"""


async def test_a_long_batch_saves_between_fills_never_between_one_fills_rules(
    tmp_path: Path,
) -> None:
    """70 fills, each matching three grouped rules, in one batch: the save on the way (after
    200 offers) waits until fill 67 is with all three rules, since it commits the fill's
    record. Killed right after it, the restart's backfill finds fill 67 seen, and every rule
    still accounts for all 70 fills (saving after s2 had lost it for s3)."""
    assert SHAPING_SAVE_EVERY == 200
    clock = HandClock()
    path = tmp_path / "s.db"
    loop = asyncio.get_running_loop()
    store = StateStore(path, clock=clock, defer_commit=loop.call_soon)
    real_save = store.shaping.save
    saves = 0

    def save_then_die(changes: StateChanges) -> None:
        nonlocal saves
        saves += 1
        if saves > 1:  # the process is killed right after the first (mid-batch) commit
            raise StateBusyError("state file s.db: killed")
        real_save(changes)

    store.shaping.save = save_then_die  # type: ignore[method-assign]
    fills = [fill(str(n), "0.50", "10") for n in range(1, 71)]
    pipeline = make(store, clock, THREE)
    for each in fills:
        await pipeline.submit(each, "live")
    runner = asyncio.create_task(pipeline.run())
    with pytest.raises(StateBusyError):
        await asyncio.wait_for(runner, timeout=5)
    store._file.db.close()  # kill -9: nothing more is committed

    # Restart: the backfill brings every fill again; the groups are released.
    with StateStore(path, clock=clock) as again:
        restarted = make(again, clock, THREE)
        for each in fills:
            await restarted.submit(each, "backfill")
        runner = asyncio.create_task(restarted.run())
        restarted.close()
        await asyncio.wait_for(runner, timeout=5)
        clock.advance(seconds=60)
        restarted.release_due()
        counts = {rule: sum(int(r.title) for r in rows(again, rule)) for rule in ("s1", "s2", "s3")}
    assert counts == {"s1": 70, "s2": 70, "s3": 70}


def test_a_held_digest_across_a_clock_change_shows_each_end_in_its_own_time() -> None:
    """Held over the night the clocks go forward (London, 29 March 2026): 00:30 is GMT and
    05:00 UTC is 06:00 BST, each said so."""
    calm = rules(
        "rules:\n  - {name: calm, notify: [desk], tz: Europe/London,"
        " active: {hours: '08:00-09:00', tz: Europe/London}}\n"
    ).rules[0]
    night = [
        fill("1", "0.60", "10", at=datetime(2026, 3, 29, 0, 30, tzinfo=UTC)),
        fill("2", "0.60", "10", at=datetime(2026, 3, 29, 5, 0, tzinfo=UTC)),
    ]
    release = make_release("calm", (), Bunch.of(*night), 0, "held")
    _, body = render_release(calm, release, None)  # in the rule's tz
    assert body.endswith("(held outside active hours: made 2026-03-29 00:30 GMT to 06:00 BST)")
