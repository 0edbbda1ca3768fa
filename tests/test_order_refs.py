"""Order-list answers as the look-up reads them, and the bounded memory behind it.

The venue over real sockets is in test_feed.py; here each answer is handed in directly, to
cover the malformed and boundary forms the fake venue never sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from notifier.errors import TransientFeedError
from notifier.events import Fill
from notifier.order_refs import ClientOrderIds
from notifier.recent import RecentMap


def _fill(order_id: str, market: str = "0xm", client: str | None = None) -> Fill:
    return Fill(
        order_id=order_id,
        market_id=market,
        side="BUY",
        outcome="Yes",
        price=Decimal("0.5"),
        quantity=Decimal(1),
        filled_at=datetime(2026, 2, 6, tzinfo=UTC),
        client_order_id=client,
    )


class Answers:
    """Hands out the given answers in turn (an exception is raised); records each query."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.queries: list[dict[str, str]] = []

    async def __call__(self, params: Mapping[str, str]) -> object:
        self.queries.append(dict(params))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def _fill_in(
    fills: list[Fill], fetch: Answers, refs: ClientOrderIds | None = None
) -> list[str | None]:
    refs = refs or ClientOrderIds()
    done = await refs.fill_in(fills, fetch, new={f.key for f in fills})
    return [f.client_order_id for f in done]


async def test_ids_are_read_as_a_fill_s_and_garbage_items_are_skipped() -> None:
    """Order-list ids are checked as a live frame's are; malformed items are skipped."""
    fetch = Answers(
        {
            "orders": [
                "junk",
                {"order_id": True, "client_order_id": "x"},
                {"order_id": 1, "client_order_id": "bot-1"},
                {"order_id": "2", "client_order_id": " \n"},  # blank: as a live frame, none
                {"order_id": "3", "client_order_id": 33},
                {"order_id": "4", "client_order_id": ["no"]},
                {"order_id": "5", "client_order_id": "x" * 257},  # past the venue's limit
                {"order_id": "6", "client_order_id": "y" * 256},
            ],
            "has_more": False,
        }
    )
    fills = [_fill(str(n)) for n in range(1, 7)]
    ids = await _fill_in(fills, fetch)
    assert ids == ["bot-1", None, "33", None, None, "y" * 256]
    assert len(fetch.queries) == 1


async def test_an_answer_without_an_orders_list_counts_as_a_failure() -> None:
    """An order-list answer with no `orders` list leaves the id unknown and counts a failure."""
    refs = ClientOrderIds()
    fetch = Answers({"detail": "nope"})
    assert await _fill_in([_fill("1")], fetch, refs) == [None]
    assert (refs.requests, refs.failures) == (1, 1)


async def test_paging_ends_at_has_more_false_an_empty_page_or_no_cursor() -> None:
    """Paging stops at has_more false, at an empty page, or at a page without a cursor."""
    for end in (
        {"orders": [{"order_id": 9}], "next_cursor": "c2", "has_more": False},
        {"orders": [], "next_cursor": "c2", "has_more": True},
        {"orders": [{"order_id": 9}], "has_more": True},
    ):
        fetch = Answers(end)
        assert await _fill_in([_fill("1")], fetch) == [None]
        assert len(fetch.queries) == 1


async def test_a_cursor_is_followed_and_a_failure_midway_keeps_what_was_found() -> None:
    """The next page is asked for by cursor; a failure on it keeps the ids already found."""
    fetch = Answers(
        {
            "orders": [{"order_id": 1, "client_order_id": "a"}],
            "next_cursor": "c2",
            "has_more": True,
        },
        TransientFeedError("order list answered HTTP 503"),
    )
    assert await _fill_in([_fill("1"), _fill("2")], fetch) == ["a", None]
    assert fetch.queries[1] == {"market_id": "0xm", "limit": "50", "cursor": "c2"}


async def test_known_orders_and_fills_that_carry_an_id_or_are_not_new_ask_nothing() -> None:
    """Orders known from live fills, fills with their own id and fills not new cost no request."""
    refs = ClientOrderIds()
    refs.remember(_fill("1", client="live-1"))
    fetch = Answers()
    fills = [_fill("1"), _fill("2", client="own"), _fill("3")]
    done = await refs.fill_in(fills, fetch, new={fills[0].key, fills[1].key})
    assert [f.client_order_id for f in done] == ["live-1", "own", None]
    assert fetch.queries == []


async def test_an_order_found_without_an_id_is_not_asked_for_again() -> None:
    """An order the list showed without an id is remembered as such, not looked up again."""
    refs = ClientOrderIds()
    fetch = Answers({"orders": [{"order_id": 1}], "has_more": False})
    assert await _fill_in([_fill("1")], fetch, refs) == [None]
    assert await _fill_in([_fill("1")], fetch, refs) == [None]
    assert len(fetch.queries) == 1


def test_a_recent_map_keeps_two_generations_and_refreshes_what_is_written_again() -> None:
    """RecentMap keeps two generations; a key written again moves to the current one."""
    recent: RecentMap[str, int] = RecentMap(2)
    recent["a"] = 1
    recent["b"] = 2  # the generation is full: it becomes the older one
    assert (recent.get("a", 0), recent.get("b", 0)) == (1, 2)
    recent["a"] = 3  # written again: into the current generation
    recent["c"] = 4  # full again: the older generation, with "b" only there, is dropped
    assert (recent.get("a", 0), recent.get("c", 0)) == (3, 4)
    assert "b" not in recent
    assert recent.get("b", 0) == 0
    assert len(recent) == 2


async def test_an_id_known_from_a_live_fill_survives_a_look_up_that_rolls_the_memory() -> None:
    """Ids learned by a look-up do not push out the id a live fill taught just before."""
    refs = ClientOrderIds(generation=2)
    refs.remember(_fill("A", client="bot-A"))
    refs.remember(_fill("X", client="bot-X"))  # the generation is full: both move to the older
    fetch = Answers({"orders": [{"order_id": n, "client_order_id": f"c{n}"} for n in (1, 2, 3)]})
    ids = await _fill_in([_fill("A"), _fill("1"), _fill("2"), _fill("3")], fetch, refs)
    assert ids == ["bot-A", "c1", "c2", "c3"]


async def test_an_order_listed_in_another_market_or_side_lends_no_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The order list is another endpoint than history: an order there whose market or side
    differs from the fill's is not taken for the fill's order."""
    fetch = Answers(
        {
            "orders": [
                {"order_id": 1, "client_order_id": "a", "side": "SELL"},
                {"order_id": 2, "client_order_id": "b", "market_id": "0xother"},
                {"order_id": 3, "client_order_id": "c", "market_id": "0xm", "side": "buy"},
            ]
        }
    )
    refs = ClientOrderIds()
    fills = [_fill("1"), _fill("2"), _fill("3")]
    assert await _fill_in(fills, fetch, refs) == [None, None, "c"]
    again = await refs.fill_in(fills, Answers(), new=set())  # a later read's overlap
    assert [f.client_order_id for f in again] == [None, None, "c"]
    warned = [r.getMessage() for r in caplog.records if "another market or side" in r.getMessage()]
    assert len(warned) == 2  # once each, when new
