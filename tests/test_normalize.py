"""Normalization of the three wire shapes and history items, and refusal of bad input."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import notifier.normalize as normalize_module
from notifier.durations import MAX_DAYS
from notifier.events import Fill
from notifier.normalize import (
    LATEST_FILL,
    Rejected,
    decode_frame,
    normalize_any,
    normalize_history_item,
    normalize_message,
)

MARKET = "0x1a2b3c"
WHEN = datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC)

FLAT_FILL = {
    "type": "fill",
    "order_id": 42,
    "market_id": MARKET,
    "side": "BUY",
    "outcome": "Yes",
    "price": "0.65",
    "quantity": "10.0",
    "filled_at": "2026-02-06T12:00:45Z",
}
FLAT_EXECUTION = {
    "type": "execution",
    "order_id": "42",
    "market_id": MARKET,
    "side": "BUY",
    "outcome": "Yes",
    "price": "0.65",
    "quantity": "10",
    "status": "FILLED",
    "timestamp": "2026-02-06T12:00:45+00:00",
}
NESTED_EXECUTION = {
    "type": "execution",
    "data": {k: v for k, v in FLAT_EXECUTION.items() if k != "type"},
}
HISTORY_ITEM = {
    "order_id": 42,
    "market_id": MARKET,
    "side": "BUY",
    "outcome": "Yes",
    "price": "0.65",
    "quantity": "10.00",
    "notional": "6.5",
    "fee": "0",
    "status": "FILLED",
    "filled_at": "2026-02-06T12:00:45",
    "created_at": "2026-02-06T12:00:44",
}


def _fill(result: Fill | Rejected | None) -> Fill:
    assert isinstance(result, Fill), result
    return result


def test_all_three_shapes_and_history_give_the_same_fill() -> None:
    """Flat fill, flat execution, nested execution and a history item share one identity."""
    fills = [
        _fill(normalize_message(FLAT_FILL)),
        _fill(normalize_message(FLAT_EXECUTION)),
        _fill(normalize_message(NESTED_EXECUTION)),
        _fill(normalize_history_item(HISTORY_ITEM)),
    ]
    assert len({f.key for f in fills}) == 1
    first = fills[0]
    assert first.order_id == "42"
    assert first.side == "BUY"
    assert first.price == Decimal("0.65")
    assert first.quantity == Decimal("10.0")
    assert first.notional == Decimal("6.5")
    assert first.filled_at == WHEN
    assert first.status is None
    assert fills[1].status == "FILLED"


def test_decode_keeps_numbers_exact() -> None:
    """JSON numbers decode as Decimal, so a numeric price is as exact as a string one."""
    frame = json.dumps(FLAT_FILL).replace('"0.65"', "0.1").replace('"10.0"', "3")
    fill = _fill(normalize_message(_decoded(frame)))
    assert fill.price == Decimal("0.1")
    assert fill.notional == Decimal("0.3")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-02-06T14:00:45+02:00", WHEN),
        ("2026-02-06T12:00:45.000Z", WHEN),
        ("2026-02-06T12:00:45", WHEN),
        (1770379245, WHEN),
        (1770379245000, WHEN),
        (Decimal("1770379245.5"), WHEN.replace(microsecond=500_000)),
    ],
)
def test_times_become_aware_utc(value: object, expected: datetime) -> None:
    """Offsets are converted, naive times are UTC, epoch seconds and milliseconds work."""
    fill = _fill(normalize_message({**FLAT_FILL, "filled_at": value}))
    assert fill.filled_at == expected
    assert fill.filled_at.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00Z",  # Go's zero time
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59Z",
        "8000-01-01T00:00:00Z",
        "0001-01-01T05:00:00+05:00",
        -1,
    ],
)
def test_a_time_no_fill_can_have_is_rejected_not_carried_on(value: object) -> None:
    """A fill time before 1970 or past 7999 is a venue's bug, and near year 1 or 9999 it would
    overflow once shown in a rule's zone or moved on by its longest wait: rejected with the
    value and the range, as any bad field is, for every shape (the history item too)."""
    for normalize in (normalize_message, normalize_history_item):
        rejected = normalize({**FLAT_FILL, "filled_at": value})
        assert isinstance(rejected, Rejected)
        assert rejected.reason == "time"
    fill = _fill(normalize_message({**FLAT_FILL, "filled_at": "7999-12-31T23:59:59Z"}))
    assert fill.filled_at.year == 7999
    assert LATEST_FILL + timedelta(days=MAX_DAYS + 2) < datetime.max.replace(tzinfo=UTC)
    assert _fill(normalize_message({**FLAT_FILL, "filled_at": 0})).filled_at.year == 1970


def test_lowercase_side_and_optional_fields() -> None:
    """`sell` becomes SELL; client_order_id and status are kept when present."""
    fill = _fill(normalize_message({**FLAT_EXECUTION, "side": "sell", "client_order_id": "bot-7"}))
    assert fill.side == "SELL"
    assert fill.client_order_id == "bot-7"


@pytest.mark.parametrize(
    "message",
    [
        {"type": "pong", "ts": 1770379245000},
        {"type": "pong", "timestamp": "2026-02-06T12:00:45Z"},
        {"type": "subscribed", "channel": "executions"},
        {"type": "price", "market_id": MARKET, "buy": "0.5"},
        {"status": "ok"},
        {"type": 7},
    ],
)
def test_non_fill_messages_are_not_errors(message: dict[str, object]) -> None:
    """Pongs, acknowledgements and unknown types are None: neither fill nor rejection."""
    assert normalize_message(message) is None


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"price": "abc"}, "bad_decimal"),
        ({"price": "NaN"}, "bad_decimal"),
        ({"price": "Infinity"}, "bad_decimal"),
        ({"price": "1_0"}, "bad_decimal"),
        ({"quantity": "1e400"}, "bad_decimal"),
        ({"price": "0E-100000000"}, "bad_decimal"),  # a zero whose plain text is 100 MB
        ({"price": "0E+100000000"}, "bad_decimal"),
        ({"filled_at": Decimal("1e999990")}, "time"),  # a million-digit integer to build
        ({"filled_at": Decimal("1e16")}, "time"),
        ({"price": "1.01"}, "price_range"),
        ({"price": "-0.1"}, "price_range"),
        ({"quantity": "0"}, "quantity"),
        ({"quantity": "-5"}, "quantity"),
        ({"side": "HOLD"}, "side"),
        ({"filled_at": "yesterday"}, "time"),
        ({"filled_at": 10**30}, "time"),
        ({"order_id": None}, "missing_field"),
        ({"market_id": ""}, "missing_field"),
        ({"outcome": ["Yes"]}, "type"),
        ({"order_id": 4.2}, "type"),
        ({"price": True}, "type"),
        ({"price": ["0.5"]}, "type"),
        ({"status": {"a": 1}}, "type"),
        ({"filled_at": {"at": 1}}, "type"),
    ],
)
def test_bad_fields_are_rejected_by_reason(override: dict[str, object], reason: str) -> None:
    """Each invalid field yields a Rejected with its stable reason label and names the field."""
    result = normalize_message({**FLAT_FILL, **override})
    assert isinstance(result, Rejected)
    assert result.reason == reason
    assert next(iter(override)) in result.detail


def test_blank_or_control_character_text_is_rejected_optional_text_dropped() -> None:
    """An order id of "\r" went out as an empty alert title: ids, market and outcome must be
    text an alert can show. A garbled client order id or status only loses that detail."""
    for field in ("order_id", "market_id", "outcome"):
        # A lone surrogate ("\ud800" in JSON) encodes to no UTF-8: the state file refused it
        # and the pipeline stopped. A line separator starts a line of its own in a log.
        for value in ("\r", " ", "4\x002", "\x1b[31m", "0x\ud800", "a\u2028b"):
            result = normalize_message({**FLAT_FILL, field: value})
            assert isinstance(result, Rejected), (field, value)
            assert result.reason == "text"
            assert field in result.detail
    kept = normalize_message(
        {**FLAT_FILL, "client_order_id": "\n", "status": " ", "market_title": "\udfff?"}
    )
    assert isinstance(kept, Fill)
    assert (kept.client_order_id, kept.status, kept.market_title) == (None, None, None)
    odd = normalize_message({**FLAT_FILL, "outcome": "Yes\u00a0\u2014 by March"})
    assert isinstance(odd, Fill)  # printable enough: kept as sent


def test_missing_time_and_bad_nested_data_are_rejected() -> None:
    """No filled_at/timestamp is a missing field; a non-object `data` is a type error."""
    no_time = {k: v for k, v in FLAT_FILL.items() if k != "filled_at"}
    missing = Rejected("missing_field", "filled_at (or timestamp) is missing (order 42)")
    assert normalize_message(no_time) == missing
    assert normalize_message({**no_time, "filled_at": None}) == missing
    bad = normalize_message({"type": "execution", "data": "oops"})
    assert isinstance(bad, Rejected)
    assert bad.reason == "type"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"type": "fill"}', "binary"),
        ("x" * 101, "oversized"),
        (b"x" * 101, "oversized"),
        ("{not json", "not_json"),
        ('{"price": NaN}', "not_json"),
        ('{"price": Infinity}', "not_json"),
        ("[" * 5000 + "]" * 5000, "not_json"),
        ('{"fee": 1e99999999999999999999}', "not_json"),  # past what a Decimal holds
        ('{"fee": -1E-99999999999999999999}', "not_json"),
        ("[1, 2]", "not_object"),
        ('"text"', "not_object"),
    ],
)
def test_decode_frame_refuses_what_is_not_a_json_object(data: str | bytes, reason: str) -> None:
    """Binary, oversized, non-JSON (NaN included) and non-object frames are refused by reason."""
    max_bytes = 100 if reason == "oversized" else 1 << 20
    result = decode_frame(data, max_bytes=max_bytes)
    assert isinstance(result, Rejected)
    assert result.reason == reason


def test_oversized_counts_encoded_bytes() -> None:
    """The size limit is in UTF-8 bytes, not characters."""
    assert isinstance(decode_frame('{"a": "' + "é" * 60 + '"}', max_bytes=100), Rejected)
    assert decode_frame('{"a": "' + "e" * 60 + '"}', max_bytes=100) == {"a": "e" * 60}


def test_normalize_any_takes_messages_and_bare_fills() -> None:
    """A message with `type` goes by its type; an object without one is read as a bare fill."""
    assert _fill(normalize_any(HISTORY_ITEM)).order_id == "42"
    assert _fill(normalize_any(NESTED_EXECUTION)).order_id == "42"
    assert normalize_any({"type": "pong"}) is None
    assert isinstance(normalize_any({"order_id": 1}), Rejected)


def test_floats_from_outside_decode_frame_are_read_by_their_text() -> None:
    """A dict built with plain json.loads (floats) still gives the decimal the text meant."""
    fill = _fill(
        normalize_any(
            json.loads(
                '{"order_id": 1, "market_id": "m", "side": "BUY",'
                '"outcome": "Yes", "price": 0.1, "quantity": 3,'
                '"filled_at": "2026-02-06T12:00:45Z"}'
            )
        )
    )
    assert fill.price == Decimal("0.1")


def test_normalize_is_pure() -> None:
    """The core module imports nothing that does I/O or async."""
    tree = ast.parse(Path(normalize_module.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {"asyncio", "socket", "httpx", "websockets", "sqlite3", "os"} & {
        name.split(".")[0] for name in imported
    }


# -- properties ----------------------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)


def _json_nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Named, not a lambda: hypothesis reads a lambda's source to describe it.
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner)


_json = st.recursive(_json_scalars, _json_nest, max_leaves=20)
_field_values = (
    _json_scalars
    | st.sampled_from(["BUY", "sell", "Yes", "0.5", "1", "0", "-1", "1e5", "NaN", ""])
    | st.sampled_from(["2026-02-06T12:00:45Z", "2026-02-06", "9999-12-31T23:59:59-23:59"])
    | st.decimals(allow_nan=True, allow_infinity=True).map(str)
    | st.dictionaries(st.text(max_size=5), _json_scalars, max_size=3)
)
_fields = st.sampled_from(
    [
        "type",
        "order_id",
        "market_id",
        "side",
        "outcome",
        "price",
        "quantity",
        "filled_at",
        "timestamp",
        "status",
        "client_order_id",
        "data",
    ]
)


def _check(result: Fill | Rejected | None) -> None:
    assert result is None or isinstance(result, Fill | Rejected)
    if isinstance(result, Fill):
        assert Decimal(0) <= result.price <= Decimal(1)
        assert result.quantity > 0
        assert result.filled_at.utcoffset() is not None
        assert result.key  # identity is always computable
        assert result.notional >= 0


@settings(max_examples=300, deadline=None)
@given(_json)
def test_arbitrary_json_never_raises(value: object) -> None:
    """Any JSON text decodes to an object or a rejection; normalizing never raises."""
    decoded = decode_frame(json.dumps(value), max_bytes=1 << 20)
    if isinstance(decoded, dict):
        _check(normalize_message(decoded))
        _check(normalize_any(decoded))
        _check(normalize_history_item(decoded))


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(_fields, _field_values, max_size=12),
    st.sampled_from(["fill", "execution", None]),
    st.booleans(),
)
def test_fill_like_objects_never_raise(
    fields: dict[str, object], kind: str | None, nest: bool
) -> None:
    """Near-miss fills (valid and invalid values mixed, any shape) give Fill, Rejected or None."""
    base: dict[str, object] = {k: v for k, v in FLAT_FILL.items() if k != "type"}
    base.update(fields)
    message: dict[str, object] = {"type": kind, "data": base} if nest else {**base, "type": kind}
    _check(normalize_message(message))
    _check(normalize_any(base))
    _check(normalize_history_item(base))
    decoded = decode_frame(json.dumps(message, default=str), max_bytes=1 << 20)
    if isinstance(decoded, dict):
        _check(normalize_message(decoded))


def _decoded(frame: str) -> dict[str, object]:
    result = decode_frame(frame, max_bytes=1 << 20)
    assert isinstance(result, dict)
    return result


def test_a_zero_with_many_places_is_still_a_zero() -> None:
    """Only a zero's exponent is bounded: "0E-20" (str() of a precise zero) is a fine price."""
    fill = _fill(normalize_message({**FLAT_FILL, "price": "0E-20"}))
    assert fill.price == 0


def test_a_negative_zero_is_zero() -> None:
    """A price of "-0" is the fill of price "0": the same identity, shown without the sign."""
    signed = _fill(normalize_message({**FLAT_FILL, "price": "-0.0"}))
    plain = _fill(normalize_message({**FLAT_FILL, "price": "0"}))
    assert signed.key == plain.key
    assert str(signed.price) == "0.0"


def test_a_rejection_names_the_order_it_was_for() -> None:
    """A fill dropped for a bad field names its order, so the trader can look it up (no
    alert will come for it); an order id that is itself the bad field is not repeated."""
    bad_price = normalize_message({**FLAT_FILL, "price": "65%"})
    assert isinstance(bad_price, Rejected)
    assert bad_price.detail.endswith(" (order 42)")
    no_order = normalize_message({k: v for k, v in FLAT_FILL.items() if k != "order_id"})
    assert no_order == Rejected("missing_field", "order_id is missing")
