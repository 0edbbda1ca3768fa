"""What a shaped message carries: the fills, a suppressed count and exact digest fields."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from notifier.events import Fill
from notifier.render import FILL_FIELDS, Timestamp, fill_values

MIXED = "mixed"  # side/outcome of a digest whose fills disagree
AGGREGATE_FIELDS = (
    "count",
    "total_quantity",
    "total_notional",
    "vwap",
    "min_price",
    "max_price",
    "first_filled_at",
    "last_filled_at",
    "lines",
    "suppressed",
)
GROUP_FIELDS = AGGREGATE_FIELDS + FILL_FIELDS
_STAMP = Timestamp(2026, 2, 6, 12, 0, 45, tzinfo=UTC)
GROUP_SAMPLES: Mapping[str, object] = {
    "count": 3,
    "total_quantity": Decimal("30.0"),
    "total_notional": Decimal("19.500"),
    "vwap": Decimal("0.65"),
    "min_price": Decimal("0.64"),
    "max_price": Decimal("0.66"),
    "first_filled_at": _STAMP,
    "last_filled_at": _STAMP,
    "lines": "BUY 10 Yes @ 0.65",
    "suppressed": 0,
}
ReleaseKind = Literal["single", "group", "throttle", "held"]


@dataclass(frozen=True, slots=True)
class Release:
    """One message to render and send: `fields` feed the rule's templates (`lines` excepted)."""

    rule: str
    key: tuple[str, ...]
    fills: tuple[Fill, ...]
    suppressed: int
    fields: Mapping[str, object]
    kind: ReleaseKind = "single"

    @property
    def fill_key(self) -> str:
        """A stable identity for the outbox: the fill's key, or a hash of a digest's fill keys."""
        if len(self.fills) == 1:
            return self.fills[0].key
        digest = hashlib.sha256("\n".join(f.key for f in self.fills).encode()).hexdigest()
        return f"digest:{digest[:32]}"


def make_release(
    rule: str, key: tuple[str, ...], fills: tuple[Fill, ...], suppressed: int, kind: ReleaseKind
) -> Release:
    return Release(rule, key, fills, suppressed, release_fields(rule, fills, suppressed), kind)


def aggregate(fills: tuple[Fill, ...]) -> dict[str, object]:
    """Exact digest figures over `fills` (non-empty): sums, VWAP, price and time range."""
    quantity = sum((f.quantity for f in fills), Decimal(0))
    notional = sum((f.notional for f in fills), Decimal(0))
    prices = [f.price for f in fills]
    times = [f.filled_at for f in fills]
    return {
        "count": len(fills),
        "total_quantity": quantity,
        "total_notional": notional,
        "vwap": notional / quantity if quantity else Decimal("NaN"),
        "min_price": min(prices),
        "max_price": max(prices),
        "first_filled_at": _stamp(min(times)),
        "last_filled_at": _stamp(max(times)),
    }


def release_fields(rule: str, fills: tuple[Fill, ...], suppressed: int) -> dict[str, object]:
    """Template fields: the last fill's, the digest figures, and side/outcome only if shared."""
    fields = fill_values(fills[-1], rule=rule)
    fields.update(aggregate(fills), suppressed=suppressed)
    for name in ("side", "outcome"):
        if len({getattr(f, name) for f in fills}) > 1:
            fields[name] = MIXED
    return fields


def cap_lines(lines: list[str], limit: int) -> str:
    """At most `limit` lines, then "… and N more" so a long digest still says what it left out."""
    if len(lines) <= limit:
        return "\n".join(lines)
    return "\n".join([*lines[:limit], f"… and {len(lines) - limit} more"])


def key_of(fill: Fill, by: tuple[str, ...]) -> tuple[str, ...]:
    """The fill's values of the `by` fields, as text (None as "", decimals canonical)."""
    return tuple(_text(getattr(fill, name)) for name in by)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _stamp(at: datetime) -> Timestamp:
    u = at.astimezone(UTC)
    return Timestamp(u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond, tzinfo=UTC)


_FILL_TEXT = ("order_id", "market_id", "side", "outcome", "status", "client_order_id")


def fill_to_data(fill: Fill) -> dict[str, str | None]:
    """A fill as JSON-ready text (exact decimals, ISO time), for persisting held alerts."""
    return {
        **{name: getattr(fill, name) for name in _FILL_TEXT},
        "market_title": fill.market_title,
        "price": str(fill.price),
        "quantity": str(fill.quantity),
        "filled_at": fill.filled_at.isoformat(),
    }


def fill_from_data(raw: Mapping[str, str | None]) -> Fill:
    """The fill `fill_to_data` saved; ValueError/KeyError if the data is not one."""
    price, quantity, at = raw["price"], raw["quantity"], raw["filled_at"]
    if price is None or quantity is None or at is None or raw["side"] not in ("BUY", "SELL"):
        raise ValueError("fill lacks price, quantity, time or side")
    return Fill(
        order_id=str(raw["order_id"]),
        market_id=str(raw["market_id"]),
        side="BUY" if raw["side"] == "BUY" else "SELL",
        outcome=str(raw["outcome"]),
        price=_decimal(price),
        quantity=_decimal(quantity),
        filled_at=parse_time(at),
        status=raw["status"],
        client_order_id=raw["client_order_id"],
        market_title=raw["market_title"],
    )


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError as exc:  # decimal.InvalidOperation is not a ValueError
        raise ValueError(f"not a decimal: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {text!r}")
    return value


def parse_time(text: object) -> datetime:
    """A timezone-aware datetime from ISO-8601 text, or ValueError."""
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {text!r}")
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"timestamp without zone: {text!r}")
    return at
