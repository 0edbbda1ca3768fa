"""The fake PolySimulator's REST answers, built from its recorded fills: pure, no I/O.

Kept apart from the server (simulator.py), which owns the fault knobs and the counters and
decides whether a request gets one of these pages or an error.
"""

from __future__ import annotations

from collections.abc import Mapping

from notifier.simulator_data import DEMO_MARKETS, order_list, sort_time

Answer = tuple[int, object, dict[str, str]]  # status, JSON body, extra headers

# The fields of the venue's TradeHistoryItem (its OpenAPI spec). A fill's `client_order_id`
# (and a title sent with it) is not among them: a fill recovered from history lacks them.
_HISTORY_FIELDS = frozenset(
    (
        *("order_id", "market_id", "side", "outcome", "price", "quantity", "notional", "fee"),
        *("status", "price_source", "price_age_ms", "filled_at", "created_at"),
    )
)


def history_page(history: list[dict[str, object]], query: Mapping[str, str]) -> Answer:
    """`GET /v1/account/history`: newest first, by limit and offset."""
    try:
        limit, offset = int(query.get("limit", "50")), int(query.get("offset", "0"))
    except ValueError:
        return 422, {"detail": "limit and offset must be integers"}, {}
    if not 1 <= limit <= 200 or offset < 0:
        return 422, {"detail": "limit must be 1..200, offset >= 0"}, {}
    # Newest first; of equal times, the later recorded first (as a database id would).
    order = sorted(enumerate(history), key=lambda p: (sort_time(p[1]), p[0]))
    page = [item for _, item in reversed(order)][offset : offset + limit]
    return 200, [_as_history(item) for item in page], {}


def orders_page(history: list[dict[str, object]], query: Mapping[str, str]) -> Answer:
    """`GET /v1/orders`: orders newest first, by offset or by the cursor a previous page gave."""
    try:
        limit = int(query.get("limit", "50"))
        offset = int(query.get("cursor", "").removeprefix("at-") or query.get("offset", "0"))
    except ValueError:
        return 422, {"detail": "limit, offset and cursor must be valid"}, {}
    if not 1 <= limit <= 200 or offset < 0:
        return 422, {"detail": "limit must be 1..200, offset >= 0"}, {}
    orders = [
        order
        for order in order_list(history)
        if all(order.get(k) == query[k] for k in ("market_id", "status", "side") if k in query)
    ]
    page, more = orders[offset : offset + limit], offset + limit < len(orders)
    cursor = f"at-{offset + limit}" if more else None
    return 200, {"orders": page, "next_cursor": cursor, "has_more": more}, {}


def market_detail(market_id: str, question: str, event_title: str | None) -> dict[str, object]:
    """`GET /v1/markets/{id}` for a known market ("" as `question`: a market without one)."""
    slug = "-".join("".join(c if c.isalnum() else " " for c in question.lower()).split())
    detail: dict[str, object] = {"condition_id": market_id, "slug": slug or market_id}
    if question:
        detail["question"] = question
    if event_title is not None:
        detail["event_title"] = event_title
    outcomes = list(DEMO_MARKETS[market_id][1]) if market_id in DEMO_MARKETS else ["Yes", "No"]
    return detail | {"outcomes": outcomes, "active": True, "closed": False}


def _as_history(item: Mapping[str, object]) -> dict[str, object]:
    """A stored fill as history answers it: only TradeHistoryItem's fields."""
    return {k: v for k, v in item.items() if k in _HISTORY_FIELDS}
