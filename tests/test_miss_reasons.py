"""Why a fill misses a rule, in words: each kind of condition's first failing test."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

from notifier.conditions import AllOf, AnyOf, Bounds, FieldMatch, Not
from notifier.events import Fill
from notifier.miss_reasons import why_not

FILL = Fill(
    order_id="42",
    market_id="0xabc1",
    side="BUY",
    outcome="No",
    price=Decimal("0.40"),
    quantity=Decimal(150),
    filled_at=datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC),
)


def test_bounds_name_the_end_that_fails_in_plain_digits() -> None:
    """min, max, above and below each say the fill's value and the bound, never "6E+1"."""
    assert why_not(Bounds("price", min=Decimal("0.5")), FILL) == "price 0.40 is below its min 0.5"
    assert why_not(Bounds("quantity", max=Decimal(100)), FILL) == (
        "quantity 150 is over its max 100"
    )
    assert why_not(Bounds("notional", above=Decimal(60)), FILL) == (
        "notional 60.00 is not above 60"
    )
    assert why_not(Bounds("price", below=Decimal("0.4")), FILL) == "price 0.40 is not below 0.4"


def test_fields_name_the_value_and_what_was_wanted_or_that_it_is_absent() -> None:
    """A value not among the patterns is shown with them (counted past three); a field the
    fill lacks says why it may be absent."""
    assert why_not(FieldMatch("market", ("0xdef*",)), FILL) == "market is '0xabc1', not '0xdef*'"
    many = FieldMatch("outcome", ("Yes", "Up", "Down", "Over"))
    assert why_not(many, FILL) == "outcome is 'No', not any of its 4 values"
    assert why_not(FieldMatch("status", ("FILLED",)), FILL) == (
        "status is absent (the feed's flat `fill` shape sends none)"
    )
    assert why_not(FieldMatch("client_order_id", ("bot-*",)), FILL).startswith(
        "client_order_id is absent"
    )


def test_all_any_and_not_follow_the_condition() -> None:
    """An `all` gives its first failing part; an `any` each part (three at most); a `not`
    what holds that it excludes."""
    both = AllOf((FieldMatch("side", ("BUY",)), Bounds("quantity", min=Decimal(1000))))
    assert why_not(both, FILL) == "quantity 150 is below its min 1000"
    parts = tuple(Bounds("quantity", min=Decimal(n)) for n in (200, 300, 400, 500))
    assert why_not(AnyOf(parts), FILL) == (
        "no part of its `any` holds: quantity 150 is below its min 200; quantity 150 is below "
        "its min 300; quantity 150 is below its min 400; and 1 more"
    )
    assert why_not(Not(FieldMatch("side", ("BUY",))), FILL) == (
        "its `not` excludes it: side is 'BUY'"
    )
    assert why_not(Not(Bounds("price", max=Decimal(1))), FILL) == (
        "its `not` excludes it: price is 0.40"
    )


def test_an_all_names_a_part_the_fill_decides_before_one_missing_its_title() -> None:
    """A fill given without its title, against `market_title` and `side` tests: the side it
    fails is the reason (no title could change it); the title alone, when nothing else fails,
    says `run` looks it up (not a note that may not be printed)."""
    titled_sell = AllOf(
        (FieldMatch("market_title", ("*election*",)), FieldMatch("side", ("SELL",)))
    )
    assert why_not(titled_sell, FILL) == "side is 'BUY', not 'SELL'"
    titled_buy = AllOf((FieldMatch("market_title", ("*election*",)), FieldMatch("side", ("BUY",))))
    assert why_not(titled_buy, FILL) == (
        "market_title is unknown here (the fill gives none; `run` looks it up)"
    )


def test_a_notional_is_shown_as_templates_show_it() -> None:
    """price x quantity keeps every place of both ("13.5000"); the reason shows 13.50."""
    fill = dataclasses.replace(FILL, price=Decimal("0.450"), quantity=Decimal("30.0"))
    assert why_not(Bounds("notional", above=Decimal(100)), fill) == (
        "notional 13.50 is not above 100"
    )
    assert why_not(Not(Bounds("notional", min=Decimal(10))), fill) == (
        "its `not` excludes it: notional is 13.50"
    )


def test_a_title_test_nested_in_an_any_comes_after_a_part_the_fill_decides() -> None:
    """`all: [any: [title A, title B], price max 0.30]` against an untitled fill at 0.40: the
    price decides, not the titles a look-up could still match."""
    titles = AnyOf((FieldMatch("market_title", ("*A*",)), FieldMatch("market_title", ("*B*",))))
    rule = AllOf((titles, Bounds("price", max=Decimal("0.30"))))
    assert why_not(rule, FILL) == "price 0.40 is over its max 0.30"
