"""Numbering equal fills: live repeats are new occurrences, history counts within a page."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from notifier.digests import fill_from_data, fill_to_data
from notifier.events import Fill
from notifier.recurrence import LiveRecurrences, number_page

AT = datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC)


def _fill(order_id: str = "7", quantity: str = "5", status: str | None = None) -> Fill:
    return Fill(
        order_id=order_id,
        market_id="0xabc",
        side="BUY",
        outcome="Yes",
        price=Decimal("0.65"),
        quantity=Decimal(quantity),
        filled_at=AT,
        status=status,
    )


def test_a_repeated_live_identity_is_the_next_occurrence_in_any_spelling() -> None:
    live = LiveRecurrences()
    numbered = [live.number(f) for f in (_fill(), _fill(quantity="5.0"), _fill("8"), _fill())]
    assert [f.occurrence for f in numbered] == [1, 2, 1, 3]
    base = _fill().key
    assert [f.key for f in numbered] == [base, base + "#2", _fill("8").key, base + "#3"]
    assert numbered[0] is not numbered[3]


def test_the_first_occurrence_keeps_the_key_fills_always_had() -> None:
    """State files written before occurrences existed hold first occurrences only."""
    assert _fill().key == "7|2026-02-06T12:00:45.000000+00:00|5|0.65"


def test_live_counts_are_kept_for_two_generations_and_then_forgotten() -> None:
    live = LiveRecurrences(generation=3)
    live.number(_fill("1"))
    for other in ("2", "3", "4"):  # the first generation fills up: "1" moves to the older
        live.number(_fill(other))
    assert live.number(_fill("1")).occurrence == 2  # still remembered
    for other in ("5", "6", "7", "8", "9"):
        live.number(_fill(other))
    assert live.number(_fill("2")).occurrence == 1  # two generations later: forgotten
    assert len(live) <= 6


def test_a_history_page_is_numbered_oldest_first_and_keeps_its_order() -> None:
    """Newest first on the wire: the older partial fill is the first occurrence, as live."""
    page = [_fill(status="FILLED"), _fill("8"), _fill(status="PARTIALLY_FILLED")]
    numbered = number_page(page)
    assert [(f.order_id, f.status, f.occurrence) for f in numbered] == [
        ("7", "FILLED", 2),
        ("8", None, 1),
        ("7", "PARTIALLY_FILLED", 1),
    ]
    assert number_page([]) == []


def test_a_held_fill_keeps_its_occurrence_in_the_state_file() -> None:
    second = dataclasses.replace(_fill(), occurrence=2)
    assert fill_from_data(fill_to_data(second)).key == second.key
    assert "occurrence" not in fill_to_data(_fill())  # rows as older notifiers wrote them
    assert fill_from_data(fill_to_data(_fill())).key == _fill().key


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_a_stored_occurrence_that_is_not_one_is_refused(bad: str) -> None:
    data = {**fill_to_data(_fill()), "occurrence": bad}
    with pytest.raises(ValueError, match=r"occurrence|invalid literal"):
        fill_from_data(data)
