"""What a shaped message carries: its fills (a `Bunch`), a suppressed count, exact digest fields."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Context, Decimal, localcontext
from typing import Literal

from notifier.events import Fill
from notifier.format_specs import Average, money_shown
from notifier.render import FILL_FIELDS, Timestamp, fill_values

MIXED = "mixed"  # side/outcome/market_id of a digest whose fills disagree
AGGREGATE_FIELDS = (
    "count",
    "total_quantity",
    "total_notional",
    "vwap",
    "vwap_cents",
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
    "total_notional": Decimal("19.50"),
    "vwap": Decimal("0.65"),
    "vwap_cents": Decimal("65"),
    "min_price": Decimal("0.64"),
    "max_price": Decimal("0.66"),
    "first_filled_at": _STAMP,
    "last_filled_at": _STAMP,
    "lines": "BUY 10 Yes @ 0.65",
    "suppressed": 0,
}
ReleaseKind = Literal["single", "group", "throttle", "held"]
# Sums stay exact: the wire bounds a decimal to 28 digits within 10^-45..10^19 (normalize), so
# a notional spans 10^-90..10^38 and a sum of even 10^12 of them fits in 140 digits; the
# default context's 28 would round totals of fills that differ in scale.
_EXACT_SUM = Context(prec=200)
LINES_KEPT = 20  # fills a digest lists one per line (then "… and N more"): all a Bunch keeps
MARKETS_KEPT = 100  # market ids a Bunch counts; past them a digest says "100+ markets"


def _filled_at(fill: Fill) -> datetime:
    return fill.filled_at


@dataclass(slots=True)
class Bunch:
    """The fills of one message in the making: every one counted exactly, the first few kept.

    A digest lists at most LINES_KEPT fills. Keeping them all made memory, the stored shaping
    state (a held digest's entry is rewritten whenever it grows) and each release grow with
    the fills held: a weekend's hold of 100,000 fills cost 0.2 s a fill and megabytes of writes.
    """

    kept: list[Fill]  # the LINES_KEPT filled first, in the order they were filled
    last: Fill  # the one that came last: a digest's single-fill fields are its
    count: int
    quantity: Decimal
    notional: Decimal
    min_price: Decimal
    max_price: Decimal
    first_at: datetime
    last_at: datetime
    sides: set[str]
    outcomes: set[str]
    markets: set[str]  # market ids, up to MARKETS_KEPT: a digest may span markets
    more_markets: bool = False  # there were more than MARKETS_KEPT

    @classmethod
    def of(cls, first: Fill, *more: Fill) -> Bunch:
        """A bunch of these fills, in this order."""
        at = first.filled_at
        bunch = cls(
            [first], first, 1, first.quantity, first.notional, first.price, first.price,
            at, at, {first.side}, {first.outcome}, {first.market_id},
        )  # fmt: skip
        for fill in more:
            bunch.add(fill)
        return bunch

    def add(self, fill: Fill) -> None:
        """Count one more fill (kept while there is room)."""
        self.merge(Bunch.of(fill))

    def merge(self, other: Bunch) -> None:
        """Count `other`'s fills after these ones; keep the LINES_KEPT filled first.

        By fill time, not arrival: a held digest merges what groups and throttles kept, and a
        backfilled fill comes after later ones, yet "… and N more" must stand for the latest.
        """
        for fill in other.kept:  # other's own earliest: the union's earliest are among them
            if len(self.kept) >= LINES_KEPT and fill.filled_at >= self.kept[-1].filled_at:
                continue  # filled after every one kept: the usual case, fills come in order
            bisect.insort(self.kept, fill, key=_filled_at)  # after equal times: arrival order
            if len(self.kept) > LINES_KEPT:
                self.kept.pop()
        self.last = other.last
        self.count += other.count
        with localcontext(_EXACT_SUM):
            self.quantity += other.quantity
            self.notional += other.notional
        self.min_price = min(self.min_price, other.min_price)
        self.max_price = max(self.max_price, other.max_price)
        self.first_at = min(self.first_at, other.first_at)
        self.last_at = max(self.last_at, other.last_at)
        self.sides |= other.sides
        self.outcomes |= other.outcomes
        if not self.more_markets:  # the set stays small: its stored entry is rewritten often
            self.markets |= other.markets
            self.more_markets = other.more_markets
            self.cap_markets()

    def cap_markets(self) -> None:
        """Keep at most MARKETS_KEPT market ids, noting that there were more."""
        while len(self.markets) > MARKETS_KEPT:
            self.markets.pop()
            self.more_markets = True


@dataclass(frozen=True, slots=True)
class Release:
    """One message to render and send: `fields` feed the rule's templates (`lines` excepted)."""

    rule: str
    key: tuple[str, ...]
    bunch: Bunch
    suppressed: int
    fields: Mapping[str, object]
    kind: ReleaseKind = "single"

    @property
    def fills(self) -> tuple[Fill, ...]:
        """The fills the message lists: all of them, up to LINES_KEPT."""
        return tuple(self.bunch.kept)

    @property
    def count(self) -> int:
        """How many fills the message stands for."""
        return self.bunch.count

    @property
    def fill_key(self) -> str:
        """A stable identity for the outbox: the fill's key, or a hash naming a digest's fills.

        A fill goes out in one message of its rule, so the first, the last and the count name
        a digest (a fill seen twice is deduped before shaping).
        """
        bunch = self.bunch
        if bunch.count == 1:
            return bunch.last.key
        names = [*(f.key for f in bunch.kept), bunch.last.key, str(bunch.count)]
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
        return f"digest:{digest[:32]}"


def make_release(
    rule: str, key: tuple[str, ...], bunch: Bunch, suppressed: int, kind: ReleaseKind
) -> Release:
    return Release(rule, key, bunch, suppressed, release_fields(rule, bunch, suppressed), kind)


def aggregate(bunch: Bunch) -> dict[str, object]:
    """Exact digest figures over every fill of `bunch`: sums, VWAP, price and time range."""
    quantity, notional = bunch.quantity, bunch.notional
    vwap = notional / quantity if quantity else Decimal("NaN")
    return {
        "count": bunch.count,
        "total_quantity": quantity,
        "total_notional": money_shown(notional),
        "vwap": Average(vwap),
        "vwap_cents": Average(vwap.scaleb(2)),
        "min_price": bunch.min_price,
        "max_price": bunch.max_price,
        "first_filled_at": _stamp(bunch.first_at),
        "last_filled_at": _stamp(bunch.last_at),
    }


def release_fields(rule: str, bunch: Bunch, suppressed: int) -> dict[str, object]:
    """Template fields: the last fill's, the digest figures, and side/outcome/market if shared.

    A digest over several markets (everything a rule held outside its hours is one digest)
    names how many, never the last fill's market as if all were on it.
    """
    fields = fill_values(bunch.last, rule=rule)
    fields.update(aggregate(bunch), suppressed=suppressed)
    if len(bunch.sides) > 1:
        fields["side"] = MIXED
    if len(bunch.outcomes) > 1:
        fields["outcome"] = MIXED
    if len(bunch.markets) > 1:
        fields["market_id"] = MIXED
        more = "+" if bunch.more_markets else ""
        fields["market_title"] = f"{len(bunch.markets)}{more} markets"
    return fields


def cap_lines(lines: list[str], total: int, newline: str = "\n") -> str:
    """The lines of a digest of `total` fills, then "… and N more" for the ones not listed."""
    if total <= len(lines):
        return newline.join(lines)
    return newline.join([*lines, f"… and {total - len(lines)} more"])


def key_of(fill: Fill, by: tuple[str, ...]) -> tuple[str, ...]:
    """The fill's values of the `by` fields, as text (None as "", decimals canonical).

    A fill without its market's title (the look-up slow or failing) is keyed by its market id,
    as its templates show it: keyed by "" it would share a digest with every other market
    whose title is missing, under one market's name.
    """
    return tuple(_text(_value(fill, name)) for name in by)


def _value(fill: Fill, name: str) -> object:
    if name == "market_title":
        return fill.market_title or fill.market_id
    return getattr(fill, name)


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
        **({"occurrence": str(fill.occurrence)} if fill.occurrence != 1 else {}),
    }


def fill_from_data(raw: Mapping[str, str | None]) -> Fill:
    """The fill `fill_to_data` saved; ValueError/KeyError if the data is not one."""
    price, quantity, at = raw["price"], raw["quantity"], raw["filled_at"]
    if price is None or quantity is None or at is None or raw["side"] not in ("BUY", "SELL"):
        raise ValueError("fill lacks price, quantity, time or side")
    occurrence = int(raw.get("occurrence") or 1)  # absent before occurrences were kept
    if occurrence < 1:
        raise ValueError(f"not an occurrence number: {occurrence}")
    return Fill(
        order_id=str(raw["order_id"]),
        market_id=str(raw["market_id"]),
        side="BUY" if raw["side"] == "BUY" else "SELL",
        outcome=str(raw["outcome"]),
        price=parse_decimal(price),
        quantity=parse_decimal(quantity),
        filled_at=parse_time(at),
        status=raw["status"],
        client_order_id=raw["client_order_id"],
        market_title=raw["market_title"],
        occurrence=occurrence,
    )


def parse_decimal(text: str) -> Decimal:
    """An exact, finite decimal from stored text, or ValueError."""
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
