"""The fake PolySimulator's data: made-up markets, the feed's wire shapes, a demo fill stream."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal

DEFAULT_API_KEY = "ps_test_demo_key_000000"

Shape = Literal["fill", "execution", "nested"]

# id -> (question, outcomes). Ids have the venue's form: 0x and 64 hex digits.
DEMO_MARKETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "0xe40605e6a26268a5eb83c155ea5dd12aeb3314f6ba5d67d4b607de95156e4e12": (
        "Will Bitcoin close above $100k in 2026?",
        ("Yes", "No"),
    ),
    "0x20e796c128096d229ba89bf412a53c3151d170a409c2c8c1dd8e414087b7ffae": (
        "Will the Fed cut rates at the March meeting?",
        ("Yes", "No"),
    ),
    "0xbe392b792809651cdec3485da4357568972ceb4cfd939c4bf5e5c3d011b04837": (
        "Lakers vs. Celtics: who wins on Friday?",
        ("Lakers", "Celtics"),
    ),
    "0xc69ea13227bace6e1f8a06364d93f4a6f04632432b64ca9b1fc4036baea4d34c": (
        "Ethereum up or down over the next hour?",
        ("Up", "Down"),
    ),
    "0x4b9e99d2bd5e48d9a569e5f82175d1d2ed59105f8d82a12dc51b673ff12dc1f2": (
        "Will turnout exceed 60% in the general election?",
        ("Yes", "No"),
    ),
}
DEFAULT_MARKETS: dict[str, str] = {mid: q for mid, (q, _) in DEMO_MARKETS.items()}

_SHAPES = ("fill", "execution", "nested")


def live_fills(limit: int | None, rng: random.Random) -> Iterator[dict[str, object]]:
    """Varied fills as `demo_fills` makes them, stamped by the venue as each is sent (as a
    real fill is); endless when `limit` is None."""
    left = limit
    order_id = 5001
    while left is None or left > 0:
        chunk = demo_fills(10 if left is None else min(left, 10), rng, first_order_id=order_id)
        for fill in chunk:
            fill.pop("filled_at")
            order_id = max(order_id, int(str(fill["order_id"])) + 1)
            yield fill
        if left is not None:
            left -= len(chunk)


def demo_fills(
    n: int, rng: random.Random, *, start: datetime | None = None, first_order_id: int = 5001
) -> list[dict[str, object]]:
    """`n` varied fills as keyword arguments for `SimulatedPolySim.fill`, in time order.

    Several markets and outcomes, both sides, all three wire shapes, some orders filled in
    parts (same order id, PARTIALLY_FILLED then FILLED), some with a client order id.
    """
    at = start or datetime.now(UTC).replace(microsecond=0)
    order_ids = itertools.count(first_order_id)
    fills: list[dict[str, object]] = []
    while len(fills) < n:
        market_id = rng.choice(list(DEMO_MARKETS))
        outcome = rng.choice(DEMO_MARKETS[market_id][1])
        side = rng.choice(("BUY", "BUY", "SELL"))
        price = Decimal(rng.randint(2, 98)) / 100
        total = Decimal(rng.choice((5, 10, 25, 50, 100, 250, 1000, 5000)))
        parts = rng.choice((1, 1, 1, 2, 3))
        order_id = next(order_ids)
        client_order_id = f"bot-{order_id}" if rng.random() < 0.3 else None
        for part in range(1, parts + 1):
            at += timedelta(seconds=rng.randint(1, 90), milliseconds=rng.randint(0, 999))
            fill: dict[str, object] = {
                "shape": rng.choice(_SHAPES),
                "order_id": order_id,
                "market_id": market_id,
                "side": side,
                "outcome": outcome,
                "price": str(price),
                "quantity": str((total / parts).quantize(Decimal("0.01"))),
                "status": "FILLED" if part == parts else "PARTIALLY_FILLED",
                "filled_at": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
            if client_order_id is not None:
                fill["client_order_id"] = client_order_id
            fills.append(fill)
    return fills[:n]


def feed_message(item: Mapping[str, object], shape: Shape) -> dict[str, object]:
    """A history item as the feed sends it, in one of the three documented shapes."""
    core = {k: item[k] for k in ("market_id", "side", "outcome", "price", "quantity") if k in item}
    if "client_order_id" in item:
        core["client_order_id"] = item["client_order_id"]
    order_id = item.get("order_id")
    if shape == "fill":
        return {"type": "fill", "order_id": order_id, **core, "filled_at": item.get("filled_at")}
    execution = {
        "order_id": str(order_id),
        **core,
        "status": item.get("status", "FILLED"),
        "timestamp": item.get("filled_at"),
    }
    if shape == "execution":
        return {"type": "execution", **execution}
    return {"type": "execution", "data": execution}


def notional(price: object, quantity: object) -> str:
    """price x quantity as the venue writes it ("0" when either is not a number)."""
    try:
        return str(Decimal(str(price)) * Decimal(str(quantity)))
    except InvalidOperation:
        return "0"


def sort_time(item: Mapping[str, object]) -> datetime:
    """A history item's fill time for ordering (unparseable times sort oldest)."""
    try:
        parsed = datetime.fromisoformat(str(item.get("filled_at")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def order_list(history: list[dict[str, object]]) -> list[dict[str, object]]:
    """The venue's order list (`GET /v1/orders` items) as the fills in history imply it:
    one order per order id, newest first, with the client_order_id its fills were sent with."""
    orders: dict[str, dict[str, object]] = {}
    for item in sorted(history, key=sort_time):
        order = orders.setdefault(
            str(item.get("order_id")),
            {
                **{k: item.get(k) for k in ("order_id", "market_id", "side", "outcome")},
                "order_type": "limit",
                "limit_price": item.get("price"),
                "quantity": "0",
                "time_in_force": "GTC",
                "client_order_id": None,
                "created_at": item.get("created_at", item.get("filled_at")),
            },
        )
        order["quantity"] = _add(order["quantity"], item.get("quantity"))
        order["status"] = item.get("status", "FILLED")
        order["filled_at"] = item.get("filled_at")
        order["fill_price"] = item.get("price")
        if item.get("client_order_id") is not None:
            order["client_order_id"] = item["client_order_id"]
    return list(reversed(orders.values()))


def _add(total: object, quantity: object) -> str:
    try:
        return str(Decimal(str(total)) + Decimal(str(quantity)))
    except InvalidOperation:
        return str(total)
