"""What flows through notifier: a `Fill` from the feed, an `Alert` per target, a send's result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal, localcontext
from typing import Literal

Side = Literal["BUY", "SELL"]
_PRODUCT = Context(prec=56)  # room for the exact product of two 28-digit decimals


@dataclass(frozen=True, slots=True)
class Fill:
    """A normalized fill, whichever of the three wire shapes (or history) it came from.

    `price` and `quantity` are exact decimals from the wire strings; `filled_at` is
    timezone-aware UTC. `market_title` is filled in later from the market look-up.
    """

    order_id: str
    market_id: str
    side: Side
    outcome: str
    price: Decimal
    quantity: Decimal
    filled_at: datetime
    status: str | None = None
    client_order_id: str | None = None
    market_title: str | None = None
    # Which of the fills sharing (order, time, quantity, price) this is: see recurrence.py.
    occurrence: int = 1
    # The identity, computed once on first use: every stage asks for it.
    _key: str | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @property
    def notional(self) -> Decimal:
        """Price times quantity, exactly: the context's 28 digits would round a product of
        two wire decimals of up to 28 digits each (normalize's bound), so this takes 56."""
        with localcontext(_PRODUCT):
            return self.price * self.quantity

    @property
    def key(self) -> str:
        """The fill's identity: the same fill seen twice, in any shape, has the same key.

        (order_id, filled_at, quantity, price), with decimals normalized so that
        "10" and "10.0" are the same quantity; a repeat of those four adds its occurrence
        number ("#2"), so the first occurrence keeps the key it always had.
        """
        key = self._key
        if key is None:
            key = "|".join(
                (
                    self.order_id,
                    self.filled_at.isoformat(timespec="microseconds"),
                    _canonical(self.quantity),
                    _canonical(self.price),
                )
            )
            if self.occurrence != 1:
                key = f"{key}#{self.occurrence}"
            object.__setattr__(self, "_key", key)
        return key

    def with_title(self, title: str | None) -> Fill:
        """This fill, carrying the market's human title."""
        titled = dataclasses.replace(self, market_title=title)
        object.__setattr__(titled, "_key", self._key)  # the title is not part of the identity
        return titled


def _canonical(value: Decimal) -> str:
    """A decimal's text with trailing zeros dropped and no exponent: 10.0 -> "10"."""
    return format(value.normalize(), "f")


@dataclass(frozen=True, slots=True)
class Alert:
    """A rendered message for one delivery target (one URL of a channel), from one rule and fill.

    The outbox keys it by (fill_key, rule, target): `target` is the channel URL's opaque key, never
    the URL itself, so the state file holds no secret.
    """

    fill_key: str
    rule: str
    channel: str
    target: str
    title: str
    body: str
    filled_at: datetime
    # The format title and body were written in (text, markdown, html), as apprise is told
    # when it is sent, whatever channel it goes to; None: its channel's at the time it is sent.
    body_format: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one attempt to deliver to one target.

    `error` is safe to log (URLs in apprise's privacy form only); `retry_after` is a pause the
    service asked for (HTTP 429), in seconds, when known.
    """

    ok: bool
    error: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class MessageLimit:
    """What one message to a service may hold: characters, and lines (0: any number)."""

    chars: int
    lines: int = 0
