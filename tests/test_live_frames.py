"""live_frames.py: the flat shapes' fast path reads a frame exactly as normalize does."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from test_normalize import FLAT_EXECUTION, FLAT_FILL

from notifier.events import Fill
from notifier.live_frames import _DECODER, _flat_fill, _FlatFill, read_live_frame
from notifier.normalize import Rejected, decode_frame, normalize_message

MAX = 1 << 20
EXECUTION = {**FLAT_EXECUTION, "client_order_id": "bot-7"}  # every optional field set


def reference(data: str | bytes) -> Fill | Rejected | None:
    """normalize.py's reading of a frame: every shape, every reason."""
    decoded = decode_frame(data, max_bytes=MAX)
    return decoded if isinstance(decoded, Rejected) else normalize_message(decoded)


def assert_same(text: str) -> Fill | Rejected | None:
    got, expected = read_live_frame(text, max_bytes=MAX), reference(text)
    assert got == expected
    if isinstance(got, Fill):
        assert isinstance(expected, Fill)
        assert got.key == expected.key
    return got


def test_the_flat_shapes_take_the_fast_path_and_read_as_normalize_reads_them() -> None:
    variants = [
        FLAT_FILL,
        EXECUTION,
        {**FLAT_FILL, "side": "sell", "outcome": "No", "price": "1", "quantity": "0.000001"},
        {**FLAT_FILL, "order_id": -7, "status": None, "client_order_id": None},
        {**FLAT_FILL, "filled_at": "2026-02-06T12:00:45.123456", "fee": "0", "extra": [1, 2.5]},
        {**FLAT_FILL, "filled_at": "", "timestamp": "2026-02-06 12:00:45Z"},
        {**FLAT_FILL, "market_id": "Ünïcode market ✓", "price": "0", "quantity": "007.50"},
    ]
    for message in variants:
        for ascii_only in (True, False):
            text = json.dumps(message, ensure_ascii=ascii_only)
            fast = _flat_fill(text)
            assert isinstance(fast, Fill), message
            assert assert_same(text) == fast
    fill = _flat_fill(json.dumps(EXECUTION))
    assert fill is not None
    assert (fill.order_id, fill.price, fill.quantity) == ("42", Decimal("0.65"), Decimal(10))
    assert fill.filled_at == datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC)
    assert (fill.status, fill.client_order_id) == ("FILLED", "bot-7")


def test_what_the_fast_path_is_not_sure_of_goes_to_normalize() -> None:
    """Each of these is normalize's to decide: another shape, type or form, or a bad value."""
    nested: dict[str, object] = {
        "type": "execution",
        "data": {k: v for k, v in FLAT_FILL.items() if k != "type"},
    }
    cases: list[dict[str, object]] = [
        nested,
        {**FLAT_FILL, "data": None},
        {**FLAT_FILL, "type": "FILL"},
        {**FLAT_FILL, "type": "pong"},
        {**FLAT_FILL, "order_id": True},
        {**FLAT_FILL, "order_id": ""},
        {**FLAT_FILL, "price": 0.65},
        {**FLAT_FILL, "price": "1.5"},
        {**FLAT_FILL, "filled_at": "0001-01-01T00:00:00Z"},
        {**FLAT_FILL, "filled_at": "8000-01-01T00:00:00"},
        {**FLAT_FILL, "price": "6.5e-1"},
        {**FLAT_FILL, "quantity": "0"},
        {**FLAT_FILL, "side": "hold"},
        {**FLAT_FILL, "side": " BUY"},
        {**FLAT_FILL, "outcome": "\u00a0"},
        {**FLAT_FILL, "market_id": "a\u2028b"},
        {**FLAT_FILL, "status": "\r", "client_order_id": 7},
        {**FLAT_FILL, "filled_at": 1770379245},
        {**FLAT_FILL, "filled_at": "2026-02-06T14:00:45+02:00"},
        {**FLAT_FILL, "filled_at": "yesterday"},
        {k: v for k, v in FLAT_FILL.items() if k != "filled_at"},
    ]
    for message in cases:
        text = json.dumps(message)
        assert _flat_fill(text) is None, message
        assert_same(text)
    for text in ('{"type": "fill"', "[1, 2]", '{"type": "fill", "price": NaN}', "\ud800"):
        assert _flat_fill(text) is None
        assert isinstance(assert_same(text), Rejected)
    assert read_live_frame(b"{}", max_bytes=MAX) == Rejected("binary", "binary frame of 2 bytes")
    big = json.dumps({**FLAT_FILL, "pad": "x" * 300})
    oversized = read_live_frame(big, max_bytes=256)
    assert isinstance(oversized, Rejected)
    assert oversized == decode_frame(big, max_bytes=256)


def test_a_repeated_key_counts_its_last_value_in_both() -> None:
    text = json.dumps(FLAT_FILL)[:-1] + ', "price": "0.7", "side": "SELL"}'
    fill = assert_same(text)
    assert isinstance(fill, Fill)
    assert (fill.price, fill.side) == (Decimal("0.7"), "SELL")


def test_an_integer_longer_than_int_takes_is_not_json_in_both() -> None:
    """normalize's decoder makes an int of each integer, and int() refuses more digits than
    sys.get_int_max_str_digits() (4300 by default; 0: any); msgspec skips a field it does not
    read without converting it, so a fill with such a number in an extra field was read."""
    default = sys.get_int_max_str_digits()
    try:
        for limit in (default, 640, 0):
            sys.set_int_max_str_digits(limit)
            for digits in (640, 641, 4300, 4301):
                for number in ("1" * digits, "-" + "9" * digits):
                    text = json.dumps(FLAT_FILL)[:-1] + f', "fee": [{number}]}}'
                    got = assert_same(text)
                    refused = limit != 0 and digits > limit
                    if refused:
                        assert isinstance(got, Rejected)
                        assert got.reason == "not_json"
                    else:
                        assert isinstance(got, Fill), (limit, digits)
    finally:
        sys.set_int_max_str_digits(default)


def test_a_number_no_decimal_holds_in_a_field_neither_reads_keeps_the_fill_here() -> None:
    """One of the documented differences: normalize's decoder makes a Decimal of every number
    and refuses the frame when one is past Decimal's range; msgspec skips a field the fast
    path does not read, so the fill is read (the field was never going to be looked at)."""
    for number in ("1e99999999999999999999", "-1E-99999999999999999999"):
        text = json.dumps(FLAT_FILL)[:-1] + f', "fee": {number}}}'
        assert isinstance(read_live_frame(text, max_bytes=MAX), Fill)
        assert reference(text) == Rejected("not_json", "not JSON: a number out of range")
    pong = '{"type": "pong", "fee": 1e99999999999999999999}'
    assert read_live_frame(pong, max_bytes=MAX) == reference(pong)  # not a fill: normalize's


def test_the_fast_path_leaves_data_undecoded_for_normalize() -> None:
    """A frame with `data` goes to normalize whatever it holds, so the fast path only notes it.
    Decoded, a number like 1e300 cost msgspec some 8 µs (a float made the slow way): a frame of
    them in `data` took the fast path 25 times what normalize then took to read it again."""
    text = json.dumps({**FLAT_FILL, "data": [1.5e300] * 350})
    assert len(text) < 4300  # within int()'s digit limit: the fast path reads it
    assert isinstance(_DECODER.decode(text).data, msgspec.Raw)
    assert _flat_fill(text) is None
    rejected = assert_same(text)
    assert isinstance(rejected, Rejected)
    assert rejected.reason == "type"


_texts = st.sampled_from(
    ["BUY", "sell", "Sell", "Yes", "No", "x", "", " ", "\t", "\u00a0", "a\x00", "\u200fYes"]
)
_decimal_texts = st.sampled_from(
    ["0.5", "1", "0", "0.0", "10.0", "007", ".5", "1.", "1e2", "-0", "+0.5", " 0.5", "1_0"]
) | st.decimals(allow_nan=True, allow_infinity=True).map(str)
_times = st.sampled_from(
    [
        "2026-02-06T12:00:45Z",
        "2026-02-06T12:00:45",
        "2026-02-06T12:00:45.5+00:00",
        "2026-02-06T12:00:45-05:00",
        "2026-02-06",
        " 2026-02-06T12:00:45Z ",
        "",
        "0001-01-01T00:00:00+14:00",
    ]
)
_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | _texts
    | _decimal_texts
    | _times
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.sampled_from(["side", "price"]), _texts, max_size=2)
)
_fields = st.sampled_from([*_FlatFill.__struct_fields__, "fee"])  # every one it reads, and one more


@settings(max_examples=1500, deadline=None)
@given(
    st.dictionaries(_fields, _values, max_size=4),
    st.lists(_fields, max_size=2),
    st.booleans(),
)
def test_any_near_miss_frame_reads_the_same_both_ways(
    changes: dict[str, object], dropped: list[str], ascii_only: bool
) -> None:
    """A flat fill with fields changed or dropped: the same Fill, Rejected or None either way."""
    message = {**EXECUTION, **changes}
    for name in dropped:
        message.pop(name, None)
    assert_same(json.dumps(message, ensure_ascii=ascii_only))


_wire_texts = st.text(st.characters(codec="utf-8"), max_size=4) | st.sampled_from(
    ["Yes", " ", "\u00a0", "a\u200b", "\u2028", "\ud800", "ß", "ǆ", "😀"]
)
# Padded past normalize's 64 characters, other offsets, a long s, Arabic and wide digits.
_wire_times = st.sampled_from(
    ["2026-02-06T12:00:45Z", "2026-02-06 12:00:45.5", "2026-02-06T12:00:45.123+00:00", "2026-02-06"]
).flatmap(
    lambda t: st.sampled_from(
        [t, f" {t}\t", t.ljust(65), t.replace("Z", "-00:00"), t + "+01:00", t + "x", ""]
    )
)
_wire_values: dict[str, st.SearchStrategy[object]] = {
    "type": st.sampled_from(["fill", "execution", "Fill"]),
    "order_id": st.integers() | _wire_texts,
    "side": st.sampled_from(["BUY", "sell", "\u017fell", "BUY "]) | _wire_texts,
    "price": st.sampled_from(["0.65", "1", "0", "1.01", "\u0660.\u0665", "0.0000000000001"]),
    "quantity": st.sampled_from(["10", "0.0", "\uff11", "999999999999.999999999999"]),
    "filled_at": _wire_times | st.none(),
    "timestamp": _wire_times | st.none(),
}
_wire_fields = st.sampled_from([name for name in _FlatFill.__struct_fields__ if name != "data"])


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        _wire_fields.flatmap(
            lambda name: st.tuples(st.just(name), _wire_values.get(name, _wire_texts | st.none()))
        ),
        max_size=3,
    ),
    st.booleans(),
)
def test_any_fill_of_the_wire_types_reads_the_same_both_ways(
    changes: list[tuple[str, object]], ascii_only: bool
) -> None:
    """Values of the types the fast path takes, so many frames are its to read (the near-miss
    test above leaves nine in ten to normalize): each must read as normalize reads it."""
    assert_same(json.dumps({**EXECUTION, **dict(changes)}, ensure_ascii=ascii_only))
