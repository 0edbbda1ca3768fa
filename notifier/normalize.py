"""Wire text to `Fill`: the three feed shapes and history items, checked field by field.

Pure: no I/O. Every function returns a value (a `Fill`, a `Rejected`, or None for messages
that are not fills) and never raises on bad input, so one bad frame can never stop the feed.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from notifier.events import Fill, Side


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a frame or item was dropped.

    `reason` is a short stable label (a metric label): not_json, not_object, binary,
    oversized, missing_field, bad_decimal, price_range, quantity, side, text, time, type.
    `detail` names the field and a truncated value; feed values hold no secrets.
    """

    reason: str
    detail: str


class _Reject(Exception):
    """Internal short-cut out of field parsing; never escapes this module."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.rejected = Rejected(reason, detail)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Fill times a venue can mean. Past them the fill is a venue's bug, and a time near year 1 or
# 9999 overflows once shown in a zone or moved on by a rule's longest wait (durations.MAX_DAYS,
# under 2,000 years): refused here, not crashing the pipeline (and, the fill coming back with
# each backfill, every restart after it) or a dry run.
EARLIEST_FILL = _EPOCH
LATEST_FILL = datetime(8000, 1, 1, tzinfo=UTC)
# A plain decimal literal; Decimal() alone would also take "1_000", " NaN", "Infinity".
_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
MAX_TEXT = 64
# What text we show may not hold: control characters, lone surrogates (JSON's "\ud800"; no
# UTF-8 encodes one, so the state file refused the fill and the pipeline stopped), and line
# or paragraph separators (a line of its own in a log or a listing).
_UNSHOWABLE = frozenset({"Cc", "Cs", "Zl", "Zp"})
# Direction controls: they reorder what follows them when text is shown (render drops them too).
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MAX_SHOWN = 1000  # characters of a venue's title kept: a question (rules match it), not a page
# Bounds that keep later arithmetic (notional, key normalization) exact and overflow-free.
_MAX_DIGITS = 28
_MAX_ADJUSTED = 18
_MIN_ADJUSTED = -18
_MIN_ZERO_EXPONENT = -64  # "0.000…0" with up to 64 places is still zero to us
_MAX_EPOCH = Decimal(10) ** 15  # milliseconds: past year 30,000, so no time of ours
_FILL_TYPES = frozenset({"fill", "execution"})
_ZERO, _ONE = Decimal(0), Decimal(1)
# The wire's usual form ("0.65", "10.0"): small enough that no bound above can be broken,
# so it skips the general checks (the hot path of every frame).
PLAIN_DECIMAL = re.compile(r"\d{1,12}(?:\.\d{1,12})?")


def _show(value: object) -> str:
    """A short, safe rendering of a bad value for a log line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def decode_frame(data: str | bytes, *, max_bytes: int) -> dict[str, object] | Rejected:
    """Parse one text frame into a JSON object, numbers kept exact as `Decimal`."""
    size = len(data) if isinstance(data, bytes) else _utf8_len(data, max_bytes)
    if size > max_bytes:
        return Rejected("oversized", f"frame of {size} bytes exceeds {max_bytes}")
    if isinstance(data, bytes):
        return Rejected("binary", f"binary frame of {size} bytes")
    try:
        value = _DECODER.decode(data)
    except (ValueError, RecursionError) as exc:
        return Rejected("not_json", f"not JSON: {_show(str(exc))}")
    except ArithmeticError:  # Decimal's InvalidOperation: an exponent past its range
        return Rejected("not_json", "not JSON: a number out of range")
    if not isinstance(value, dict):
        return Rejected("not_object", f"JSON {type(value).__name__}, not an object")
    return value


def decode_json(text: str) -> object:
    """A REST answer's JSON, numbers exact as in frames; ValueError if it is not JSON.

    History must key a fill as the feed does: a quantity parsed as float there would give the
    same fill a second identity (and a second alert).
    """
    try:
        return _DECODER.decode(text)
    except RecursionError as exc:  # nested deeper than the parser can go
        raise ValueError("JSON nested too deeply") from exc
    except ArithmeticError as exc:  # Decimal's InvalidOperation: an exponent past its range
        raise ValueError("a number out of range") from exc


def _utf8_len(text: str, limit: int) -> int:
    """Encoded length, without encoding when the text is clearly small enough."""
    return len(text) if len(text) * 4 <= limit else len(text.encode("utf-8", "surrogatepass"))


def _no_constant(name: str) -> object:
    """Refuse NaN and Infinity literals, which are not JSON."""
    raise ValueError(f"{name} is not a JSON number")


# One decoder for every frame (json.loads with options builds a new one per call).
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constant)


def normalize_message(obj: Mapping[str, object]) -> Fill | Rejected | None:
    """A feed message as a `Fill`; None for pongs, acknowledgements and unknown types."""
    kind = obj.get("type")
    if not isinstance(kind, str) or kind.lower() not in _FILL_TYPES:
        return None
    if "data" in obj:
        data = obj["data"]
        if not isinstance(data, Mapping):
            return Rejected("type", f"data={_show(data)} is not an object")
        return _to_fill(_merged(obj, data))
    return _to_fill(obj)


def _merged(obj: Mapping[str, object], data: Mapping[str, object]) -> dict[str, object]:
    """The nested shape's fields: those in `data`, an envelope field filling any gap."""
    return {**{k: v for k, v in obj.items() if k not in ("type", "data")}, **data}


def normalize_history_item(obj: Mapping[str, object]) -> Fill | Rejected:
    """An item of `GET /v1/account/history` as a `Fill`."""
    return _to_fill(obj)


OrderReference = tuple[str, str | None, str | None, str | None]


def order_reference(obj: Mapping[str, object]) -> OrderReference | None:
    """An item of `GET /v1/orders` as (order_id, client_order_id, market_id, side), read as a
    fill's are, so a recovered fill gets the very text a live frame would carry; market and
    side are None where missing or garbled. None if the item has no usable order id."""
    try:
        order_id = _ident(obj, "order_id")
    except _Reject:
        return None
    try:
        client_order_id = _optional(obj, "client_order_id")
    except _Reject:
        client_order_id = None
    try:
        market_id, side = _optional(obj, "market_id"), _optional(obj, "side")
    except _Reject:
        market_id = side = None
    return order_id, client_order_id, market_id, side.upper() if side else None


_REQUIRED = ("order_id", "market_id", "side", "outcome", "price", "quantity")


def missing_fields(obj: Mapping[str, object]) -> list[str]:
    """Every field a fill lacks (in any shape), for a person writing one by hand: the feed's
    reading stops at the first, which answers a half-written fill one field at a time."""
    data = obj.get("data")
    fields = _merged(obj, data) if isinstance(data, Mapping) else obj
    missing = [name for name in _REQUIRED if _absent(fields.get(name))]
    if _absent(fields.get("filled_at")) and _absent(fields.get("timestamp")):
        missing.append("filled_at (or timestamp)")
    return missing


def normalize_any(obj: Mapping[str, object]) -> Fill | Rejected | None:
    """A feed message of any shape, or a bare fill object without `type` (history form)."""
    if "type" in obj:
        return normalize_message(obj)
    return normalize_history_item(obj)


def _to_fill(obj: Mapping[str, object]) -> Fill | Rejected:
    try:
        price = _decimal(obj, "price")
        if not _ZERO <= price <= _ONE:
            raise _Reject("price_range", f"price={_show(obj['price'])} outside [0, 1]")
        quantity = _decimal(obj, "quantity")
        if quantity <= 0:
            raise _Reject("quantity", f"quantity={_show(obj['quantity'])} is not positive")
        return Fill(
            order_id=_ident(obj, "order_id"),
            market_id=_text(obj, "market_id"),
            side=_side(obj),
            outcome=_text(obj, "outcome"),
            price=price,
            quantity=quantity,
            filled_at=_time(obj),
            status=_optional(obj, "status"),
            client_order_id=_optional(obj, "client_order_id"),
        )
    except _Reject as exc:
        return _naming_order(exc.rejected, obj)


def _naming_order(rejected: Rejected, obj: Mapping[str, object]) -> Rejected:
    """The rejection with the order it was for, where that much is readable: a trader looks
    that fill up at the venue, since no alert will come for it."""
    if rejected.detail.startswith("order_id"):
        return rejected
    try:
        order_id = _ident(obj, "order_id")
    except _Reject:
        return rejected
    return Rejected(rejected.reason, f"{rejected.detail} (order {order_id})")


def _absent(value: object) -> bool:
    """A field not given: missing, null or empty text."""
    return value is None or value == ""


def _required(obj: Mapping[str, object], name: str) -> object:
    value = obj.get(name)
    if _absent(value):
        raise _Reject("missing_field", f"{name} is missing")
    return value


def _text(obj: Mapping[str, object], name: str) -> str:
    value = _required(obj, name)
    if not isinstance(value, str):
        raise _Reject("type", f"{name}={_show(value)} is not a string")
    return _clean(name, value)


def _ident(obj: Mapping[str, object], name: str) -> str:
    """An id the venue sends as an int in one shape and a string in another."""
    value = _required(obj, name)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return _clean(name, value)
    raise _Reject("type", f"{name}={_show(value)} is not a string or integer")


def _clean(name: str, value: str) -> str:
    """Text an alert can show: not blank, nothing `_UNSHOWABLE` (an order id of "\r" once
    went out as an empty title). kept_as_is() first: the common case costs one C call."""
    if kept_as_is(value):
        return value
    if not value.strip() or any(unicodedata.category(c) in _UNSHOWABLE for c in value):
        raise _Reject("text", f"{name}={_show(value)} is blank or holds control characters")
    return value  # unusual but printable-enough (a no-break space): kept


def kept_as_is(text: str) -> bool:
    """Text a fill keeps as it came, with no closer look: printable and not blank."""
    return text.isprintable() and bool(text.strip())


def showable(text: str) -> str:
    """`text` with each `_UNSHOWABLE` character made a space, bidi controls dropped (they
    reorder what follows them: a title could show "above" where the venue wrote "below"),
    stripped, and cut to `MAX_SHOWN` characters: for text that is shown, not matched on
    identity (a market's title from the venue's REST answer)."""
    if not text.isprintable():
        text = BIDI_CONTROLS.sub("", text)
        text = "".join(" " if unicodedata.category(c) in _UNSHOWABLE else c for c in text)
    text = text.strip()
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1].rstrip() + "…"


def _optional(obj: Mapping[str, object], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        try:
            return _clean(name, value)
        except _Reject:
            return None  # blank or garbled: the fill still counts, without this detail
    raise _Reject("type", f"{name}={_show(value)} is not a string")


def _side(obj: Mapping[str, object]) -> Side:
    value = _text(obj, "side").upper()
    if value == "BUY":
        return "BUY"
    if value == "SELL":
        return "SELL"
    raise _Reject("side", f"side={_show(obj['side'])} is not BUY or SELL")


def _decimal(obj: Mapping[str, object], name: str) -> Decimal:
    """An exact decimal from wire text (JSON ints and exact Decimals accepted too)."""
    value = _required(obj, name)
    if type(value) is str and PLAIN_DECIMAL.fullmatch(value):
        return Decimal(value)
    if isinstance(value, bool):
        raise _Reject("type", f"{name}={_show(value)} is not a number")
    if isinstance(value, float):
        value = repr(value)  # a dict built outside decode_frame: its shortest repr is the text
    if isinstance(value, int | Decimal):
        value = str(value)
    if not isinstance(value, str):
        raise _Reject("type", f"{name}={_show(value)} is not a decimal string")
    text = value.strip()
    if len(text) > MAX_TEXT or not _DECIMAL_TEXT.fullmatch(text):
        raise _Reject("bad_decimal", f"{name}={_show(value)} is not a decimal")
    try:
        number = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
        raise _Reject("bad_decimal", f"{name}={_show(value)} is not a decimal") from None
    # A zero's only bound is its exponent (its adjusted() for one digit): "0E-20" is a fine
    # zero, "0E-999999999" one whose plain rendering has a billion digits.
    low = _MIN_ADJUSTED if number else _MIN_ZERO_EXPONENT
    if len(number.as_tuple().digits) > _MAX_DIGITS or not low <= number.adjusted() <= _MAX_ADJUSTED:
        raise _Reject("bad_decimal", f"{name}={_show(value)} is out of range")
    # "-0" is zero: unsigned, or the same fill would key apart from "0" and show "-0".
    return number.copy_abs() if not number and number.is_signed() else number


def _time(obj: Mapping[str, object]) -> datetime:
    """`filled_at` (fill, history) or `timestamp` (execution) as aware UTC, in fill range."""
    name = "timestamp" if _absent(obj.get("filled_at")) else "filled_at"
    at = _any_time(obj, name)
    if not fill_time(at):
        raise _Reject("time", f"{name}={_show(obj[name])} is out of range (1970 to 7999)")
    return at


def fill_time(at: datetime) -> bool:
    """Whether an aware time lies where a fill's may (`EARLIEST_FILL` to `LATEST_FILL`)."""
    return EARLIEST_FILL <= at < LATEST_FILL


def _any_time(obj: Mapping[str, object], name: str) -> datetime:
    """The field `name` as aware UTC, whatever time it names."""
    if _absent(obj.get(name)):  # neither: name both, as either shape may have sent it
        raise _Reject("missing_field", "filled_at (or timestamp) is missing")
    value = obj[name]
    if isinstance(value, bool):
        raise _Reject("type", f"{name}={_show(value)} is not a time")
    if isinstance(value, int | Decimal | float):
        return _epoch(name, value)
    if not isinstance(value, str):
        raise _Reject("type", f"{name}={_show(value)} is not a time")
    if len(value) > MAX_TEXT:
        raise _Reject("time", f"{name}={_show(value)} is not an ISO-8601 time")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _Reject("time", f"{name}={_show(value)} is not an ISO-8601 time") from None
    if parsed.tzinfo is UTC:  # "Z": as the venue sends it
        return parsed
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)  # the venue's naive times are UTC
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _Reject("time", f"{name}={_show(value)} is out of range") from None


def _epoch(name: str, value: int | Decimal | float) -> datetime:
    """Epoch seconds, or milliseconds when the number is too large to be seconds."""
    try:
        seconds = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        # Bounded before any arithmetic: int() of 1e999990 builds a million-digit integer
        # (seconds of event-loop stall for one frame).
        if not seconds.is_finite() or not 0 <= seconds <= _MAX_EPOCH:
            raise ValueError(value)
        if seconds > 100_000_000_000:  # past year 5138 as seconds: it must be milliseconds
            seconds /= 1000
        return _EPOCH + timedelta(microseconds=int(seconds * 1_000_000))
    except (ValueError, OverflowError, ArithmeticError):
        raise _Reject("time", f"{name}={_show(value)} is not an epoch time") from None
