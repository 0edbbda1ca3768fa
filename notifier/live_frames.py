"""A live frame to a `Fill` in one pass, for the flat shapes the venue sends nearly always.

Pure: no I/O. `normalize.py` is the reference: it takes every shape and says why a frame is
bad. Decoding a frame into a dict there, then checking it field by field, was a third of a
quiet fill's CPU (about 9 µs of 26). Here msgspec decodes the flat `fill` and `execution`
shapes straight into typed fields in C, and the checks left are the ones normalize would make
on those types. Anything this path is not sure of (another shape, a field of another type,
a value normalize would refuse or treat specially) goes to normalize untouched, so a frame
gets the very same result either way (tests/test_live_frames.py holds them to that). Two
differences, both in fields neither path reads, where normalize refuses the whole frame as not
JSON and this path reads its fill: a field nested deeper than Python's recursion limit lets
the standard decoder go (some 990 levels), and a number past what a Decimal holds (an
exponent of 19 digits or more).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from notifier.events import Fill
from notifier.normalize import (
    MAX_TEXT,
    PLAIN_DECIMAL,
    Rejected,
    decode_frame,
    fill_time,
    kept_as_is,
    normalize_message,
)

_FILL_TYPES = ("fill", "execution")
_SIDES = ("BUY", "SELL")
_ZERO, _ONE = Decimal(0), Decimal(1)


class _FlatFill(msgspec.Struct):
    """The flat shapes' fields, typed as the venue sends them; any other field is skipped."""

    type: str
    order_id: int | str
    market_id: str
    side: str
    outcome: str
    price: str
    quantity: str
    filled_at: str | None = None
    timestamp: str | None = None
    status: str | None = None
    client_order_id: str | None = None
    # The nested shape, which normalize merges: kept raw, not decoded. msgspec takes some 8 µs
    # to make a float of a number like 1e300 (normalize's Decimal 0.2), so 4,300 characters of
    # them in `data` took 5 ms here, to be thrown away, and normalize's 0.2 ms after.
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_DECODER = msgspec.json.Decoder(_FlatFill)


def read_live_frame(data: str | bytes, *, max_bytes: int) -> Fill | Rejected | None:
    """A live frame as a `Fill`, a `Rejected`, or None for a message that is not a fill."""
    if type(data) is str and len(data) * 4 <= max_bytes:  # small enough for any encoding
        fill = _flat_fill(data)
        if fill is not None:
            return fill
    decoded = decode_frame(data, max_bytes=max_bytes)
    if isinstance(decoded, Rejected):
        return decoded
    return normalize_message(decoded)


def _flat_fill(data: str) -> Fill | None:
    """The fill of a flat frame, or None when normalize must decide (never a wrong answer)."""
    # normalize's decoder refuses (not JSON) an integer of more digits than int() takes, and
    # msgspec skips one unchecked in a field the struct does not name: so a frame that could
    # hold one goes to normalize. Searching it for a run of digits cost more than normalize.
    if 0 < sys.get_int_max_str_digits() < len(data):  # 4300 unless set otherwise; 0: any
        return None
    try:
        wire = _DECODER.decode(data)
    except (msgspec.DecodeError, ValueError, RecursionError):  # ValueError: a lone surrogate
        return None
    if wire.type not in _FILL_TYPES or wire.data is not msgspec.UNSET:
        return None
    price, quantity = _plain(wire.price), _plain(wire.quantity)
    if price is None or quantity is None or not _ZERO <= price <= _ONE or quantity <= 0:
        return None
    order_id = wire.order_id
    side = wire.side.upper()
    filled_at = _utc(wire.filled_at or wire.timestamp)
    if (
        filled_at is None
        or side not in _SIDES
        or not kept_as_is(wire.side)
        or not (isinstance(order_id, int) or kept_as_is(order_id))  # msgspec: never a bool
        or not kept_as_is(wire.market_id)
        or not kept_as_is(wire.outcome)
        or not _optional(wire.status)
        or not _optional(wire.client_order_id)
    ):
        return None
    return Fill(
        order_id=str(order_id),
        market_id=wire.market_id,
        side="BUY" if side == "BUY" else "SELL",
        outcome=wire.outcome,
        price=price,
        quantity=quantity,
        filled_at=filled_at,
        status=wire.status,
        client_order_id=wire.client_order_id,
    )


def _plain(text: str) -> Decimal | None:
    """A decimal in the wire's usual form ("0.65", "10.0"), which needs no bound checked."""
    return Decimal(text) if PLAIN_DECIMAL.fullmatch(text) else None


def _optional(text: str | None) -> bool:
    """An optional field normalize keeps as it is (absent, or text it would not drop)."""
    return text is None or kept_as_is(text)


def _utc(text: str | None) -> datetime | None:
    """An ISO-8601 time in UTC ("Z") or naive (the venue's naive times are UTC)."""
    if not text or len(text) > MAX_TEXT:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo is UTC and fill_time(parsed) else None
