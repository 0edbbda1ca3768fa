"""Alert shaping: specs, active windows (midnight, DST), group, throttle, hold/drop, persistence."""

from __future__ import annotations

import dataclasses
import decimal
import json
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.digests import (
    LINES_KEPT,
    MARKETS_KEPT,
    MIXED,
    Bunch,
    Release,
    aggregate,
    cap_lines,
    fill_to_data,
    release_fields,
)
from notifier.durations import MAX_DAYS
from notifier.events import Fill
from notifier.shaping import Shaper
from notifier.shaping_state import (
    Key,
    OpenGroup,
    RuleState,
    dump_entry,
    entries,
    load_entry,
    waiting,
)
from notifier.shapingspecs import (
    GroupSpec,
    RuleShaping,
    SpecError,
    SpecErrors,
    ThrottleSpec,
    parse_group,
    parse_throttle,
)
from notifier.windows import ActiveSpec, parse_active

T0 = datetime(2026, 2, 6, 12, 0, 0, tzinfo=UTC)  # a Friday
S = timedelta(seconds=1)
LONDON = ZoneInfo("Europe/London")


def fill(
    n: int = 1,
    *,
    market: str = "m1",
    order: str | None = None,
    side: str = "BUY",
    outcome: str = "Yes",
    price: str = "0.65",
    quantity: str = "10",
    at: datetime = T0,
) -> Fill:
    return Fill(
        order_id=order or str(n),
        market_id=market,
        side="BUY" if side == "BUY" else "SELL",
        outcome=outcome,
        price=Decimal(price),
        quantity=Decimal(quantity),
        filled_at=at + n * S,
        market_title=f"Title of {market}",
    )


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Stored:
    """What the state file would hold: a shaper's changes applied, entries as JSON data."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str, Key], dict[str, object]] = {}

    @classmethod
    def of(cls, shaper: Shaper) -> Stored:
        """Everything a shaper that never saved holds."""
        stored = cls()
        stored.save(shaper)
        return stored

    def save(self, shaper: Shaper) -> None:
        if shaper.rewrite():
            self.entries.clear()
        for rule in shaper.cleared():
            self.entries = {k: v for k, v in self.entries.items() if k[0] != rule}
        for rule, kind, key, data in shaper.changes():
            if data is None:
                self.entries.pop((rule, kind, key), None)
            else:
                self.entries[rule, kind, key] = json.loads(json.dumps(data))

    @staticmethod
    def whole(shaper: Shaper) -> dict[tuple[str, str, Key], dict[str, object]]:
        """Every entry the shaper holds now, as a save from scratch would write them."""
        return {
            (rule, kind, key): json.loads(json.dumps(data))
            for rule, state in shaper._state.items()
            for kind, key, data in entries(state)
        }

    def entry(self, rule: str, kind: str, key: Key = ()) -> dict[str, object]:
        return self.entries[rule, kind, key]

    def restore(self, specs: dict[str, RuleShaping]) -> Shaper:
        rows = sorted(self.entries.items())
        return Shaper.restore(specs, [(r, k, key, d) for (r, k, key), d in rows])  # type: ignore[misc]

    def legacy(self) -> dict[str, object]:
        """The same state as the whole-state snapshot older versions wrote."""
        rules: dict[str, dict[str, object]] = {}
        for (rule, kind, key), data in sorted(self.entries.items()):
            out = rules.setdefault(
                rule, {"groups": [], "throttles": [], "held": None, "dropped": 0}
            )
            if kind == "rule":
                out.update(data)
            else:
                out[f"{kind}s"].append({"key": list(key), **data})  # type: ignore[attr-defined]
        return {"version": 1, "rules": rules}


def active(
    hours: str, *, days: list[str] | None = None, tz: str = "UTC", outside: str = "hold"
) -> ActiveSpec:
    raw: dict[str, object] = {"hours": hours, "tz": tz, "outside": outside}
    if days is not None:
        raw["days"] = days
    return parse_active(raw)


# --- spec parsing ---------------------------------------------------------------------------


def test_parse_group_reads_by_wait_and_line() -> None:
    """A group spec keeps its by fields in order, the wait as a timedelta, and the line text."""
    spec = parse_group({"by": ["market_id", "side"], "wait": "30s", "line": "{price}"})
    assert spec == GroupSpec(by=("market_id", "side"), wait=timedelta(seconds=30), line="{price}")


def test_parse_group_accepts_a_single_field_and_an_empty_by() -> None:
    """`by: market_id` is one field; no `by` means one group for the whole rule."""
    assert parse_group({"by": "market_id", "wait": "5s"}).by == ("market_id",)
    assert parse_group({"wait": "5s"}).by == ()


@pytest.mark.parametrize(
    ("raw", "path", "fragment"),
    [
        ({"by": ["market_id"], "wiat": "5s"}, "wiat", "did you mean 'wait'"),
        ({"by": ["market_id", "markt_title"], "wait": "5s"}, "by[1]", "'market_title'"),
        ({"by": ["market_id"]}, "wait", "required"),
        ({"by": ["market_id"], "wait": "soon"}, "wait", "not a duration"),
        ({"by": ["market_id"], "wait": "0s"}, "wait", "longer than zero"),
        ({"by": ["market_id", "market_id"], "wait": "5s"}, "by", "twice"),
        ({"by": {"a": 1}, "wait": "5s"}, "by", "list"),
        ({"wait": "5s", "line": 3}, "line", "template"),
        (["by"], "", "mapping"),
        ({"wait": "5s", "at": "17:00"}, "at", "not both"),
        ({"at": "25:00"}, "at", 'time of day like "17:00"'),
        ({"at": "5pm"}, "at", "got '5pm'"),
        ({"at": ["09:00", 1700]}, "at[1]", "got 1700"),
        ({"at": None}, "at", "got None"),
        ({"at": "24:00"}, "at", 'write "00:00" for midnight'),
        ({"at": ["17:00", "17:00"]}, "at[1]", "twice"),
        ({"at": []}, "at", "got []"),
        ({"wait": "5s", "tz": "Europe/London"}, "tz", "zone of the at times, and this group"),
        ({"at": "5pm"}, "at", 'write "17:00"'),
        ({"at": "8:30 am"}, "at", 'write "08:30"'),
        ({"at": "12am"}, "at", 'write "00:00"'),
        ({"at": "17:00", "tz": "BST"}, "tz", "Europe/London"),
    ],
)
def test_parse_group_errors_name_the_path(raw: object, path: str, fragment: str) -> None:
    """Each bad group spec is a SpecError at the offending key, saying what is wrong."""
    with pytest.raises(SpecError) as caught:
        parse_group(raw)
    assert caught.value.path == path
    assert fragment in caught.value.message


def test_parse_group_reads_times_of_day_in_order_and_their_zone() -> None:
    """`at` instead of `wait`: one time or a list (kept in order of the day), UTC unless `tz`."""
    spec = parse_group({"by": "market_id", "at": ["17:00", "8:30"], "tz": "Europe/London"})
    assert spec == GroupSpec(by=("market_id",), at=(time(8, 30), time(17)), tz=LONDON)
    assert parse_group({"at": "17:00"}).tz == ZoneInfo("UTC")


def test_parse_throttle_reads_by_and_every() -> None:
    """A throttle spec is its key fields and its period; a missing period is an error."""
    assert parse_throttle({"by": ["market_id"], "every": "10m"}) == ThrottleSpec(
        by=("market_id",), every=timedelta(minutes=10)
    )
    with pytest.raises(SpecError, match="every: is required"):
        parse_throttle({"by": ["market_id"]})


def test_parse_active_reads_the_issue_example() -> None:
    """Weekday names, "08:00-22:00", an IANA zone and `hold` become an ActiveSpec."""
    spec = parse_active(
        {
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "hours": "08:00-22:00",
            "tz": "Europe/London",
            "outside": "hold",
        }
    )
    assert spec == ActiveSpec(
        days=frozenset(range(5)), start=time(8), end=time(22), tz=LONDON, outside="hold"
    )


def test_parse_active_days_ranges_names_and_defaults() -> None:
    """Ranges (also wrapping), full names and "24:00" work; days default to all, tz to UTC."""
    assert active("00:00-24:00", days=["fri-mon"]).days == frozenset({4, 5, 6, 0})
    assert active("00:00-24:00", days=["Monday", "wed"]).days == frozenset({0, 2})
    spec = parse_active({"hours": "18:00-24:00"})
    assert (spec.days, spec.end, spec.tz, spec.outside) == (
        frozenset(range(7)),
        time(0),
        ZoneInfo("UTC"),
        "hold",
    )


@pytest.mark.parametrize(
    ("raw", "path", "fragment"),
    [
        ({"hours": "8-22"}, "hours", "08:00-22:00"),
        ({"hours": "08:00-25:00"}, "hours", "not a time"),
        ({"hours": "24:00-06:00"}, "hours", "only end"),
        ({"hours": "08:00-08:00"}, "hours", "00:00-24:00"),
        ({"hours": "08:00-22:00", "tz": "Europe/Londn"}, "tz", "did you mean 'Europe/London'"),
        ({"hours": "08:00-22:00", "tz": "../etc/passwd"}, "tz", "unknown time zone"),
        ({"hours": "08:00-22:00", "days": ["mon", "tuw"]}, "days[1]", "did you mean 'tue'"),
        ({"hours": "08:00-22:00", "days": []}, "days", "non-empty"),
        ({"hours": "08:00-22:00", "outside": "queue"}, "outside", "'hold' or 'drop'"),
        ({"hours": "08:00-22:00", "timezone": "UTC"}, "timezone", "unknown key"),
        ({"days": ["mon"]}, "hours", "required"),
    ],
)
def test_parse_active_errors_name_the_path(raw: object, path: str, fragment: str) -> None:
    """Each bad active spec is a SpecError at the offending key, saying what is wrong."""
    with pytest.raises(SpecError) as caught:
        parse_active(raw)
    assert caught.value.path == path
    assert fragment in caught.value.message


DURATION_HINT = (
    'use a number of seconds or a duration such as "30s", "5m", "2h", "1d", "1h30m", "500ms"'
)


def problems(parse: Callable[[object], object], raw: object) -> list[str]:
    """Every problem `parse` reports for `raw`, as "path: message", in the order it gives them."""
    with pytest.raises(SpecError) as caught:
        parse(raw)
    return [str(error) for error in caught.value.errors]


def test_parse_group_reports_every_bad_key_not_only_the_first() -> None:
    """A bad `by` field does not hide a bad `wait`: one SpecErrors carries both, in key order."""
    with pytest.raises(SpecErrors) as caught:
        parse_group({"by": ["market"], "wait": "5x"})
    assert [str(e) for e in caught.value.errors] == [
        "by[0]: unknown field 'market' (did you mean 'market_id'?)",
        f"wait: not a duration: '5x'; {DURATION_HINT}",
    ]
    assert (caught.value.path, caught.value.message) == (
        "by[0]",
        "unknown field 'market' (did you mean 'market_id'?)",
    )  # a SpecErrors is a SpecError: the first problem for callers that read one
    assert str(caught.value) == "; ".join(str(e) for e in caught.value.errors)


def test_parse_active_reports_every_bad_key_in_the_order_written() -> None:
    """An unknown zone and impossible hours are both reported, `tz` first as the file has it."""
    assert problems(parse_active, {"tz": "Mars/Olympus", "hours": "25:00-26:00"}) == [
        "tz: unknown time zone 'Mars/Olympus'",
        "hours: not a time of day in '25:00-26:00'",
    ]


def test_spec_parsers_report_every_item_unknown_key_and_missing_key() -> None:
    """Each bad `by` field or day, each unknown key, and a missing required key: all of them."""
    assert problems(
        parse_group, {"wiat": "5s", "by": ["side", "sid", "side", "prise"], "line": 3}
    ) == [
        "wiat: unknown key 'wiat' (did you mean 'wait'?)",
        "by[1]: unknown field 'sid' (did you mean 'side'?)",
        "by[3]: unknown field 'prise' (did you mean 'price'?)",
        "by: lists a field twice",
        "line: must be a template string, got int",
        'wait: is required, e.g. "30s" (or at: "17:00", a time of day)',
    ]
    assert problems(parse_throttle, {"by": "markt_id", "every": "0s"}) == [
        "by: unknown field 'markt_id' (did you mean 'market_id'?)",
        "every: must be longer than zero",
    ]
    assert problems(
        parse_active, {"days": ["mon", "frj-sux", 3], "outside": "later", "timezone": "UTC"}
    ) == [
        "days[1]: unknown day 'frj' (did you mean 'fri'?)",
        "days[1]: unknown day 'sux' (did you mean 'sun'?)",
        "days[2]: must be a day name like 'mon', got 3",
        "outside: must be 'hold' or 'drop', got 'later'",
        "timezone: unknown key 'timezone' (expected one of: days, hours, outside, tz)",
        'hours: is required, e.g. "08:00-22:00"',
    ]


def test_a_single_problem_is_a_plain_spec_error() -> None:
    """One problem raises the SpecError itself, whose `errors` is just that one."""
    with pytest.raises(SpecError) as caught:
        parse_throttle({"by": ["market_id"]})
    assert not isinstance(caught.value, SpecErrors)
    assert caught.value.errors == (caught.value,)


def test_throttle_over_groups_reports_every_field_missing_from_group_by() -> None:
    """Each throttle field the groups do not share is its own problem."""
    group = GroupSpec(by=("order_id",), wait=5 * S)
    with pytest.raises(SpecError) as caught:
        RuleShaping(group=group, throttle=ThrottleSpec(by=("market_id", "side"), every=60 * S))
    assert [e.path for e in caught.value.errors] == ["throttle.by[0]", "throttle.by[1]"]


def test_throttle_over_groups_must_key_on_group_fields() -> None:
    """A throttle keyed on a field the groups do not share is refused (a digest needs one key)."""
    group = GroupSpec(by=("order_id",), wait=5 * S)
    with pytest.raises(SpecError) as caught:
        RuleShaping(group=group, throttle=ThrottleSpec(by=("market_id",), every=60 * S))
    assert caught.value.path == "throttle.by[0]"


# --- active windows -------------------------------------------------------------------------


def test_window_start_is_inclusive_and_end_exclusive() -> None:
    """08:00-22:00 is open at 08:00 and closed at 22:00 exactly."""
    spec = active("08:00-22:00")
    assert not spec.is_active(utc("2026-02-06T07:59:59.999999"))
    assert spec.is_active(utc("2026-02-06T08:00:00"))
    assert spec.is_active(utc("2026-02-06T21:59:59.999999"))
    assert not spec.is_active(utc("2026-02-06T22:00:00"))


def test_window_across_midnight_belongs_to_its_start_day() -> None:
    """A Friday-only 22:00-06:00 window covers Saturday early hours but not Friday early hours."""
    spec = active("22:00-06:00", days=["fri"])
    assert not spec.is_active(utc("2026-02-06T05:00:00"))  # Friday morning: Thursday's window
    assert spec.is_active(utc("2026-02-06T22:00:00"))
    assert spec.is_active(utc("2026-02-07T05:59:59"))  # Saturday morning, Friday's window
    assert not spec.is_active(utc("2026-02-07T06:00:00"))
    assert not spec.is_active(utc("2026-02-07T23:00:00"))  # Saturday night: no window
    assert spec.next_open(utc("2026-02-07T06:00:00")) == utc("2026-02-13T22:00:00")


def test_next_open_is_now_when_open_and_skips_excluded_days() -> None:
    """Inside a window next_open is the instant itself; on Friday night it is Monday morning."""
    spec = active("08:00-22:00", days=["mon-fri"], tz="Europe/London")
    inside = utc("2026-02-06T12:00:00")
    assert spec.next_open(inside) == inside
    assert spec.next_open(utc("2026-02-06T22:00:00")) == utc("2026-02-09T08:00:00")


def test_spring_forward_start_in_the_gap_opens_when_the_clock_jumps() -> None:
    """London has no 01:30 on 2024-03-31: a 01:30 window opens at 02:00 BST (01:00 UTC)."""
    spec = active("01:30-06:00", tz="Europe/London")
    assert not spec.is_active(utc("2024-03-31T00:59:59.999999"))
    assert spec.is_active(utc("2024-03-31T01:00:00"))
    assert spec.next_open(utc("2024-03-31T00:30:00")) == utc("2024-03-31T01:00:00")
    assert not spec.is_active(utc("2024-03-31T05:00:00"))  # 06:00 BST
    assert spec.next_open(utc("2024-03-31T06:00:00")) == utc("2024-04-01T00:30:00")  # 01:30 BST


def test_overnight_window_over_spring_forward_is_an_hour_shorter() -> None:
    """22:00-06:00 on the spring-forward night runs 22:00 GMT to 06:00 BST: 7 hours."""
    spec = active("22:00-06:00", tz="Europe/London")
    assert spec.next_open(utc("2024-03-30T12:00:00")) == utc("2024-03-30T22:00:00")
    assert spec.is_active(utc("2024-03-31T04:59:59"))
    assert not spec.is_active(utc("2024-03-31T05:00:00"))


def test_fall_back_window_closes_at_the_first_occurrence_of_its_end() -> None:
    """On 2024-10-27 01:00-02:00 happens twice: 00:00-01:30 closes at the first 01:30 for good."""
    spec = active("00:00-01:30", tz="Europe/London")
    assert spec.is_active(utc("2024-10-27T00:29:59"))  # 01:29:59 BST
    assert not spec.is_active(utc("2024-10-27T00:30:00"))  # 01:30 BST
    assert not spec.is_active(utc("2024-10-27T01:15:00"))  # 01:15 GMT, the second time round
    later = active("01:30-03:00", tz="Europe/London")
    assert later.next_open(utc("2024-10-26T23:00:00")) == utc("2024-10-27T00:30:00")
    assert later.is_active(utc("2024-10-27T02:59:59"))  # 02:59 GMT: a 2.5-hour window


def test_window_needs_aware_datetimes() -> None:
    """A naive datetime is a programming error, not a silent UTC guess."""
    with pytest.raises(ValueError, match="timezone-aware"):
        active("08:00-22:00").is_active(datetime(2026, 2, 6, 12))


ZONES = ["UTC", "Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
minutes = st.integers(min_value=0, max_value=24 * 60 - 1)


@settings(max_examples=150, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    start=minutes,
    length=st.integers(min_value=1, max_value=24 * 60),
    days=st.sets(st.integers(min_value=0, max_value=6), min_size=1),
    at=st.datetimes(
        min_value=datetime(2023, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
)
def test_next_open_agrees_with_is_active(
    zone: str, start: int, length: int, days: set[int], at: datetime
) -> None:
    """next_open(at) is `at` when open, else the first open instant after a closed one."""
    end = (start + length) % (24 * 60)
    spec = ActiveSpec(
        days=frozenset(days),
        start=time(start // 60, start % 60),
        end=time(end // 60, end % 60),
        tz=ZoneInfo(zone),
    )
    opens = spec.next_open(at)
    if spec.is_active(at):
        assert opens == at
    else:
        assert opens > at
        assert spec.is_active(opens)
        assert not spec.is_active(opens - timedelta(microseconds=1))


# --- digests --------------------------------------------------------------------------------


def test_a_bare_vwap_is_written_to_six_digits_a_spec_rounds_the_exact_value() -> None:
    """An average rarely ends: bare `{vwap}` and `{vwap_cents}` show 6 significant digits,
    not Decimal's 28; a spec rounds the exact value; one that ends shows as it is."""
    from notifier.render import Template

    template = Template.parse(
        "{vwap} {vwap_cents} {vwap:.4f} {vwap:.3}", fields=("vwap", "vwap_cents")
    )
    as_text = Template.parse("{vwap!s}", fields=("vwap",))
    typed = Template.parse(
        "{vwap:f} {vwap:>9g} {vwap:e} {vwap_cents:f}", fields=("vwap", "vwap_cents")
    )
    fills = (
        fill(1, price="0.88", quantity="8.33"),
        fill(2, price="0.29", quantity="1000"),
        fill(3, price="0.13", quantity="100"),
    )
    assert template.render(aggregate(Bunch.of(*fills))) == "0.279998 27.9998 0.2800 0.280"
    assert as_text.render(aggregate(Bunch.of(*fills))) == "0.279998"
    assert typed.render(aggregate(Bunch.of(*fills))) == " ".join(
        ("0.279998", " 0.279998", "2.79998e-1", "27.9998")
    )
    even = aggregate(Bunch.of(fill(1, price="0.65", quantity="10")))
    assert template.render(even) == "0.65 65 0.6500 0.65"


def test_aggregate_is_exact() -> None:
    """Sums, VWAP (in cents too), price range and time range are exact decimals over the
    fills."""
    fills = (
        fill(1, price="0.60", quantity="10"),
        fill(2, price="0.70", quantity="30"),
        fill(3, price="0.65", quantity="0.5"),
    )
    figures = aggregate(Bunch.of(*fills))
    assert figures["count"] == 3
    assert figures["total_quantity"] == Decimal("40.5")
    assert figures["total_notional"] == Decimal("27.325")
    assert figures["vwap"] == Decimal("27.325") / Decimal("40.5")
    assert figures["vwap_cents"] == (Decimal("27.325") / Decimal("40.5")).scaleb(2)
    assert (figures["min_price"], figures["max_price"]) == (Decimal("0.60"), Decimal("0.70"))
    assert figures["first_filled_at"] == T0 + S
    assert figures["last_filled_at"] == T0 + 3 * S


def test_aggregate_sums_are_exact_at_the_wire_bounds() -> None:
    """Fills at the wire's bounds (18 significant digits each side, so 36 in a notional):
    the totals are the exact sums, where 28 digits would round them."""
    pairs = [
        ("0.123456789012345678", "123456789012.345678"),
        ("0.987654321098765432", "0.000000000000000001"),
        ("1", "999999999999999999"),
    ]
    figures = aggregate(Bunch.of(*(fill(i, price=p, quantity=q) for i, (p, q) in enumerate(pairs))))
    exact = decimal.Context(prec=200)
    assert figures["total_notional"] == exact.add(
        exact.add(exact.multiply(Decimal(pairs[0][0]), Decimal(pairs[0][1])),
                  exact.multiply(Decimal(pairs[1][0]), Decimal(pairs[1][1]))),
        exact.multiply(Decimal(pairs[2][0]), Decimal(pairs[2][1])),
    )  # fmt: skip
    assert figures["total_quantity"] == Decimal("1000000123456789011.345678000000000001")


decimals = st.decimals(min_value="0.01", max_value="1", places=2)
quantities = st.decimals(min_value="0.001", max_value="100000", places=3)


@given(st.lists(st.tuples(decimals, quantities), min_size=1, max_size=30))
def test_aggregate_matches_brute_force_sums(pairs: list[tuple[Decimal, Decimal]]) -> None:
    """Digest figures equal sums computed one fill at a time, with no float anywhere."""
    fills = tuple(fill(i, price=str(p), quantity=str(q)) for i, (p, q) in enumerate(pairs))
    figures = aggregate(Bunch.of(*fills))
    quantity = Decimal(0)
    notional = Decimal(0)
    for p, q in pairs:
        quantity += q
        notional += p * q
    assert figures["total_quantity"] == quantity
    assert figures["total_notional"] == notional
    assert figures["vwap"] == notional / quantity
    assert all(isinstance(v, Decimal) for k, v in figures.items() if k.startswith("total"))


def test_cap_lines_says_how_many_were_left_out() -> None:
    """The listed lines as they are; a digest of more fills ends with a line counting the rest."""
    assert cap_lines(["a", "b"], 2) == "a\nb"
    assert cap_lines(["a", "b"], 4) == "a\nb\n… and 2 more"


def test_release_fill_key_is_the_fill_key_or_a_stable_digest_hash() -> None:
    """A single release is keyed by its fill; a digest by a hash that depends on its fills."""
    one = Release("r", (), Bunch.of(fill(1)), 0, {})
    many = Release("r", (), Bunch.of(fill(1), fill(2)), 0, {})
    assert one.fill_key == fill(1).key
    assert many.fill_key == Release("r", (), Bunch.of(fill(1), fill(2)), 0, {}).fill_key
    assert many.fill_key != Release("r", (), Bunch.of(fill(1), fill(3)), 0, {}).fill_key
    long = [fill(n) for n in range(1, LINES_KEPT + 3)]  # two more than a bunch keeps
    other = [*long[:-1], fill(99)]
    assert Release("r", (), Bunch.of(*long), 0, {}).fill_key != (
        Release("r", (), Bunch.of(*other), 0, {}).fill_key
    )


def test_a_bunch_keeps_the_first_fills_and_counts_them_all() -> None:
    """Past LINES_KEPT fills a bunch keeps only the first ones, its figures stay exact."""
    fills = [
        fill(n, price="0.5", quantity="2", side="SELL" if n == 30 else "BUY") for n in range(1, 51)
    ]
    bunch = Bunch.of(fills[0])
    for f in fills[1:25]:
        bunch.add(f)
    bunch.merge(Bunch.of(*fills[25:]))
    assert bunch.kept == fills[:LINES_KEPT]
    assert (bunch.count, bunch.last) == (50, fills[-1])
    assert (bunch.quantity, bunch.notional) == (Decimal(100), Decimal(50))
    fields = release_fields("r", bunch, 0)
    assert (fields["side"], fields["order_id"], fields["count"]) == (MIXED, "50", 50)


def test_a_bunch_keeps_the_fills_filled_first_whatever_order_they_came_in() -> None:
    """A held digest of 20 night fills merges a group of 3 filled earlier: it keeps the
    earliest 20 by fill time, so "… and 3 more" stands for the latest; stored and read back,
    it still knows which fill came last."""
    night = [fill(n, at=T0 + 3600 * S) for n in range(20)]
    earlier = [fill(n, order=f"e{n}") for n in range(3)]
    bunch = Bunch.of(*night)
    bunch.merge(Bunch.of(*earlier))
    assert bunch.kept == [*earlier, *night[:17]]
    assert (bunch.count, bunch.last) == (23, earlier[-1])
    stored = RuleState(groups={(): OpenGroup(T0, bunch)}, throttles={})
    back = RuleState(groups={}, throttles={})
    load_entry(back, "group", (), json.loads(json.dumps(dump_entry(stored, "group", ()))))
    restored = back.groups[()].bunch
    assert (restored.kept, restored.last, restored.count) == (bunch.kept, earlier[-1], 23)
    few = Bunch.of(night[5], earlier[0])  # every fill kept, the last to come not the latest
    stored.groups[()] = OpenGroup(T0, few)
    load_entry(back, "group", (), json.loads(json.dumps(dump_entry(stored, "group", ()))))
    assert back.groups[()].bunch.last == earlier[0]


# --- shaper: no shaping and groups ----------------------------------------------------------


def test_unshaped_rule_passes_each_fill_straight_through() -> None:
    """A rule without shaping releases every fill at once with that fill's fields."""
    shaper = Shaper({})
    [release] = shaper.offer("plain", fill(1, price="0.5"), T0)
    assert (release.rule, release.fills, release.suppressed, release.kind) == (
        "plain",
        (fill(1, price="0.5"),),
        0,
        "single",
    )
    assert release.fields["price"] == Decimal("0.5")
    assert release.fields["count"] == 1
    assert release.fields["rule"] == "plain"
    assert shaper.next_deadline() is None


def group_shaper(wait: int = 30, active: ActiveSpec | None = None) -> Shaper:
    spec = RuleShaping(group=GroupSpec(by=("market_id",), wait=wait * S), active=active)
    return Shaper({"btc": spec})


def test_three_fills_in_the_wait_become_one_digest_with_vwap() -> None:
    """Fills of one market within the wait leave as one message at first + wait, VWAP exact."""
    shaper = group_shaper()
    fills = [
        fill(1, price="0.60", quantity="10"),
        fill(2, price="0.70", quantity="30", outcome="No"),
        fill(3, price="0.65", quantity="20"),
    ]
    for i, f in enumerate(fills):
        assert shaper.offer("btc", f, T0 + i * 10 * S) == []
    assert shaper.next_deadline() == T0 + 30 * S
    assert shaper.due(T0 + 29 * S) == []
    [digest] = shaper.due(T0 + 30 * S)
    assert digest.kind == "group"
    assert digest.key == ("m1",)
    assert digest.fills == tuple(fills)
    assert digest.fields["count"] == 3
    assert digest.fields["vwap"] == Decimal("40") / Decimal("60")
    assert digest.fields["total_notional"] == Decimal("40.00")
    assert digest.fields["side"] == "BUY"
    assert digest.fields["outcome"] == MIXED
    assert digest.fields["market_title"] == "Title of m1"
    assert shaper.next_deadline() is None
    assert shaper.due(T0 + 60 * S) == []


def test_fill_exactly_at_wait_opens_the_next_group() -> None:
    """Half-open group window: a fill at first + wait releases the old group, starts a new one."""
    shaper = group_shaper()
    shaper.offer("btc", fill(1), T0)
    boundary = fill(2, at=T0 + 28 * S)  # made at T0 + 30 s, as it arrives
    [old] = shaper.offer("btc", boundary, T0 + 30 * S)
    assert old.fills == (fill(1),)
    assert shaper.next_deadline() == T0 + 60 * S
    [new] = shaper.due(T0 + 60 * S)
    assert new.fills == (boundary,)


def test_fill_exactly_at_wait_gives_the_same_result_after_due() -> None:
    """Calling due first at the boundary changes nothing: the boundary fill still starts a group."""
    shaper = group_shaper()
    shaper.offer("btc", fill(1), T0)
    [old] = shaper.due(T0 + 30 * S)
    assert shaper.offer("btc", fill(2), T0 + 30 * S) == []
    assert old.fills == (fill(1),)
    assert [r.fills for r in shaper.due(T0 + 60 * S)] == [(fill(2),)]


def test_groups_are_kept_apart_by_their_key() -> None:
    """Different markets form different groups, released in deadline order."""
    shaper = group_shaper()
    shaper.offer("btc", fill(1, market="m1"), T0)
    shaper.offer("btc", fill(2, market="m2"), T0 + 5 * S)
    shaper.offer("btc", fill(3, market="m1"), T0 + 6 * S)
    releases = shaper.due(T0 + 40 * S)
    assert [(r.key, len(r.fills)) for r in releases] == [(("m1",), 2), (("m2",), 1)]


def test_a_message_due_inside_the_window_goes_out_when_released_after_closing() -> None:
    """A group (or throttle period) due a moment before closing time, released after it (a
    late timer, a restart): sent then, not held until the next opening, 20 hours on."""
    closes = active("08:00-12:01")  # T0 is 12:00 on a Friday
    shaper = group_shaper(wait=30, active=closes)
    shaper.offer("btc", fill(1), T0)
    [group] = shaper.due(T0 + 120 * S)
    assert (group.kind, group.fills) == ("group", (fill(1),))
    throttled = throttle_shaper(every=30, active=closes)
    assert len(throttled.offer("calm", fill(1), T0)) == 1
    assert throttled.offer("calm", fill(2), T0 + 10 * S) == []
    [trailing] = throttled.due(T0 + 120 * S)
    assert (trailing.kind, trailing.fills) == ("throttle", (fill(2),))
    # Due after closing time, it is held for the opening, as before.
    late = group_shaper(wait=30, active=closes)
    late.offer("btc", fill(3), T0 + 50 * S)
    assert late.due(T0 + 120 * S) == []
    assert late.stats()["btc"]["held"] == 1


def test_a_late_release_after_closing_leaves_the_night_s_held_fills_for_the_morning() -> None:
    """A group due inside the window and released after closing goes out alone: a fill that
    arrived after closing, held for the morning, is not sent with it at night."""
    closes = active("08:00-12:01")  # T0 is 12:00 on a Friday
    shaper = group_shaper(wait=30, active=closes)
    shaper.offer("btc", fill(1), T0 + 29 * S)  # due 12:00:59, inside the window
    assert shaper.offer("btc", fill(2, market="m2"), T0 + 65 * S) == []  # after closing
    assert shaper.stats()["btc"]["held"] == 1
    [group] = shaper.due(T0 + 70 * S)  # the timer fires late, after closing
    assert (group.kind, group.fills) == ("group", (fill(1),))
    assert shaper.stats()["btc"]["held"] == 1
    morning = datetime(2026, 2, 7, 8, 0, tzinfo=UTC)  # the window's next opening
    assert shaper.due(morning - S) == []
    [held] = shaper.due(morning)
    assert (held.kind, held.fills) == ("held", (fill(2, market="m2"),))


def test_pull_in_brings_a_held_digest_back_to_an_open_window() -> None:
    """Held after closing, then the clock steps back into the open window: the digest is
    due now, not at the next day's opening the later clock had named."""
    shaper = group_shaper(wait=30, active=active("08:00-12:01"))  # T0 is 12:00 on a Friday
    shaper.offer("btc", fill(1), T0 + 90 * S)  # after closing: held for Saturday 08:00
    assert shaper.next_deadline() == datetime(2026, 2, 7, 8, 0, tzinfo=UTC)
    back = T0 - 3600 * S  # 11:00, inside the window
    assert shaper.pull_in(back) == 1
    assert shaper.next_deadline() == back
    [held] = shaper.due(back)
    assert (held.kind, held.fills) == ("held", (fill(1),))


def at_shaper(*times: time, tz: ZoneInfo = LONDON) -> Shaper:
    return Shaper({"day": RuleShaping(group=GroupSpec(by=(), at=times, tz=tz))})


def test_a_group_at_a_time_of_day_holds_everything_until_then() -> None:
    """`at: 17:00` (London): the day's fills go out as one digest at 17:00 local time, in
    summer time too (16:00 UTC); a fill at 17:00 itself opens the next day's digest."""
    shaper = at_shaper(time(17))
    morning = utc("2026-07-06 08:00")
    for minutes in (0, 120, 400):
        made = morning + minutes * 60 * S
        assert shaper.offer("day", fill(minutes, at=made - minutes * S), made) == []
    five = utc("2026-07-06 16:00")  # 17:00 BST
    assert shaper.next_deadline() == five
    assert shaper.due(five - S) == []
    [old] = shaper.offer("day", fill(999, at=five - 999 * S), five)  # made at 17:00 too
    assert [f.order_id for f in old.fills] == ["0", "120", "400"]
    assert shaper.next_deadline() == five + timedelta(days=1)


def test_a_catch_up_fill_with_no_group_open_is_in_the_summary_of_its_day() -> None:
    """Down from 16:52 to 17:05 with no fill yet that day: the 16:58 fill the catch-up brings
    opens the 17:00 summary, due at once, not the next day's; one made at 17:02 opens the
    next day's."""
    shaper = at_shaper(time(17))
    late = utc("2026-01-06 17:05")
    assert shaper.offer("day", fill(0, order="a", at=utc("2026-01-06 16:58")), late) == []
    assert shaper.next_deadline() == utc("2026-01-06 17:00")
    [day] = shaper.offer("day", fill(0, order="b", at=utc("2026-01-06 17:02")), late)
    assert [f.order_id for f in day.fills] == ["a"]
    assert shaper.next_deadline() == utc("2026-01-07 17:00")
    [next_day] = shaper.due(utc("2026-01-07 17:00"))
    assert [f.order_id for f in next_day.fills] == ["b"]


def test_a_catch_up_over_two_days_is_a_summary_for_each_day() -> None:
    """Down from day 1 16:52 to day 3 09:00: each day's fills are that day's summary, in
    order, and the third day's wait for its 17:00."""
    shaper = at_shaper(time(17))
    shaper.offer("day", fill(0, order="a", at=utc("2026-01-06 16:00")), utc("2026-01-06 16:00"))
    late = utc("2026-01-08 09:00")
    out: list[Release] = []
    for order, made in (("b", "06 16:58"), ("c", "06 18:00"), ("d", "07 12:00"), ("e", "08 08:00")):
        out += shaper.offer("day", fill(0, order=order, at=utc(f"2026-01-{made}")), late)
    assert [[f.order_id for f in r.fills] for r in out] == [["a", "b"], ["c", "d"]]
    assert shaper.next_deadline() == utc("2026-01-08 17:00")


def test_a_fill_made_just_before_a_summary_that_went_is_in_the_next_one() -> None:
    """Running at 17:00: the day's summary goes; fills made at 16:59:58 and 16:59:59 that
    arrive just after it (or from a venue whose clock runs behind) go in the next day's
    summary, not one message each at once. Before any release (a start), the time a fill was
    made decides (see the catch-up tests)."""
    shaper = at_shaper(time(17))
    shaper.offer("day", fill(0, order="a", at=utc("2026-01-06 10:00")), utc("2026-01-06 10:00"))
    [day] = shaper.due(utc("2026-01-06 17:00"))
    assert [f.order_id for f in day.fills] == ["a"]
    for order, made, came in (("b", "16:59:58", "17:00:01"), ("c", "16:59:59", "17:00:02")):
        late = fill(0, order=order, at=utc(f"2026-01-06 {made}"))
        assert shaper.offer("day", late, utc(f"2026-01-06 {came}")) == []
        assert shaper.due(utc(f"2026-01-06 {came}")) == []
    assert shaper.next_deadline() == utc("2026-01-07 17:00")
    [next_day] = shaper.due(utc("2026-01-07 17:00"))
    assert [f.order_id for f in next_day.fills] == ["b", "c"]


def test_a_fill_stamped_ahead_of_the_clock_opens_the_summary_from_now() -> None:
    """The venue's clock a minute ahead of ours: a fill stamped 17:00:30 at our 16:59:30 is
    in today's 17:00 summary (judged from now), not tomorrow's."""
    shaper = at_shaper(time(17))
    ahead = fill(0, at=utc("2026-01-06 17:00:30"))
    assert shaper.offer("day", ahead, utc("2026-01-06 16:59:30")) == []
    assert shaper.next_deadline() == utc("2026-01-06 17:00")


def test_a_catch_up_s_fills_in_a_waiting_group_go_out_together() -> None:
    """A `wait` group is due from when its first fill arrives, however old: a catch-up of
    an hour's fills is one message, not one for each stretch of the outage."""
    shaper = group_shaper()
    late = T0 + 3600 * S
    for n in (0, 600, 1200):
        assert shaper.offer("btc", fill(n, at=T0), late) == []
    [release] = shaper.due(late + 30 * S)
    assert [f.order_id for f in release.fills] == ["0", "600", "1200"]


def test_an_overdue_group_takes_a_fill_made_before_its_time() -> None:
    """The daemon was down at 17:00: a fill made at 16:58 that the start's catch-up brings at
    17:05 joins the day's summary, still open, and one made at 17:02 opens the next day's."""
    shaper = at_shaper(time(17))
    shaper.offer("day", fill(1, at=utc("2026-01-06 16:00")), utc("2026-01-06 16:00"))
    late = utc("2026-01-06 17:05")
    assert shaper.offer("day", fill(2, at=utc("2026-01-06 16:58")), late) == []
    [day] = shaper.offer("day", fill(3, at=utc("2026-01-06 17:02")), late)
    assert [f.order_id for f in day.fills] == ["1", "2"]
    assert shaper.next_deadline() == utc("2026-01-07 17:00")


def test_a_group_with_several_times_closes_at_the_next_one() -> None:
    """`at: [08:30, 17:00]`: a fill at noon waits for 17:00; one at 18:00 for 08:30 the next
    day; in winter London is UTC itself."""
    shaper = at_shaper(time(8, 30), time(17))
    shaper.offer("day", fill(1), utc("2026-01-06 12:00"))
    assert shaper.next_deadline() == utc("2026-01-06 17:00")
    assert len(shaper.due(utc("2026-01-06 17:00"))) == 1
    shaper.offer("day", fill(2), utc("2026-01-06 18:00"))
    assert shaper.next_deadline() == utc("2026-01-07 08:30")


def test_a_summary_at_closing_time_goes_out_at_the_close() -> None:
    """`at: 17:00` with active hours 09:00-17:00 (hold): the day's group lies wholly inside
    the window and goes out at 17:00, not with the next morning's held digest; a fill after
    the close is held for the morning as before."""
    hours = ActiveSpec(days=frozenset(range(7)), start=time(9), end=time(17), tz=LONDON)
    spec = RuleShaping(group=GroupSpec(by=(), at=(time(17),), tz=LONDON), active=hours)
    shaper = Shaper({"day": spec})
    shaper.offer("day", fill(1), utc("2026-01-06 10:00"))
    [summary] = shaper.due(utc("2026-01-06 17:00"))
    assert (summary.kind, summary.count) == ("group", 1)
    shaper.offer("day", fill(2), utc("2026-01-06 18:00"))
    assert shaper.next_deadline() == utc("2026-01-07 09:00")


def test_pull_in_keeps_a_time_of_day_group_at_its_next_time() -> None:
    """After the clock stepped back a day, a group due at 17:00 is due at the next 17:00
    from the new now, not a day later than the spec allows."""
    shaper = at_shaper(time(17), tz=ZoneInfo("UTC"))
    shaper.offer("day", fill(1), utc("2026-01-07 09:00"))
    assert shaper.pull_in(utc("2026-01-07 10:00")) == 0
    assert shaper.pull_in(utc("2026-01-06 10:00")) == 1
    assert shaper.next_deadline() == utc("2026-01-06 17:00")


def test_pull_in_brings_deadlines_back_within_their_spec() -> None:
    """After a clock step back, a group's due and a throttle's end are at most one wait or
    period from now; deadlines within their spec stay."""
    shaper = Shaper(
        {
            "btc": RuleShaping(group=GroupSpec(by=("market_id",), wait=30 * S)),
            "calm": RuleShaping(throttle=ThrottleSpec(by=("market_id",), every=600 * S)),
        }
    )
    shaper.offer("btc", fill(1), T0)
    shaper.offer("calm", fill(2), T0)
    shaper.offer("calm", fill(3), T0 + S)
    assert shaper.pull_in(T0 + 10 * S) == 0
    back = T0 - 3600 * S
    assert shaper.pull_in(back) == 2
    assert shaper.next_deadline() == back + 30 * S
    [group] = shaper.due(back + 30 * S)
    [trailing] = shaper.due(back + 600 * S)
    assert (group.fills, trailing.fills) == ((fill(1),), (fill(3),))


# --- shaper: throttle -----------------------------------------------------------------------


def throttle_shaper(every: int = 600, active: ActiveSpec | None = None) -> Shaper:
    spec = RuleShaping(throttle=ThrottleSpec(by=("market_id",), every=every * S), active=active)
    return Shaper({"calm": spec})


def test_throttle_sends_one_then_reports_the_suppressed_at_period_end() -> None:
    """First match goes out; the next two wait; at the period end one message carries both."""
    shaper = throttle_shaper()
    [first] = shaper.offer("calm", fill(1), T0)
    assert first.suppressed == 0
    assert shaper.offer("calm", fill(2), T0 + 60 * S) == []
    assert shaper.offer("calm", fill(3), T0 + 120 * S) == []
    assert shaper.stats()["calm"]["throttled"] == 2
    assert shaper.next_deadline() == T0 + 600 * S
    [trailing] = shaper.due(T0 + 600 * S)
    assert trailing.kind == "throttle"
    assert trailing.fills == (fill(2), fill(3))
    assert trailing.suppressed == 1
    assert trailing.fields["suppressed"] == 1
    assert trailing.fields["order_id"] == "3"  # the latest match is the message's subject
    # The trailing message started a new period: a match in it waits.
    assert shaper.offer("calm", fill(4), T0 + 700 * S) == []
    assert [r.fills for r in shaper.due(T0 + 1200 * S)] == [(fill(4),)]
    assert shaper.due(T0 + 1800 * S) == []
    assert shaper.next_deadline() is None
    assert shaper.offer("calm", fill(5), T0 + 1800 * S)[0].fills == (fill(5),)


def test_throttle_boundary_match_goes_after_the_trailing_message() -> None:
    """A match exactly at the period end first flushes the waiting ones, then waits itself."""
    shaper = throttle_shaper()
    shaper.offer("calm", fill(1), T0)
    shaper.offer("calm", fill(2), T0 + S)
    [trailing] = shaper.offer("calm", fill(3), T0 + 600 * S)
    assert trailing.fills == (fill(2),)
    assert trailing.suppressed == 0
    assert shaper.next_deadline() == T0 + 1200 * S


def test_throttle_keys_are_independent() -> None:
    """A busy market does not throttle a quiet one."""
    shaper = throttle_shaper()
    assert len(shaper.offer("calm", fill(1, market="m1"), T0)) == 1
    assert shaper.offer("calm", fill(2, market="m1"), T0 + S) == []
    assert len(shaper.offer("calm", fill(3, market="m2"), T0 + 2 * S)) == 1


def test_throttle_over_groups_counts_suppressed_digests() -> None:
    """With group and throttle, whole digests are throttled and counted as messages."""
    spec = RuleShaping(
        group=GroupSpec(by=("market_id",), wait=10 * S),
        throttle=ThrottleSpec(by=("market_id",), every=100 * S),
    )
    shaper = Shaper({"r": spec})
    sent: list[Release] = []
    for k in range(3):  # three groups of two fills, 20 s apart
        sent += shaper.offer("r", fill(2 * k), T0 + 20 * k * S)
        sent += shaper.offer("r", fill(2 * k + 1), T0 + (20 * k + 1) * S)
        sent += shaper.due(T0 + (20 * k + 10) * S)
    assert [len(r.fills) for r in sent] == [2]
    [trailing] = shaper.due(T0 + 110 * S)
    assert (len(trailing.fills), trailing.suppressed, trailing.fields["count"]) == (4, 1, 4)


# --- shaper: active hours -------------------------------------------------------------------


WINDOW = "08:00-22:00"


def test_waiting_counts_held_fills_from_the_stored_entries() -> None:
    """What `notifier outbox` reads without a shaper: fills held per rule and the first due
    time; a digest whose window moved on a reload ("look again at once") is due at the next
    run, not in 1970."""
    spec = RuleShaping(group=GroupSpec(by=("market_id",), wait=30 * S), active=active(WINDOW))
    shaper = Shaper({"g": spec, "r": RuleShaping(active=active(WINDOW))})
    shaper.offer("g", fill(1), T0)
    shaper.offer("g", fill(2), T0 + S)
    night = utc("2026-02-06T23:00:00")
    shaper.offer("r", fill(3), night)
    stored = [
        (rule, kind, repr(key), json.dumps(data))
        for rule, kind, key, data in shaper.changes()
        if data is not None
    ]
    assert waiting(stored) == ({"g": 2, "r": 1}, T0 + 30 * S)
    shaper.reconfigure({"g": spec, "r": RuleShaping(active=active("09:00-22:00"))}, now=T0)
    moved = [
        (rule, kind, repr(key), json.dumps(data))
        for rule, kind, key, data in shaper.changes()
        if data is not None and rule == "r"
    ]
    assert waiting(moved) == ({"r": 1}, None)


def test_hold_outside_hours_sends_one_digest_when_the_window_opens() -> None:
    """Fills at night are kept and sent together at 08:00, with digest fields."""
    shaper = Shaper({"r": RuleShaping(active=active(WINDOW))})
    night = utc("2026-02-06T23:00:00")
    assert shaper.offer("r", fill(1, price="0.5"), night) == []
    assert shaper.offer("r", fill(2, price="0.7"), night + 3600 * S) == []
    assert shaper.stats()["r"]["held"] == 2
    assert shaper.next_deadline() == utc("2026-02-07T08:00:00")
    assert shaper.due(utc("2026-02-07T07:59:59")) == []
    [digest] = shaper.due(utc("2026-02-07T08:00:00"))
    assert (digest.kind, digest.key, digest.fields["count"]) == ("held", (), 2)
    assert digest.fields["vwap"] == Decimal("0.6")
    assert shaper.next_deadline() is None


def test_a_held_digest_over_several_markets_names_none_of_them() -> None:
    """Everything held at night is one digest: it counts its markets, through a snapshot too.

    It took the last fill's market title, so 300 fills on one market and 1 on another read
    "301 fills on <the other>".
    """
    shaper = Shaper({"r": RuleShaping(active=active(WINDOW))})
    night = utc("2026-02-06T23:00:00")
    for n in range(1, 31):
        shaper.offer("r", fill(n, market="btc"), night)
    shaper.offer("r", fill(31, market="election"), night)
    restored = Stored.of(shaper).restore({"r": RuleShaping(active=active(WINDOW))})
    for each in (shaper, restored):
        [digest] = each.due(utc("2026-02-07T08:00:00"))
        fields = digest.fields
        assert (fields["count"], fields["market_title"], fields["market_id"]) == (
            31,
            "2 markets",
            "mixed",
        )
    one = Shaper({"r": RuleShaping(active=active(WINDOW))})
    for n in range(1, 31):
        one.offer("r", fill(n, market="btc"), night)
    [digest] = one.due(utc("2026-02-07T08:00:00"))
    assert (digest.fields["market_title"], digest.fields["market_id"]) == ("Title of btc", "btc")


def test_a_held_digest_counts_up_to_a_hundred_markets_then_says_more() -> None:
    """The market ids a digest keeps are bounded, as its lines are: the snapshot rewritten
    with every batch must not grow with every market a bot trades overnight."""
    shaper = Shaper({"r": RuleShaping(active=active(WINDOW))})
    night = utc("2026-02-06T23:00:00")
    for n in range(1, 151):
        shaper.offer("r", fill(n, market=f"m{n}"), night)
    stored = Stored.of(shaper)
    tally = stored.entry("r", "rule")["held"]["tally"]  # type: ignore[index]
    assert (len(tally["markets"]), tally["more_markets"]) == (MARKETS_KEPT, True)
    restored = stored.restore({"r": RuleShaping(active=active(WINDOW))})
    for each in (shaper, restored):
        [digest] = each.due(utc("2026-02-07T08:00:00"))
        assert (digest.count, digest.fields["market_title"]) == (150, "100+ markets")
    del tally["markets"], tally["more_markets"]  # as written before markets were counted
    older = stored.restore({"r": RuleShaping(active=active(WINDOW))})
    [digest] = older.due(utc("2026-02-07T08:00:00"))
    assert digest.fields["market_title"] == f"{LINES_KEPT + 1}+ markets"  # the ones it names


def test_the_longest_duration_a_config_takes_still_makes_a_deadline() -> None:
    """`every: 3000000d` once overflowed `now + every` (past the year 9999) in the pipeline;
    the parser's ceiling keeps every throttle and group deadline a date."""
    longest = parse_throttle({"by": ["market_id"], "every": f"{MAX_DAYS}d"}).every
    group = GroupSpec(by=("market_id",), wait=longest)
    shaper = Shaper(
        {"t": RuleShaping(throttle=ThrottleSpec(by=("market_id",), every=longest)),
         "g": RuleShaping(group=group)}
    )  # fmt: skip
    assert len(shaper.offer("t", fill(1), T0)) == 1
    assert shaper.offer("t", fill(2), T0) == shaper.offer("g", fill(3), T0) == []
    assert shaper.next_deadline() == T0 + longest
    with pytest.raises(SpecError, match="too long"):
        parse_throttle({"by": ["market_id"], "every": f"{MAX_DAYS + 1}d"})


def test_held_digest_goes_out_before_a_new_alert_in_the_open_window() -> None:
    """If a match arrives after opening but before due() ran, the held digest leaves first."""
    shaper = Shaper({"r": RuleShaping(active=active(WINDOW))})
    shaper.offer("r", fill(1), utc("2026-02-06T23:00:00"))
    releases = shaper.offer("r", fill(2), utc("2026-02-07T09:00:00"))
    assert [r.kind for r in releases] == ["held", "single"]


def test_drop_outside_hours_discards_and_counts() -> None:
    """`drop` sends nothing for night fills, counts them, and leaves no deadline."""
    shaper = Shaper({"r": RuleShaping(active=active(WINDOW, outside="drop"))})
    assert shaper.offer("r", fill(1), utc("2026-02-06T23:00:00")) == []
    assert shaper.offer("r", fill(2), utc("2026-02-06T23:30:00")) == []
    assert shaper.next_deadline() is None
    assert shaper.stats()["r"]["dropped"] == 2
    assert len(shaper.offer("r", fill(3), utc("2026-02-07T08:00:00"))) == 1


def test_group_closing_after_hours_is_held_for_the_morning() -> None:
    """A group opened just before closing time is released at the next opening, not at night."""
    shaper = group_shaper(active=active(WINDOW))
    shaper.offer("btc", fill(1), utc("2026-02-06T21:59:50"))
    assert shaper.due(utc("2026-02-06T22:00:20")) == []
    assert shaper.next_deadline() == utc("2026-02-07T08:00:00")
    [digest] = shaper.due(utc("2026-02-07T08:00:00"))
    assert (digest.kind, digest.fills) == ("held", (fill(1),))


def test_throttled_matches_ending_after_hours_keep_their_suppressed_count() -> None:
    """Trailing throttle messages that fall outside the window join the held digest's count."""
    shaper = throttle_shaper(every=600, active=active(WINDOW))
    start = utc("2026-02-06T21:55:00")
    shaper.offer("calm", fill(1), start)
    shaper.offer("calm", fill(2), start + S)
    shaper.offer("calm", fill(3), start + 2 * S)
    assert shaper.due(start + 600 * S) == []
    [digest] = shaper.due(utc("2026-02-07T08:00:00"))
    assert (digest.fills, digest.suppressed) == ((fill(2), fill(3)), 1)


def test_drop_never_discards_what_arrived_inside_the_window() -> None:
    """`drop` is for matches arriving outside the window. A group or throttle period that took
    matches inside it still sends them when due, even just after closing time."""
    grouped = group_shaper(active=active(WINDOW, outside="drop"))
    grouped.offer("btc", fill(1), utc("2026-02-06T21:59:45"))
    [digest] = grouped.due(utc("2026-02-06T22:00:15"))
    assert (digest.kind, digest.fills) == ("group", (fill(1),))
    throttled = throttle_shaper(every=600, active=active(WINDOW, outside="drop"))
    start = utc("2026-02-06T21:50:00")
    assert len(throttled.offer("calm", fill(1), start)) == 1
    assert throttled.offer("calm", fill(2), start + 300 * S) == []
    [trailing] = throttled.due(start + 600 * S)
    assert (trailing.fills, trailing.suppressed) == ((fill(2),), 0)
    assert throttled.offer("calm", fill(3), start + 900 * S) == []  # arrived at 22:05: dropped
    assert throttled.stats()["calm"]["dropped"] == 1
    assert grouped.stats().get("btc", {}).get("dropped", 0) == 0


def test_a_market_without_its_title_is_grouped_by_its_id() -> None:
    """Titles missing (the look-up slow or failing) must not merge markets into one digest
    under one market's name: the key falls back to the id, as the templates do."""
    shaper = Shaper({"r": RuleShaping(group=GroupSpec(by=("market_title",), wait=30 * S))})
    untitled = [
        dataclasses.replace(fill(n, market=m), market_title=None)
        for n, m in ((1, "btc"), (2, "election"), (3, "btc"))
    ]
    for one in untitled:
        shaper.offer("r", one, T0)
    digests = shaper.due(T0 + 30 * S)
    assert sorted((d.key, d.count) for d in digests) == [(("btc",), 2), (("election",), 1)]


# --- persistence and reload -----------------------------------------------------------------


def busy_specs() -> dict[str, RuleShaping]:
    return {
        "btc": RuleShaping(group=GroupSpec(by=("market_id",), wait=30 * S)),
        "calm": RuleShaping(
            throttle=ThrottleSpec(by=("market_id",), every=600 * S), active=active(WINDOW)
        ),
        "night": RuleShaping(active=active("22:00-06:00", outside="drop")),
    }


def test_stored_state_is_json_and_restores_held_state_on_time() -> None:
    """Groups, throttles and held alerts survive a JSON round trip and are released on time."""
    shaper = Shaper(busy_specs())
    shaper.offer("night", fill(5), utc("2026-02-06T12:00:00"))
    shaper.offer("calm", fill(2), utc("2026-02-06T21:55:00"))
    shaper.offer("calm", fill(3), utc("2026-02-06T21:55:01"))
    shaper.offer("btc", fill(1, price="0.123456789"), utc("2026-02-06T21:59:50"))
    shaper.offer("calm", fill(4), utc("2026-02-06T21:59:59"))
    stored = Stored.of(shaper)
    [group_entry] = [d for (r, k, _), d in stored.entries.items() if (r, k) == ("btc", "group")]
    assert group_entry["fills"][0]["price"] == "0.123456789"  # type: ignore[index]
    for restored in (
        stored.restore(busy_specs()),
        Shaper.restore_snapshot(busy_specs(), stored.legacy()),
    ):
        assert_restored_busy(shaper, restored)


def assert_restored_busy(shaper: Shaper, restored: Shaper) -> None:
    assert restored.stats() == shaper.stats()
    [group] = restored.due(utc("2026-02-06T22:00:20"))
    assert group.fills == (fill(1, price="0.123456789"),)
    assert group.fields["price"] == Decimal("0.123456789")
    assert restored.due(utc("2026-02-06T22:05:00")) == []  # the trailing message is held
    [held] = restored.due(utc("2026-02-07T08:00:00"))
    assert (held.kind, held.fills, held.suppressed) == ("held", (fill(3), fill(4)), 1)
    assert restored.stats()["night"]["dropped"] == 1


def test_a_long_hold_keeps_a_bounded_entry_and_exact_figures() -> None:
    """A night of 1,000 held fills: the stored entry lists LINES_KEPT, the digest counts all."""
    shaper = Shaper({"r": RuleShaping(active=active(WINDOW))})
    night = utc("2026-02-06T23:00:00")
    for n in range(1, 1001):
        shaper.offer("r", fill(n, quantity="2"), night + n * S)
    stored = Stored.of(shaper)
    held = stored.entry("r", "rule")["held"]
    assert len(held["fills"]) == LINES_KEPT  # type: ignore[index]
    assert held["tally"]["count"] == 1000  # type: ignore[index]
    restored = stored.restore({"r": RuleShaping(active=active(WINDOW))})
    assert restored.stats()["r"]["held"] == 1000
    [digest] = restored.due(utc("2026-02-07T08:00:00"))
    assert digest.fills == tuple(fill(n, quantity="2") for n in range(1, LINES_KEPT + 1))
    figures = digest.fields
    assert (figures["count"], figures["total_quantity"]) == (1000, Decimal(2000))
    assert figures["last_filled_at"] == T0 + 1000 * S
    assert figures["order_id"] == "1000"  # the last fill's own fields


def test_a_snapshot_from_before_tallies_counts_every_listed_fill() -> None:
    """An older snapshot listing more fills than a bunch keeps still restores all of them."""
    shaper = Shaper({"r": RuleShaping(active=active(WINDOW))})
    night = utc("2026-02-06T23:00:00")
    for n in range(1, 31):
        shaper.offer("r", fill(n), night + n * S)
    stored = Stored.of(shaper)
    held = stored.entry("r", "rule")["held"]
    held["fills"] += [fill_to_data(fill(n)) for n in range(LINES_KEPT + 1, 31)]  # type: ignore[index]
    del held["tally"]  # type: ignore[attr-defined]  # as written before tallies: every fill listed
    restored = Shaper.restore_snapshot({"r": RuleShaping(active=active(WINDOW))}, stored.legacy())
    [digest] = restored.due(utc("2026-02-07T08:00:00"))
    assert (digest.count, len(digest.fills), digest.fields["order_id"]) == (30, LINES_KEPT, "30")


def test_restore_releases_rules_that_are_gone_and_refuses_garbage() -> None:
    """State of a rule no longer configured comes out in `orphans`; unreadable data is an error."""
    shaper = Shaper(busy_specs())
    shaper.offer("btc", fill(1), T0)
    stored = Stored.of(shaper)
    restored = stored.restore({"calm": busy_specs()["calm"]})
    assert restored.next_deadline() is None
    assert [(r.rule, r.kind, r.fills) for r in restored.orphans] == [("btc", "group", (fill(1),))]
    assert restored.cleared() == {"btc"}  # its entries go with the next save
    [group_entry] = [d for (r, k, _), d in stored.entries.items() if k == "group"]
    group_entry["fills"][0]["price"] = "cheap"  # type: ignore[index]
    with pytest.raises(ValueError, match=r"rule 'btc', group \['m1'\]: unreadable group entry"):
        stored.restore(busy_specs())
    with pytest.raises(ValueError, match="unreadable shaping snapshot"):
        Shaper.restore_snapshot(busy_specs(), stored.legacy())
    with pytest.raises(ValueError, match="version"):
        Shaper.restore_snapshot(busy_specs(), {"version": 99})
    group_entry["fills"] = "not a list"
    with pytest.raises(ValueError, match="str, not a list"):
        stored.restore(busy_specs())
    with pytest.raises(ValueError, match="list, not an object"):
        Shaper.restore_snapshot(busy_specs(), {"version": 1, "rules": []})


def test_reconfigure_releases_everything_a_removed_rule_held() -> None:
    """Groups, a throttle's kept fills and held fills of removed rules are returned: rule by
    rule (by name), each in deadline order."""
    shaper = Shaper(busy_specs())
    shaper.offer("calm", fill(1), utc("2026-02-06T21:50:00"))  # sent, opens the period
    shaper.offer("calm", fill(2), utc("2026-02-06T21:51:00"))  # kept by the throttle
    shaper.offer("calm", fill(3), utc("2026-02-06T21:52:00"))
    shaper.offer("calm", fill(4), utc("2026-02-06T23:00:00"))  # outside hours: held
    shaper.offer("btc", fill(5), utc("2026-02-06T23:00:00"))
    shaper.offer("btc", fill(6, market="m2"), utc("2026-02-06T23:00:01"))
    released = shaper.reconfigure({}, now=T0)
    assert [(r.rule, r.kind, r.fills, r.suppressed) for r in released] == [
        ("btc", "group", (fill(5),), 0),
        ("btc", "group", (fill(6, market="m2"),), 0),
        ("calm", "throttle", (fill(2), fill(3)), 1),
        ("calm", "held", (fill(4),), 0),
    ]
    assert shaper.stats() == {}
    assert shaper.next_deadline() is None


def test_reconfigure_of_surviving_rules_releases_nothing() -> None:
    """A reload that keeps every shaped rule returns no releases and keeps all state."""
    shaper = Shaper(busy_specs())
    shaper.offer("btc", fill(1), T0)
    assert shaper.reconfigure(busy_specs(), now=T0) == []
    assert shaper.stats()["btc"]["grouped"] == 1


def test_restore_rechecks_held_alerts_against_the_current_window() -> None:
    """After restart held alerts are due at once for a recheck, then wait for the new opening."""
    shaper = Shaper({"r": RuleShaping(active=active(WINDOW))})
    shaper.offer("r", fill(1), utc("2026-02-06T23:00:00"))
    restored = Stored.of(shaper).restore({"r": RuleShaping(active=active("09:00-10:00"))})
    deadline = restored.next_deadline()
    assert deadline is not None
    assert deadline < T0
    assert restored.due(utc("2026-02-07T08:00:00")) == []
    assert restored.next_deadline() == utc("2026-02-07T09:00:00")


def test_reconfigure_keeps_state_and_deadlines_of_surviving_rules() -> None:
    """On reload a still-configured rule keeps its open group with its old deadline."""
    shaper = Shaper(busy_specs())
    shaper.offer("btc", fill(1), T0)
    shaper.offer("night", fill(2), T0)
    shaper.reconfigure({"btc": RuleShaping(group=GroupSpec(by=("market_id",), wait=5 * S))}, now=T0)
    assert set(shaper.stats()) == {"btc"}
    assert shaper.due(T0 + 29 * S) == []
    assert [r.fills for r in shaper.due(T0 + 30 * S)] == [(fill(1),)]


def test_a_reload_that_moves_a_summary_s_time_moves_its_open_groups() -> None:
    """A day's summary moved from 17:00 to 18:00 by a reload goes out at 18:00, not once more
    at 17:00; moved to 15:00 at 16:00, at once: 15:00 passed since its first fill (10:00),
    so it is that day's summary, not folded into the next day's."""

    def at(*times: time) -> dict[str, RuleShaping]:
        return {"day": RuleShaping(group=GroupSpec(by=(), at=times, tz=LONDON))}

    shaper = Shaper(at(time(17)))
    first = fill(0, at=utc("2026-01-06 10:00"))
    shaper.offer("day", first, utc("2026-01-06 10:00"))
    assert shaper.next_deadline() == utc("2026-01-06 17:00")
    assert shaper.reconfigure(at(time(18)), now=utc("2026-01-06 12:00")) == []
    assert shaper.next_deadline() == utc("2026-01-06 18:00")
    assert shaper.due(utc("2026-01-06 17:00")) == []
    assert shaper.reconfigure(at(time(15)), now=utc("2026-01-06 16:00")) == []
    assert shaper.next_deadline() == utc("2026-01-06 15:00")
    [release] = shaper.due(utc("2026-01-06 16:00"))
    assert release.fills == (first,)
    assert shaper.next_deadline() is None
    assert shaper.reconfigure(at(time(9)), now=utc("2026-01-06 16:30")) == []  # nothing open


def test_a_reload_adding_a_time_does_not_send_the_next_summary_back_in_the_past() -> None:
    """At 17:00 the day's summary went; a late fill made at 16:59:59 joined the next one.
    A reload at 18:00 adding 21:00 sends that one at 21:00, not at once for the 17:00 it
    already had."""
    shaper = at_shaper(time(17))
    shaper.offer("day", fill(0, order="a", at=utc("2026-01-06 10:00")), utc("2026-01-06 10:00"))
    assert len(shaper.due(utc("2026-01-06 17:00"))) == 1
    shaper.offer(
        "day", fill(0, order="d", at=utc("2026-01-06 17:00:01")), utc("2026-01-06 17:00:02")
    )
    shaper.offer(
        "day", fill(0, order="b", at=utc("2026-01-06 16:59:59")), utc("2026-01-06 17:00:03")
    )
    both = {"day": RuleShaping(group=GroupSpec(by=(), at=(time(17), time(21)), tz=LONDON))}
    assert shaper.reconfigure(both, now=utc("2026-01-06 18:00")) == []
    assert shaper.next_deadline() == utc("2026-01-06 21:00")
    [release] = shaper.due(utc("2026-01-06 21:00"))
    assert sorted(f.order_id for f in release.fills) == ["b", "d"]


def test_a_reload_moves_a_summary_to_the_first_new_time_after_its_first_fill() -> None:
    """From 17:00 to 18:00 at 16:00: a summary gathered since 10:00 goes at 18:00; one whose
    first fill came yesterday between 17:00 and 18:00 is overdue by the new time, so at once."""
    later = {"day": RuleShaping(group=GroupSpec(by=(), at=(time(18),), tz=LONDON))}
    today = at_shaper(time(17))
    today.offer("day", fill(0, at=utc("2026-01-06 10:00")), utc("2026-01-06 10:00"))
    today.reconfigure(later, now=utc("2026-01-06 16:00"))
    assert today.next_deadline() == utc("2026-01-06 18:00")
    spanning = at_shaper(time(17))
    spanning.offer("day", fill(0, at=utc("2026-01-05 17:30")), utc("2026-01-05 17:30"))
    spanning.reconfigure(later, now=utc("2026-01-06 16:00"))
    assert spanning.next_deadline() == utc("2026-01-05 18:00")


def test_reconfigure_without_group_still_releases_the_open_group() -> None:
    """Removing `group` from a rule does not lose the group already open: it leaves on time."""
    shaper = group_shaper()
    shaper.offer("btc", fill(1), T0)
    shaper.reconfigure({"btc": RuleShaping()}, now=T0)
    [release] = shaper.due(T0 + 30 * S)
    assert release.fills == (fill(1),)


events = st.lists(
    st.tuples(
        st.sampled_from(["btc", "calm", "night"]),
        st.sampled_from(["m1", "m2"]),
        # seconds of clock advance: around the 30 s group wait and the 10 min throttle too
        st.one_of(st.integers(0, 4 * 3600), st.sampled_from([0, 1, 29, 30, 31, 599, 600, 601])),
    ),
    max_size=25,
)


@settings(max_examples=150)
@given(
    events=events,
    restarts=st.sets(st.integers(min_value=0, max_value=25), max_size=4),
    saves=st.sets(st.integers(min_value=0, max_value=25)),
    legacy=st.booleans(),
)
def test_restarts_anywhere_change_no_release(
    events: list[tuple[str, str, int]], restarts: set[int], saves: set[int], legacy: bool
) -> None:
    """Restarting from the stored entries at any points yields exactly the releases of an
    unbroken run, though each save writes only what changed since the one before. `legacy`:
    the first restart reads an older notifier's whole-state snapshot instead."""

    def run(restart_at: set[int]) -> list[tuple[str, str, tuple[str, ...], int]]:
        shaper = Shaper(busy_specs())
        stored = Stored()
        now = utc("2026-02-06T20:00:00")
        out: list[Release] = []
        for i, (rule, market, advance) in enumerate(events):
            if i in saves or i in restart_at:
                stored.save(shaper)
                assert stored.entries == Stored.whole(shaper)  # nothing missed, nothing stale
            if i in restart_at:
                if legacy and i == min(restart_at):
                    shaper = Shaper.restore_snapshot(busy_specs(), stored.legacy())
                else:
                    shaper = stored.restore(busy_specs())
            now += advance * S
            out += shaper.due(now)
            out += shaper.offer(rule, fill(i, market=market), now)
        out += shaper.due(now + timedelta(days=3))
        return [(r.rule, r.kind, tuple(f.order_id for f in r.fills), r.suppressed) for r in out]

    assert run(restarts) == run(set())


def test_shaper_and_specs_refuse_impossible_inputs() -> None:
    """A naive clock, an empty day set or an unknown `outside` fail at once, not later."""
    with pytest.raises(ValueError, match="timezone-aware"):
        Shaper({}).offer("r", fill(1), datetime(2026, 2, 6, 12))
    with pytest.raises(ValueError, match="timezone-aware"):
        Shaper({}).due(datetime(2026, 2, 6, 12))
    with pytest.raises(ValueError, match="days"):
        ActiveSpec(days=frozenset(), start=time(8), end=time(22), tz=LONDON)
    with pytest.raises(ValueError, match="outside"):
        ActiveSpec(days=frozenset({0}), start=time(8), end=time(22), tz=LONDON, outside="queue")  # type: ignore[arg-type]


def test_ended_quiet_throttle_periods_do_not_pile_up() -> None:
    """A throttle by order id over 1,000 orders keeps only a bounded table of periods."""
    spec = RuleShaping(throttle=ThrottleSpec(by=("order_id",), every=60 * S))
    shaper = Shaper({"r": spec})
    now = T0
    sizes = []
    stored = Stored()
    for n in range(1, 1001):
        now += 120 * S  # every earlier period has ended, none kept anything back
        (release,) = shaper.offer("r", fill(n, order=f"o{n}"), now)
        assert release.fills[0].order_id == f"o{n}"  # each order's first alert goes out
        stored.save(shaper)
        sizes.append(sum(kind == "throttle" for _, kind, _ in stored.entries))
    assert max(sizes) <= 64
    assert shaper.next_deadline() is None


def test_per_market_summaries_at_the_opening_go_out_one_per_market() -> None:
    """`group: {by: [market_id], at: "09:00"}` with hours 09:00-17:00 (hold): each market's
    summary due at the opening goes out on its own, as check-config (no note) and the README
    promise, not folded into one held digest of all markets."""
    hours = ActiveSpec(days=frozenset(range(7)), start=time(9), end=time(17), tz=LONDON)
    spec = RuleShaping(group=GroupSpec(by=("market_id",), at=(time(9),), tz=LONDON), active=hours)
    shaper = Shaper({"day": spec})
    shaper.offer("day", fill(1, market="m1"), utc("2026-01-06 10:00"))
    shaper.offer("day", fill(2, market="m2"), utc("2026-01-06 11:00"))
    nine = utc("2026-01-07 09:00")
    assert shaper.next_deadline() == nine
    out = shaper.due(nine) + shaper.due(nine)  # the timer looks again at once
    assert sorted((r.kind, r.key, r.count) for r in out) == [
        ("group", ("m1",), 1),
        ("group", ("m2",), 1),
    ]
