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
from notifier.normalize import order_reference
from notifier.recent import RecentMap

log = logging.getLogger(__name__)

ORDERS_PAGE = 100  # orders a request; the endpoint documents no maximum (its default is 50)
MAX_ORDER_PAGES = 5  # requests per backfill run, across markets: each counts against the key
REMEMBERED = 4096  # orders whose client_order_id is kept (two generations)
MAX_CLIENT_ORDER_ID = 256  # the venue's own limit on placing an order: longer is not one

OrdersPage = Callable[[Mapping[str, str]], Awaitable[object]]  # one answer of GET /v1/orders


@dataclasses.dataclass(slots=True)
class _Page:
    references: list[tuple[str, str | None]]
    next_cursor: str | None


class ClientOrderIds:
    """What the venue said each recent order's client_order_id is (None: it has none)."""

    def __init__(self, generation: int = REMEMBERED) -> None:
        self._known: RecentMap[str, str | None] = RecentMap(generation)
        self.requests = 0
        self.failures = 0

    def remember(self, fill: Fill) -> None:
        """A live fill's client_order_id, for its order's other fills history may bring."""
        if fill.client_order_id is not None:
            self._known[fill.order_id] = fill.client_order_id

    async def fill_in(
        self, fills: Sequence[Fill], fetch: OrdersPage, *, new: Collection[str]
    ) -> list[Fill]:
        """`fills` with the client_order_id of their orders where the venue names one; only
        fills whose key is in `new` are looked up (the rest are duplicates, to be dropped)."""
        wanted: dict[str, set[str]] = {}  # market -> its orders not known yet
        for fill in fills:
            if (
                fill.client_order_id is None
                and fill.order_id not in self._known
                and fill.key in new
            ):
                wanted.setdefault(fill.market_id, set()).add(fill.order_id)
        if wanted:
            await self._look_up(wanted, fetch)
        return [self._with_id(fill) for fill in fills]

    def _with_id(self, fill: Fill) -> Fill:
        if fill.client_order_id is not None:
            return fill
        client_order_id = self._known.get(fill.order_id, None)
        if client_order_id is None:
            return fill
        return dataclasses.replace(fill, client_order_id=client_order_id)

    async def _look_up(self, wanted: dict[str, set[str]], fetch: OrdersPage) -> None:
        """Page each market's orders until its wanted ones are found or the budget is spent."""
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
                        sum(len(orders) for orders in wanted.values()),
                    )
                    return
                for order_id, client_order_id in page.references:
                    if client_order_id is not None and len(client_order_id) > MAX_CLIENT_ORDER_ID:
                        client_order_id = None
                    if order_id in missing:
                        missing.discard(order_id)
                        self._known[order_id] = client_order_id
                cursor = page.next_cursor
                if cursor is None:
                    break
        left = sum(len(orders) for orders in wanted.values())
        if left:
            log.info(
                "client_order_id: %d of %d recovered order(s) not in the order list read "
                "(market orders are not listed); their fills go on without it",
                left,
                asked,
            )


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
