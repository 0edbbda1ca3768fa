"""The bot's own order ids for fills that history recovers, which do not carry them.

`client_order_id` comes with live frames only (the venue's TradeHistoryItem has no such
field), so a fill recovered by backfill, or recorded from history during the short read at
each connect before its live copy, would miss rules, templates and digest keys on it. When
the rules read it, backfill asks the venue's order list (`GET /v1/orders`, limit orders with
their `client_order_id`) for the orders of the fills it recovered, market by market, a few
pages in all; orders the live feed named already need no request. What is not found that way
(a market order, an order further down the list, the venue failing) goes on without it, as
before: the look-up never holds a fill back for long, nor loses one.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

from notifier.errors import TransientFeedError
from notifier.events import Fill
from notifier.normalize import OrderReference, order_reference
from notifier.recent import RecentMap

log = logging.getLogger(__name__)

ORDERS_PAGE = 50  # orders a request: the endpoint's default, as it documents no maximum
MAX_ORDER_PAGES = 5  # requests per backfill run, across markets: each counts against the key
REMEMBERED = 4096  # orders whose client_order_id is kept (two generations)
MAX_CLIENT_ORDER_ID = 256  # the venue's own limit on placing an order: longer is not one

OrdersPage = Callable[[Mapping[str, str]], Awaitable[object]]  # one answer of GET /v1/orders


@dataclasses.dataclass(frozen=True, slots=True)
class _Order:
    """What the venue said of an order: its client_order_id, and where it trades."""

    client_order_id: str | None
    market_id: str | None
    side: str | None

    def owns(self, fill: Fill) -> bool:
        """Whether `fill` can be this order's: the same market and side, where known. A
        guard, since the order list is another endpoint than history, and an id from an
        unrelated order would make a rule on it fire wrongly."""
        return self.market_id in (None, fill.market_id) and self.side in (None, fill.side)


@dataclasses.dataclass(slots=True)
class _Page:
    references: list[OrderReference]
    next_cursor: str | None


class ClientOrderIds:
    """What the venue said of recent orders' client_order_id (None: the order has none)."""

    def __init__(self, generation: int = REMEMBERED) -> None:
        self._known: RecentMap[str, _Order] = RecentMap(generation)
        self.requests = 0
        self.failures = 0

    def remember(self, fill: Fill) -> None:
        """A live fill's client_order_id, for its order's other fills history may bring."""
        if fill.client_order_id is not None:
            self._known[fill.order_id] = _Order(fill.client_order_id, fill.market_id, fill.side)

    async def fill_in(
        self, fills: Sequence[Fill], fetch: OrdersPage, *, new: Collection[str]
    ) -> list[Fill]:
        """`fills` with the client_order_id of their orders where the venue names one; only
        fills whose key is in `new` are looked up (the rest are duplicates, to be dropped)."""
        orders: dict[str, _Order] = {}  # taken now: the look-up may push them out of memory
        wanted: dict[str, set[str]] = {}  # market -> its orders not known yet
        for fill in fills:
            if fill.client_order_id is not None or fill.order_id in orders:
                continue
            order = self._known.get(fill.order_id, None)
            if order is not None:
                orders[fill.order_id] = order
            elif fill.key in new:
                wanted.setdefault(fill.market_id, set()).add(fill.order_id)
        if wanted:
            orders.update(await self._look_up(wanted, fetch))
        return [_with_id(fill, orders.get(fill.order_id), fill.key in new) for fill in fills]

    async def _look_up(self, wanted: dict[str, set[str]], fetch: OrdersPage) -> dict[str, _Order]:
        """Page each market's orders until its wanted ones are found or the budget is spent."""
        found: dict[str, _Order] = {}
        budget = MAX_ORDER_PAGES
        asked = sum(len(orders) for orders in wanted.values())
        for market, missing in wanted.items():
            cursor: str | None = None
            while missing and budget > 0:
                budget -= 1
                params = {"market_id": market, "limit": str(ORDERS_PAGE)}
                if cursor is not None:
                    params["cursor"] = cursor
                self.requests += 1
                try:
                    page = _parse(await fetch(params))
                except TransientFeedError as exc:
                    self.failures += 1
                    log.warning(
                        "order list unavailable (%s): recovered fills of %d order(s) go on "
                        "without client_order_id",
                        exc,
                        asked - len(found),
                    )
                    return found
                for order_id, client_order_id, market_id, side in page.references:
                    if order_id not in missing:
                        continue
                    missing.discard(order_id)
                    if client_order_id is not None and len(client_order_id) > MAX_CLIENT_ORDER_ID:
                        client_order_id = None
                    found[order_id] = self._known[order_id] = _Order(
                        client_order_id, market_id, side
                    )
                cursor = page.next_cursor
                if cursor is None:
                    break
        if asked > len(found):
            log.info(
                "client_order_id: %d of %d recovered order(s) not in the order list read "
                "(market orders are not listed); their fills go on without it",
                asked - len(found),
                asked,
            )
        return found


def _with_id(fill: Fill, order: _Order | None, new: bool) -> Fill:
    """`fill` with its order's id; a mismatch is said once, for the fill when it is new (the
    overlap of every later read brings it again)."""
    if order is None or order.client_order_id is None:
        return fill
    if not order.owns(fill):
        if not new:
            return fill
        log.warning(
            "order %s: the order list names another market or side than its fill's; its "
            "client_order_id is not taken",
            fill.order_id,
        )
        return fill
    return dataclasses.replace(fill, client_order_id=order.client_order_id)


def _parse(body: object) -> _Page:
    """One order-list answer; TransientFeedError if it is not one."""
    orders = body.get("orders") if isinstance(body, Mapping) else None
    if not isinstance(body, Mapping) or not isinstance(orders, list):
        raise TransientFeedError("order list answer has no orders list")
    references = [
        ref for item in orders if isinstance(item, Mapping) if (ref := order_reference(item))
    ]
    cursor = body.get("next_cursor")
    if not (isinstance(cursor, str) and cursor and orders) or body.get("has_more") is False:
        cursor = None  # the end of the list (an empty page ends it too: no endless walk)
    return _Page(references, cursor)
