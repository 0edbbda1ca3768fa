"""The dry run's shaping simulation: the shaped rules over given fills, by the fills' times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from test_shaping_stage import rules

from notifier.events import Fill
from notifier.release_render import render_release
from notifier.shaping_preview import Simulation, simulate

T0 = datetime(2026, 2, 6, 12, 0, tzinfo=UTC)


def fill(order: int, seconds: float, market: str = "0xbtc", quantity: str = "10") -> Fill:
    return Fill(
        order_id=str(order),
        market_id=market,
        side="BUY",
        outcome="Yes",
        price=Decimal("0.5"),
        quantity=Decimal(quantity),
        filled_at=T0 + timedelta(seconds=seconds),
    )


def timeline(simulation: Simulation) -> list[tuple[float, str, int]]:
    """(seconds after T0, rule, fills) of each message."""
    return [
        ((m.at - T0).total_seconds(), m.rule.name, m.release.count) for m in simulation.messages
    ]


GROUP = """\
rules:
  - name: digest
    notify: [desk]
    group: {by: [market_id], wait: 30s}
"""


def test_a_group_collects_what_fills_within_its_wait_and_sends_at_its_end() -> None:
    """Fills at 0, 10 and 29 s go out as one message at 30 s; one at 31 s starts the next,
    sent at 61 s: the clock is the fills' own, however they were listed."""
    given = [fill(4, 31), fill(1, 0), fill(3, 29), fill(2, 10)]  # history lists newest first
    assert timeline(simulate(rules(GROUP), given)) == [(30, "digest", 3), (61, "digest", 1)]


def test_groups_by_market_go_out_apart() -> None:
    """Two markets' fills in one window: two messages, each at its own group's end."""
    given = [fill(1, 0, "0xa"), fill(2, 5, "0xb"), fill(3, 6, "0xa")]
    simulation = simulate(rules(GROUP), given)
    assert timeline(simulation) == [(30, "digest", 2), (35, "digest", 1)]
    first = simulation.messages[0]
    title, _ = render_release(first.rule, first.release, None)
    assert title == "Fills on 0xa (2)"


def test_a_throttle_sends_the_first_at_once_and_folds_the_rest_at_the_period_s_end() -> None:
    """every: 10m: the first fill at once; the next two in the period as one at 10 min."""
    throttled = """\
    rules:
      - name: calm
        notify: [desk]
        throttle: {by: [market_id], every: 10m}
    """
    given = [fill(1, 0), fill(2, 60), fill(3, 120)]
    simulation = simulate(rules(throttled), given)
    assert timeline(simulation) == [(0, "calm", 1), (600, "calm", 2)]
    assert simulation.messages[1].release.suppressed == 1


def test_quiet_hours_hold_until_the_window_opens_or_drop() -> None:
    """Outside 13:00-14:00 UTC: `hold` sends the morning's fills as one at 13:00; `drop`
    counts them and sends nothing."""
    held = """\
    rules:
      - name: quiet
        notify: [desk]
        active: {hours: "13:00-14:00", outside: hold}
    """
    given = [fill(1, 0), fill(2, 600)]
    assert timeline(simulate(rules(held), given)) == [(3600, "quiet", 2)]
    dropping = simulate(rules(held.replace("hold", "drop")), given)
    assert dropping.messages == []
    assert dropping.dropped == {"quiet": 2}


def test_plain_rules_and_fills_no_rule_takes_give_nothing_to_show() -> None:
    """Without shaped rules, or with none matching, the simulation is empty."""
    plain = "rules:\n  - {name: all, notify: [desk]}\n"
    assert simulate(rules(plain), [fill(1, 0)]) == Simulation()
    other = GROUP.replace("notify: [desk]", "notify: [desk]\n    when: {market: '0xeth'}")
    assert simulate(rules(other), [fill(1, 0)]) == Simulation()
    assert simulate(rules(GROUP), []) == Simulation()
