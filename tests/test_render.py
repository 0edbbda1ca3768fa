"""Templates: what parses, what is refused and why, and rendering that never raises."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from apprise import Apprise
from hypothesis import given
from hypothesis import strategies as st

from notifier.events import Fill
from notifier.format_specs import money_shown
from notifier.render import (
    DEFAULT_BODY,
    DEFAULT_TITLE,
    FILL_FIELDS,
    Markup,
    Template,
    TemplateError,
    escape_for,
    fill_values,
)

FILL = Fill(
    order_id="42",
    market_id="0x1a2b",
    side="BUY",
    outcome="Yes",
    price=Decimal("0.65"),
    quantity=Decimal("10.0"),
    filled_at=datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC),
    status="FILLED",
    market_title="Will it rain?",
)


def test_issue_example_body() -> None:
    """The issue's example body renders with the exact notional to two places."""
    body = Template.parse(
        "{side} {quantity} {outcome} @ {price} (notional {notional:.2f}) #{order_id}"
    )
    assert body.render(fill_values(FILL, rule="r")) == "BUY 10.0 Yes @ 0.65 (notional 6.50) #42"


def test_default_message() -> None:
    """Without title/body a rule says side, quantity, outcome, price, market title, order id."""
    values = fill_values(FILL, rule="r")
    assert Template.parse(DEFAULT_TITLE).render(values) == "BUY Yes on Will it rain?"
    assert (
        Template.parse(DEFAULT_BODY).render(values)
        == "BUY 10.0 Yes @ 0.65 on Will it rain? (order #42)"
    )


def test_a_price_in_cents_as_the_venue_shows_it() -> None:
    """{price_cents}¢: 0.65 is 65¢, 0.425 is 42.5¢, 0.005 is 0.5¢ and the wire's padding
    (0.4200) no 42.00; exact, and specs apply ({price_cents:.0f} of 42.5 is 43)."""
    cents = Template.parse("{price_cents}¢")
    for price, shown in (("0.65", "65¢"), ("0.425", "42.5¢"), ("0.005", "0.5¢"), ("0.4200", "42¢")):
        values = fill_values(dataclasses.replace(FILL, price=Decimal(price)), rule="r")
        assert cents.render(values) == shown
    values = fill_values(dataclasses.replace(FILL, price=Decimal("0.425")), rule="r")
    assert Template.parse("{price_cents:.0f}¢").render(values) == "43¢"


def test_decimal_specs_are_exact() -> None:
    """Format specs apply to the Decimal itself: 2.675 rounds to 2.68, not binary 2.67."""
    values = fill_values(
        dataclasses.replace(FILL, price=Decimal("0.535"), quantity=Decimal(5)), rule="r"
    )
    assert Template.parse("{notional:.2f}").render(values) == "2.68"


def test_money_rounds_half_up_as_a_trader_reads_it() -> None:
    """Decimal's context rounds half to even: a notional of 10.125 showed as 10.12, a price
    of 0.125 as 0.12 and 0.425 as 42%, where a trader (and a spreadsheet) reads 10.13, 0.13
    and 43%. Specs with a type and without one round half up."""
    fill = dataclasses.replace(FILL, price=Decimal("0.125"), quantity=Decimal("81"))
    values = fill_values(fill, rule="r")
    template = Template.parse("{notional:.2f}|{price:.2f}|{price:.2}|{price:.0%}")
    assert template.render(values) == "10.13|0.13|0.13|13%"
    ratio = fill_values(dataclasses.replace(FILL, price=Decimal("0.425")), rule="r")
    assert Template.parse("{price:.0%}|{price:.1}").render(ratio) == "43%|0.4"


def test_decimals_without_a_spec_never_use_exponents() -> None:
    """As the wire wrote them: 0.001 at 0.0001 is a notional of 0.0000001, not 1E-7."""
    small = dataclasses.replace(FILL, price=Decimal("0.0001"), quantity=Decimal("0.001"))
    big = dataclasses.replace(FILL, price=Decimal("0.5"), quantity=Decimal("1e3"))
    body = Template.parse("{quantity} @ {price} = {notional}")
    assert body.render(fill_values(small, rule="r")) == "0.001 @ 0.0001 = 0.0000001"
    assert body.render(fill_values(big, rule="r")) == "1000 @ 0.5 = 500"
    assert body.render(fill_values(FILL, rule="r")) == "10.0 @ 0.65 = 6.50"


def test_a_computed_amount_drops_the_zeros_the_wire_s_padding_made() -> None:
    """A venue padding its decimals ("0.4200" x "1000.000000") made a bare {notional} show
    420.0000000000: past two places, trailing zeros go; significant digits never do, and
    the value rules compare stays the exact product."""
    padded = dataclasses.replace(FILL, price=Decimal("0.4200"), quantity=Decimal("1000.000000"))
    values = fill_values(padded, rule="r")
    assert Template.parse("{notional}").render(values) == "420.00"
    assert padded.notional == Decimal("420.0000000000")
    fine = dataclasses.replace(FILL, price=Decimal("0.125"), quantity=Decimal("81.000"))
    assert Template.parse("{notional}").render(fill_values(fine, rule="r")) == "10.125"
    for text, shown in [
        ("6.500", "6.50"),
        ("500", "500"),
        ("12.5", "12.5"),
        ("0.0000001", "1E-7"),
        ("0.00000", "0.00"),
        ("7.0000000000000000000000000000000000001000", "7.0000000000000000000000000000000000001"),
    ]:
        assert str(money_shown(Decimal(text))) == shown, text


def test_a_spec_without_a_type_never_uses_exponents_either() -> None:
    """`{quantity:,}` or `{price:>10}` went through Decimal's general form: 1E+3, 1E-7."""
    odd = dataclasses.replace(FILL, price=Decimal("0.0000001"), quantity=Decimal("1E+3"))
    body = Template.parse("{quantity:,} @ {price:>10} = {notional:,}|{price:e}")
    assert body.render(fill_values(odd, rule="r")) == "1,000 @  0.0000001 = 0.0001|1e-7"


def test_a_precision_without_a_type_counts_significant_digits_in_plain_digits() -> None:
    """`{price:.2}` is two significant digits, as Decimal's general format counts them (a
    cheap price is not shown as 0.00), written without an exponent (1234.5 is 1200)."""
    template = Template.parse("{price:.2}|{quantity:.2}|{notional:>8.1}")
    cheap = dataclasses.replace(FILL, price=Decimal("0.004"), quantity=Decimal("1234.5"))
    assert template.render(fill_values(cheap, rule="r")) == "0.004|1200|       5"


def test_bidi_controls_in_a_value_never_reach_the_message() -> None:
    """An outcome holding a right-to-left override would show the rest of the line reversed
    (0.65 as 56.0): direction controls in values are dropped, other text kept."""
    odd = dataclasses.replace(FILL, outcome="Yes\u202e", order_id="o\u2066\u2069 1\u200f")
    body = Template.parse("{outcome} @ {price} #{order_id}")
    assert body.render(fill_values(odd, rule="r")) == "Yes @ 0.65 #o 1"


def test_a_mention_in_a_value_pings_nobody() -> None:
    """Venue text cannot ping a Discord server, a Slack channel or a Telegram user: each
    mention in a value gets a zero-width space; the template's own `@here` stays one."""
    title = "@everyone: <!channel> <@123> <@!67> <@&45> @here [x](!here)"
    odd = dataclasses.replace(FILL, market_title=title, outcome="a@b.c")
    body = Template.parse("@here {market_title} / {outcome}").render(fill_values(odd, rule="r"))
    z = "\u200b"
    assert body == (
        f"@here @{z}everyone: <{z}!channel> <{z}@{z}123> <{z}@{z}!67> <{z}@{z}&45> @{z}here "
        f"[x]{z}(!here) / a@{z}b.c"
    )
    assert body.replace(z, "") == f"@here {title} / a@b.c"
    # apprise's Discord plugin finds the template's mention and none of the title's.
    discord = Apprise.instantiate("discord://123/abcdef")
    assert discord.ping_payload(body)["allow_mentions"]["parse"] == ["here"]


def test_a_mention_joined_across_a_template_and_a_value_pings_nobody() -> None:
    """A template's `@{outcome}` with the venue's "everyone", `<{market_id}>` with "!here", or
    a value ending in "@" before the template's "here" would form a mention at the seam: it
    gets the zero-width space there; a template's own mention, and a value ending in "@"
    before a space, stay as written."""
    odd = dataclasses.replace(FILL, outcome="everyone", market_id="!here", order_id="x@")
    z = "\u200b"
    values = fill_values(odd, rule="r")
    assert Template.parse("@{outcome} <{market_id}> {order_id}here").render(values) == (
        f"@{z}everyone <{z}!here> x@{z}here"
    )
    # Through an empty value, and between two values.
    empty = {**values, "status": ""}
    assert Template.parse("@{status}{outcome}|{order_id}{outcome}").render(empty) == (
        f"@{z}everyone|x@{z}everyone"
    )
    assert Template.parse("@here {order_id} @ {side}").render(values) == "@here x@ @ BUY"
    # The template's own text joined across a value the venue left empty.
    assert Template.parse("@{status}here").render(empty) == f"@{z}here"
    # A digest's lines (Markup) begin and end with venue text: their edges are seams too.
    lines = {"lines": Markup("everyone BUY"), "more": Markup("x @")}
    digest = Template.parse("@{lines} {more}here", fields=("lines", "more"))
    assert digest.render(lines) == f"@{z}everyone BUY x @{z}here"
    # In HTML, the seam is judged before escaping: "<" and "!channel" join once read back.
    split = {"order_id": "x<", "outcome": "!channel>"}
    html_text = Template.parse("{order_id}{outcome}").render(split, escape=escape_for("html"))
    assert html_text == f"x&lt;{z}!channel&gt;"
    discord = Apprise.instantiate("discord://123/abcdef")
    body = Template.parse("@here @{outcome}").render(values)
    assert discord.ping_payload(body)["allow_mentions"]["parse"] == ["here"]


def test_notional_is_exact_for_the_longest_decimals_normalize_admits() -> None:
    """Two wire decimals' product needs more than the context's 28 digits: a bound of
    `notional: {min: 1}` must see that this one is under 1."""
    price, quantity = Decimal("0." + "9" * 15), Decimal("1." + "0" * 14 + "1")  # 1 ∓ 1e-15
    fill = dataclasses.replace(FILL, price=price, quantity=quantity)
    assert fill.notional == Decimal("0." + "9" * 30)  # 28 digits would round it to 1


def test_fill_values_fallbacks() -> None:
    """market_title falls back to market_id; missing optional fields render empty."""
    values = fill_values(dataclasses.replace(FILL, market_title=None, status=None), rule="big")
    assert values["market_title"] == "0x1a2b"
    assert values["status"] == ""
    assert values["client_order_id"] == ""
    assert values["rule"] == "big"
    assert set(values) == set(FILL_FIELDS)


def test_filled_at_reads_well_and_takes_strftime() -> None:
    """filled_at prints as UTC text by default and accepts strftime specs."""
    values = fill_values(FILL, rule="r")
    assert Template.parse("{filled_at}|{filled_at:%H:%M}").render(values) == (
        "2026-02-06 12:00:45 UTC|12:00"
    )


def test_braces_specs_and_str_conversion() -> None:
    """Doubled braces are literal; alignment specs and !s work on string fields."""
    values = fill_values(FILL, rule="r")
    assert Template.parse("{{x}} [{side:>5}] {price!s:<5}|").render(values) == "{x} [  BUY] 0.65 |"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{prcie}", "unknown field {prcie} (did you mean {price}?)"),
        ("{qty}", "unknown field {qty} (did you mean {quantity}?)"),  # a trader's word
        ("{Time:%H:%M}", "unknown field {Time} (did you mean {filled_at}?)"),
        ("{zzz}", "unknown field {zzz}; fields are: order_id, client_order_id, market_id,"),
        ("{}", "positional placeholder {} is not allowed: name a field"),
        ("{0}", "positional placeholder {0} is not allowed: name a field"),
        ("{price.real}", "placeholder {price.real} uses attribute or index access"),
        ("{side[0]}", "placeholder {side[0]} uses attribute or index access"),
        ("{price!r}", "placeholder {price!r}: only the !s conversion is allowed"),
        ("{side:.2f}", "placeholder {side:.2f}: format spec '.2f' does not apply to side"),
        ("{price:{w}}", "placeholder {price:{w}}: nested placeholders in a format spec"),
        ("{price", "bad template syntax: expected '}' before end of string"),
        ("a } b", "bad template syntax: Single '}' encountered in format string"),
    ],
)
def test_refused_templates(text: str, message: str) -> None:
    """Each unusable template is refused at parse time with a message naming the placeholder."""
    with pytest.raises(TemplateError) as info:
        Template.parse(text)
    assert str(info.value).startswith(message)


def test_every_bad_placeholder_of_a_template_is_named_at_once() -> None:
    """Only a template's first bad placeholder was reported: fixing `{pirce}` then showed
    `{qty}`, one reload at a time. Each is named, once, in order."""
    with pytest.raises(TemplateError) as info:
        Template.parse("{pirce} {qty} {price:.2c} {pirce}")
    assert str(info.value) == (
        "unknown field {pirce} (did you mean {price}?); "
        "unknown field {qty} (did you mean {quantity}?); "
        "placeholder {price:.2c}: format spec '.2c' does not apply to price"
    )


@pytest.mark.parametrize("spec", ["%Y %Q", "%d %K", "%-9q", "%+", "%Y %"])
def test_a_strftime_directive_strftime_does_not_know_is_refused(spec: str) -> None:
    """strftime shows a directive it does not know as typed: `{filled_at:%Y %Q}` rendered
    "2026 %Q" in every alert. Refused at load, naming the directive; glibc's flags, widths
    and E/O modifiers stay valid."""
    with pytest.raises(TemplateError) as info:
        Template.parse(f"{{filled_at:{spec}}}")
    directive = spec.split()[-1]
    assert str(info.value) == (
        f"placeholder {{filled_at:{spec}}}: {directive} is not a strftime directive "
        "(it would be shown as typed)"
    )
    assert Template.parse("{filled_at:%-d %b %Ey %10Y %H:%M:%S.%f %Z %%}").fields == {"filled_at"}


def test_custom_fields_and_untyped_specs() -> None:
    """Other stages can pass their own fields; a spec on an unknown-type field needs some type."""
    template = Template.parse("{count:>3} {vwap:.4f}", fields=("count", "vwap"))
    assert template.render({"count": 3, "vwap": Decimal("0.5")}) == "  3 0.5000"
    assert template.fields == frozenset({"count", "vwap"})
    with pytest.raises(TemplateError, match="does not apply"):
        Template.parse("{count:q}", fields=("count",))


def test_render_falls_back_instead_of_raising() -> None:
    """A spec that does not fit the value at run time shows the plain value; missing is empty."""
    template = Template.parse("{price:.2f}|{quantity}|")
    assert template.render({"price": None}) == "None||"
    assert template.render({"price": "n/a", "quantity": 1}) == "n/a|1|"


specs = st.sampled_from(["", ".2f", ">8", "<3", "^5", ",", "%H", ".3", "x", "s", "d", "+"])
values = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.integers(-1000, 1000),
    st.sampled_from([Decimal("0.65"), Decimal("NaN"), Decimal("-1E+3"), Decimal("Infinity")]),
    st.sampled_from([0.5, float("nan"), -2.0]),
    st.just(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
)


@given(
    pieces=st.lists(
        st.tuples(st.text(alphabet="ab #@", max_size=3), st.sampled_from(FILL_FIELDS), specs),
        max_size=5,
    ),
    data=st.dictionaries(st.sampled_from(FILL_FIELDS), values),
)
def test_render_never_raises(pieces: list[tuple[str, str, str]], data: dict[str, object]) -> None:
    """Any template that parses renders to a string for any values whatsoever."""
    text = "".join(f"{lit}{{{name}{':' + spec if spec else ''}}}" for lit, name, spec in pieces)
    try:
        template = Template.parse(text)
    except TemplateError:
        return
    assert isinstance(template.render(data), str)


@given(st.text(alphabet="{}!:.[]0aprice_s ", max_size=12))
def test_arbitrary_text_parses_or_is_refused(text: str) -> None:
    """Arbitrary text either parses and renders, or raises TemplateError: never anything else."""
    try:
        template = Template.parse(text)
    except TemplateError:
        return
    assert isinstance(template.render(fill_values(FILL, rule="r")), str)


def test_a_width_or_precision_beyond_a_thousand_is_refused() -> None:
    """`{order_id:>2000000000}` would build a 2 GB string for every alert: refused at load."""
    with pytest.raises(TemplateError, match="over 1000 is not allowed"):
        Template.parse("{order_id:>2000000000}")
    with pytest.raises(TemplateError, match="over 1000 is not allowed"):
        Template.parse("{price:.5000f}")
    assert (
        Template.parse("{order_id:>12} {price:.1000f}")
        .render({"order_id": "42", "price": Decimal("0.5")})
        .startswith("          42 0.5000")
    )


def test_only_real_widths_count_toward_the_limit() -> None:
    """Digits in a strftime spec's literal text are not a width; a directive's width is."""
    week = Template.parse("{filled_at:Week %W of 2026}")
    assert week.render(fill_values(FILL, rule="r")).startswith("Week ")
    assert Template.parse("{filled_at:%Y-%m-%d}").render(fill_values(FILL, rule="r"))
    with pytest.raises(TemplateError, match="over 1000 is not allowed"):
        Template.parse("{filled_at:%2000000Y}")
    with pytest.raises(TemplateError, match="over 1000 is not allowed"):
        Template.parse("{filled_at:day %_5000d}")
    with pytest.raises(TemplateError, match="over 1000 is not allowed"):
        Template.parse("{price:>5000.1%}")  # a percent spec is a standard one, not strftime
    assert Template.parse("{price:0>8.1%}").render({"price": Decimal("0.5")}) == "00050.0%"


def test_a_width_of_thousands_of_digits_is_a_template_error() -> None:
    """Past Python's 4,300-digit int() limit, still a TemplateError (it was a ValueError)."""
    with pytest.raises(TemplateError, match="over 1000 is not allowed"):
        Template.parse("{order_id:>" + "9" * 5000 + "}")


def test_html_escapes_field_values_not_the_template_s_markup() -> None:
    """With body_format html a market title reading "< $100k & <b>" is text, not markup (it
    was cut, or refused by the service); the template's own tags, and Markup (a digest's
    rendered lines), stay as written. Text and markdown escape nothing."""
    escape = escape_for("html")
    template = Template.parse(
        "<b>{market_title}</b> {price:.2f} {lines}", fields=[*FILL_FIELDS, "lines"]
    )
    values = {**fill_values(dataclasses.replace(FILL, market_title="BTC < $100k & <b>"), rule="r")}
    values["lines"] = Markup("<i>BUY</i>")
    assert template.render(values, escape=escape) == (
        "<b>BTC &lt; $100k &amp; &lt;b&gt;</b> 0.65 <i>BUY</i>"
    )
    # Quotes too: a value in a template's attribute cannot close it and add its own.
    link = Template.parse('<a href="https://venue.example/m/{market_id}">m</a>')
    spoof = fill_values(dataclasses.replace(FILL, market_id='m1" style="x'), rule="r")
    assert link.render(spoof, escape=escape) == (
        '<a href="https://venue.example/m/m1&quot; style=&quot;x">m</a>'
    )
    assert escape_for("text") is None
    assert escape_for("markdown") is None


def test_a_rule_s_zone_shows_its_times_there() -> None:
    """`filled_at` was always UTC: a trader in New York read 12:00 for a fill at 08:00 their
    time. With a rule's zone, the time and its name are the zone's, daylight saving
    included; without one, UTC as before."""
    july = dataclasses.replace(FILL, filled_at=datetime(2026, 7, 6, 12, 0, 45, tzinfo=UTC))
    template = Template.parse("{filled_at} | {filled_at:%H:%M %Z}")
    new_york = ZoneInfo("America/New_York")
    assert template.render(fill_values(july, rule="r", tz=new_york)) == (
        "2026-07-06 08:00:45 EDT | 08:00 EDT"
    )
    assert template.render(fill_values(FILL, rule="r", tz=new_york)) == (
        "2026-02-06 07:00:45 EST | 07:00 EST"
    )
    assert template.render(fill_values(july, rule="r")) == "2026-07-06 12:00:45 UTC | 12:00 UTC"


@pytest.mark.parametrize("zone", [None, "America/New_York", "Asia/Tokyo"])
def test_epoch_seconds_are_the_same_in_every_zone(zone: str | None) -> None:
    """`{filled_at:%s}` was glibc's, which reads the time as the host's local time: hours
    off under a rule's `tz:` or on a host not on UTC. It is the fill's epoch; `%%s` is text."""
    tz = ZoneInfo(zone) if zone else None
    values = fill_values(FILL, rule="r", tz=tz)
    expected = str(int(FILL.filled_at.timestamp()))
    assert Template.parse("<t:{filled_at:%s}:R> {filled_at:%%s}").render(values) == (
        f"<t:{expected}:R> %s"
    )
    # glibc's flags and width: still the fill's epoch, padded as glibc pads a number.
    flagged = Template.parse("{filled_at:%-s}|{filled_at:%_12s}|{filled_at:%12s}|{filled_at:%%%s}")
    assert flagged.render(values) == f"{expected}|  {expected}|00{expected}|%{expected}"
