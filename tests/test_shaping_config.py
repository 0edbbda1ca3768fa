"""Config for alert shaping: group/throttle/active/line rule keys, exact messages, defaults."""

from __future__ import annotations

import textwrap
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from notifier import zonenames
from notifier.config import parse
from notifier.errors import ConfigError
from notifier.render import Template
from notifier.rules import Rule
from notifier.shapingconfig import DEFAULT_LINE, DIGEST_BODY
from notifier.shapingspecs import RuleShaping

CHANNELS = "channels:\n  desk: json://localhost/desk\n"  # the rules start on line 3


def rules_of(text: str) -> tuple[Rule, ...]:
    settings = parse(
        CHANNELS + textwrap.dedent(text),
        source=Path("config.yaml"),
        env={"POLYSIM_API_KEY": "k"},
        check_url=lambda url: None,
    )
    return settings.rules.rules


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        rules_of(text)
    return [str(p) for p in info.value.problems]


ISSUE_RULES = """\
rules:
  - name: btc-digest
    when: {market_title: "*bitcoin*"}
    notify: [desk]
    group: {by: [market_id], wait: 30s}
    body: >-
      {count} fills on {market_title}: {total_quantity} @ avg {vwap:.4f}
      (notional {total_notional:.2f})
  - name: order-done
    group: {by: [order_id], wait: 5s}
    notify: [desk]
  - name: calm
    notify: [desk]
    throttle: {by: [market_id], every: 10m}
    active:
      {days: [mon, tue, wed, thu, fri], hours: "08:00-22:00", tz: Europe/London, outside: hold}
"""


def shaping(rule: Rule) -> RuleShaping:
    spec = rule.shaping
    assert isinstance(spec, RuleShaping)
    return spec


def test_issue_example_rules_load_with_their_shaping() -> None:
    """The issue's three shaped rules load into the specs they describe."""
    digest, done, calm = rules_of(ISSUE_RULES)
    g, d = shaping(digest).group, shaping(done).group
    assert g is not None
    assert d is not None
    assert (g.by, g.wait, d.by) == (("market_id",), timedelta(seconds=30), ("order_id",))
    assert "{vwap:.4f}" in digest.body.text
    c = shaping(calm)
    assert c.throttle is not None
    assert c.active is not None
    assert c.throttle.every == timedelta(minutes=10)
    assert (c.active.start, c.active.end, c.active.days) == (time(8), time(22), frozenset(range(5)))
    assert str(c.active.tz) == "Europe/London"


def test_grouped_rules_get_digest_defaults_and_a_line_template() -> None:
    """A shaped rule without a body gets the digest body (plus a suppressed note if throttled)."""
    _, done, calm = rules_of(ISSUE_RULES)
    assert done.body == Template(DIGEST_BODY)
    assert calm.body == Template(DIGEST_BODY)
    assert done.line == Template(DEFAULT_LINE)


def test_line_comes_from_the_rule_or_from_group_line() -> None:
    """`line` may be a rule key or group.line; either renders one fill."""
    a, b = rules_of(
        """\
        rules:
          - {name: a, notify: desk, group: {wait: 5s}, line: "{quantity} @ {price}"}
          - {name: b, notify: desk, group: {wait: 5s, line: "{side} {price}"}}
        """
    )
    assert a.line == Template("{quantity} @ {price}")
    assert b.line == Template("{side} {price}")


def test_plain_rules_have_no_shaping() -> None:
    """A rule without group/throttle/active keeps the plain path: no shaping."""
    (rule,) = rules_of("rules:\n  - {name: r, notify: desk}\n")
    assert rule.shaping is None


def test_digest_fields_are_accepted_only_in_shaped_rules() -> None:
    """{count}, {vwap:.4f}, {suppressed} load in a shaped rule and are refused in a plain one."""
    (ok,) = rules_of(
        """\
        rules:
          - name: t
            notify: desk
            throttle: {every: 1m}
            title: "{count} fills, {suppressed} held back"
            body: "avg {vwap:.4f} from {first_filled_at:%H:%M}\\n{lines}"
        """
    )
    assert ok.title.fields == {"count", "suppressed"}
    assert errors(
        """\
        rules:
          - name: plain
            notify: desk
            title: "{count} fills"
            body: "avg {vwap:.4f}"
        """
    ) == [
        "config.yaml:6: rules[0].title: {count} is a digest field: only a rule with group, "
        "throttle or active has it",
        "config.yaml:7: rules[0].body: {vwap} is a digest field: only a rule with group, "
        "throttle or active has it",
    ]


def test_every_shaping_mistake_has_an_exact_message() -> None:
    """Bad by fields, durations, zones, days, mixes and templates: path, line and reason."""
    assert errors(
        """\
        rules:
          - name: a
            notify: desk
            group: {by: [market_id, markt_title], wait: 30s}
          - name: b
            notify: desk
            group:
              by: [market_id]
              wait: soon
          - name: c
            notify: desk
            active: {hours: "08:00-22:00", tz: Europe/Londn}
          - name: e
            notify: desk
            throttle: {by: [order_id], every: 10m}
            group: {by: [market_id], wait: 5s}
          - name: f
            notify: desk
            group: {wait: 5s}
            line: "{vwap}"
          - name: g
            notify: desk
            line: "{price}"
          - name: h
            notify: desk
            group: 30s
          - name: i
            notify: desk
            active: {days: [mon, frj], hours: "08:00-22:00"}
          - name: j
            notify: desk
            throttle: {every: 0s}
          - name: k
            notify: desk
            group: {wait: 5s, line: "{nope}"}
          - name: l
            notify: desk
            active: {hours: "22:00-22:00", outside: later}
        """
    ) == [
        "config.yaml:6: rules[0].group.by[1]: unknown field 'markt_title' "
        "(did you mean 'market_title'?)",
        "config.yaml:11: rules[1].group.wait: not a duration: 'soon'; use a number of seconds "
        'or a duration such as "30s", "5m", "2h", "1d", "1h30m", "500ms"',
        "config.yaml:14: rules[2].active.tz: unknown time zone 'Europe/Londn' "
        "(did you mean 'Europe/London'?)",
        "config.yaml:17: rules[3].throttle.by[0]: 'order_id' must also be in group.by so each "
        "digest has one throttle key",
        "config.yaml:22: rules[4].line: {vwap} is a digest field; a line shows one fill "
        "(fill fields only)",
        "config.yaml:25: rules[5].line: is used only by a rule with group, throttle or active",
        "config.yaml:28: rules[6].group: must be a mapping like {by: [market_id], wait: 30s} or "
        '{at: "17:00"}, got a string',
        "config.yaml:31: rules[7].active.days[1]: unknown day 'frj' (did you mean 'fri'?)",
        "config.yaml:34: rules[8].throttle.every: must be longer than zero",
        "config.yaml:37: rules[9].group.line: unknown field {nope}; fields are: "
        "order_id, client_order_id, market_id, market_title, side, outcome, price, "
        "price_cents, quantity, notional, status, filled_at, rule",
        "config.yaml:40: rules[10].active.hours: '22:00-22:00' is empty; "
        "write 00:00-24:00 for the whole day",
        "config.yaml:40: rules[10].active.outside: must be 'hold' or 'drop', got 'later'",
    ]


def test_line_given_twice_is_refused() -> None:
    """`line` and group.line together are ambiguous: one message at the rule's line key."""
    assert errors(
        'rules:\n  - {name: a, notify: desk, group: {wait: 5s, line: "{price}"}, line: "{side}"}\n'
    ) == ["config.yaml:4: rules[0].line: given twice: here and group.line"]


DURATION_HINT = (
    'use a number of seconds or a duration such as "30s", "5m", "2h", "1d", "1h30m", "500ms"'
)


def test_every_problem_in_a_shaping_mapping_is_reported_each_at_its_line() -> None:
    """A bad `by` field does not hide a bad `wait`, nor a bad zone bad hours: all, each located."""
    assert errors(
        """\
        rules:
          - name: a
            notify: desk
            group:
              by: [market]
              wait: 5x
          - name: b
            notify: desk
            active:
              tz: Mars/Olympus
              hours: "25:00-26:00"
        """
    ) == [
        "config.yaml:7: rules[0].group.by[0]: unknown field 'market' (did you mean 'market_id'?)",
        f"config.yaml:8: rules[0].group.wait: not a duration: '5x'; {DURATION_HINT}",
        "config.yaml:12: rules[1].active.tz: unknown time zone 'Mars/Olympus'",
        "config.yaml:13: rules[1].active.hours: not a time of day in '25:00-26:00'",
    ]


def test_every_problem_of_a_flow_mapping_is_reported_in_the_order_written() -> None:
    """On one line, the problems of a `{...}` mapping come in key order; throttle too."""
    assert errors(
        """\
        rules:
          - name: a
            notify: desk
            group: {by: [market], wait: 5x}
          - name: b
            notify: desk
            active: {tz: Mars/Olympus, hours: "25:00-26:00"}
          - name: c
            notify: desk
            throttle: {evrey: 1m, by: [side, sid]}
        """
    ) == [
        "config.yaml:6: rules[0].group.by[0]: unknown field 'market' (did you mean 'market_id'?)",
        f"config.yaml:6: rules[0].group.wait: not a duration: '5x'; {DURATION_HINT}",
        "config.yaml:9: rules[1].active.tz: unknown time zone 'Mars/Olympus'",
        "config.yaml:9: rules[1].active.hours: not a time of day in '25:00-26:00'",
        "config.yaml:12: rules[2].throttle.evrey: unknown key 'evrey' (did you mean 'every'?)",
        "config.yaml:12: rules[2].throttle.by[1]: unknown field 'sid' (did you mean 'side'?)",
        'config.yaml:12: rules[2].throttle.every: is required, e.g. "30s"',
    ]


def test_every_throttle_field_missing_from_group_by_is_reported() -> None:
    """Each throttle.by field the groups do not share is its own problem at its own line."""
    assert errors(
        """\
        rules:
          - name: e
            notify: desk
            throttle:
              by: [order_id, side]
              every: 10m
            group: {by: [market_id], wait: 5s}
        """
    ) == [
        "config.yaml:7: rules[0].throttle.by[0]: 'order_id' must also be in group.by so each "
        "digest has one throttle key",
        "config.yaml:7: rules[0].throttle.by[1]: 'side' must also be in group.by so each "
        "digest has one throttle key",
    ]


def test_a_throttle_or_group_past_the_last_date_is_refused_where_written() -> None:
    """`every: 3000000d` once passed and then crashed the pipeline at `now + every` (year
    10000), after the fill was recorded: its alert was lost and every later match crashed."""
    found = errors(
        """\
        rules:
          - name: never-again
            notify: desk
            throttle: {by: [market_id], every: 3000000d}
          - name: slow
            notify: desk
            group: {by: [market_id], wait: 700001d}
        """
    )
    assert len(found) == 2
    assert "rules[0].throttle.every" in found[0]
    assert "duration too long: '3000000d'; at most 700000d" in found[0]
    assert "rules[1].group.wait" in found[1]
    assert shaping(rules_of(ISSUE_RULES.replace("every: 10m", "every: 700000d"))[2])


@pytest.mark.parametrize(
    ("rule", "reads"),
    [
        ("{name: a, notify: desk, when: {client_order_id: 'bot-*'}}", True),
        ("{name: a, notify: desk, when: {not: {client_order_id: 'x'}}}", True),
        ("{name: a, notify: desk, body: 'by {client_order_id}'}", True),
        ("{name: a, notify: desk, title: 'by {client_order_id}'}", True),
        ("{name: a, notify: desk, group: {by: [client_order_id], wait: 5s}}", True),
        ("{name: a, notify: desk, throttle: {by: [client_order_id], every: 1m}}", True),
        ("{name: a, notify: desk, group: {wait: 5s}, line: '{client_order_id}'}", True),
        ("{name: a, notify: desk, enabled: false, body: '{client_order_id}'}", False),
        ("{name: a, notify: desk, when: {side: BUY}, group: {wait: 5s}}", False),
    ],
)
def test_the_rule_set_knows_whether_any_rule_reads_client_order_id(rule: str, reads: bool) -> None:
    """Backfill looks the id up for recovered fills only when some enabled rule reads it, in
    its test, its messages or its shaping keys."""
    settings = parse(
        CHANNELS + "rules:\n  - " + rule + "\n",
        source=Path("config.yaml"),
        env={"POLYSIM_API_KEY": "k"},
        check_url=lambda url: None,
    )
    assert settings.rules.uses_client_order_id is reads


def zone_errors(tz: str) -> list[str]:
    """The problems of one rule whose active window is in `tz` (the `active:` line is 6)."""
    rule = (
        f'rules:\n  - name: a\n    notify: desk\n    active: {{hours: "08:00-22:00", tz: "{tz}"}}\n'
    )
    return errors(rule)


OFFSET_CITY = "to follow a place's daylight saving write its zone, such as Europe/London or "
OFFSET_CITY += "America/New_York"


@pytest.mark.parametrize(
    ("tz", "message"),
    [
        # Abbreviations: once "did you mean 'MST'?", which shifted the window by hours.
        ("BST", "'BST' is not a time zone name: for UK time write Europe/London"),
        ("PST", "'PST' is not a time zone name: for US Pacific time write America/Los_Angeles"),
        ("pdt", "'pdt' is not a time zone name: for US Pacific time write America/Los_Angeles"),
        ("EDT", "'EDT' is not a time zone name: for US Eastern time write America/New_York"),
        ("CDT", "'CDT' is not a time zone name: for US Central time write America/Chicago"),
        ("MDT", "'MDT' is not a time zone name: for US Mountain time write America/Denver"),
        (
            "CEST",
            "'CEST' is not a time zone name: for Central European time write Europe/Berlin "
            "(or your own city's zone, such as Europe/Paris)",
        ),
        ("JST", "'JST' is not a time zone name: for Japan time write Asia/Tokyo"),
        ("HKT", "'HKT' is not a time zone name: for Hong Kong time write Asia/Hong_Kong"),
        ("SGT", "'SGT' is not a time zone name: for Singapore time write Asia/Singapore"),
        ("NZST", "'NZST' is not a time zone name: for New Zealand time write Pacific/Auckland"),
        ("BRT", "'BRT' is not a time zone name: for Brasília time write America/Sao_Paulo"),
        ("MSK", "'MSK' is not a time zone name: for Moscow time write Europe/Moscow"),
        (
            "AEDT",
            "'AEDT' is not a time zone name: for Sydney or Melbourne time write Australia/Sydney",
        ),
        (
            "AEST",
            "'AEST' is not a time zone name, and stands for several: for Sydney or Melbourne "
            "time write Australia/Sydney; for Brisbane time (no daylight saving) write "
            "Australia/Brisbane",
        ),
        (
            "IST",
            "'IST' is not a time zone name, and stands for several: for India time write "
            "Asia/Kolkata; for Irish time write Europe/Dublin; for Israel time write "
            "Asia/Jerusalem",
        ),
        (
            "CST",
            "'CST' is not a time zone name, and stands for several: for US Central time write "
            "America/Chicago; for China time write Asia/Shanghai",
        ),
        # Offsets: once "did you mean 'GMT+0'?"; the fixed form has POSIX's inverted sign.
        (
            "GMT+1",
            "'GMT+1' is not a time zone name: for UTC+1 all year write Etc/GMT-1 (POSIX inverts "
            f"the sign: Etc/GMT-1 is UTC+1); {OFFSET_CITY}",
        ),
        (
            "UTC-5",
            "'UTC-5' is not a time zone name: for UTC-5 all year write Etc/GMT+5 (POSIX inverts "
            f"the sign: Etc/GMT+5 is UTC-5); {OFFSET_CITY}",
        ),
        (
            "UTC+01:00",
            "'UTC+01:00' is not a time zone name: for UTC+1 all year write Etc/GMT-1 (POSIX "
            f"inverts the sign: Etc/GMT-1 is UTC+1); {OFFSET_CITY}",
        ),
        (
            "+14",
            "'+14' is not a time zone name: for UTC+14 all year write Etc/GMT-14 (POSIX "
            f"inverts the sign: Etc/GMT-14 is UTC+14); {OFFSET_CITY}",
        ),
        ("UTC+0", "'UTC+0' is not a time zone name: write UTC"),
        (
            "UTC+5:30",
            "'UTC+5:30' is not a time zone name, and no fixed zone has a UTC+5:30 offset: write "
            "the zone of the place whose clock you mean, such as Asia/Kolkata or "
            "Australia/Adelaide",
        ),
        (
            "GMT-13",
            "'GMT-13' is not a time zone name, and no place is on UTC-13: offsets run from "
            "UTC-12 to UTC+14",
        ),
        (
            "Etc/GMT+13",
            "unknown time zone 'Etc/GMT+13': Etc/GMT zones run from Etc/GMT-14 (UTC+14) to "
            "Etc/GMT+12 (UTC-12), POSIX's inverted sign",
        ),
        (
            "Etc/UTC+1",
            "unknown time zone 'Etc/UTC+1': Etc/GMT zones run from Etc/GMT-14 (UTC+14) to "
            "Etc/GMT+12 (UTC-12), POSIX's inverted sign",
        ),
        ("Z", "'Z' is not a time zone name: for UTC write UTC"),
        # Fixed legacy zones that read as a region's time but keep no daylight saving.
        (
            "EST",
            "'EST' is UTC-5 all year, without daylight saving: for New York time write "
            "America/New_York; for a fixed UTC-5 write Etc/GMT+5",
        ),
        (
            "est",
            "'est' is UTC-5 all year, without daylight saving: for New York time write "
            "America/New_York; for a fixed UTC-5 write Etc/GMT+5",
        ),
        (
            "MST",
            "'MST' is UTC-7 all year, without daylight saving: for US Mountain time write "
            "America/Denver; for Arizona, which keeps UTC-7 all year, write America/Phoenix",
        ),
        # A wrong case of a real zone is named; an unknown abbreviation gets no other one.
        ("utc", "unknown time zone 'utc' (did you mean 'UTC'?)"),
        ("asia/tokyo", "unknown time zone 'asia/tokyo' (did you mean 'Asia/Tokyo'?)"),
        (
            "XYZT",
            "unknown time zone 'XYZT': if that is an abbreviation, write the place's zone "
            "instead, such as Europe/London or America/New_York",
        ),
        (
            "ESTT",
            "unknown time zone 'ESTT': if that is an abbreviation, write the place's zone "
            "instead, such as Europe/London or America/New_York",
        ),
    ],
)
def test_abbreviations_offsets_and_fixed_legacy_zones_name_the_zone_to_write(
    tz: str, message: str
) -> None:
    """`tz: BST` once got "did you mean 'MST'?" and `GMT+1` "did you mean 'GMT+0'?": following
    either moved the window by hours. `EST` (UTC-5 all year, wrong for New York from March to
    November) passed. Each now says which zone to write instead."""
    assert zone_errors(tz) == [f"config.yaml:6: rules[0].active.tz: {message}"]


@pytest.mark.parametrize(
    ("tz", "message"),
    [
        ("Europe/Londn", "unknown time zone 'Europe/Londn' (did you mean 'Europe/London'?)"),
        ("europe/london", "unknown time zone 'europe/london' (did you mean 'Europe/London'?)"),
        ("London", "unknown time zone 'London' (did you mean 'Europe/London'?)"),
        (
            "America/New York",
            "unknown time zone 'America/New York' (did you mean 'America/New_York'?)",
        ),
        ("Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        # A real Etc/GMT zone in another case, or with a space, is named, not its range.
        ("ETC/GMT+5", "unknown time zone 'ETC/GMT+5' (did you mean 'Etc/GMT+5'?)"),
        ("Etc/GMT+5 ", "unknown time zone 'Etc/GMT+5 ' (did you mean 'Etc/GMT+5'?)"),
        (
            "Etc/GMT+15",
            "unknown time zone 'Etc/GMT+15': Etc/GMT zones run from Etc/GMT-14 (UTC+14) to "
            "Etc/GMT+12 (UTC-12), POSIX's inverted sign",
        ),
        # A city alone names its zone, spelt as written.
        ("Paris", "unknown time zone 'Paris' (did you mean 'Europe/Paris'?)"),
        ("New York", "unknown time zone 'New York' (did you mean 'America/New_York'?)"),
    ],
)
def test_misspelt_city_zones_keep_their_suggestion(tz: str, message: str) -> None:
    """What was already well hinted stays so."""
    assert zone_errors(tz) == [f"config.yaml:6: rules[0].active.tz: {message}"]


@pytest.mark.parametrize("tz", ["localtime", "posixrules", "Factory", "right/Europe/London"])
def test_tzdata_files_that_are_no_place_are_refused(tz: str) -> None:
    """`localtime` (the machine's zone, which moves with the machine), `posixrules`, `Factory`
    (shown "-00") and the leap-second `right/` copies load as zones on Debian: each is refused
    (with what to write, where this machine's tzdata has the file)."""
    [problem] = zone_errors(tz)
    assert problem.startswith(f"config.yaml:6: rules[0].active.tz: '{tz}' ") or (
        problem.startswith(f"config.yaml:6: rules[0].active.tz: unknown time zone '{tz}'")
    )
    if tz == "localtime":
        assert "name the zone itself, such as Europe/London" in problem
    if tz.startswith("right/") and "copy" in problem:
        assert problem.endswith("write 'Europe/London'")


@pytest.mark.parametrize(
    ("tz", "offset"),
    [
        ("UTC", timedelta(0)),
        ("Etc/UTC", timedelta(0)),
        ("GMT", timedelta(0)),
        ("Etc/GMT-1", timedelta(hours=1)),  # the fixed form the offset message names
        ("Etc/GMT+1", timedelta(hours=-1)),  # kept: the only way to write a fixed UTC-1
        ("Etc/GMT+5", timedelta(hours=-5)),
        ("EST5EDT", timedelta(hours=-5)),  # these follow US daylight saving
        ("CST6CDT", timedelta(hours=-6)),
        ("MST7MDT", timedelta(hours=-7)),
        ("PST8PDT", timedelta(hours=-8)),
        ("CET", timedelta(hours=1)),  # and these European
        ("Asia/Kolkata", timedelta(hours=5, minutes=30)),
        ("America/Phoenix", timedelta(hours=-7)),
    ],
)
def test_real_zones_are_accepted_fixed_offsets_too(tz: str, offset: timedelta) -> None:
    """UTC, GMT and Etc/GMT±N load (Etc/GMT+1 is UTC-1, as POSIX has it); so do the legacy
    names that do keep daylight saving."""
    (rule,) = rules_of(
        f'rules:\n  - name: a\n    notify: desk\n    active: {{hours: "08:00-22:00", tz: {tz}}}\n'
    )
    active = shaping(rule).active
    assert active is not None
    assert str(active.tz) == tz
    assert active.tz.utcoffset(datetime(2026, 1, 15, 12)) == offset


def test_the_legacy_zones_refused_are_fixed_and_those_accepted_follow_daylight_saving() -> None:
    """What the refusals say of tzdata holds for the tzdata installed: EST and MST keep one
    offset all year (HST too, as Hawaii does: accepted); EST5EDT and its like change with the
    seasons."""
    winter, summer = datetime(2026, 1, 15, 12), datetime(2026, 7, 15, 12)
    assert zonenames._FIXED_OFFSETS == {"EST": "UTC-5", "MST": "UTC-7"}
    assert zonenames.zone("HST") == ZoneInfo("HST")
    for name, hours in (("EST", -5), ("MST", -7), ("HST", -10)):
        zone = ZoneInfo(name)
        assert zone.utcoffset(winter) == zone.utcoffset(summer) == timedelta(hours=hours)
    for name in ("EST5EDT", "CST6CDT", "MST7MDT", "PST8PDT", "CET", "EET", "WET", "MET"):
        zone = ZoneInfo(name)
        standard = zone.utcoffset(winter)
        assert standard is not None
        assert zone.utcoffset(summer) == standard + timedelta(hours=1), name
    assert ZoneInfo("Etc/GMT-1").utcoffset(winter) == timedelta(hours=1)


def test_every_abbreviation_is_no_zone_and_every_zone_it_names_is_one() -> None:
    """An abbreviation that tzdata made a zone would pass unexplained, and advice naming a
    zone tzdata lacks would be refused in turn: both are checked against the installed data."""
    named = {zone for places in zonenames._ABBREVIATIONS.values() for _, zone in places}
    named |= set(zonenames._REGION_EXAMPLE.values())
    for abbreviation in zonenames._ABBREVIATIONS:
        with pytest.raises(ZoneInfoNotFoundError):
            ZoneInfo(abbreviation)
    for name in sorted(named):
        assert str(ZoneInfo(name)) == name


def test_a_rule_s_tz_is_its_active_window_s_zone_unless_the_window_names_one() -> None:
    """`tz: America/New_York` with `active: {hours: "09:30-16:00"}` held or dropped alerts
    through New York's trading hours: the window was read in UTC, the rule's zone ignored.
    One rule, one zone; a window naming its own zone keeps it."""
    (ny, own, bare) = rules_of(
        """
        rules:
          - name: ny
            notify: [desk]
            tz: America/New_York
            active: {hours: "09:30-16:00"}
          - name: own
            notify: [desk]
            tz: America/New_York
            active: {hours: "09:30-16:00", tz: Europe/London}
          - name: bare
            notify: [desk]
            active: {hours: "09:30-16:00"}
        """
    )
    zones = [shaping(rule).active.tz for rule in (ny, own, bare)]  # type: ignore[union-attr]
    assert [str(zone) for zone in zones] == ["America/New_York", "Europe/London", "UTC"]


def test_a_rule_s_tz_places_its_group_s_times_of_day_unless_the_group_names_a_zone() -> None:
    """`group: {at: "16:00"}` in a rule with `tz: America/New_York` closes at New York's
    16:00; a group naming its own zone keeps it; a group by `wait` has no zone to take. A
    mistake in `at` is located at its line."""
    (ny, own, waits) = rules_of(
        """
        rules:
          - name: ny
            notify: [desk]
            tz: America/New_York
            group: {at: "16:00"}
          - name: own
            notify: [desk]
            tz: America/New_York
            group: {at: ["08:00", "16:00"], tz: Europe/London}
          - name: waits
            notify: [desk]
            tz: America/New_York
            group: {wait: 30s}
        """
    )
    groups = [shaping(rule).group for rule in (ny, own, waits)]
    assert [(str(g.tz), g.at) for g in groups if g is not None] == [
        ("America/New_York", (time(16),)),
        ("Europe/London", (time(8), time(16))),
        ("UTC", ()),
    ]
    assert errors(
        """
        rules:
          - name: day
            notify: [desk]
            group:
              at: "5pm"
              wait: 1h
        """
    ) == [
        "config.yaml:8: rules[0].group.at: give wait or at, not both: a group closes a while "
        "after its first fill (wait) or at a time of day (at)",
        "config.yaml:8: rules[0].group.at: must be a time of day like \"17:00\", got '5pm' "
        '(write "17:00")',
    ]


def test_a_summary_takes_its_active_hours_zone_and_is_noted_when_they_are_closed() -> None:
    """`group: {at: "17:00"}` beside `active: {..., tz: Asia/Tokyo}` on a rule with no `tz:`
    is Tokyo's 17:00, not UTC's (which is 02:00 there, and waited for the morning). An `at`
    time the hours are never open at (hold) gets a note: that summary comes at the opening;
    one at the close itself does not."""
    config = """\
    rules:
      - name: day
        notify: [desk]
        group: {at: ["17:00", "17:30"]}
        active: {hours: "09:00-17:00", tz: Asia/Tokyo}
    """
    settings = parse(
        CHANNELS + textwrap.dedent(config),
        source=Path("config.yaml"),
        env={"POLYSIM_API_KEY": "k"},
        check_url=lambda url: None,
    )
    (day,) = settings.rules.rules
    group = shaping(day).group
    assert group is not None
    assert str(group.tz) == "Asia/Tokyo"
    assert [str(note) for note in settings.notes] == [
        "config.yaml:6: rules[0].group.at: 17:30 (Asia/Tokyo) is outside the rule's active "
        "hours: that summary waits for them to open, folded into what they hold then"
    ]


def test_a_summary_at_the_opening_is_not_noted_and_one_closed_half_the_year_is() -> None:
    """`at` 09:00 with hours 09:00-17:00 goes out at the opening: no note. London's 17:30
    against hours in UTC is inside them in summer (16:30 UTC), outside in winter: noted as
    for part of the year."""
    config = """\
    rules:
      - name: opening
        notify: [desk]
        group: {at: "09:00"}
        active: {hours: "09:00-17:00"}
      - name: seasonal
        notify: [desk]
        group: {at: "17:30", tz: Europe/London}
        active: {hours: "09:00-17:00", tz: UTC}
    """
    settings = parse(
        CHANNELS + textwrap.dedent(config),
        source=Path("config.yaml"),
        env={"POLYSIM_API_KEY": "k"},
        check_url=lambda url: None,
    )
    assert [str(note) for note in settings.notes] == [
        "config.yaml:10: rules[1].group.at: 17:30 (Europe/London) is outside the rule's active "
        "hours for part of the year (daylight saving): that summary waits for them to open, "
        "folded into what they hold then"
    ]


def test_a_stop_rule_dropping_fills_outside_its_hours_is_noted_when_a_rule_follows() -> None:
    """`stop: true` with `outside: drop` drops a fill it matches outside its hours and stops
    there, so a later catch-all never sees it: noted at the `stop` line. The same rule last
    (nothing after it to miss the fill), or holding instead of dropping, is not noted."""

    def notes(config: str) -> list[str]:
        settings = parse(
            CHANNELS + config,
            source=Path("config.yaml"),
            env={"POLYSIM_API_KEY": "k"},
            check_url=lambda url: None,
        )
        return [str(note) for note in settings.notes]

    day_only = (
        "  - name: day-only\n"
        "    notify: [desk]\n"
        '    active: {hours: "09:00-17:00", outside: %s}\n'
        "    stop: true\n"
    )
    catch_all = "  - {name: everything, notify: [desk]}\n"
    assert notes("rules:\n" + day_only % "drop" + catch_all) == [
        "config.yaml:7: rules[0].stop: with active hours and `outside: drop`, a fill this rule "
        "matches outside its hours is dropped, and no later rule sees it: put the rule after "
        "the ones that should still get such fills, or hold them (`outside: hold`)"
    ]
    assert notes("rules:\n" + catch_all + day_only % "drop") == []
    assert notes("rules:\n" + day_only % "hold" + catch_all) == []
