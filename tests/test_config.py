"""The config loader: the issue's example as written, and an exact message for each mistake."""

from __future__ import annotations

import logging
import os
import re
import textwrap
import threading
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from notifier import config, yamltree
from notifier.channels import check_url
from notifier.conditions import AllOf, Bounds, FieldMatch
from notifier.config import SAMPLE_FILL, load, parse
from notifier.errors import ConfigError
from notifier.render import fill_values
from notifier.run_summary import log_start
from notifier.settings import Settings

KEY = "ps_test_0123456789abcdefSECRET"
ENV = {"POLYSIM_API_KEY": KEY}
SOURCE = Path("/etc/notifier/config.yaml")

ISSUE_EXAMPLE = """\
feed:
  base_url: https://api.polysimulator.com
  api_key: ${POLYSIM_API_KEY}
state:
  path: notifier.db
channels:
  desk: slack://T000/B000/XXXXXXXX/#fills            # one apprise URL ...
  phone: [tgram://123456:ABCDEF/987654, ntfy://ntfy.sh/my-fills]   # ... or a list of them
rules:
  - name: large-buys
    when:
      side: BUY
      quantity: {min: 100}
      market: ["0xabc*", "0xdef0123"]
    notify: [desk, phone]
    title: "Large buy on {market_title}"
    body: "{side} {quantity} {outcome} @ {price} (notional {notional:.2f}) #{order_id}"
  - name: cheap-no-sells
    when: {side: SELL, outcome: "No", price: {max: 0.3}}
    notify: [phone]
"""

CHANNELS = "channels:\n  desk: json://localhost/desk\n  phone: json://localhost/phone\n"


def accept_all(url: str) -> str | None:
    return None


def settings_of(
    text: str,
    *,
    env: Mapping[str, str] = ENV,
    check_url: config.CheckUrl = accept_all,
    **kw: bool | str,
) -> Settings:
    return parse(
        textwrap.dedent(text), source=Path("config.yaml"), env=env, check_url=check_url, **kw
    )


def errors(text: str, **kw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings_of(text, **kw)  # type: ignore[arg-type]
    return [str(p) for p in info.value.problems]


def test_issue_example_loads_as_written() -> None:
    """The issue's example file loads into exactly the settings it describes."""
    s = parse(ISSUE_EXAMPLE, source=SOURCE, env=ENV, check_url=accept_all)
    assert s.feed.base_url == "https://api.polysimulator.com"
    assert s.feed.api_key == KEY
    assert s.state.path == Path("/etc/notifier/notifier.db")
    assert s.channels["desk"].urls == ("slack://T000/B000/XXXXXXXX/#fills",)
    assert s.channels["phone"].urls == ("tgram://123456:ABCDEF/987654", "ntfy://ntfy.sh/my-fills")
    big, cheap = s.rules.rules
    assert big.name == "large-buys"
    assert big.notify == ("desk", "phone")
    assert big.condition == AllOf(
        (
            FieldMatch("side", ("BUY",)),
            Bounds("quantity", Decimal(100), None),
            FieldMatch("market", ("0xabc*", "0xdef0123")),
        )
    )
    assert big.title.text == "Large buy on {market_title}"
    assert cheap.condition == AllOf(
        (
            FieldMatch("side", ("SELL",)),
            FieldMatch("outcome", ("No",)),
            Bounds("price", None, Decimal("0.3")),
        )
    )
    assert (cheap.enabled, cheap.stop) == (True, False)
    assert cheap.body.render(fill_values(SAMPLE_FILL, rule=cheap.name)) == (
        "BUY 150.0 Yes @ 0.65 on Will Bitcoin close above $100k in 2026? (order #42)"
    )


def test_example_config_file_checks_with_only_the_key_set() -> None:
    """config.example.yaml in the repo is valid with only POLYSIM_API_KEY in the environment."""
    example = Path(__file__).parent.parent / "config.example.yaml"
    s = load(example, env=ENV, check_url=accept_all)
    assert s.rules.rules
    assert s.feed.api_key == KEY


def test_yaml11_surprises_are_text() -> None:
    """`No` stays the outcome "No", 0.3 is Decimal("0.3"), an unquoted hex id stays text."""
    s = settings_of(
        CHANNELS
        + "rules:\n  - name: r\n    notify: desk\n"
        + "    when: {outcome: No, price: {max: 0.3}, market: 0xdef0123, order_id: 012}\n"
    )
    assert s.rules.rules[0].condition == AllOf(
        (
            FieldMatch("outcome", ("No",)),
            Bounds("price", None, Decimal("0.3")),
            FieldMatch("market", ("0xdef0123",)),
            FieldMatch("order_id", ("012",)),
        )
    )


def test_defaults() -> None:
    """An empty file gives the documented defaults, state beside the config file."""
    s = parse("rules: []\n", source=SOURCE, env=ENV)
    assert s.state.path == Path("/etc/notifier/notifier.db")
    assert s.feed.base_url == "https://api.polysimulator.com"
    assert s.delivery.concurrency == 4
    assert (s.log.level, s.log.format) == ("info", "text")
    assert s.metrics.listen is None
    assert s.channels == {}
    assert len(s.rules) == 0


def test_every_section_key() -> None:
    """Each section key is read into its typed setting (durations, seconds, ints, choices)."""
    s = settings_of(
        """\
        feed:
          base_url: http://localhost:8000/
          catch_up: 1h
          backfill_overlap: 90
          backfill_horizon: 2d
          ping_interval: 500ms
          ping_timeout: 5s
          stable_after: 0
          request_timeout: 2.5
          max_frame_bytes: 65536
        state: {path: /var/lib/notifier/state.db}
        delivery: {max_age: 1h, retry_base: 2s, retry_cap: 1m, concurrency: 2, timeout: 5s,
                   body_format: Markdown, overflow: truncate}
        metrics: {listen: "[::1]:9464"}
        log: {level: DEBUG, format: json}
        """,
        env={"POLYSIM_API_KEY": KEY, "POLYSIM_BASE_URL": "https://ignored.example"},
    )
    assert s.feed.base_url == "http://localhost:8000"
    assert s.feed.catch_up == timedelta(hours=1)
    assert s.feed.backfill_overlap == timedelta(seconds=90)
    assert s.feed.backfill_horizon == timedelta(days=2)
    assert (s.feed.ping_interval, s.feed.ping_timeout) == (0.5, 5.0)
    assert (s.feed.stable_after, s.feed.request_timeout) == (0.0, 2.5)
    assert s.feed.max_frame_bytes == 65536
    assert s.state.path == Path("/var/lib/notifier/state.db")
    assert s.delivery.max_age == timedelta(hours=1)
    assert (s.delivery.retry_base, s.delivery.retry_cap, s.delivery.timeout) == (2.0, 60.0, 5.0)
    assert (s.delivery.concurrency, s.delivery.body_format, s.delivery.overflow) == (
        2,
        "markdown",
        "truncate",
    )
    assert s.metrics.listen == "[::1]:9464"
    assert (s.log.level, s.log.format) == ("debug", "json")


def test_base_url_from_environment() -> None:
    """Without feed.base_url, POLYSIM_BASE_URL (PolySimulator's own convention) is used."""
    s = settings_of("rules: []\n", env={**ENV, "POLYSIM_BASE_URL": "http://localhost:8000"})
    assert s.feed.base_url == "http://localhost:8000"


def test_env_expansion() -> None:
    """${VAR} and ${VAR:-default} expand in any scalar before it is interpreted; $${ is literal."""
    s = settings_of(
        CHANNELS + "rules:\n  - name: ${NAME}\n    notify: desk\n"
        "    when: {quantity: {min: '${MIN:-5}'}, order_id: '$${X}'}\n"
        "delivery:\n  concurrency: ${N:-3}\n",
        env={**ENV, "NAME": "from-env"},
    )
    rule = s.rules.rules[0]
    assert rule.name == "from-env"
    assert rule.condition == AllOf(
        (Bounds("quantity", Decimal(5), None), FieldMatch("order_id", ("${X}",)))
    )
    assert s.delivery.concurrency == 3


def test_a_literal_dollar_brace_in_a_template_is_written_with_doubled_braces() -> None:
    """`$${HOME}` leaves `${HOME}`: a dollar sign before the field {HOME}, refused with the
    spelling that gives the text; `$${{HOME}}` renders as ${HOME}."""
    rule = "rules:\n  - name: r\n    notify: desk\n    body: 'cost {price} $$%s'\n"
    assert errors(CHANNELS + rule % "{HOME}") == [
        "config.yaml:7: rules[0].body: unknown field {HOME} "
        "(a literal ${HOME} in a template is written $${{HOME}})",
    ]
    typo = "rules:\n  - name: r\n    notify: desk\n    body: 'at $${price}, {pric} shares'\n"
    assert errors(CHANNELS + typo) == [  # a dollar before another placeholder: no such hint
        "config.yaml:7: rules[0].body: unknown field {pric} (did you mean {price}?)",
    ]
    body = settings_of(CHANNELS + rule % "{{HOME}}").rules.rules[0].body
    assert body.render(fill_values(SAMPLE_FILL, rule="r")) == "cost 0.65 ${HOME}"


def test_unset_variable_names_it_and_the_key() -> None:
    """An unset ${VAR} without default is an error naming the variable and the key path."""
    assert errors("delivery:\n  timeout: ${TIMEOUT}\n") == [
        "config.yaml:2: delivery.timeout: environment variable TIMEOUT is not set "
        "(set it, or write ${TIMEOUT:-default})",
    ]


def test_a_variable_set_in_other_capitals_is_named() -> None:
    """Names are case-sensitive: `${polysim_api_key}` with POLYSIM_API_KEY set says which
    variable is set and how to write it, in a secret's value too (the name shown is the
    environment's, not the text written); two candidates, or none set, get no guess."""
    text = "feed:\n  api_key: ${polysim_api_key}\ndelivery:\n  timeout: ${Timeout}\n"
    env = {**ENV, "TIMEOUT": "5s"}
    assert errors(text, env=env) == [
        "config.yaml:2: feed.api_key: names an environment variable that is not set; names "
        "are case-sensitive, and POLYSIM_API_KEY is set: write ${POLYSIM_API_KEY}",
        "config.yaml:4: delivery.timeout: environment variable Timeout is not set; names are "
        "case-sensitive, and TIMEOUT is set: write ${TIMEOUT}",
    ]
    two = {**env, "timeout": "6s"}
    assert errors("delivery:\n  timeout: ${TimeOut}\n", env=two) == [
        "config.yaml:2: delivery.timeout: environment variable TimeOut is not set "
        "(set it, or write ${TimeOut:-default})",
    ]


def test_an_empty_variable_for_a_whole_value_names_it() -> None:
    """A ${VAR} set to "" that is the whole value reads as nothing: where the key refuses
    that, its problem names the variable ("got nothing (null)" alone named no cause); where
    nothing is fine (`metrics.listen`, off), it loads as before."""
    text = (
        "delivery:\n  timeout: ${TIMEOUT}\n"
        "metrics:\n  listen: ${METRICS_LISTEN}\n"
        "channels:\n  phone: ${NTFY_URL}\n  mail: {url: 'json://h/${EMPTY}'}\n"
        "rules:\n  - {name: r, notify: [phone, mail], title: 'x${EMPTY}'}\n"
    )
    env = {**ENV, "TIMEOUT": "", "NTFY_URL": "", "EMPTY": "", "METRICS_LISTEN": ""}
    assert errors(text, env=env) == [
        "config.yaml:2: delivery.timeout: must be a duration such as 30s or 5m, got nothing "
        "(null) (environment variable TIMEOUT is set but empty)",
        "config.yaml:6: channels.phone: must be a string, got nothing (null) (environment "
        "variable NTFY_URL is set but empty)",
    ]
    fixed = text.replace("${TIMEOUT}", "5s").replace("${NTFY_URL}", "json://h/p")
    assert settings_of(fixed, env=env).metrics.listen is None
    # A problem about the key, not the value, gets no such note.
    assert errors("delivery:\n  timout: ${TIMEOUT}\n", env=env) == [
        "config.yaml:2: delivery.timout: unknown key 'timout' (did you mean 'timeout'?)"
    ]


def test_a_dry_run_stands_in_for_channel_urls_only() -> None:
    """With `unset_urls`, each way of writing a channel URL takes the stand-in when its
    variable is unset (the whole URL: a token missing would leave a broken one); any other
    unset variable, a channel's rate included, is still a problem."""
    text = (
        "channels:\n"
        "  a: ${A}\n"
        "  b: [json://ok, 'tgram://${TOKEN}/123']\n"
        "  c: {url: '${C}', rate: '${RATE}'}\n"
        "  d: {urls: ['${D}']}\n"
        "  e: {url: ['${E}']}\n"
        "rules:\n  - {name: r, notify: [a, b, c, d, e]}\n"
    )
    assert errors(text, unset_urls="console://unset") == [
        "config.yaml:4: channels.c.rate: environment variable RATE is not set "
        "(set it where the daemon runs: the shell, or the unit's EnvironmentFile)",
    ]
    settings = settings_of(text.replace("'${RATE}'", "5/min"), unset_urls="console://unset")
    assert {n: c.urls for n, c in settings.channels.items()} == {
        "a": ("console://unset",),
        "b": ("json://ok", "console://unset"),
        "c": ("console://unset",),
        "d": ("console://unset",),
        "e": ("console://unset",),
    }


def test_api_key_required_unless_told() -> None:
    """No API key is an error only when required; the key comes from POLYSIM_API_KEY by default."""
    assert errors("rules: []\n", env={}) == [
        "config.yaml: feed.api_key: no API key: set POLYSIM_API_KEY in the environment "
        "or feed.api_key"
    ]
    assert settings_of("feed:\n  api_key: ${POLYSIM_API_KEY}\n", env={}, require_api_key=False)
    assert settings_of("rules: []\n", env=ENV).feed.api_key == KEY


def test_a_key_an_http_header_cannot_carry_is_refused_without_showing_it() -> None:
    """A pasted no-break space or newline in the key is a config error naming only the spot."""
    assert errors("rules: []\n", env={"POLYSIM_API_KEY": KEY + "\u00a0"}) == [
        f"config.yaml: feed.api_key: character {len(KEY) + 1} (U+00A0, NO-BREAK SPACE) cannot "
        "travel in an HTTP header: copy the key again (from feed.api_key or POLYSIM_API_KEY)"
    ]
    (problem,) = errors(f'feed:\n  api_key: "{KEY}\\n"\n')
    assert problem.startswith("config.yaml:2: feed.api_key: character 31 (U+000A, a control")
    assert "SECRET" not in problem


def test_a_key_pasted_with_its_bearer_prefix_is_told_to_drop_it() -> None:
    """`Bearer ps_live_...` (copied from a curl line) was "character 7 (U+0020, SPACE) cannot
    travel in an HTTP header: copy the key again": the prefix is named, the key never shown."""
    expected = (
        'feed.api_key: starts with "Bearer ", which belongs to an Authorization header, not to '
        "the key (the key is sent alone, as X-API-Key): remove the Bearer prefix (in "
        "feed.api_key or POLYSIM_API_KEY)"
    )
    assert errors(f"feed:\n  api_key: Bearer {KEY}\n") == [f"config.yaml:2: {expected}"]
    assert errors("rules: []\n", env={"POLYSIM_API_KEY": f"bearer  {KEY}"}) == [
        f"config.yaml: {expected}"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "tgram://123456:SECRETTOKENXYZ/987654",
        "pover://SECRETUSERKEY@SECRETAPPTOKEN",
        "x y://SECRET",
    ],
)
def test_a_channel_url_set_as_the_base_url_shows_only_its_scheme(url: str) -> None:
    """A channel URL in the wrong variable carries its token where a host would be: the
    base_url problem names the scheme, never what follows it."""
    [problem] = errors('feed:\n  base_url: "${TG}"\n', env={**ENV, "TG": url})
    assert problem.startswith("config.yaml:2: feed.base_url: must ")
    assert "SECRET" not in problem


def test_a_bad_base_url_from_the_environment_named_in_the_file_is_one_problem() -> None:
    """`base_url: ${POLYSIM_BASE_URL:-...}` (the example's) with the variable set to a host
    alone was reported twice: at the file's line, and again as the variable's."""
    text = 'feed:\n  base_url: "${POLYSIM_BASE_URL:-https://api.polysimulator.com}"\n'
    env = {**ENV, "POLYSIM_BASE_URL": "api.polysimulator.com"}
    [problem] = errors(text, env=env)
    assert problem.startswith("config.yaml:2: feed.base_url: must be an http:// or https:// URL")


def test_the_start_line_shows_the_base_urls_host_not_its_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A base_url with a path (a webhook pasted there) is logged as scheme, host and `/…`."""
    settings = settings_of(
        "feed: {base_url: 'https://hooks.example:8443/services/T0/SECRETPATH'}\n" + CHANNELS
    )
    caplog.set_level(logging.INFO, logger="notifier.run_summary")
    log_start(settings)
    assert "feed https://hooks.example:8443/…" in caplog.text
    assert "SECRETPATH" not in caplog.text


def test_all_problems_at_once_in_file_order() -> None:
    """Every problem in the file is reported together, sorted by line, each fully located."""
    text = """\
    feed:
      base_url: ftp://x
      bogus: 1
    channels:
      desk: json://x
      mail: {urls: [mailto://x], fallback: mial, rate: 20/min}
    rules:
      - name: r1
        when:
          side: BOY
          quantity: {min: abc, max: 3}
          price: {min: 0.5, max: 0.3}
          markte: x
        notify: [dsk]
        title: "{prcie}"
        enabled: yes
      - name: r1
        notify: desk
        side: BUY
    """
    assert errors(text) == [
        "config.yaml:2: feed.base_url: must be an http:// or https:// URL, got a URL starting "
        "ftp:// (the rest not shown)",
        "config.yaml:3: feed.bogus: unknown key 'bogus' (expected one of: base_url, api_key, "
        "catch_up, backfill_overlap, backfill_horizon, ping_interval, ping_timeout, "
        "stable_after, request_timeout, max_frame_bytes)",
        "config.yaml:6: channels.mail.fallback: unknown channel 'mial' (did you mean 'mail'? "
        "channels defined: desk, mail)",
        "config.yaml:10: rules[0].when.side: must be BUY or SELL, got 'BOY' (did you mean 'BUY'?)",
        "config.yaml:11: rules[0].when.quantity.min: must be a number, got 'abc'",
        "config.yaml:12: rules[0].when.price: min 0.5 is greater than max 0.3",
        "config.yaml:13: rules[0].when.markte: unknown key 'markte' (did you mean 'market'?)",
        "config.yaml:14: rules[0].notify[0]: unknown channel 'dsk' (did you mean 'desk'? "
        "channels defined: desk, mail)",
        "config.yaml:15: rules[0].title: unknown field {prcie} (did you mean {price}?)",
        "config.yaml:16: rules[0].enabled: must be true or false, got 'yes' "
        "(yes/no/on/off are not booleans here: write true or false)",
        "config.yaml:17: rules[1].name: duplicate rule name 'r1' (first at line 8)",
        "config.yaml:19: rules[1].side: unknown rule key 'side' (a condition: put it under when:)",
    ]


def test_yaml_syntax_error_has_line() -> None:
    """A YAML syntax error is one located problem saying what the parser expected."""
    [problem] = errors("feed:\n  base_url: [x\n")
    assert problem.startswith("config.yaml:3: YAML syntax error: ")
    assert problem.endswith("(while parsing a flow sequence at line 2)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "feed:\n  ping_timeout: 5s\n  ping_timeout: 6s\n",
            "config.yaml:3: feed.ping_timeout: duplicate key 'ping_timeout' (first at line 2)",
        ),
        ("fead: {}\n", "config.yaml:1: fead: unknown key 'fead' (did you mean 'feed'?)"),
        ("- 1\n", "config.yaml:1: must be a mapping, got a list"),
        ("delivery: 3\n", "config.yaml:1: delivery: must be a mapping, got a number"),
        (
            "delivery: {concurrency: 0}\n",
            "config.yaml:1: delivery.concurrency: must be at least 1, got 0",
        ),
        (
            "delivery: {concurrency: 1.5}\n",
            "config.yaml:1: delivery.concurrency: must be a whole number, got 1.5",
        ),
        (
            "delivery: {retry_base: 10s, retry_cap: 1s}\n",
            "config.yaml:1: delivery.retry_base: must not be more than retry_cap (1s), got 10s",
        ),
        (
            "delivery: {body_format: htlm}\n",
            "config.yaml:1: delivery.body_format: must be text, markdown or html, got 'htlm' "
            "(did you mean 'html'?)",
        ),
        (
            "feed: {ping_interval: 5x}\n",
            "config.yaml:1: feed.ping_interval: not a duration: '5x'; use a number of seconds "
            'or a duration such as "30s", "5m", "2h", "1d", "1h30m", "500ms"',
        ),
        (
            "feed: {request_timeout: 0}\n",
            "config.yaml:1: feed.request_timeout: must be more than 0",
        ),
        (
            "feed: {catch_up: true}\n",
            "config.yaml:1: feed.catch_up: must be a duration such as 30s or 5m, got a boolean",
        ),
        (
            "metrics: {listen: localhost}\n",
            'config.yaml:1: metrics.listen: must be "host:port" such as 127.0.0.1:9464 or '
            "[::1]:9464, got 'localhost'",
        ),
        (
            "log: {level: loud}\n",
            "config.yaml:1: log.level: must be debug, info, warning or error, got 'loud'",
        ),
        ("state: {path: ''}\n", "config.yaml:1: state.path: must not be empty"),
        ("rules: &x [*x]\n", "config.yaml:1: rules[0]: recursive YAML alias"),
    ],
)
def test_section_errors(text: str, expected: str) -> None:
    """Each kind of mistake outside rules and channels gets its exact located message."""
    assert errors(text) == [expected]


def rules_errors(rules: str) -> list[str]:
    return errors(CHANNELS + "rules:\n" + textwrap.indent(textwrap.dedent(rules), "  "))


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            "- name: r\n  notify: desk\n  stop: No\n",
            "config.yaml:7: rules[0].stop: must be true or false, got 'No' "
            "(yes/no/on/off are not booleans here: write true or false)",
        ),
        (
            "- name: r\n  notify: desk\n  enabled: 1\n",
            "config.yaml:7: rules[0].enabled: must be true or false, got a number",
        ),
        ("- name: r\n", "config.yaml:5: rules[0]: missing required key 'notify'"),
        (
            "- name: r\n  notify: []\n",
            "config.yaml:6: rules[0].notify: must list at least one value",
        ),
        (
            "- name: r\n  notify: dsk\n",
            "config.yaml:6: rules[0].notify: unknown channel 'dsk' (did you mean 'desk'? "
            "channels defined: desk, phone)",
        ),
        (  # a name near none of them: the ones there are
            "- name: r\n  notify: slack\n",
            "config.yaml:6: rules[0].notify: unknown channel 'slack' (channels defined: desk, "
            "phone)",
        ),
        (
            "- name: r\n  notify: desk, phone\n",
            "config.yaml:6: rules[0].notify: unknown channel 'desk, phone': several channels "
            "are a list, [desk, phone]",
        ),
        (
            "- name: r\n  notify: desk\n  when: {price: 0.5}\n",
            "config.yaml:7: rules[0].when.price: must be a mapping like {min: 0.4, max: 0.6}, "
            "got a number",
        ),
        (
            "- name: r\n  notify: desk\n  when: {price: {}}\n",
            "config.yaml:7: rules[0].when.price: needs min, max, above or below",
        ),
        (
            "- name: r\n  notify: desk\n  when: {price: {min: 1, mx: 2}}\n",
            "config.yaml:7: rules[0].when.price.mx: unknown key 'mx' (did you mean 'max'?)",
        ),
        (
            "- name: r\n  notify: desk\n  when: {side: [BUY, sel]}\n",
            "config.yaml:7: rules[0].when.side[1]: must be BUY or SELL, got 'sel' "
            "(did you mean 'SELL'?)",
        ),
        (
            "- name: r\n  notify: desk\n  when: {side: 'buy, SELL'}\n",
            "config.yaml:7: rules[0].when.side: names 2 sides in one string: to match either "
            "side, leave side out (or write a list: [BUY, SELL])",
        ),
        (
            "- name: r\n  notify: desk\n  when: {side: [BUY/SELL]}\n",
            "config.yaml:7: rules[0].when.side[0]: names 2 sides in one string: to match either "
            "side, leave side out (or write a list: [BUY, SELL])",
        ),
        (
            "- name: r\n  notify: desk\n  when: {market: [0xabc1, 0xE40605e6*]}\n",
            "config.yaml:7: rules[0].when.market[1]: market ids are lower-case hex, as the "
            "venue sends them: write '0xe40605e6*'",
        ),
        (  # words where the venue sends 0x… hex: it never matches
            "- name: r\n  notify: desk\n  when: {market: [0xabc1, Bitcoin]}\n",
            "config.yaml:7: rules[0].when.market[1]: 'Bitcoin' is not a market id (the venue's "
            "are 0x… hex): to match the market's question, write market_title: '*Bitcoin*'",
        ),
        (  # a rule's zone for its messages' times: the same names as active's
            "- name: r\n  notify: desk\n  tz: New York\n",
            "config.yaml:7: rules[0].tz: unknown time zone 'New York' (did you mean "
            "'America/New_York'?)",
        ),
        (  # the machine's zone would move with the machine
            "- name: r\n  notify: desk\n  tz: local\n",
            "config.yaml:7: rules[0].tz: unknown time zone 'local': name the zone itself, such "
            "as Europe/London or America/New_York",
        ),
        (  # hex letters alone, no digit and no 0x: a word still
            "- name: r\n  notify: desk\n  when: {market: Fed}\n",
            "config.yaml:7: rules[0].when.market: 'Fed' is not a market id (the venue's "
            "are 0x… hex): to match the market's question, write market_title: '*Fed*'",
        ),
        (
            "- name: r\n  notify: desk\n  when: {market: '*election?'}\n",
            "config.yaml:7: rules[0].when.market: '*election?' is not a market id (the venue's "
            "are 0x… hex): to match the market's question, write market_title: '*election?'",
        ),
        (
            "- name: r\n  notify: desk\n  when: {notional: {min: 500, above: 500}}\n",
            "config.yaml:7: rules[0].when.notional: min and above both bound the same end: "
            "keep one",
        ),
        (
            "- name: r\n  notify: desk\n  when: {price: {above: 0.5, below: 0.5}}\n",
            "config.yaml:7: rules[0].when.price: above 0.5 and below 0.5 leave no value",
        ),
        (
            "- name: r\n  notify: desk\n  when: {price: {above: 1}}\n",
            "config.yaml:7: rules[0].when.price.above: must be below 1: no price is above 1, "
            "so this rule would match none",
        ),
        (
            "- name: r\n  notify: desk\n  when: {notional: {below: 0}}\n",
            "config.yaml:7: rules[0].when.notional.below: must be above 0: no fill has a "
            "notional below 0, so this rule would match none",
        ),
        (
            "- name: r\n  notify: desk\n  when: {side: 'buy buy'}\n",
            "config.yaml:7: rules[0].when.side: names 2 sides in one string: write one: BUY",
        ),
        (
            "- name: r\n  notify: desk\n  when: {outcome: true}\n",
            "config.yaml:7: rules[0].when.outcome: must be a string, got a boolean",
        ),
        (
            "- name: r\n  notify: desk\n  when: {any: []}\n",
            "config.yaml:7: rules[0].when.any: must be a list of conditions, got an empty list",
        ),
        (
            "- name: r\n  notify: desk\n  when:\n    any:\n      - {side: BUY}\n      -\n",
            "config.yaml:10: rules[0].when.any[1]: is an empty condition, which matches every "
            "fill (a stray `-`?)",
        ),
        (
            "- name: r\n  notify: desk\n  when: {all: [{side: BUY}, {}]}\n",
            "config.yaml:7: rules[0].when.all[1]: is an empty condition, which matches every "
            "fill (a stray `-`?)",
        ),
        (
            "- name: r\n  notify: desk\n  when: {not: [x]}\n",
            "config.yaml:7: rules[0].when.not: must be a mapping, got a list",
        ),
        (
            "- name: r\n  notify: desk\n  when:\n    all:\n      - {quantity: {max: x}}\n",
            "config.yaml:9: rules[0].when.all[0].quantity.max: must be a number, got 'x'",
        ),
        (
            "- name: r\n  notify: desk\n  body: '{side.x}'\n",
            "config.yaml:7: rules[0].body: placeholder {side.x} uses attribute or index access, "
            "which is not allowed",
        ),
        (
            "- name: ' r'\n  notify: desk\n",
            "config.yaml:5: rules[0].name: must be one line without leading or trailing spaces",
        ),
        (
            "- name: a\n  notify: desk\n- name: a\n  notify: desk\n",
            "config.yaml:7: rules[1].name: duplicate rule name 'a' (first at line 5)",
        ),
        (
            "- name: r\n  notify: desk\n  bdy: x\n",
            "config.yaml:7: rules[0].bdy: unknown key 'bdy' (did you mean 'body'?)",
        ),
        (
            "name: r\n",
            "config.yaml:5: rules: must be a list of rules, got a mapping: start each rule with "
            '"- " and indent its other keys under its name, as in "- name: big-buys" then '
            '"  notify: [desk]" on the next line',
        ),
        ("r\n", "config.yaml:5: rules: must be a list of rules, got a string"),
    ],
)
def test_rule_errors(rules: str, expected: str) -> None:
    """Each kind of rule mistake gets its exact located message."""
    assert rules_errors(rules) == [expected]


def test_an_unknown_channel_lists_the_first_twelve_defined() -> None:
    """Past twelve channels the list is cut, saying how many more there are."""
    channels = "".join(f"  c{i}: json://localhost/{i}\n" for i in range(14))
    assert errors(f"channels:\n{channels}rules:\n  - {{name: r, notify: slack}}\n") == [
        "config.yaml:17: rules[0].notify: unknown channel 'slack' (channels defined: c0, c1, "
        "c2, c3, c4, c5, c6, c7, c8, c9, c10, c11 and 2 more)"
    ]


def test_when_nesting_and_empty_when() -> None:
    """any/all/not nest; a rule without when (or with an empty one) matches every fill."""
    s = settings_of(
        CHANNELS
        + textwrap.dedent("""\
        rules:
          - name: nested
            notify: desk
            when:
              any: [{market_title: "*BITCOIN*"}, {notional: {min: 500}}]
              not: {status: PARTIALLY_FILLED}
          - {name: everything, notify: desk}
          - {name: empty, notify: desk, when: {}}
        """)
    )
    assert [r.name for r in s.rules.match(SAMPLE_FILL)] == ["nested", "everything", "empty"]


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        ("desk: true\n", "config.yaml:2: channels.desk: must be a string, got a boolean"),
        ("desk: []\n", "config.yaml:2: channels.desk: must list at least one value"),
        (
            "my desk: json://x\n",
            "config.yaml:2: channels.my desk: a channel name must start "
            "with a letter and use only letters, digits, _ and -",
        ),
        (
            "desk: {url: json://x, urls: [json://y]}\n",
            "config.yaml:2: channels.desk: needs exactly one of urls (a list) or url",
        ),
        (
            "desk: {url: json://x, rate: fast}\n",
            'config.yaml:2: channels.desk.rate: must look like "20/min" or "5/2s", got \'fast\'',
        ),
        (  # well formed, but no message at all is no rate
            "desk: {url: json://x, rate: 0/min}\n",
            "config.yaml:2: channels.desk.rate: must allow at least 1 message, got '0/min'",
        ),
        (
            "desk: {url: json://x, fallback: desk}\n",
            "config.yaml:2: channels.desk.fallback: a channel cannot fall back to itself",
        ),
        (
            "desk: {url: json://x, fallback: b}\nb: {url: json://x, fallback: desk}\n",
            "config.yaml:3: channels.b.fallback: fallback loop: b -> desk -> b",
        ),
        (
            "desk: {url: json://x, fallback_after: soon}\n",
            "config.yaml:2: channels.desk.fallback_after: not a duration: 'soon'; use a number of "
            'seconds or a duration such as "30s", "5m", "2h", "1d", "1h30m", "500ms"',
        ),
        (
            "desk: {url: json://x, rat: 1/s}\n",
            "config.yaml:2: channels.desk.rat: unknown key 'rat' (did you mean 'rate'?)",
        ),
        (
            "desk: {url: json://x, body_format: md}\n",
            "config.yaml:2: channels.desk.body_format: must be text, markdown or html, got "
            "'md' (did you mean 'markdown'?)",
        ),
        (
            "desk: {url: json://x, body_format: markdwn}\n",
            "config.yaml:2: channels.desk.body_format: must be text, markdown or html, got "
            "'markdwn' (did you mean 'markdown'?)",
        ),
    ],
)
def test_channel_errors(channels: str, expected: str) -> None:
    """Each kind of channel mistake gets its exact located message."""
    assert errors("channels:\n" + textwrap.indent(channels, "  ")) == [expected]


def test_a_market_id_no_fill_can_have_is_noted_or_refused() -> None:
    """The venue's ids are 0x and 64 hex digits, compared whole: a shorter one (a `*`
    forgotten) loads with a note naming the glob meant; one with a space is refused."""
    full = "0x" + "e4" * 32
    text = CHANNELS + (
        f'rules:\n  - name: r\n    notify: desk\n    when: {{market: ["0xe40605e6", "{full}"]}}\n'
    )
    [note] = [str(n) for n in settings_of(text).notes]
    assert note == (
        "config.yaml:7: rules[0].when.market[0]: '0xe40605e6' is shorter than a market id (0x "
        "and 64 hex digits), and compared whole it matches no fill of the venue's: to match "
        "the ids that start with it, write '0xe40605e6*'"
    )
    spaced = CHANNELS + f'rules:\n  - name: r\n    notify: desk\n    when: {{market: "{full} "}}\n'
    assert errors(spaced) == [
        f"config.yaml:7: rules[0].when.market: '{full} ' has a space around the id: remove it"
    ]


def test_a_market_title_that_is_a_word_without_a_glob_is_noted() -> None:
    """`market_title: bitcoin` loads but matches only a title that is "bitcoin": a note names
    the glob meant; a glob, or a whole question, is not noted."""
    rule = CHANNELS + "rules:\n  - name: r\n    notify: desk\n    when: {market_title: %s}\n"
    assert [str(n) for n in settings_of(rule % "bitcoin").notes] == [
        "config.yaml:7: rules[0].when.market_title: 'bitcoin' has no * or ?, so it matches only "
        "a title that is 'bitcoin' and nothing more (titles are whole questions, such as \"Will "
        'Bitcoin close above $100k in 2026?"): to match the titles that contain it, write '
        "'*bitcoin*'"
    ]
    assert [str(n) for n in settings_of(rule % "[Fed, US election]").notes] == [
        "config.yaml:7: rules[0].when.market_title[0]: 'Fed' has no * or ?, so it matches only "
        "a title that is 'Fed' and nothing more (titles are whole questions, such as \"Will "
        'Bitcoin close above $100k in 2026?"): to match the titles that contain it, write '
        "'*Fed*'",
        "config.yaml:7: rules[0].when.market_title[1]: 'US election' has no * or ?, so it "
        "matches only a title that is 'US election' and nothing more (titles are whole "
        'questions, such as "Will Bitcoin close above $100k in 2026?"): to match the titles '
        "that contain it, write '*US election*'",
    ]
    quiet = ("'*bitcoin*'", "'Will it rain?'", "'Bitcoin above 100k on March 1'")
    for title in quiet:
        assert settings_of(rule % title).notes == ()


def test_a_price_written_as_a_percentage_or_in_cents_names_the_price_meant() -> None:
    """Prices run 0 to 1: `50%` and `65c` are refused with 0.5 and 0.65, and the example a
    price that is no mapping is shown is a price range."""
    rule = CHANNELS + "rules:\n  - name: r\n    notify: desk\n    when: {price: %s}\n"
    assert errors(rule % "{min: 50%, max: 65c}") == [
        "config.yaml:7: rules[0].when.price.min: prices run 0 to 1, so '50%' is 0.5: write 0.5",
        "config.yaml:7: rules[0].when.price.max: prices run 0 to 1, so '65c' is 0.65: write 0.65",
    ]
    assert errors(rule % "0.5") == [
        "config.yaml:7: rules[0].when.price: must be a mapping like {min: 0.4, max: 0.6}, got "
        "a number"
    ]


def test_a_metrics_address_written_as_a_url_is_refused_at_check_config() -> None:
    """`listen: http://127.0.0.1:9464` passed check-config, and run exited 70 at every restart."""
    assert errors("metrics: {listen: 'http://127.0.0.1:9464'}\n") == [
        'config.yaml:1: metrics.listen: must be "host:port" such as 127.0.0.1:9464 or '
        "[::1]:9464, got 'http://127.0.0.1:9464' (an address to listen on, not a URL: no "
        "scheme or path)"
    ]


def test_a_metrics_port_alone_is_answered_with_the_address_to_write() -> None:
    """`listen: 9464` says to write 127.0.0.1:9464; a port past 65535 is not suggested."""
    assert errors("metrics: {listen: 9464}\n") == [
        'config.yaml:1: metrics.listen: must be "host:port" such as 127.0.0.1:9464 or '
        "[::1]:9464, got '9464' (a port alone: write 127.0.0.1:9464 for this machine only)"
    ]
    assert errors("metrics: {listen: 70000}\n") == [
        'config.yaml:1: metrics.listen: must be "host:port" such as 127.0.0.1:9464 or '
        "[::1]:9464, got '70000' (a port is at most 65535)"
    ]


def test_a_metrics_address_of_digits_that_is_no_ipv4_address_is_refused() -> None:
    """`listen: 999.1.1.1:9464` passed check-config, and run exited 70 (a listen failure that
    may clear) at every restart: digits and dots are an IPv4 address or nothing."""
    assert errors("metrics: {listen: '999.1.1.1:9464'}\n") == [
        'config.yaml:1: metrics.listen: must be "host:port" such as 127.0.0.1:9464 or '
        "[::1]:9464, got '999.1.1.1:9464'"
    ]
    assert settings_of("metrics: {listen: '0.0.0.0:9464'}\n").metrics.listen == "0.0.0.0:9464"


def test_a_key_or_url_wrapped_in_quotes_by_an_env_file_is_refused() -> None:
    """`KEY="ps_live_..."` read by docker's --env-file kept its quotes: a 401, or "not a URL"."""
    env = {"POLYSIM_API_KEY": f'"{KEY}"', "HOOK": "'json://h/x'"}
    shown = "is wrapped in quotes: remove them (`docker run --env-file`, for one, keeps an env "
    shown += "file's quotes as part of the value)"
    assert errors("channels:\n  desk: ${HOOK}\n", env=env) == [
        f"config.yaml:2: channels.desk: channel 'desk': the URL {shown}",
        f"config.yaml: feed.api_key: the key {shown}",
    ]
    assert not any(KEY in problem for problem in errors("rules: []\n", env=env))


def test_a_channel_url_without_a_scheme_is_refused_in_a_whole_sentence() -> None:
    """The message's own `scheme://...)` was cut as a URL: "(expected scheme://…", unclosed."""
    problems = errors("channels:\n  desk: hooks.example.com/x\n", check_url=check_url)
    assert problems == [
        "config.yaml:2: channels.desk: channel 'desk': URL not accepted: not an apprise URL, "
        "which starts with a scheme such as json:// or tgram://"
    ]


def test_a_fallback_delay_without_a_fallback_is_refused() -> None:
    """`fallback_after: 5m` alone loaded: the operator thought failures went to another channel."""
    assert errors("channels:\n  desk: {url: json://x, fallback_after: 5m}\n") == [
        "config.yaml:2: channels.desk.fallback_after: has no effect without fallback: "
        "name the channel to fall back to"
    ]


def test_channel_mapping_form() -> None:
    """A channel mapping carries urls, a rate as (count, seconds), a fallback and its delay."""
    s = settings_of(
        """\
        channels:
          phone: {urls: [tgram://a, tgram://b], rate: 20/min, fallback: mail, fallback_after: 2m}
          mail: {url: mailto://x, rate: 5/2s}
          hook: {url: json://x, rate: 1 / hour}
        """
    )
    phone, mail, hook = s.channels["phone"], s.channels["mail"], s.channels["hook"]
    assert phone.urls == ("tgram://a", "tgram://b")
    assert (phone.rate, phone.fallback, phone.fallback_after) == (
        (20, 60.0),
        "mail",
        timedelta(minutes=2),
    )
    assert (mail.urls, mail.rate, mail.fallback) == (("mailto://x",), (5, 2.0), None)
    assert hook.rate == (1, 3600.0)
    assert phone.body_format is None  # delivery.body_format's


def test_a_channel_writes_its_own_format_whatever_other_channels_share_its_url() -> None:
    """`body_format` per channel (in any case, as delivery's); None leaves it to delivery's.
    Two channels may list one URL in different formats: each alert is sent in the format it
    was written in (the outbox keeps it), whichever channel queued it."""
    s = settings_of(
        """\
        delivery: {body_format: html}
        channels:
          slack: {url: "slack://a/b/c", body_format: Markdown}
          mail: mailto://x
          desk: {urls: [mailto://x], body_format: text}
        """
    )
    formats = {name: channel.body_format for name, channel in s.channels.items()}
    assert formats == {"slack": "markdown", "mail": None, "desk": "text"}


def test_refused_url_names_channel_never_the_secret() -> None:
    """A URL apprise refuses is reported by channel and index, without the URL or its token."""
    text = CHANNELS.replace("phone: json://localhost/phone", "phone: [json://ok, bad://TOKEN123]")
    text += "rules:\n  - {name: r, notify: phone}\n"
    problems = errors(text, check_url=lambda u: "unknown scheme" if "TOKEN" in u else None)
    assert problems == [
        "config.yaml:3: channels.phone[1]: channel 'phone': URL not accepted: unknown scheme"
    ]


def test_two_urls_in_one_string_are_refused_never_echoed() -> None:
    """apprise's "a, b" or "a b" form in one channel string is two URLs: as one, the second
    became the first's path (and a test send said ok). It is refused by channel and index,
    without either URL; a comma inside one URL (mailto recipients) stays that URL's."""
    text = (
        "channels:\n"
        "  d: json://127.0.0.1/e, json://127.0.0.1/SECRET\n"
        "  t: [tgram://ok, 'discord://1/SECRET discord://2/x']\n"
        "  m: mailto://u:p@h?to=a@x.com,b@y.com\n"
        "rules:\n  - {name: r, notify: [d, t, m]}\n"
    )
    assert errors(text) == [
        "config.yaml:2: channels.d: channel 'd': 2 URLs in one string: write each as an item "
        "of a list: urls: [first, second]",
        "config.yaml:3: channels.t[1]: channel 't': 2 URLs in one string: write each as an item "
        "of a list: urls: [first, second]",
    ]


def test_secrets_never_echoed() -> None:
    """Type errors on the API key or a URL say the type, never the value."""
    problems = errors(
        f"feed: {{api_key: [{KEY}]}}\nchannels: {{desk: {{url: {{x: slack://SECRET}}}}}}\n"
    )
    assert problems == [
        "config.yaml:1: feed.api_key: must be a string, got a list",
        "config.yaml:2: channels.desk.url: must be a string, got a mapping",
    ]
    assert not any(KEY in p or "SECRET" in p for p in problems)


def test_a_value_from_the_environment_is_named_never_quoted() -> None:
    """A secret set in the wrong place (the key as base_url or log level, a Telegram token as
    a channel name, a Slack URL as a rate): the problem names the variable, not its value."""
    tg = "123456789:AAHsecretTelegramToken"
    env = {**ENV, "POLYSIM_BASE_URL": KEY, "SLACK_URL": "slack://TSECRET/BSECRET/CSECRET", "TG": tg}
    text = (
        "log: {level: '${POLYSIM_API_KEY}'}\n"
        "channels: {desk: {url: json://localhost/d, rate: '${SLACK_URL}'}}\n"
        "rules:\n  - {name: r, notify: [desk, '${TG}']}\n"
    )
    problems = errors(text, env=env)
    assert problems == [
        "config.yaml:1: log.level: must be debug, info, warning or error, got ${POLYSIM_API_KEY}",
        'config.yaml:2: channels.desk.rate: must look like "20/min" or "5/2s", got ${SLACK_URL}',
        "config.yaml:4: rules[0].notify[1]: unknown channel: not a channel name (a letter, then "
        "letters, digits, _ and -); a URL or token belongs under channels:, named there",
        "config.yaml: feed.base_url: POLYSIM_BASE_URL must be an http:// or https:// URL "
        "(the value, not shown, has no scheme:// and is no host name: 30 characters)",
    ]
    assert not any(secret in p for p in problems for secret in (KEY, "SECRET", tg, "AAH"))


def test_load_reads_the_file(tmp_path: Path) -> None:
    """load reads the file, anchors the state path beside it and names it in errors."""
    path = tmp_path / "config.yaml"
    path.write_text("state: {path: sub/state.db}\n", encoding="utf-8")
    assert load(path, env=ENV).state.path == tmp_path / "sub" / "state.db"
    path.write_text("state: 3\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"config\.yaml:1: state: must be a mapping, got a number"
    ):
        load(path, env=ENV)


def test_load_missing_file(tmp_path: Path) -> None:
    """An unreadable file is one ConfigError, not a traceback."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load(path, env=ENV)
    assert str(info.value) == f"{path}: cannot read: No such file or directory"


def test_a_named_pipe_no_one_writes_to_is_refused_not_waited_on_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config replaced by a FIFO held `open` forever (a reload with it, and every reload
    after, wedged): now refused once it has waited PIPE_WAIT for a writer. A pipe with its
    writer (`--config <(...)`) is read to its end, as a file is."""
    monkeypatch.setattr(config, "PIPE_WAIT", 0.05)
    path = tmp_path / "config.yaml"
    os.mkfifo(path)
    outcome: list[BaseException] = []

    def reload() -> None:
        try:
            load(path, env=ENV)
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(
        target=reload, daemon=True
    )  # a daemon: a wedged one must not hold pytest
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "load waited on the pipe"
    [error] = outcome
    assert isinstance(error, ConfigError)
    assert str(error) == f"{path}: cannot read: a named pipe nothing was written to within 0.05s"
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, (CHANNELS + "rules: []\n").encode())
        os.close(write_end)
        settings = load(Path(f"/dev/fd/{read_end}"), env=ENV)
        assert settings.channels["desk"].urls == ("json://localhost/desk",)
    finally:
        os.close(read_end)


def test_a_channel_url_from_its_default_is_noted_set_empty_or_unset() -> None:
    """A channel URL taken from its `:-` default is a note (never an error, never the URL),
    saying whether its variable is unset or set but empty."""
    text = "channels:\n  desk: ${DESK_URL:-json://127.0.0.1:9/placeholder}\n"
    for env, said in (({}, "not set"), ({"DESK_URL": ""}, "empty")):
        settings = settings_of(text, env={**ENV, **env})
        assert [str(note) for note in settings.notes] == [
            f"config.yaml:2: channels.desk: DESK_URL is {said}: the value written after :- is used"
        ]
    assert settings_of(text, env={**ENV, "DESK_URL": "json://127.0.0.1:9/d"}).notes == ()


def test_another_word_for_a_rule_key_is_answered_with_the_key() -> None:
    """`channel:` and `message:` are not near `notify` and `body` in spelling: the refusal
    names them all the same."""
    assert errors(CHANNELS + "rules:\n  - {name: r, channel: desk, message: hi}\n") == [
        "config.yaml:5: rules[0].channel: unknown key 'channel' (did you mean 'notify'?)",
        "config.yaml:5: rules[0].message: unknown key 'message' (did you mean 'body'?)",
        "config.yaml:5: rules[0]: missing required key 'notify'",
    ]


def test_a_file_not_in_utf8_is_named_so(tmp_path: Path) -> None:
    """A config an editor saved as UTF-16 is refused saying how to save it, not with a codec's
    words."""
    path = tmp_path / "utf16.yaml"
    path.write_text("rules: []\n", encoding="utf-16")
    with pytest.raises(ConfigError) as info:
        load(path, env=ENV)
    assert str(info.value) == (
        f"{path}: cannot read: not UTF-8 text (byte 1 is not): save the file as UTF-8"
    )


def test_recursive_alias_is_refused() -> None:
    """A YAML alias that contains itself is a problem, not an endless loop."""
    problems = errors(CHANNELS + "rules: &r\n  - {name: r, notify: desk, when: {all: *r}}\n")
    assert "config.yaml:4: rules[0].when.all: recursive YAML alias" in problems


def test_pure_python_yaml_reads_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml, the pure-Python SafeLoader reads the same settings and kinds."""
    import yaml

    from notifier import yamltree

    pure = type("PureLoader", (yaml.SafeLoader,), {"yaml_implicit_resolvers": {}})
    fast = parse(ISSUE_EXAMPLE, source=SOURCE, env=ENV, check_url=accept_all)
    monkeypatch.setattr(yamltree, "_Loader", pure)
    slow = parse(ISSUE_EXAMPLE, source=SOURCE, env=ENV, check_url=accept_all)
    assert [r.condition for r in slow.rules.rules] == [r.condition for r in fast.rules.rules]
    assert slow.channels == fast.channels
    assert errors("rules:\n  - {name: r, notify: x, stop: No}\n")[1].endswith(
        "write true or false)"
    )


def test_side_is_read_in_any_case() -> None:
    """side: buy / Sell are read as BUY / SELL."""
    s = settings_of(CHANNELS + "rules:\n  - {name: r, notify: desk, when: {side: [buy, Sell]}}\n")
    assert s.rules.rules[0].condition == FieldMatch("side", ("BUY", "SELL"))


def test_dollar_before_a_placeholder_in_a_template_is_a_dollar_sign() -> None:
    """In a template ${price} is "$" + {price}, even with `price` set; ${HOST} expands."""
    s = settings_of(
        CHANNELS + "rules:\n  - name: r\n    notify: desk\n"
        '    title: "Bought at ${price} (${notional:.2f}) on ${HOST}"\n',
        env={**ENV, "price": "0.99", "HOST": "box"},
    )
    fill = SAMPLE_FILL
    title = s.rules.rules[0].title.render(fill_values(fill, rule="r"))
    assert title == f"Bought at ${fill.price} (${fill.notional:.2f}) on box"


def test_a_variable_named_like_a_field_expands_outside_templates() -> None:
    """Outside title/body/line, ${price} is still an environment variable."""
    s = settings_of(
        CHANNELS + "rules:\n  - name: r\n    notify: desk\n    when: {order_id: '${price}'}\n",
        env={**ENV, "price": "42"},
    )
    assert s.rules.rules[0].condition == FieldMatch("order_id", ("42",))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "delivery: {max_age: 0s}\n",
            "config.yaml:1: delivery.max_age: must be more than 0 (alerts older than this are "
            "given up on, unsent)",
        ),
        (  # meant as hours: alerts dead-lettered while their first send still ran
            "delivery: {max_age: 24}\n",
            "config.yaml:1: delivery.max_age: must be at least one attempt's bound, 1m30s (3 x "
            "delivery.timeout), got 24s (a bare number is seconds: write 24h for a day)",
        ),
        (  # the default max_age, and a timeout that outlasts it thrice over
            "delivery: {timeout: 9h}\n",
            "config.yaml:1: delivery.timeout: one attempt may take 3 x timeout, 1d3h, more than "
            "delivery.max_age (1d): alerts would be given up on during their first send; "
            "shorten it or raise max_age",
        ),
        (
            "delivery: {concurrency: 1e999999999}\n",
            "config.yaml:1: delivery.concurrency: must be a whole number below 10^18",
        ),
        (
            "metrics: {listen: '127.0.0.1:²'}\n",
            'config.yaml:1: metrics.listen: must be "host:port" such as 127.0.0.1:9464 or '
            "[::1]:9464, got '127.0.0.1:²'",
        ),
        (
            CHANNELS + "rules:\n  - {name: r, notify: desk, when: {price: {min: 65}}}\n",
            "config.yaml:5: rules[0].when.price.min: must be between 0 and 1 (a price of 65¢ is "
            "0.65), got 65",
        ),
        (
            CHANNELS + "rules:\n  - {name: r, notify: desk, when: {quantity: {max: -1}}}\n",
            "config.yaml:5: rules[0].when.quantity.max: must be 0 or more: no fill has a "
            "negative quantity, got -1",
        ),
        (
            CHANNELS + "rules:\n  - {name: r, notify: desk, when: {quantity: {max: 0}}}\n",
            "config.yaml:5: rules[0].when.quantity.max: must be above 0: every fill's quantity "
            "is, so this rule would match none",
        ),
    ],
)
def test_values_that_would_fail_at_run_time_are_refused(text: str, expected: str) -> None:
    """max_age 0, a huge integer, a non-ASCII port digit and a price in cents fail to load."""
    assert errors(text) == [expected]


def test_pasted_urls_and_defaults_are_never_echoed() -> None:
    """A URL where a channel name belongs, or in a bad ${...}, is reported without its text."""
    problems = errors(
        "channels:\n  desk: {url: 'json://x', fallback: 'mailtos://bot:PW1@mail.example'}\n"
        "  phone: '${SLACK-URL:-slack://T/B/TOKEN2}'\n"
        "rules:\n  - {name: r, notify: [desk, 'tgram://1:TOKEN3/2']}\n"
    )
    assert problems == [
        "config.yaml:2: channels.desk.fallback: unknown channel: this looks like a URL; "
        "define it under channels: and use its name",
        "config.yaml:3: channels.phone: bad variable reference: write ${NAME} or "
        "${NAME:-default}, NAME of letters, digits and _",
        "config.yaml:5: rules[0].notify[1]: unknown channel: this looks like a URL; "
        "define it under channels: and use its name",
    ]


def test_fallback_to_a_broken_channel_reports_only_the_channel() -> None:
    """A fallback naming a channel whose URL was refused adds no second 'unknown channel'."""
    text = "channels:\n  desk: {url: json://x, fallback: mail}\n  mail: {url: bad://x}\n"
    problems = errors(text, check_url=lambda u: "unknown scheme" if u.startswith("bad") else None)
    assert problems == [
        "config.yaml:3: channels.mail.url: channel 'mail': URL not accepted: unknown scheme"
    ]


def test_base_url_from_environment_is_checked() -> None:
    """A POLYSIM_BASE_URL that is not an http(s) URL is a config error, not a failure at run."""
    assert errors("rules: []\n", env={**ENV, "POLYSIM_BASE_URL": "127.0.0.1:9"}) == [
        "config.yaml: feed.base_url: POLYSIM_BASE_URL must be an http:// or https:// URL, "
        "got '127.0.0.1:9'"
    ]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://127.0.0.1:99999", "has a port that is not 1 to 65535"),
        ("https://127.0.0.1:0", "has a port that is not 1 to 65535"),
        ("https://127.0.0.1:http", "has a port that is not 1 to 65535"),
        ("https://:443", "names no host"),
        ("https://venue.example/api?x=1", "must not have a ?query or #fragment"),
        ("https://[::1", "is not a URL (an IPv6 host needs both [ and ])"),
        ("https://[::1]x:80", "is not a URL the HTTP client can use"),
        ("https://venue .example", "must not hold spaces or control characters"),
        ("https://api.polysimulator.com/v1", "must end before /v1: the paths appended to it"),
        ("https://venue.example/ps/v1/ws/executions", "must end before /v1"),
    ],
)
def test_a_base_url_that_could_not_be_connected_to_is_refused(url: str, problem: str) -> None:
    """Caught by check-config, from the file or the environment, not as a crash at connect."""
    [message] = errors(f"feed:\n  base_url: {url}\n")
    assert message.startswith(f"config.yaml:2: feed.base_url: {problem}")
    [message] = errors("rules: []\n", env={**ENV, "POLYSIM_BASE_URL": url})
    assert message.startswith(f"config.yaml: feed.base_url: POLYSIM_BASE_URL {problem}")


def test_a_base_url_ending_in_the_api_version_is_refused_not_doubled() -> None:
    """`https://api.polysimulator.com/v1` sent requests to /v1/v1/..., a 404 retried forever."""
    assert errors("feed:\n  base_url: https://api.polysimulator.com/v1/\n") == [
        "config.yaml:2: feed.base_url: must end before /v1: the paths appended to it "
        "(/v1/keys/ws-token, /v1/account/history) begin with it, got "
        "'https://api.polysimulator.com/…'"
    ]
    proxied = settings_of("feed:\n  base_url: https://proxy.example/polysim/\nrules: []\n")
    assert proxied.feed.base_url == "https://proxy.example/polysim"


def test_a_base_url_with_a_control_character_is_refused() -> None:
    """A NUL or tab inside the URL passed urlsplit, and httpx refused it only at run (exit 70)."""
    for escaped in ("\\0", "\\t"):
        [message] = errors(f'feed:\n  base_url: "https://venue{escaped}.example"\n')
        assert message.startswith(
            "config.yaml:2: feed.base_url: must not hold spaces or control characters"
        )


def test_an_empty_file_is_refused_not_run_with_nothing() -> None:
    """A truncated file (a `>` redirect, a two-step save) is valid YAML: refused, or a reload
    would drop every rule and channel without a word."""
    for text in ("", "\n\n", "# everything commented out\n# rules: []\n"):
        assert errors(text) == [
            "config.yaml: the file holds no settings (it is empty, or only comments)"
        ]


def test_backfill_windows_must_fit_each_other() -> None:
    """A horizon within the overlap recovers nothing missed; a catch-up past the horizon is
    cut to it: both refused, with what to set."""
    assert errors("feed:\n  backfill_horizon: 0s\n") == [
        "config.yaml:2: feed.backfill_horizon: must be longer than backfill_overlap (1m), got "
        "0s: fills missed while the feed was down would not be recovered"
    ]
    assert errors("feed:\n  backfill_overlap: 2h\n  backfill_horizon: 1h\n")[0].startswith(
        "config.yaml:3: feed.backfill_horizon: must be longer than backfill_overlap (2h)"
    )
    assert errors("feed:\n  catch_up: 30d\n") == [
        "config.yaml:2: feed.catch_up: 30d reaches back past backfill_horizon (7d), which "
        "bounds every look back: raise feed.backfill_horizon to at least 30d"
    ]
    assert settings_of("feed:\n  catch_up: 30d\n  backfill_horizon: 30d\n").feed.catch_up


def test_timeouts_and_intervals_are_at_most_a_day() -> None:
    """A socket timeout of 300000 days passed the check and failed every send at run time."""
    assert errors("delivery:\n  timeout: 300000d\n") == [
        "config.yaml:2: delivery.timeout: must be at most 1d"
    ]
    assert settings_of("feed:\n  request_timeout: 1d\n").feed.request_timeout == 86400.0


def test_a_base_url_with_credentials_is_refused_without_showing_them() -> None:
    """The API key authenticates; a user:password in the URL is refused, and not echoed."""
    [message] = errors("feed:\n  base_url: https://user:hunter2@venue.example\n")
    assert message == (
        "config.yaml:2: feed.base_url: must not hold a user name or password (the API key is "
        "what authenticates), got 'https://***@venue.example'"
    )
    [message] = errors("feed:\n  base_url: ftp://user:hunter2@venue.example/x\n")
    assert "hunter2" not in message
    [message] = errors("feed:\n  base_url: https://u:pa/ss@venue.example\n")
    assert "pa" not in message.rpartition("got")[2]
    [message] = errors("feed:\n  base_url: https://venue.example/?api_key=ps_live_secret\n")
    assert message.endswith("got 'https://venue.example/…'")


def test_plain_http_is_for_a_venue_on_this_machine_only() -> None:
    """Over http:// the API key (X-API-Key) and the feed's tokens would cross the network in
    the clear: only a loopback host may be reached that way."""
    for url in ("http://localhost:8000", "http://127.0.0.2:9", "http://[::1]:8000"):
        assert settings_of(f"feed:\n  base_url: {url}\n").feed.base_url == url
    assert errors("feed:\n  base_url: http://api.polysimulator.com\n") == [
        "config.yaml:2: feed.base_url: must be https:// unless the venue runs on this machine "
        "(over http:// the API key and the feed's tokens would cross the network unencrypted), "
        "got 'http://api.polysimulator.com'"
    ]
    assert errors("feed:\n  base_url: http://192.168.1.5:8000\n") != []


def test_a_channel_url_in_the_wrong_place_is_located_but_never_quoted() -> None:
    """Braces for brackets (`phone: {tgram://...}`) make the URL a key; a URL as a rate or a
    duration is a bad value: each is refused at its line, with the URL cut to its scheme,
    since the message reaches check-config, the journal and "reload refused"."""
    text = (
        "channels:\n"
        "  phone: {tgram://123456:TGSECRETTOKEN/987654}\n"
        "  desk:\n"
        "    urls: [json://127.0.0.1:9/]\n"
        "    rate: mailto://bot:MAILPASS777@host\n"
        "  tgram://123456:TGSECRET2/987654: json://127.0.0.1:9/\n"
    )
    messages = errors(text)
    assert len(messages) == 3
    for message in messages:
        assert "SECRET" not in message, message
        assert "MAILPASS" not in message, message
    assert messages[0].startswith(
        "config.yaml:2: channels.phone.tgram://…: unknown key 'tgram://…'"
    )
    assert messages[1].startswith("config.yaml:5: channels.desk.rate: ")
    assert "'mailto://…'" in messages[1]
    assert messages[2].startswith("config.yaml:6: channels.tgram://…: ")


def test_an_empty_key_in_the_file_says_it_hides_the_environment_s() -> None:
    """`api_key:` left empty overrides POLYSIM_API_KEY: the message says so, not "set it"."""
    assert errors("feed:\n  api_key: ''\n") == [
        "config.yaml:2: feed.api_key: empty here, and a key in the file overrides "
        "POLYSIM_API_KEY: remove feed.api_key to use the environment's, or fill it in"
    ]


def test_unquoted_globs_and_templates_get_a_hint_to_quote_them() -> None:
    """`*bitcoin*` is a YAML alias and `{market_title}` a mapping unless quoted: the error
    says so, instead of pyyaml's words alone."""
    glob = "rules:\n  - name: a\n    when: {market_title: *bitcoin*}\n    notify: [d]\n"
    [message] = errors(glob)
    assert message.endswith(
        'a value starting with * (a glob) is read as a YAML alias: quote it, "*btc*"'
    )
    undefined = "rules:\n  - name: a\n    when:\n      market_title: *bitcoin\n"
    assert "read as a YAML alias: quote it" in errors(undefined)[0]
    template = "channels:\n  d: json://x\nrules:\n  - name: a\n    notify: [d]\n"
    template += "    title: {market_title}\n"
    assert errors(template) == [
        "config.yaml:6: rules[0].title: must be a string, got a mapping (a value starting with "
        '{ must be quoted: "{side} on {market_title}")'
    ]


TEMPLATE_RULE = "channels:\n  d: json://x\nrules:\n  - name: a\n    notify: [d]\n"


STRUCTURE = 'a value starting with { or [ is read as YAML structure: quote it, "{side} ..."'
AFTER_QUOTE = "text after a closing quote is not part of the value: quote the whole value"


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("    title: {side} {quantity} filled", STRUCTURE),
        ("    body: {side}, {price}", STRUCTURE),
        ("    body: [{side}] filled", STRUCTURE),
        ('    title: "{side}" filled', AFTER_QUOTE),
        ("    title: '{side}' at {price}", AFTER_QUOTE),
    ],
)
def test_a_template_yaml_cannot_read_says_to_quote_it(line: str, hint: str) -> None:
    """pyyaml's "did not find expected key" alone does not say the template needs quotes."""
    [message] = errors(TEMPLATE_RULE + line + "\n")
    assert message.startswith("config.yaml:6: YAML syntax error: ")
    assert message.endswith(f"; {hint}")


def test_a_yaml_error_on_another_line_gets_no_quoting_hint() -> None:
    """Quoted and flow values that close where they should are not blamed for a stray line."""
    assert errors(TEMPLATE_RULE + '    title: "{side}"\n    when: {side: buy} # ok\n  bad\n') == [
        "config.yaml:9: YAML syntax error: could not find expected ':' (while scanning a simple "
        "key at line 8)"
    ]


@pytest.mark.parametrize(
    ("line", "dropped"),
    [
        ("    body: Filled order #{order_id}", "#{order_id}"),
        ("    title: Filled\t#{order_id} at {price}  ", "#{order_id} at {price}"),
        ("    body: #{order_id} filled", "#{order_id} filled"),
    ],
)
def test_a_template_cut_by_a_yaml_comment_is_refused(line: str, dropped: str) -> None:
    """` #{order_id}` unquoted starts a YAML comment: the template was silently cut short."""
    key = line.split(":")[0].strip()
    assert errors(TEMPLATE_RULE + line + "\n") == [
        f"config.yaml:6: rules[0].{key}: ' #' starts a YAML comment, so the value ends before "
        f"it and {dropped!r} is dropped: quote the whole value"
    ]


@pytest.mark.parametrize(
    ("line", "dropped"),
    [
        ('    title: "Fill on {market_title}" #{order_id}', "#{order_id}"),
        ("    body: 'Filled {quantity}'  #{order_id} at {price}", "#{order_id} at {price}"),
    ],
)
def test_a_template_cut_by_a_comment_after_its_closing_quote_is_refused(
    line: str, dropped: str
) -> None:
    """`"..." #{order_id}`: the placeholder after the quote is a comment, dropped in silence."""
    key = line.split(":")[0].strip()
    assert errors(TEMPLATE_RULE + line + "\n") == [
        f"config.yaml:6: rules[0].{key}: ' #' after the closing quote starts a YAML comment, "
        f"so {dropped!r} is dropped: move it inside the quotes"
    ]


def test_a_comment_line_after_a_block_template_is_a_comment() -> None:
    """A `#{...}` line below a `|` block is a comment of its own, not a cut template."""
    text = TEMPLATE_RULE + "    body: |\n      Filled {quantity}\n    #{order_id} was here\n"
    [rule] = settings_of(text).rules.rules
    assert rule.body is not None
    assert rule.body.text == "Filled {quantity}\n"


def test_a_hash_inside_a_template_or_a_plain_comment_is_fine() -> None:
    """`order#{order_id}` (no space) is text, and an ordinary comment after a value is kept
    a comment; a quoted template keeps its ` #{...}`."""
    text = TEMPLATE_RULE + "    title: order#{order_id} # a comment\n"
    text += '    body: "Filled order #{order_id}" # a comment\n'
    [rule] = settings_of(text).rules.rules
    assert rule.title is not None
    assert rule.body is not None
    assert rule.title.text == "order#{order_id}"
    assert rule.body.text == "Filled order #{order_id}"


def test_a_comma_in_a_market_value_is_a_list_written_wrong() -> None:
    """`market: 0xabc, 0xdef` is one string in YAML and would match nothing: refused."""
    text = "channels:\n  d: json://x\nrules:\n  - name: a\n    notify: [d]\n"
    text += "    when: {market: '0xabc, 0xdef', market_title: 'Yes, or no?'}\n"
    assert errors(text) == [
        "config.yaml:6: rules[0].when.market: holds a comma: to match any of several, "
        "write a list: [0xabc, ...]"
    ]


def test_status_is_caseless() -> None:
    """`status: filled` matches the feed's FILLED, as titles and outcomes ignore case."""
    text = "channels:\n  d: json://x\nrules:\n  - name: a\n    notify: [d]\n"
    rules = settings_of(text + "    when: {status: filled}\n").rules
    assert [r.name for r in rules.match(SAMPLE_FILL)] == ["a"]


STATUSES_ARE = "fill statuses are FILLED and PARTIALLY_FILLED"


@pytest.mark.parametrize(
    ("when", "path", "status", "meant"),
    [
        ("{status: FILLD}", "status", "FILLD", "FILLED"),
        ("{status: FIILED}", "status", "FIILED", "FILLED"),
        ("{status: fill}", "status", "fill", "FILLED"),  # cut short: `fill*` is the glob
        ("{status: partially filled}", "status", "partially filled", "PARTIALLY_FILLED"),
        ("{status: Partially-Filled}", "status", "Partially-Filled", "PARTIALLY_FILLED"),
        ("{status: PartiallyFilled}", "status", "PartiallyFilled", "PARTIALLY_FILLED"),
        ("{status: PARTIAL_FILLED}", "status", "PARTIAL_FILLED", "PARTIALLY_FILLED"),
        ("{status: PARTIALY_FILLED}", "status", "PARTIALY_FILLED", "PARTIALLY_FILLED"),
        ("{status: partial}", "status", "partial", "PARTIALLY_FILLED"),
        ("{status: ' FILLED'}", "status", " FILLED", "FILLED"),
        ("{status: [FILLED, FILLD]}", "status[1]", "FILLD", "FILLED"),
        ("{not: {status: FILLD}}", "not.status", "FILLD", "FILLED"),
    ],
)
def test_a_status_close_to_a_fill_status_is_refused_with_the_one_meant(
    when: str, path: str, status: str, meant: str
) -> None:
    """`status: FILLD` loaded and its rule never fired. A plain status that no fill has but
    that is a slip, a cut or a spelling of one that fills do have is refused, naming it."""
    text = "channels:\n  d: json://x\nrules:\n  - name: a\n    notify: [d]\n"
    assert errors(text + f"    when: {when}\n") == [
        f"config.yaml:6: rules[0].when.{path}: unknown status {status!r} "
        f"(did you mean {meant!r}?); {STATUSES_ARE}"
    ]


@pytest.mark.parametrize(
    "status",
    [
        "FILLED",
        "filled",
        "Partially_Filled",
        "FILL*",  # globs are the user's to aim
        "*filled",
        "?ILLED",
        # Statuses the venue may add one day, some a letter or two from a fill status.
        "CANCELLED",
        "EXPIRED",
        "REJECTED",
        "SETTLED",
        "NEW",
        "KILLED",
        "FAILED",
        "UNFILLED",
        "PARTIALLY_KILLED",
        "PARTIALLY_CANCELLED",
    ],
)
def test_a_fill_status_a_glob_or_a_status_far_from_both_loads(status: str) -> None:
    """Only a slip is refused: a glob, or another word the venue could send, loads."""
    text = "channels:\n  d: json://x\nrules:\n  - name: a\n    notify: [d]\n"
    (rule,) = settings_of(text + f"    when: {{status: '{status}'}}\n").rules.rules
    assert rule.condition == FieldMatch("status", (status,))


def test_yaml_tags_are_refused_not_dropped() -> None:
    """`enabled: !!bool false` was read as if untagged; any tag is refused, named."""
    assert errors("feed:\n  ping_interval: !!int 5\n") == [
        "config.yaml:2: feed.ping_interval: YAML tags (!!int) are not supported: remove it"
    ]
    assert errors("rules: !custom []\n") == [
        "config.yaml:1: rules: YAML tags (!custom) are not supported: remove it"
    ]
    assert errors("channels:\n  !!binary desk: json://x\n") == [
        "config.yaml:2: channels: YAML tags (!!binary) are not supported: remove it"
    ]


def test_a_state_path_written_with_a_shell_s_dollar_names_the_reference_that_expands() -> None:
    """`$HOME/x.db` loaded as a directory named `$HOME` beside the config, made at start."""
    assert errors("state: {path: $HOME/x.db}\n") == [
        "config.yaml:1: state.path: $HOME is not expanded here: write ${HOME} "
        "(or ~ for the home directory)"
    ]
    assert errors("state: {path: '$STATE_DIRECTORY/x.db'}\n") == [
        "config.yaml:1: state.path: $STATE_DIRECTORY is not expanded here: write ${STATE_DIRECTORY}"
    ]
    env = {**ENV, "STATE_DIRECTORY": "/var/lib/notifier"}
    s = settings_of("state: {path: '${STATE_DIRECTORY}/x.db'}\n", env=env)
    assert s.state.path == Path("/var/lib/notifier/x.db")


def test_state_path_expands_the_home_directory() -> None:
    """state.path: ~/x.db is in the home directory, not a directory named ~ beside the config."""
    s = settings_of("state: {path: ~/x.db}\n")
    assert s.state.path == Path.home() / "x.db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rules:\n\t- name: x\n",
            "config.yaml:2: YAML syntax error: found character that cannot start any token "
            "(while scanning for the next token at line 2); indent with spaces, not tabs",
        ),
        (
            "rules: []\n---\nrules: []\n",
            "config.yaml:2: YAML syntax error: but found another document (expected a single "
            "document in the stream at line 1); one config is one YAML document: remove the "
            "'---' line",
        ),
        (
            "channels:\n  phone: {url: ${NTFY_URL}, rate: 20/min}\n",
            "config.yaml:2: YAML syntax error: did not find expected ',' or '}' (while parsing a "
            "flow mapping at line 2); a ${NTFY_URL} inside {...} or [...] must be quoted: "
            '"${NTFY_URL}"',
        ),
        (  # part of a value: the whole value is what needs the quotes; a key is no name
            "channels:\n  s: {url: json://h/${ps_live_8f3k2j4h5g6}, rate: 5/min}\n",
            "config.yaml:2: YAML syntax error: did not find expected ',' or '}' (while parsing a "
            "flow mapping at line 2); a ${NAME} inside {...} or [...] must be quoted: quote the "
            "whole value it is in",
        ),
        (  # followed by more of the value: the whole value needs the quotes
            "channels:\n  s: {url: ${NTFY}/topic}\n",
            "config.yaml:2: YAML syntax error: did not find expected ',' or '}' (while parsing a "
            "flow mapping at line 2); a ${NTFY} inside {...} or [...] must be quoted: quote the "
            "whole value it is in",
        ),
        (  # never the default, which may hold a token
            "channels:\n  s: [${SLACK_URL:-slack://T/B/tok}, json://x]\n",
            "config.yaml:2: YAML syntax error: did not find expected ',' or ']' (while parsing a "
            "flow sequence at line 2); a ${SLACK_URL:-...} inside {...} or [...] must be quoted: "
            '"${SLACK_URL:-...}"',
        ),
    ],
)
def test_common_yaml_mistakes_get_a_suggestion(text: str, expected: str) -> None:
    """Tabs, a second document and unquoted references in flow style are named with what to
    do instead."""
    assert errors(text) == [expected]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (  # a rule's keys at 4 spaces, one at 3
            "  - name: a\n    notify: desk\n   when: {side: BUY}\n",
            "config.yaml:7: YAML syntax error: did not find expected '-' indicator (while "
            "parsing a block collection at line 5); the key on line 7 is indented 3 spaces, but "
            "the keys of the mapping begun at line 5 are indented 4 spaces: align it with them",
        ),
        (  # between the keys of `when` and those of the rule: either may be meant
            "  - name: a\n    notify: desk\n    when:\n      side: BUY\n     quantity: {min: 1}\n",
            "config.yaml:9: YAML syntax error: did not find expected key (while parsing a block "
            "mapping at line 5); the key on line 9 is indented 5 spaces: align it with the keys "
            "of the mapping begun at line 8 (indented 6 spaces) or with those of the one begun "
            "at line 5 (indented 4 spaces), whichever it belongs to",
        ),
        (
            "  - name: a\n    notify: desk\n   - name: b\n",
            "config.yaml:7: YAML syntax error: did not find expected '-' indicator (while "
            "parsing a block collection at line 5); the item on line 7 is indented 3 spaces, but "
            "the items of the list begun at line 5 are indented 2 spaces: align it with them",
        ),
        (  # a key further in than the one above it, whose value is text
            "  - name: a\n    notify: desk\n    when:\n      side: BUY\n        quantity: 5\n",
            "config.yaml:9: YAML syntax error: mapping values are not allowed in this context; "
            "the key on line 9 is indented under the one on line 8, whose value is text, so YAML "
            "read it as more of that text: align it with the key on line 8 (indented 6 spaces), "
            "or quote the value if the colon is part of the text",
        ),
        (
            "  - name: a\n    notify: desk\n    title: Fill: {side}\n",
            "config.yaml:7: YAML syntax error: mapping values are not allowed in this context; "
            "the value on line 7 holds a colon and a space, which YAML reads as the start of a "
            "key: quote the value if the colon is part of the text, or put a second key on its "
            "own line",
        ),
    ],
)
def test_a_key_indented_unlike_its_neighbours_says_which_to_align_it_with(
    rule: str, expected: str
) -> None:
    """pyyaml's "did not find expected key" and "mapping values are not allowed" get the line
    and width of the keys the stray one belongs with, at the stray key's own line."""
    assert errors(CHANNELS + "rules:\n" + rule) == [expected]


def test_an_indentation_hint_never_quotes_a_line() -> None:
    """A channel URL (a secret) on the lines around a stray key is not shown: only line
    numbers and widths are."""
    problems = errors("channels:\n  desk: json://h/T0KEN\n    phone: json://h/S3CRET\n")
    assert problems == [
        "config.yaml:3: YAML syntax error: mapping values are not allowed in this context; the "
        "key on line 3 is indented under the one on line 2, whose value is text, so YAML read "
        "it as more of that text: align it with the key on line 2 (indented 2 spaces), or quote "
        "the value if the colon is part of the text"
    ]
    spaced = errors("channels:\n  desk: json://h/T0KEN\n phone: json://h/S3CRET\n")
    assert not any("T0KEN" in p or "S3CRET" in p for p in spaced)
    assert spaced[0].endswith(
        "; the key on line 3 is indented 1 space: align it with the keys of the mapping begun "
        "at line 2 (indented 2 spaces) or with those of the one begun at line 1 (not indented), "
        "whichever it belongs to"
    )


SHARED = """\
x-defaults: &defaults
  notify: [desk]
  title: "{side} {quantity} on {market_title}"
x-quiet: &quiet
  notify: [phone]
  enabled: false
rules:
  - <<: *defaults
    name: big
    when: {quantity: {min: 100}}
  - <<: *defaults
    name: to-phone
    notify: [phone]
  - <<: [*quiet, *defaults]
    name: both
"""


def test_merge_keys_share_settings_across_rules() -> None:
    """`<<: *defaults` gives a rule each key it does not write itself; of a list of sources
    the first that has a key gives it; top-level `x-` keys hold the anchors and are no
    unknown keys."""
    rules = {rule.name: rule for rule in settings_of(CHANNELS + SHARED).rules.rules}
    assert rules["big"].notify == ("desk",)
    assert rules["big"].title.text == "{side} {quantity} on {market_title}"
    assert rules["to-phone"].notify == ("phone",)  # its own key wins
    assert (rules["both"].notify, rules["both"].enabled) == (("phone",), False)
    assert rules["both"].title.text == "{side} {quantity} on {market_title}"


def test_an_x_block_is_read_only_where_an_alias_puts_it() -> None:
    """A shared block's template `${price}` is a dollar sign (as in a rule), a secret in it
    is never quoted, and a channel URL's unset variable is reported once, at the channel:
    the block is read at the rule's or channel's path, not at its own as well."""
    template = 'x-desk: &desk {notify: [desk], title: "Bought at ${price}"}\nrules:\n'
    settings = settings_of(CHANNELS + template + "  - {<<: *desk, name: r1}\n")
    assert settings.rules.rules[0].title.text == "Bought at ${price}"
    key = "ps_live_abcdefghijklmnopSECRETKEYTAIL12345"
    feed = f'x-feed: &feed {{api_key: "${{{key}}}"}}\nfeed: *feed\n'
    problems = errors(feed + CHANNELS + "rules: []\n", env={})
    assert problems
    assert not any("SECRETKEYTAIL" in p for p in problems)
    chan = 'x-chan: &chan {url: "${SLACK_URL}"}\nchannels: {desk: *chan}\nrules: []\n'
    assert [p.split(": ")[1] for p in errors(chan)] == ["channels.desk.url"]


def test_a_merged_key_s_mistake_is_located_where_it_is_written() -> None:
    """A bad value from the anchor is reported at the anchor's line under each rule that
    takes it; a merge of a scalar is refused, and a second `<<` as any duplicate key; an
    unknown top-level key still is, `x-` aside."""
    shared = SHARED.replace("notify: [desk]", "notify: [dsk]")
    assert errors(CHANNELS + shared)[0].startswith("config.yaml:5: rules[0].notify[0]: unknown")
    assert errors(CHANNELS + "rules:\n  - <<: 5\n    name: r\n    notify: desk\n") == [
        "config.yaml:5: rules[0]: << takes a mapping (an alias such as *defaults) or a list of them"
    ]
    twice = "rules:\n  - <<: {notify: desk}\n    <<: {title: x}\n    name: r\n"
    assert errors(CHANNELS + twice) == [
        "config.yaml:6: rules[0].<<: duplicate key '<<' (first at line 5): merge several with "
        "one, as <<: [*a, *b]"
    ]
    assert errors(CHANNELS + "defaults: {notify: desk}\nrules: []\n")[0].startswith(
        "config.yaml:4: defaults: unknown key 'defaults'"
    )


def test_every_yaml_example_of_the_readme_loads() -> None:
    """Each ```yaml block of the README loads as written (given three loopback channels
    where it names none): an example a reader copies must not be refused."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
    assert len(blocks) >= 4
    names = ("desk", "phone", "mail")
    three = "channels:\n" + "".join(f"  {n}: json://127.0.0.1:9/{n}\n" for n in names)
    for block in blocks:
        settings_of(block if "channels:" in block else three + block)


def test_state_path_with_an_unknown_user_is_a_config_error() -> None:
    """~nosuchuser cannot be expanded: a located problem, not a traceback."""
    assert errors("state: {path: ~nosuchuser-xyz/x.db}\n") == [
        "config.yaml:1: state.path: cannot expand '~nosuchuser-xyz' here: write the full path"
    ]


def test_an_alias_used_over_and_over_is_refused_not_expanded() -> None:
    """A 'billion laughs' file (a few hundred bytes, ten million values) is one located error."""
    lines = ["x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    assert errors("\n".join(lines) + "\n") == [
        "config.yaml:1: expands to more than 1,000,000 values: an alias used over and over?"
    ]


def test_nesting_deeper_than_the_walk_allows_is_a_located_error() -> None:
    """400 nested lists (libyaml takes up to 1,000) are a problem with a line, not a crash."""
    (first, *_rest) = errors("rules: " + "[" * 400 + "]" * 400 + "\n")
    assert first.startswith("config.yaml:1: rules[0][0][0]")
    assert first.endswith("...: nested deeper than 64 levels")


def test_a_variable_inside_a_default_is_refused_not_misread() -> None:
    """`${A:-${B}}` was read as `${A:-${B}` plus a stray brace, and accepted."""
    assert errors(CHANNELS + "  pager: ${A:-${B}}\n", env={**ENV, "A": "json://x/a"}) == [
        "config.yaml:4: channels.pager: a ${...} inside a default is not supported: "
        "write the default out"
    ]


def test_a_reference_never_closed_is_refused_not_kept_as_written() -> None:
    """`${POLYSIM_API_KEY` (its brace lost) loaded as the key itself, refused only by the venue."""
    assert errors("feed:\n  api_key: '${POLYSIM_API_KEY'\n") == [
        "config.yaml:2: feed.api_key: a ${ is never closed: end the reference with }, or write $${"
    ]
    assert errors(CHANNELS + "  pager: 'json://h/${HOOK_PATH'\n") == [
        "config.yaml:4: channels.pager: a ${ is never closed: end the reference with }, "
        "or write $${"
    ]
    assert settings_of("rules: []\nstate: {path: 'a$${b'}\n").state.path.name == "a${b"


def test_a_secret_written_as_a_shell_reference_names_the_spelling_that_expands() -> None:
    """`api_key: $POLYSIM_API_KEY` loaded as that text, a key the venue refuses at start."""
    assert errors("feed:\n  api_key: $POLYSIM_API_KEY\n") == [
        "config.yaml:2: feed.api_key: $POLYSIM_API_KEY is not expanded here: "
        "write ${POLYSIM_API_KEY} to read the environment variable"
    ]
    assert errors(CHANNELS + "  pager: $SLACK_URL\n") == [
        "config.yaml:4: channels.pager: $SLACK_URL is not expanded here: "
        "write ${SLACK_URL} to read the environment variable"
    ]
    body = "rules:\n  - {name: r, notify: desk, body: '$USD {price}'}\n"
    assert settings_of(CHANNELS + body).rules.rules[0].body.text == "$USD {price}"


@pytest.mark.parametrize(
    "value", ["${ps_test_0123456789abcdefSECRET}", "${KEY-ps_test_0123456789abcdefSECRET}"]
)
def test_a_key_written_inside_a_reference_is_never_echoed(value: str) -> None:
    """The key pasted in place of a variable's name, or after a shell-style `-`, stays unshown."""
    problems = errors(f"feed:\n  api_key: {value}\n", env={})
    assert problems
    assert not any("SECRET" in problem for problem in problems)
    assert problems[0].startswith("config.yaml:2: feed.api_key: ")
    assert errors("feed:\n  api_key: ${MY_KEY}\n", env={}) == [  # a name as names go: shown
        "config.yaml:2: feed.api_key: environment variable MY_KEY is not set "
        "(set it where the daemon runs: the shell, or the unit's EnvironmentFile)"
    ]


def test_a_control_character_is_located_by_line() -> None:
    """A DEL pasted into a value is refused at its line, with either YAML reader."""
    assert errors("feed:\n  base_url: https://x\nrules:\n  - name: a\x7f\n") == [
        "config.yaml:4: U+007F cannot appear in YAML: remove it"
    ]


def test_the_pure_python_yaml_reader_refuses_a_control_character_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without libyaml, the reader refuses it while being built: still a problem, no crash."""
    monkeypatch.setattr(yamltree, "_Loader", _pure_loader())
    assert errors("a: b\x7f\n") == ["config.yaml:1: U+007F cannot appear in YAML: remove it"]


def test_the_pure_python_yaml_reader_names_the_same_mistakes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Split numbers and cut templates are found from pyyaml's nodes, whose styles and marks
    differ in small ways between libyaml and the pure-Python parser."""
    text = CHANNELS + "rules:\n  - {name: a, notify: desk, when: {price: {min: 0,5, max: 0,5}}}\n"
    text += '  - name: b\n    notify: desk\n    title: "Fill {order_id}" #{price}\n'
    fast = errors(text)
    monkeypatch.setattr(yamltree, "_Loader", _pure_loader())
    assert errors(text) == fast
    assert len(fast) == 3


def _pure_loader() -> type[yaml.SafeLoader]:
    class Pure(yaml.SafeLoader):
        yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}  # noqa: RUF012

    return Pure


def test_retry_limits_in_conflict_are_located_at_the_key_written() -> None:
    """A retry_cap below the default retry_base is reported at retry_cap, on its line."""
    assert errors("delivery:\n  max_age: 24h\n  retry_cap: 0.5s\n") == [
        "config.yaml:3: delivery.retry_cap: must not be less than retry_base (1s), got 0.5s"
    ]


def test_a_bad_rate_does_not_hide_a_refused_url() -> None:
    """Every problem at once: the channel's rate and its URL are both reported."""

    def check(url: str) -> str | None:
        return "not a known service" if url.startswith("bad") else None

    text = "channels:\n  desk:\n    urls: [bad://x]\n    rate: lots\n"
    assert [p.split(": ")[1] for p in errors(text, check_url=check)] == [
        "channels.desk.urls[0]",
        "channels.desk.rate",
    ]


def test_both_price_bounds_out_of_range_are_reported() -> None:
    """Every problem at once: min and max each get their own line."""
    text = CHANNELS + "rules:\n  - {name: r, notify: desk, when: {price: {min: 5, max: 10}}}\n"
    assert [p.split(": ")[1] for p in errors(text)] == [
        "rules[0].when.price.min",
        "rules[0].when.price.max",
    ]


def test_a_state_path_with_a_nul_byte_is_refused() -> None:
    """Accepted before, it crashed `run` and `outbox` with a traceback when opened."""
    assert errors('state: {path: "sub\\0dir/x.db"}\n') == [
        "config.yaml:1: state.path: must not contain a NUL character"
    ]


def test_a_rate_count_of_thousands_of_digits_is_a_config_error() -> None:
    """Past Python's 4,300-digit int() limit, still a located problem (it was a traceback)."""
    text = "channels:\n  desk:\n    url: json://localhost/d\n    rate: " + "9" * 5000 + "/min\n"
    (problem,) = errors(text)
    assert problem.startswith('config.yaml:4: channels.desk.rate: must look like "20/min"')


def test_a_command_that_sends_no_key_ignores_its_characters() -> None:
    """outbox, test and send-test never send the key: a stray newline in it does not stop them."""
    env = {"POLYSIM_API_KEY": KEY + "\n"}
    assert settings_of("rules: []\n", env=env, require_api_key=False).feed.api_key == KEY + "\n"
    assert errors("rules: []\n", env=env)  # run, which sends it, refuses it


def test_money_written_with_a_currency_sign_or_grouped_digits_names_the_number_meant() -> None:
    """`$500`, `1_000`, `1 000` and `1'000` were refused as "must be a number" with no hint."""
    when = "{notional: {min: '$500'}, quantity: {min: 1_000, max: '10 000'}, price: {max: '$0.65'}}"
    problems = errors(CHANNELS + f"rules:\n  - {{name: a, notify: desk, when: {when}}}\n")
    assert problems == [
        "config.yaml:5: rules[0].when.notional.min: must be a number, got '$500' "
        "(write 500, without the currency sign)",
        "config.yaml:5: rules[0].when.quantity.min: must be a number, got '1_000' "
        "(write 1000, without separators between the digits)",
        "config.yaml:5: rules[0].when.quantity.max: must be a number, got '10 000' "
        "(write 10000, without separators between the digits)",
        "config.yaml:5: rules[0].when.price.max: must be a number, got '$0.65' "
        "(write 0.65, without the currency sign)",
    ]
    assert errors(
        CHANNELS + "rules:\n  - {name: a, notify: desk, when: {quantity: {min: 1k}}}\n"
    ) == ["config.yaml:5: rules[0].when.quantity.min: must be a number, got '1k'"]


def test_a_thousands_comma_is_named_as_one_alone() -> None:
    """A comma before three digits ("1,000") is a thousands separator alone: "or 1.000 with a
    decimal point" read as a thousand too, yet is one. Other digits, or a zero whole, are a
    decimal comma."""
    when = "{notional: {above: '1,000', below: '12,345'}, quantity: {min: '0,500', max: '2,5'}}"
    assert errors(CHANNELS + f"rules:\n  - {{name: a, notify: desk, when: {when}}}\n") == [
        "config.yaml:5: rules[0].when.notional.above: must be a number, got '1,000' "
        "(write 1000 without the thousands separator)",
        "config.yaml:5: rules[0].when.notional.below: must be a number, got '12,345' "
        "(write 12345 without the thousands separator)",
        "config.yaml:5: rules[0].when.quantity.min: must be a number, got '0,500' "
        "(write 0.500 with a decimal point)",
        "config.yaml:5: rules[0].when.quantity.max: must be a number, got '2,5' "
        "(write 2.5 with a decimal point)",
    ]


def test_a_decimal_comma_is_named_as_one() -> None:
    """`0,65` in a {...} mapping is two entries (YAML's comma), in a block a string: either
    way the problem says to write a decimal point, not "unknown key '65'"."""
    problems = errors(
        CHANNELS
        + "rules:\n"
        + "  - {name: a, notify: desk, when: {price: {max: 0,65}}}\n"
        + "  - {name: b, notify: desk, when: {quantity: {min: 1,000}, "
        + "price: {min: 0,1, max: 0,65}}}\n"
        + "  - name: c\n    notify: desk\n    when:\n      price:\n        max: 0,65\n"
        + "  - {name: d, notify: desk, when: {price: {min: 0,5, max: 0,5}}}\n"
    )
    assert problems == [
        "config.yaml:5: rules[0].when.price.max: a comma in {...} separates entries: "
        "write 0.65 with a decimal point",
        "config.yaml:6: rules[1].when.quantity.min: a comma in {...} separates entries: "
        "write 1000 without the thousands separator",
        "config.yaml:6: rules[1].when.price.min: a comma in {...} separates entries: "
        "write 0.1 with a decimal point",
        "config.yaml:6: rules[1].when.price.max: a comma in {...} separates entries: "
        "write 0.65 with a decimal point",
        "config.yaml:11: rules[2].when.price.max: must be a number, got '0,65' "
        "(write 0.65 with a decimal point)",
        # The same fraction twice made a duplicate key '5' of the second, and max went unsaid.
        "config.yaml:12: rules[3].when.price.min: a comma in {...} separates entries: "
        "write 0.5 with a decimal point",
        "config.yaml:12: rules[3].when.price.max: a comma in {...} separates entries: "
        "write 0.5 with a decimal point",
    ]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        # The cut-off whole number is not compared with the other end.
        (
            "{price: {min: 1, max: 0,5}}",
            ["price.max: a comma in {...} separates entries: write 0.5 with a decimal point"],
        ),
        # After a duplicate key the comma is blamed on the entry it follows.
        (
            "{price: {min: 0, max: 1, max: 0,5}}",
            [
                "price.max: duplicate key 'max' (first at line 5)",
                "price.max: a comma in {...} separates entries: write 0.5 with a decimal point",
            ],
        ),
        (
            '{price: {max: "0",65}}',
            ["price.max: a comma in {...} separates entries: write 0.65 with a decimal point"],
        ),
        (
            "{quantity: {min: 1,000,000}}",
            [
                "quantity.min: a comma in {...} separates entries: "
                "write 1000000 without the thousands separators"
            ],
        ),
        (
            "{price: {max: 0,6,5}}",
            [
                "price.max: a comma in {...} separates entries: "
                "write 0,6,5 as one number, with no comma"
            ],
        ),
    ],
)
def test_a_number_split_at_its_commas_is_one_problem(when: str, expected: list[str]) -> None:
    """However YAML cut the number, one problem says what was meant, and nothing echoes it."""
    text = CHANNELS + f"rules:\n  - {{name: a, notify: desk, when: {when}}}\n"
    assert errors(text) == [f"config.yaml:5: rules[0].when.{line}" for line in expected]


def test_a_decimal_comma_is_named_in_any_braced_mapping() -> None:
    """The split is YAML's, so it is caught wherever {...} is written, not only in a rule."""
    assert errors(CHANNELS + "delivery: {concurrency: 2,5, timeout: 5s}\nrules: []\n") == [
        "config.yaml:4: delivery.concurrency: a comma in {...} separates entries: "
        "write 2.5 with a decimal point"
    ]


def test_a_rule_key_indented_under_when_says_so() -> None:
    """`notify:` indented one level too far lands in `when`: the problem says where it
    belongs, not "did you mean 'not'"."""
    problems = errors(
        CHANNELS + "rules:\n  - name: a\n    when:\n      side: BUY\n      notify: [desk]\n"
    )
    assert problems == [
        "config.yaml:5: rules[0]: missing required key 'notify'",
        "config.yaml:8: rules[0].when.notify: 'notify' belongs to the rule, not to its "
        "conditions: indent it as `when:` is",
    ]


def test_a_title_among_the_conditions_points_to_market_title() -> None:
    """`when: {title: "*bitcoin*"}` means the market's title: moving `title` to the rule, as
    the advice for other rule keys says, would make it the alert's title and the rule match
    every fill."""
    problems = errors(
        CHANNELS + 'rules:\n  - name: a\n    when: {title: "*bitcoin*"}\n    notify: [desk]\n'
    )
    assert problems == [
        "config.yaml:6: rules[0].when.title: 'title' is the alert's title template, a key of "
        "the rule: to match the market's title, write `market_title:`",
    ]


def test_a_not_with_nothing_under_it_is_refused() -> None:
    """`not:` with its condition left unindented (or `not: {}`) would match no fill, ever:
    refused at its line, not accepted as a rule that can never alert."""
    slipped = "      not:\n      status: PARTIALLY_FILLED\n"
    empty = "      not: {}\n"
    for when in (slipped, empty):
        problems = errors(
            CHANNELS
            + "rules:\n  - name: a\n    notify: [desk]\n    when:\n      side: BUY\n"
            + when
        )
        assert problems == [
            "config.yaml:9: rules[0].when.not: needs at least one condition "
            "(indent the ones it negates under it)"
        ]


def test_above_and_below_load_as_exclusive_bounds() -> None:
    """`notional: {above: 500}` is "over $500", exactly; `below` with `min` together."""
    s = settings_of(
        CHANNELS
        + "rules:\n  - name: big\n    notify: desk\n"
        + "    when: {notional: {above: 500}, price: {min: 0.01, below: 0.5}}\n"
    )
    conditions = s.rules.rules[0].condition.conditions  # type: ignore[attr-defined]
    assert set(conditions) == {
        Bounds("notional", above=Decimal(500)),
        Bounds("price", min=Decimal("0.01"), below=Decimal("0.5")),
    }


def test_an_unknown_top_level_key_says_shared_settings_go_under_x_keys() -> None:
    """`defaults: &d`, `X-desk` or `x_desk` holding an anchor were refused with only the
    sections listed, not how to name such a key; a near miss of a section keeps its hint."""
    for key in ("defaults", "X-desk", "x_desk"):
        assert errors(CHANNELS + f"{key}: {{notify: [desk]}}\nrules: []\n") == [
            f"config.yaml:4: {key}: unknown key {key!r} (expected one of: feed, state, "
            "delivery, metrics, log, channels, rules; a key holding shared settings for "
            "anchors starts with x-, as x-defaults)"
        ]
    assert errors(CHANNELS + "rule: []\n") == [
        "config.yaml:4: rule: unknown key 'rule' (did you mean 'rules'?)"
    ]


def test_a_rule_notifying_channels_of_different_formats_is_noted() -> None:
    """Its templates go to each channel as written (only values are escaped per format), so
    a note says so where the rule names them when its own text holds markup; plain templates
    (the defaults), one format, or one channel say nothing."""
    settings = settings_of(
        """\
        channels:
          chat: {url: json://x, body_format: markdown}
          mail: {url: mailto://y, body_format: html}
          desk: json://z
        rules:
          - {name: both, notify: [chat, mail], title: "<b>{side}</b> on {market_title}"}
          - name: one
            notify: [desk]
            body: "**{side}**"
          - {name: plain, notify: [desk, chat, mail]}
          - {name: stars, notify: [desk, chat], body: "**{side}** {quantity}"}
        """
    )
    assert [str(note) for note in settings.notes] == [
        "config.yaml:6: rules[0].notify: channels of different formats (chat markdown, mail "
        "html): the templates go to each as written, only the values escaped for it, so markup "
        "in them suits one format (a rule per format sends each its own)",
        "config.yaml:11: rules[3].notify: channels of different formats (desk text, chat "
        "markdown): the templates go to each as written, only the values escaped for it, so "
        "markup in them suits one format (a rule per format sends each its own)",
    ]


def test_a_format_on_a_rule_says_where_formats_go() -> None:
    """`body_format` on a rule is not unknown to the notifier: it is a channel's or
    delivery's, and the message says so instead of listing the rule's keys."""
    problems = rules_errors("- name: r\n  notify: phone\n  body_format: html\n")
    assert problems == [
        f"config.yaml:{CHANNELS.count(chr(10)) + 4}: rules[0].body_format: a format is a "
        "channel's (channels.NAME.body_format) or every channel's (delivery.body_format), not "
        "a rule's"
    ]
