"""Numbering equal fills: both paths give one fill one number, matched by status."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from notifier.digests import fill_from_data, fill_to_data
from notifier.events import Fill
from notifier.recurrence import MAX_OCCURRENCES, Recurrences

AT = datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC)
P, F = "PARTIALLY_FILLED", "FILLED"


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


def _page(known: Recurrences, *statuses: str | None) -> list[tuple[str | None, int]]:
    """A history page of equal fills (newest first), numbered: (status, occurrence) each."""
    return [
        (f.status, f.occurrence) for f in known.number_page([_fill(status=s) for s in statuses])
    ]


def test_a_repeated_live_identity_is_the_next_occurrence_in_any_spelling() -> None:
    """Equal live fills (however their decimals are spelled) are numbered 1, 2, 3 per identity."""
    known = Recurrences()
    fills = (_fill(), _fill(quantity="5.0"), _fill("8"), _fill())
    numbered = [known.number_live(f) for f in fills]
    assert [f.occurrence for f in numbered] == [1, 2, 1, 3]
    base = _fill().key
    assert [f.key for f in numbered] == [base, base + "#2", _fill("8").key, base + "#3"]


def test_the_first_occurrence_keeps_the_key_fills_always_had() -> None:
    """State files written before occurrences existed hold first occurrences only."""
    assert _fill().key == "7|2026-02-06T12:00:45.000000+00:00|5|0.65"


def test_history_numbers_partial_fills_first_whatever_order_it_lists_equal_times_in() -> None:
    """In a history page a partial fill is the first occurrence, whatever the listing order."""
    assert _page(Recurrences(), F, P) == [(F, 2), (P, 1)]
    assert _page(Recurrences(), P, F) == [(P, 1), (F, 2)]  # listed the other way: the same
    mixed = Recurrences().number_page([_fill(status=F), _fill("8"), _fill(status=P)])
    assert [(f.order_id, f.occurrence) for f in mixed] == [("7", 2), ("8", 1), ("7", 1)]


def test_history_finds_the_fill_the_feed_delivered_by_its_status() -> None:
    """The feed missed the partial fill and delivered the completing one: history's FILLED
    item is that live fill again, and its partial fill is the new occurrence."""
    known = Recurrences()
    assert known.number_live(_fill(status=F)).occurrence == 1
    assert _page(known, F, P) == [(F, 1), (P, 2)]
    assert _page(known, F, P) == [(F, 1), (P, 2)]  # a later read: the same numbers


def test_history_fits_a_live_fill_without_a_status_in_time_order() -> None:
    """The flat live shape has no status: it takes history's oldest fill of its identity."""
    known = Recurrences()
    known.number_live(_fill())
    assert _page(known, F, P) == [(F, 2), (P, 1)]


def test_a_copy_on_the_next_page_finds_its_number_again() -> None:
    """Offset paging showed an item on two pages; equal fills split over two pages of one
    read count as one (a page only knows its own count)."""
    known = Recurrences()
    assert _page(known, F) == [(F, 1)]
    assert _page(known, F) == [(F, 1)]
    assert _page(known, P) == [(P, 1)]
    assert _page(known, F, P) == [(F, 1), (P, 2)]  # one page with both: two


def test_a_live_frame_of_a_fill_history_listed_first_is_that_fill() -> None:
    """Fills made during the history read at connect: their live frames follow, the same
    fills; a further live fill of that identity is a new one."""
    known = Recurrences()
    assert _page(known, F, P) == [(F, 2), (P, 1)]
    assert known.number_live(_fill(status=P)).occurrence == 1
    assert known.number_live(_fill(status=F)).occurrence == 2
    assert known.number_live(_fill(status=P)).occurrence == 3


def test_a_live_fill_taken_for_a_listed_one_leaves_the_count_unsure() -> None:
    """A live fill that may be the one history listed leaves the count `unsure`."""
    known = Recurrences()
    known.number_live(_fill("1", status=P))
    known.number_live(_fill("1", status=P))  # a second equal fill: sure, a new one
    assert not known.unsure
    assert _page(known, P) == [(P, 1)]
    assert known.number_live(_fill(status=F)).occurrence == 1  # that listed fill, or after it?
    assert known.unsure


def test_a_status_that_differs_between_the_paths_never_makes_a_second_fill() -> None:
    """History's status may be the order's: one partial fill, PARTIALLY_FILLED live, may read
    FILLED there. Only counts make occurrences, on either path."""
    known = Recurrences()
    assert known.number_live(_fill(status=P)).occurrence == 1
    assert _page(known, F) == [(F, 1)]
    listed_first = Recurrences()
    assert _page(listed_first, F) == [(F, 1)]
    assert listed_first.number_live(_fill(status=P)).occurrence == 1  # its live frame
    assert listed_first.number_live(_fill(status=P)).occurrence == 2  # a new fill


def test_statuses_match_and_rank_in_any_case() -> None:
    """Statuses are compared and ranked (partial before filled) whatever their letter case."""
    known = Recurrences()
    assert known.number_live(_fill(status="filled")).occurrence == 1
    assert _page(known, "FILLED", "Partially_Filled") == [("FILLED", 1), ("Partially_Filled", 2)]
    assert _page(Recurrences(), "filled", "partially_filled") == [
        ("filled", 2),
        ("partially_filled", 1),
    ]


def test_a_frame_repeated_without_end_is_bounded() -> None:
    """A venue resending one frame in a loop: told apart up to MAX_OCCURRENCES, then taken
    for the last, so each frame costs a bounded look and memory stays bounded."""
    known = Recurrences()
    numbers = [known.number_live(_fill(status=P)).occurrence for _ in range(1000)]
    assert numbers[:MAX_OCCURRENCES] == list(range(1, MAX_OCCURRENCES + 1))
    assert set(numbers[MAX_OCCURRENCES:]) == {MAX_OCCURRENCES}
    page = known.number_page([_fill(status=P)] * 100)
    assert max(f.occurrence for f in page) == MAX_OCCURRENCES


def test_identities_are_remembered_for_two_generations_then_forgotten() -> None:
    """An identity's count is kept for two generations of new identities, then dropped."""
    known = Recurrences(generation=3)
    known.number_live(_fill("1"))
    for other in ("2", "3", "4"):  # the first generation fills up: "1" moves to the older
        known.number_live(_fill(other))
    assert known.number_live(_fill("1")).occurrence == 2  # still remembered
    for other in ("5", "6", "7", "8", "9"):
        known.number_live(_fill(other))
    assert known.number_live(_fill("2")).occurrence == 1  # two generations later: forgotten
    assert len(known) <= 6


def test_a_held_fill_keeps_its_occurrence_in_the_state_file() -> None:
    """A held fill's occurrence survives the state file's codec; a first one is not written."""
    second = dataclasses.replace(_fill(), occurrence=2)
    assert fill_from_data(fill_to_data(second)).key == second.key
    assert "occurrence" not in fill_to_data(_fill())  # rows as older notifiers wrote them
    assert fill_from_data(fill_to_data(_fill())).key == _fill().key


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_a_stored_occurrence_that_is_not_one_is_refused(bad: str) -> None:
    """A stored occurrence that is not a positive integer is refused with ValueError."""
    data = {**fill_to_data(_fill()), "occurrence": bad}
    with pytest.raises(ValueError, match=r"occurrence|invalid literal"):
        fill_from_data(data)
