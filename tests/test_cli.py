"""The command line: exit codes, exact error text, and what each command prints."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from receivers import WebhookReceiver

from notifier import cli, cli_args
from notifier.events import Alert
from notifier.hangup_latch import HangupLatch
from notifier.store import StateStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.yaml"

BAD_CONFIG = """\
feed:
  api_key: k
  base_urll: https://x
channels:
  desk: json://127.0.0.1:9/
  phone: slack://sekrit-tok/abc
rules:
  - name: a
    when:
      side: BOY
      quantity: {min: ten}
      price: {min: 0.5, max: 0.2}
      outcome: No
    notify: [dsk]
  - name: a
    notify: [desk]
    enabled: yes
    title: "{prize}"
  - name: b
    notify: [desk]
    notify: [phone]
"""

BAD_CONFIG_ERRORS = """\
config error: 10 problems
bad.yaml:3: feed.base_urll: unknown key 'base_urll' (did you mean 'base_url'?)
bad.yaml:6: channels.phone: channel 'phone': URL not accepted: apprise rejected the URL (slack)
bad.yaml:10: rules[0].when.side: must be BUY or SELL, got 'BOY' (did you mean 'BUY'?)
bad.yaml:11: rules[0].when.quantity.min: must be a number, got 'ten'
bad.yaml:12: rules[0].when.price: min 0.5 is greater than max 0.2
bad.yaml:14: rules[0].notify[0]: unknown channel 'dsk' (did you mean 'desk'? \
channels defined: desk, phone)
bad.yaml:15: rules[1].name: duplicate rule name 'a' (first at line 8)
bad.yaml:17: rules[1].enabled: must be true or false, got 'yes' (yes/no/on/off are not \
booleans here: write true or false)
bad.yaml:18: rules[1].title: unknown field {prize} (did you mean {price}?)
bad.yaml:21: rules[2].notify: duplicate key 'notify' (first at line 20)
"""

RULES = """\
channels:
  hook: {url}
rules:
  - name: big
    when: {{side: BUY, quantity: {{min: 100}}, outcome: No}}
    notify: [hook]
    title: "Big {{side}} on {{market_title}}"
    body: "{{quantity}} {{outcome}} @ {{price:.2f}} #{{order_id}}"
"""

FLAT = (
    '{"type": "fill", "order_id": 42, "market_id": "0xabc1", "side": "BUY", "outcome": "No", '
    '"price": "0.4", "quantity": "150", "filled_at": "2026-02-06T12:00:45Z"}'
)
NESTED = (
    '{"type": "execution", "data": {"order_id": "43", "market_id": "0xabc1", "side": "SELL", '
    '"outcome": "Yes", "price": "0.6", "quantity": "5", "timestamp": "2026-02-06T12:01:00Z"}}'
)


async def _main(*argv: str) -> int:
    """The CLI in a thread (it runs its own event loop) while the test's loop serves peers."""
    return await asyncio.to_thread(cli.main, list(argv))


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POLYSIM_API_KEY", "ps_test_0123456789abcdef")
    monkeypatch.delenv("NOTIFIER_LOG_LEVEL", raising=False)
    monkeypatch.chdir(tmp_path)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the program and its version."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == "notifier 0.1.0\n"


@pytest.mark.parametrize("command", ["run", "demo", "check-config", "test", "send-test", "outbox"])
def test_every_command_help_has_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--help on each command explains it and shows an example."""
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "example:\n  notifier" in out or "example:\n  POLYSIM_API_KEY" in out


def test_test_help_says_fills_takes_a_history_page_too(capsys: pytest.CaptureFixture[str]) -> None:
    """`test --help` called --fills a JSON-lines file, where a JSON array (a saved history
    page) is taken too, as the README says."""
    with pytest.raises(SystemExit):
        cli.main(["test", "--help"])
    assert "JSON array" in " ".join(capsys.readouterr().out.split())


def test_check_config_accepts_the_example(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped example passes check-config with only POLYSIM_API_KEY set, noting each
    channel URL that is its placeholder default (a variable not set), never the URL itself."""
    env = ("SLACK_URL", "NTFY_URL", "MAIL_URL")
    for name in env:
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["check-config", str(EXAMPLE)]) == 0
    ok = f"{EXAMPLE}: ok: 5 rules (5 enabled), 3 channels (3 URLs)\n"
    unset = "is not set: the value written after :- is used"
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    at = {name: next(n for n, ln in enumerate(lines, 1) if f"${{{name}:-" in ln) for name in env}
    assert capsys.readouterr().out == ok + (
        f"note: {EXAMPLE}:{at['SLACK_URL']}: channels.desk: SLACK_URL {unset}\n"
        f"note: {EXAMPLE}:{at['NTFY_URL']}: channels.phone[0]: NTFY_URL {unset}\n"
        f"note: {EXAMPLE}:{at['MAIL_URL']}: channels.mail.urls[0]: MAIL_URL {unset}\n"
    )
    monkeypatch.setenv("SLACK_URL", "json://127.0.0.1:9/desk")
    monkeypatch.setenv("NTFY_URL", "ntfy://127.0.0.1:9/topic")
    monkeypatch.setenv("MAIL_URL", "json://127.0.0.1:9/mail")
    assert cli.main(["check-config", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == ok


def test_check_config_reports_every_problem_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every problem at once, with file:line, key path and suggestion; exit 2, no traceback."""
    Path("bad.yaml").write_text(BAD_CONFIG, encoding="utf-8")
    assert cli.main(["check-config", "bad.yaml"]) == 2
    captured = capsys.readouterr()
    assert captured.err == BAD_CONFIG_ERRORS
    assert "sekrit-tok" not in captured.err + captured.out
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "rules:\n  - name: [a\n",
            "cfg.yaml:3: YAML syntax error: did not find expected ',' or ']' "
            "(while parsing a flow sequence at line 2)",
        ),
        ("rules: []\n", "cfg.yaml: feed.api_key: no API key: set POLYSIM_API_KEY in the environ"),
        ("# all commented out\n", "cfg.yaml: the file holds no settings (it is empty, or only"),
        ("feed:\n  api_key: ${NOPE}\n", "cfg.yaml:2: feed.api_key: environment variable NOPE"),
    ],
)
def test_check_config_single_problems(
    text: str, error: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A syntax error, a missing key or an unset variable: one clear line and exit 2."""
    monkeypatch.delenv("POLYSIM_API_KEY")
    Path("cfg.yaml").write_text(text, encoding="utf-8")
    assert cli.main(["check-config", "cfg.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: 1 problem\n")
    assert error in err


def test_check_config_notes_a_config_that_alerts_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No rule enabled loads (a config being written), but check-config says it alerts
    nothing, and counts in words a person writes ("1 channel", not "1 channels")."""
    Path("cfg.yaml").write_text(
        "channels:\n  desk: json://127.0.0.1:9/\n"
        "rules:\n  - {name: r, notify: [desk], enabled: false}\n",
        encoding="utf-8",
    )
    assert cli.main(["check-config", "cfg.yaml"]) == 0
    assert capsys.readouterr().out == (
        "cfg.yaml: ok: 1 rule (0 enabled), 1 channel (1 URL)\n"
        "note: no rule is enabled: fills are recorded, but nothing will be alerted\n"
    )


def test_missing_config_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config file that cannot be read is a config error naming it (exit 2); the default
    config.yaml, read because none was named, says how to name one."""
    assert cli.main(["check-config", "nowhere.yaml"]) == 2
    err = capsys.readouterr().err
    assert "nowhere.yaml: cannot read: No such file or directory" in err
    assert "no config was named" not in err
    monkeypatch.delenv("NOTIFIER_CONFIG", raising=False)
    assert cli.main(["check-config"]) == 2
    assert capsys.readouterr().err.endswith(
        "config.yaml: cannot read: No such file or directory\n(no config was named, so "
        "config.yaml here was read: name yours as `notifier check-config PATH`, --config PATH "
        "or $NOTIFIER_CONFIG; the config.example.yaml beside notifier's README (in its source) "
        "is one to start from)\n"
    )
    Path("config.example.yaml").write_text("rules: []\n", encoding="utf-8")  # a checkout's
    assert cli.main(["check-config"]) == 2
    assert capsys.readouterr().err.endswith(
        "or $NOTIFIER_CONFIG; config.example.yaml here is one to start from)\n"
    )


def test_test_command_shows_matches_and_rendering(capsys: pytest.CaptureFixture[str]) -> None:
    """`test` prints, per fill in any shape, the matching rules and rendered messages, or why
    each rule passed it over; fills are numbered by their line in the file, blank lines
    counted."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    Path("fills.jsonl").write_text(f"{FLAT}\n\n{NESTED}\n", encoding="utf-8")
    assert cli.main(["test", "c.yaml", "--fills", "fills.jsonl"]) == 0
    assert capsys.readouterr().out == (
        "fill 1: BUY 150 No @ 0.4 on 0xabc1 (order 42)\n"
        "  rule big -> hook\n"
        "    title: Big BUY on 0xabc1\n"
        "    body:  150 No @ 0.40 #42\n"
        "fill 3: SELL 5 Yes @ 0.6 on 0xabc1 (order 43)\n"
        "  no rule matches\n"
        "  rule big: side is 'SELL', not 'BUY'\n"
    )


def test_test_command_says_why_each_rule_passed_a_fill_over(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """For a fill no rule matches, each enabled rule's first failing test in words: a bound,
    a value not among a list, a `not`, an `any` part by part; disabled rules counted."""
    Path("c.yaml").write_text(
        "channels:\n  hook: json://127.0.0.1:9/\nrules:\n"
        "  - {name: big, notify: hook, when: {notional: {above: 500}}}\n"
        "  - {name: some, notify: hook, when: {outcome: [Yes, Up, Down]}}\n"
        "  - {name: not-mine, notify: hook, when: {not: {market: '0xabc*'}}}\n"
        "  - name: either\n    notify: hook\n"
        "    when: {any: [{quantity: {min: 1000}}, {price: {below: 0.1}}]}\n"
        "  - {name: off, notify: hook, enabled: false}\n",
        encoding="utf-8",
    )
    assert cli.main(["test", "c.yaml", "--fill", FLAT]) == 0
    assert capsys.readouterr().out == (
        "fill 1: BUY 150 No @ 0.4 on 0xabc1 (order 42)\n"
        "  no rule matches\n"
        "  rule big: notional 60.0 is not above 500\n"
        "  rule some: outcome is 'No', not any of 'Yes', 'Up', 'Down'\n"
        "  rule not-mine: its `not` excludes it: market is '0xabc1'\n"
        "  rule either: no part of its `any` holds: quantity 150 is below its min 1000; "
        "price 0.4 is not below 0.1\n"
        "  (1 rule with enabled: false not judged)\n"
    )


def test_test_command_says_why_the_other_rules_passed_a_matched_fill_over(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A catch-all rule (a day's summary) matching every fill does not hide why the others
    missed it; a rule after a matching `stop` rule is said not to be reached."""
    Path("c.yaml").write_text(
        "channels:\n  hook: json://127.0.0.1:9/\nrules:\n"
        "  - {name: big, notify: hook, when: {notional: {above: 500}}}\n"
        "  - {name: all, notify: hook, title: every fill, stop: true}\n"
        "  - {name: after, notify: hook}\n",
        encoding="utf-8",
    )
    assert cli.main(["test", "c.yaml", "--fill", FLAT]) == 0
    assert capsys.readouterr().out == (
        "fill 1: BUY 150 No @ 0.4 on 0xabc1 (order 42)\n"
        "  rule all -> hook\n"
        "    title: every fill\n"
        "    body:  BUY 150 No @ 0.4 on 0xabc1 (order #42)\n"
        "  not matched:\n"
        "  rule big: notional 60.0 is not above 500\n"
        "  rule after: not reached: rule all matched first and has stop: true\n"
    )


def test_test_command_takes_a_history_page_saved_with_a_byte_order_mark(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A history page saved with a UTF-8 byte-order mark was no JSON array: its lines were
    refused as not JSON, or taken alone, numbered by line."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    item = FLAT.replace('"type": "fill", ', "")
    Path("page.json").write_text(f"\ufeff[\n  {item}\n]\n", encoding="utf-8")
    assert cli.main(["test", "c.yaml", "--fills", "page.json"]) == 0
    assert capsys.readouterr().out.startswith("fill 1: BUY 150 No @ 0.4 on 0xabc1 (order 42)\n")


def test_test_command_takes_a_history_page_saved_whole(capsys: pytest.CaptureFixture[str]) -> None:
    """A JSON array given as the fills file (the venue's history answer, saved as it came):
    each item is a fill, numbered by its place; an item that is no object is refused alone."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    item = FLAT.replace('"type": "fill", ', "")
    Path("page.json").write_text(f"[\n  {item},\n  7\n]\n", encoding="utf-8")
    assert cli.main(["test", "c.yaml", "--fills", "page.json"]) == 2
    assert capsys.readouterr().out == (
        "fill 1: BUY 150 No @ 0.4 on 0xabc1 (order 42)\n"
        "  rule big -> hook\n"
        "    title: Big BUY on 0xabc1\n"
        "    body:  150 No @ 0.40 #42\n"
        "fill 2: rejected (not_object): JSON int, not an object\n"
    )


def test_equal_items_of_a_history_page_are_two_fills_as_run_counts_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two equal items in one saved history page are two partial fills (run alerts both),
    so each is shown; the same two as JSON lines are taken for one fill pasted twice."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    item = FLAT.replace('"type": "fill", ', "")
    Path("page.json").write_text(f"[{item}, {item}]", encoding="utf-8")
    assert cli.main(["test", "c.yaml", "--fills", "page.json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("fill ")] == [
        "fill 1: BUY 150 No @ 0.4 on 0xabc1 (order 42)",
        "fill 2: BUY 150 No @ 0.4 on 0xabc1 (order 42)",
    ]
    Path("fills.jsonl").write_text(f"{item}\n{item}\n", encoding="utf-8")
    assert cli.main(["test", "c.yaml", "--fills", "fills.jsonl"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("fill 2: same order, time, quantity and price as fill 1: shown")


def test_the_readme_s_dry_run_shows_its_headline_alert(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's `notifier test` fill, on the example's rules, matched none of them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (line,) = [ln for ln in readme.splitlines() if ln.startswith("notifier test config.yaml")]
    fill = line.partition("--fill '")[2].removesuffix("'")
    assert cli.main(["test", str(EXAMPLE), "--fill", fill]) == 0
    title, body = "Large buy on Will Bitcoin close above $100k in 2026?", "BUY 150 Yes @ 0.42"
    body += " (notional 63.00) #8812"
    assert f"\n{title}\n{body}\n" in readme  # the alert the README opens with
    assert (
        f"  rule large-buys -> desk, phone\n    title: {title}\n    body:  {body}\n"
        in capsys.readouterr().out
    )


def test_test_command_notes_a_fill_a_title_could_judge(capsys: pytest.CaptureFixture[str]) -> None:
    """A fill without its title, under a market_title rule, says the title could change it."""
    config = RULES.format(url="json://127.0.0.1:9/").replace(
        "outcome: No}", "outcome: No, market_title: '*rain*'}"
    )
    Path("c.yaml").write_text(config, encoding="utf-8")
    titled = json.loads(FLAT) | {"order_id": 44, "market_title": "Will it rain?"}
    Path("fills.jsonl").write_text(f"{FLAT}\n{json.dumps(titled)}\n{NESTED}\n", encoding="utf-8")
    assert cli.main(["test", "c.yaml", "--fills", "fills.jsonl"]) == 0
    assert capsys.readouterr().out == (
        "fill 1: BUY 150 No @ 0.4 on 0xabc1 (order 42)\n"
        "  no rule matches\n"
        "  rule big: market_title is unknown here (the fill gives none; `run` looks it up)\n"
        "  note: a market_title test could change this verdict; run looks the title up "
        '(and waits for it), here give it as "market_title" in the fill\n'
        "fill 2: BUY 150 No @ 0.4 on Will it rain? (order 44)\n"
        "  rule big -> hook\n"
        "    title: Big BUY on Will it rain?\n"
        "    body:  150 No @ 0.40 #44\n"
        "fill 3: SELL 5 Yes @ 0.6 on 0xabc1 (order 43)\n"  # a SELL: no title could match it
        "  no rule matches\n"
        "  rule big: side is 'SELL', not 'BUY'\n"
    )


def test_test_command_shows_a_fill_s_venue_text_as_messages_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The line naming a fill drops a bidi control from the venue's text (it would reverse the
    rest of the terminal line) and writes decimals in plain digits, as messages do."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    fill = json.loads(FLAT) | {"outcome": "No\u202e", "quantity": "1E+3", "price": "4E-1"}
    assert cli.main(["test", "c.yaml", "--fill", json.dumps(fill)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "fill 1: BUY 1000 No @ 0.4 on 0xabc1 (order 42)"


# A fill rule `big` of RULES matches, without its time (the shapes name it differently).
BIG_BUY = {
    "order_id": "44",
    "market_id": "0xabc1",
    "side": "BUY",
    "outcome": "No",
    "price": "0.4",
    "quantity": "150",
}


def test_test_command_reads_the_title_where_the_nested_shape_keeps_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In the nested shape the fill is `data`: a "market_title" there is the fill's title,
    cleaned as the daemon cleans a venue's title (a stray newline would end the line)."""
    config = RULES.format(url="json://127.0.0.1:9/").replace(
        "outcome: No}", "outcome: No, market_title: '*rain*'}"
    )
    Path("c.yaml").write_text(config, encoding="utf-8")
    nested = {
        "type": "execution",
        "data": {
            **BIG_BUY,
            "timestamp": "2026-02-06T12:01:00Z",
            "market_title": " Will it rain?\n",
        },
    }
    assert cli.main(["test", "c.yaml", "--fill", json.dumps(nested)]) == 0
    assert capsys.readouterr().out == (
        "fill 1: BUY 150 No @ 0.4 on Will it rain? (order 44)\n"
        "  rule big -> hook\n"
        "    title: Big BUY on Will it rain?\n"
        "    body:  150 No @ 0.40 #44\n"
    )


def test_test_command_says_why_a_mention_in_the_fill_is_no_mention(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The zero-width space that defuses "@everyone" is invisible: the output says it is there."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    fill = {**BIG_BUY, "filled_at": "2026-02-06T12:01:00Z", "market_title": "@everyone wins?"}
    assert cli.main(["test", "c.yaml", "--fill", json.dumps(fill)]) == 0
    assert capsys.readouterr().out == (
        "fill 1: BUY 150 No @ 0.4 on @everyone wins? (order 44)\n"
        "  rule big -> hook\n"
        "    title: Big BUY on @\u200beveryone wins?\n"
        "    body:  150 No @ 0.40 #44\n"
        "    note: zero-width spaces (U+200B) keep the @mentions and links in the fill's text "
        "from pinging anyone or linking anywhere\n"
    )


def test_test_command_needs_no_channel_secret_unless_it_sends(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dry run on a machine without the channels' secrets shows the messages, saying which
    channel is shown as plain text; with --send the unset variable is the config error."""
    monkeypatch.delenv("HOOK_URL", raising=False)
    Path("c.yaml").write_text(RULES.format(url="${HOOK_URL}"), encoding="utf-8")
    fill = json.dumps({**BIG_BUY, "filled_at": "2026-02-06T12:01:00Z"})
    assert cli.main(["test", "c.yaml", "--fill", fill]) == 0
    assert capsys.readouterr().out == (
        "note: channel hook: its URL names a variable that is not set here, so its messages "
        "are shown as a plain-text service gets them (--send needs it set)\n"
        "fill 1: BUY 150 No @ 0.4 on 0xabc1 (order 44)\n"
        "  rule big -> hook\n"
        "    title: Big BUY on 0xabc1\n"
        "    body:  150 No @ 0.40 #44\n"
    )
    assert cli.main(["test", "c.yaml", "--fill", fill, "--send"]) == 2
    assert "environment variable HOOK_URL is not set" in capsys.readouterr().err


def test_test_command_refuses_bad_fills(capsys: pytest.CaptureFixture[str]) -> None:
    """A fill that is not JSON or not valid is reported with its reason; exit 2."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    assert cli.main(["test", "c.yaml", "--fill", '{"type": "fill", "side": "BUY"}']) == 2
    out = capsys.readouterr().out
    assert out == (  # every one at once: a fill written by hand is not fixed one field a run
        "fill 1: rejected (missing_field): order_id, market_id, outcome, price, quantity "
        "and filled_at (or timestamp) are missing\n"
    )
    nested = '{"type": "execution", "order_id": 7, "data": {"side": "BUY", "price": "0.5"}}'
    assert cli.main(["test", "c.yaml", "--fill", nested]) == 2
    assert capsys.readouterr().out == (
        "fill 1: rejected (missing_field): market_id, outcome, quantity "
        "and filled_at (or timestamp) are missing\n"
    )
    one = '{"order_id": 7, "market_id": "m", "side": "BUY", "outcome": "Yes", "price": "0.5", '
    assert cli.main(["test", "c.yaml", "--fill", one + '"filled_at": "2026-02-06T12:00:00Z"}']) == 2
    assert capsys.readouterr().out == (
        "fill 1: rejected (missing_field): quantity is missing (order 7)\n"
    )
    assert cli.main(["test", "c.yaml", "--fill", " "]) == 2  # blank is no fill, not nothing
    assert capsys.readouterr().out.startswith("fill 1: rejected (not_json): ")


async def test_test_command_sends_with_send(
    webhook: WebhookReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """`test --send` delivers the rendered alert to the channel, once."""
    Path("c.yaml").write_text(RULES.format(url=webhook.json_url), encoding="utf-8")
    fill = json.loads(FLAT) | {"market_title": "Will it rain?"}
    code = await _main("test", "c.yaml", "--fill", json.dumps(fill), "--send")
    assert code == 0
    assert [r.json["title"] for r in webhook.requests] == ["Big BUY on Will it rain?"]
    assert "    hook json://127.0.0.1:" in capsys.readouterr().out


async def test_test_send_sends_what_run_would_under_each_rule(
    webhook: WebhookReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """`test --send` with a plain rule and a day's summary: the plain rule's alert goes, its
    result printed under it; the summary's single-fill preview does not (run never sends it),
    its digest under "shaped" does, once."""
    Path("c.yaml").write_text(
        f"channels:\n  hook: {webhook.json_url}\nrules:\n"
        "  - {name: big, notify: hook, title: 'big {order_id}', when: {quantity: {min: 100}}}\n"
        "  - {name: daily, notify: hook, title: 'day ({count})', group: {at: '17:00'}}\n",
        encoding="utf-8",
    )
    code = await _main("test", "c.yaml", "--fill", FLAT, "--send")
    assert code == 0
    assert [r.json["title"] for r in webhook.requests] == ["big 42", "day (1)"]
    out = capsys.readouterr().out.splitlines()
    big = out.index("  rule big -> hook")
    assert out[big + 3].startswith("    hook json://127.0.0.1:")
    assert out[big + 3].endswith(": sent")
    daily = next(i for i, line in enumerate(out) if line.startswith("  rule daily -> hook"))
    assert out[daily + 3] == "    not sent: run sends this rule's message under 'shaped' below"
    shaped = out.index("shaped: what run would send for these fills, by their own times")
    assert out[-1].startswith("    hook json://127.0.0.1:")
    assert out[-1].endswith(": sent")
    assert shaped < len(out) - 1


def test_a_dry_run_says_when_a_status_rule_meets_a_fill_without_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The flat `fill` shape carries no status: a trader's "partial fills only" rule showed
    "no rule matches" for such a fill with no word why. The note comes only where a rule
    tests status and the fill has none."""
    Path("c.yaml").write_text(
        "channels:\n  hook: json://127.0.0.1:9/\nrules:\n"
        "  - {name: partials, when: {status: PARTIALLY_FILLED}, notify: [hook]}\n",
        encoding="utf-8",
    )
    with_status = json.loads(FLAT) | {"type": "execution", "status": "PARTIALLY_FILLED"}
    assert cli.main(["test", "c.yaml", "--fill", FLAT]) == 0
    assert cli.main(["test", "c.yaml", "--fill", json.dumps(with_status)]) == 0
    lines = capsys.readouterr().out.splitlines()
    notes = [line for line in lines if "has no status" in line]
    assert notes == [
        "  note: this fill has no status (the feed's flat `fill` shape sends none): a `status`"
        " test does not match it, and `not: {status: ...}` does"
    ]
    assert lines[1] == "  no rule matches"
    assert "  rule partials -> hook" in lines


async def test_send_test_reports_each_url(
    webhook: WebhookReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """send-test sends one message per URL and reports each; a failure makes exit 1."""
    config = RULES.format(url=f"[{webhook.json_url}, json://127.0.0.1:9/]")
    Path("c.yaml").write_text(config, encoding="utf-8")
    assert await _main("send-test", "--config", "c.yaml") == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"hook: {webhook.json_url}")
    assert lines[0].endswith(": ok")
    assert lines[1].startswith("hook: json://127.0.0.1:9/")
    assert ": FAILED: JSON: failure: " in lines[1]
    assert len(webhook.requests) == 1
    assert await _main("send-test", "--config", "c.yaml", "--channel", "nope") == 2


async def test_send_test_of_one_channel_needs_only_that_channel_s_variables(
    webhook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`send-test --channel hook` refused to run while another channel's URL variable was
    unset, though nothing goes to it. The tested channel's own unset variable is still a
    config error, with only its own problem; without --channel every variable must be set."""
    monkeypatch.delenv("PAGER_URL", raising=False)
    monkeypatch.delenv("DESK_URL", raising=False)
    Path("c.yaml").write_text(
        f"channels:\n  hook: {webhook.json_url}\n  pager: ${{PAGER_URL}}\n"
        "  desk:\n    urls: ['${DESK_URL}']\n",
        encoding="utf-8",
    )
    assert await _main("send-test", "--config", "c.yaml", "--channel", "hook") == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert out[0].startswith(f"hook: {webhook.json_url}")
    assert out[0].endswith(": ok")
    assert [r.json["title"] for r in webhook.requests] == ["notifier test"]
    assert await _main("send-test", "--config", "c.yaml", "--channel", "desk") == 2
    assert capsys.readouterr().err.splitlines() == [
        "config error: 1 problem",
        "c.yaml:5: channels.desk.urls[0]: environment variable DESK_URL is not set (set it "
        "where the daemon runs: the shell, or the unit's EnvironmentFile)",
    ]
    assert await _main("send-test", "--config", "c.yaml") == 2
    assert "config error: 2 problems" in capsys.readouterr().err
    assert len(webhook.requests) == 1


async def test_send_test_with_no_channels_is_a_config_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No channel configured: nothing was proven to work, so not exit 0 with no output."""
    Path("c.yaml").write_text("channels: {}\nrules: []\n", encoding="utf-8")
    assert await _main("send-test", "--config", "c.yaml") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "no channels configured in c.yaml: nothing to test\n"


def test_outbox_lists_requeues_and_purges(capsys: pytest.CaptureFixture[str]) -> None:
    """outbox lists pending and dead alerts; --retry-dead requeues, --purge-dead removes."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    at = datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC)
    with StateStore(Path("notifier.db")) as store:
        for n in (1, 2):
            alert = Alert(f"k{n}", "big", "hook", "t", f"Alert {n}", "body", at)
            store.record(fill_key=f"k{n}", filled_at=at, alerts=[alert])
        (first, _) = store.outbox(state="pending")
        store.mark_dead(first.id, error="HTTP 500")
    assert cli.main(["outbox", "--config", "c.yaml"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "pending 1, dead 1"
    assert any("pending" in line and "Alert 2" in line for line in out[1:])
    assert any("dead" in line and "Alert 1" in line and "HTTP 500" in line for line in out[1:])
    assert not any("market title" in line for line in out)
    with StateStore(Path("notifier.db")) as store:
        store.title_waits.hold([("k3", at, "{}"), ("k4", at + timedelta(minutes=1), "{}")])
    assert cli.main(["outbox", "--config", "c.yaml"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        "2 fill(s) wait for their market title, the oldest since 2026-02-06 12:00:45Z: "
        "the daemon judges them once it has it"
    )
    assert cli.main(["outbox", "--config", "c.yaml", "--retry-dead"]) == 0
    assert capsys.readouterr().out == (
        "requeued 1 dead alert(s): a running daemon sends them within a second, else the next "
        "`notifier run` does\n"
    )
    # Listed as requeued: its error is from before, not a fresh failure.
    assert cli.main(["outbox", "--config", "c.yaml"]) == 0
    out = capsys.readouterr().out.splitlines()
    (line,) = (line for line in out if "Alert 1" in line)
    assert line.startswith("#1 pending hook/big attempts=0 filled 2026-02-06 12:00:45Z: Alert 1")
    assert line.endswith("  requeued, its one try to come; last error: HTTP 500")
    with StateStore(Path("notifier.db")) as store:
        assert store.counts()["pending"] == 2
        (first, _) = store.outbox(state="pending")
        store.mark_dead(first.id, error="HTTP 500")
    assert cli.main(["outbox", "--config", "c.yaml", "--purge-dead"]) == 0
    assert capsys.readouterr().out == "removed 1 dead alert(s)\n"


def test_outbox_says_when_an_alert_waiting_out_a_back_off_is_tried_next(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A pending alert whose last try failed shows its next try (a start tries it at once,
    unless the service answered 429); so does a requeued one a 429 paused, still requeued."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    at = datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC)
    retry = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    with StateStore(Path("notifier.db")) as store:
        for n, target in ((1, "hook"), (2, "hook"), (3, "other"), (4, "fourth")):
            alert = Alert(f"k{n}", "big", "hook", target, f"Alert {n}", "body", at)
            store.record(fill_key=f"k{n}", filled_at=at, alerts=[alert])
        (first, _, third, fourth) = store.outbox(state="pending")
        store.mark_failed(first.id, error="HTTP 500", next_at=retry)
        store.mark_failed(third.id, error="JSON: failure: error=429.", next_at=retry)
        store.mark_dead(fourth.id, error="HTTP 500")
        store.retry_dead()
        store.mark_failed(fourth.id, error="error=429.", next_at=retry, counted=False)
    assert cli.main(["outbox", "--config", "c.yaml"]) == 0
    [_, waiting, behind, paused, requeued] = capsys.readouterr().out.splitlines()
    assert requeued == (
        f"#4 pending hook/big attempts=0 next try {retry:%Y-%m-%d %H:%M:%S}Z filled "
        "2026-02-06 12:00:45Z: Alert 4  requeued, its one try to come; last error: error=429."
    )
    assert waiting == (
        f"#1 pending hook/big attempts=1 next try {retry:%Y-%m-%d %H:%M:%S}Z (or at the "
        "daemon's start) filled 2026-02-06 12:00:45Z: Alert 1  last error: HTTP 500"
    )
    assert behind == "#2 pending hook/big attempts=0 filled 2026-02-06 12:00:45Z: Alert 2"
    assert paused == (  # the service asked for the pause: a start keeps it
        f"#3 pending hook/big attempts=1 next try {retry:%Y-%m-%d %H:%M:%S}Z filled "
        "2026-02-06 12:00:45Z: Alert 3  last error: JSON: failure: error=429."
    )


def test_outbox_moves_one_channel_s_dead_alerts_to_another(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--retry-dead --channel old --to hook requeues old's dead alerts for hook (a channel
    of the config, named without its URL's variables set); --to a channel the config lacks,
    or --to without --retry-dead --channel (every channel's would move), is refused and
    changes nothing."""
    monkeypatch.delenv("POLYSIM_API_KEY")
    Path("c.yaml").write_text(RULES.format(url="${HOOK_URL}"), encoding="utf-8")
    at = datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC)
    with StateStore(Path("notifier.db")) as store:
        for n, channel in enumerate(("old", "old", "mail")):
            alert = Alert(f"k{n}", "big", channel, f"t{n}", f"Alert {n}", "body", at)
            store.record(fill_key=f"k{n}", filled_at=at, alerts=[alert])
        for row in store.outbox():
            store.mark_dead(row.id, error="target and its channel no longer configured")
    wrong = ["outbox", "--config", "c.yaml", "--retry-dead", "--channel", "old", "--to", "desk"]
    assert cli.main(wrong) == 2
    assert capsys.readouterr().err == "no channel named 'desk' in c.yaml (channels: hook)\n"
    pasted = [*wrong[:-1], "json://u:SECRETPASS@h/"]  # a URL in place of the name: not echoed
    assert cli.main(pasted) == 2
    assert "SECRETPASS" not in capsys.readouterr().err
    typo = ["outbox", "--config", "c.yaml", "--retry-dead", "--channel", "odl"]
    assert cli.main(typo) == 2  # neither configured nor with dead alerts: said, not "requeued 0"
    assert capsys.readouterr().err == (
        "no dead alerts of channel 'odl' (channels with dead alerts: 'mail', 'old')\n"
    )
    assert cli.main([*typo[:-1], "hook"]) == 0  # configured, nothing dead: requeued 0, as ever
    assert capsys.readouterr().out == "requeued 0 dead alert(s)\n"
    for partial in (["--to", "hook"], ["--retry-dead", "--to", "hook"]):  # every channel's
        assert cli.main(["outbox", "--config", "c.yaml", *partial]) == 2
        expected = "notifier outbox: --to goes with --retry-dead --channel OLD\n"
        assert capsys.readouterr().err == expected
    args = ["outbox", "--config", "c.yaml", "--retry-dead", "--channel", "old", "--to", "hook"]
    assert cli.main(args) == 0
    assert capsys.readouterr().out.startswith("requeued 2 dead alert(s) for channel hook: ")
    with StateStore(Path("notifier.db")) as store:
        assert [r.channel for r in store.outbox(state="pending")] == ["hook", "hook"]
        assert [r.channel for r in store.outbox(state="dead")] == ["mail"]


def test_the_outbox_s_promise_of_a_pickup_is_the_deliverer_s_look() -> None:
    """The second the requeue message promises is how often the deliverer asks the state
    file whether another program wrote to it."""
    from notifier import deliver, outbox_command

    assert deliver.LOOK_EVERY == 1.0
    assert "within a second" in outbox_command._PICKED_UP


def test_outbox_needs_only_the_state_path_not_the_daemon_s_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run by hand, without the unit's environment file: channel URLs from unset variables
    and no API key do not stop it; an unset variable in state.path does, naming it."""
    monkeypatch.delenv("POLYSIM_API_KEY")
    monkeypatch.delenv("SLACK_URL", raising=False)
    config = RULES.format(url="${SLACK_URL}") + "state:\n  path: ${STATE_DIR}/notifier.db\n"
    Path("c.yaml").write_text(config, encoding="utf-8")
    with StateStore(Path("notifier.db")):
        pass
    monkeypatch.setenv("STATE_DIR", ".")
    assert cli.main(["outbox", "--config", "c.yaml"]) == 0
    assert capsys.readouterr().out == "pending 0, dead 0\n"
    monkeypatch.delenv("STATE_DIR")
    assert cli.main(["outbox", "--config", "c.yaml"]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "c.yaml:10: state.path: environment variable STATE_DIR is not set" in err
    assert "SLACK_URL" not in err


def test_outbox_before_the_first_run_says_nothing_is_pending_and_creates_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No state file yet (the first `run` creates it, directory and all): a calm answer naming
    the path, exit 0, where it said "fatal: ... not found" and exited 1. Nothing is created:
    a mistyped path once reported "pending 0, dead 0" and left a new database behind."""
    config = RULES.format(url="json://127.0.0.1:9/") + "state:\n  path: nosuchdir/state.db\n"
    Path("c.yaml").write_text(config, encoding="utf-8")
    said = "no state file yet at nosuchdir/state.db (the first `notifier run` creates it): "
    for change, nothing in [
        ([], "nothing pending, nothing dead"),
        (["--retry-dead"], "nothing to retry"),
        (["--purge-dead"], "nothing to purge"),
    ]:
        assert cli.main(["outbox", "--config", "c.yaml", *change]) == cli.EXIT_OK
        assert capsys.readouterr() == (f"{said}{nothing}\n", "")
    assert not Path("nosuchdir").exists()
    Path("nosuchdir").mkdir()  # the directory there, the file not: the same answer
    assert cli.main(["outbox", "--config", "c.yaml"]) == cli.EXIT_OK
    assert capsys.readouterr().out == f"{said}nothing pending, nothing dead\n"
    assert list(Path("nosuchdir").iterdir()) == []
    # A path the system cannot look up, or under a file, is no first run to wait for: fatal.
    for bad, why in [("x" * 300 + ".db", "File name too long"), ("c.yaml/s.db", "Not a directory")]:
        Path("c.yaml").write_text(config.replace("nosuchdir/state.db", bad), encoding="utf-8")
        assert cli.main(["outbox", "--config", "c.yaml"]) == cli.EXIT_FATAL
        assert capsys.readouterr() == (
            "",
            f"notifier: fatal: state file {bad}: cannot open: {why}\n",
        )


def test_a_state_file_busy_past_its_timeout_exits_70_to_be_restarted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A write lock held by another program is not fatal (exit 1 stops the unit for good)."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    StateStore(Path("notifier.db")).close()
    other = sqlite3.connect("notifier.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        assert cli.main(["outbox", "--config", "c.yaml", "--purge-dead"]) == cli.EXIT_SOFTWARE
    finally:
        other.close()
    err = capsys.readouterr().err
    assert "stopping: state file notifier.db: " in err
    assert "busy: another program held its write lock over 1s" in err


def test_outbox_listing_only_reads(capsys: pytest.CaptureFixture[str]) -> None:
    """A listing takes no write lock: it works while another program holds one (a backup,
    a sqlite3 shell, the daemon mid-batch), leaves the file's bytes as they were, and refuses
    a file of an older schema rather than migrating it behind the daemon's back."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    at = datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC)
    with StateStore(Path("notifier.db")) as store:
        alert = Alert("k1", "big", "hook", "t", "Alert 1", "body", at)
        store.record(fill_key="k1", filled_at=at, alerts=[alert])
    before = Path("notifier.db").read_bytes()
    # The daemon stopped: no file is created beside it, so a directory the reader may not
    # write is no obstacle (an unprivileged user's listing failed here before).
    assert cli.main(["outbox", "--config", "c.yaml"]) == 0
    assert sorted(p.name for p in Path().glob("notifier.db*")) == ["notifier.db"]
    other = sqlite3.connect("notifier.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("DELETE FROM outbox")  # not committed: the listing sees the last commit
        assert cli.main(["outbox", "--config", "c.yaml"]) == 0
    finally:
        other.close()
    listings = capsys.readouterr().out.splitlines()
    assert [line for line in listings if line.startswith("pending")] == ["pending 1, dead 0"] * 2
    assert Path("notifier.db").read_bytes() == before
    old = sqlite3.connect("notifier.db", isolation_level=None)
    old.execute("PRAGMA user_version = 1")
    old.close()
    assert cli.main(["outbox", "--config", "c.yaml"]) == cli.EXIT_FATAL
    assert "schema version 1 is older than this notifier's" in capsys.readouterr().err


def test_outbox_changes_never_migrate_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    """--retry-dead and --purge-dead refuse a file of an older schema (or an empty one) as the
    listing does: migrated behind the daemon's back, an older daemon could not start again."""
    Path("c.yaml").write_text("state:\n  path: notifier.db\n", encoding="utf-8")
    with StateStore(Path("notifier.db")):
        pass
    old = sqlite3.connect("notifier.db", isolation_level=None)
    old.execute("PRAGMA user_version = 1")
    old.close()
    Path("empty.db").touch()
    Path("e.yaml").write_text("state:\n  path: empty.db\n", encoding="utf-8")
    for config in ("c.yaml", "e.yaml"):
        for change in ("--retry-dead", "--purge-dead"):
            assert cli.main(["outbox", "--config", config, change]) == cli.EXIT_FATAL
            assert "older than this notifier's" in capsys.readouterr().err
    version = sqlite3.connect("notifier.db").execute("PRAGMA user_version").fetchone()[0]
    assert version == 1
    assert Path("empty.db").stat().st_size == 0


def test_outbox_listing_through_a_symlinked_state_path_sees_the_daemon_s_commits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """state.path a symlink: the WAL lies beside the real file, and a listing while the daemon
    runs (or after kill -9) must read it, not take the file for a stopped one's."""
    Path("data").mkdir()
    Path("state.db").symlink_to(Path("data/notifier.db").resolve())
    Path("c.yaml").write_text("state:\n  path: state.db\n", encoding="utf-8")
    at = datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC)
    with StateStore(Path("state.db")) as store:  # the daemon, running: its commits in the WAL
        alert = Alert("k1", "big", "hook", "t", "Alert 1", "body", at)
        store.record(fill_key="k1", filled_at=at, alerts=[alert])
        assert Path("data/notifier.db-wal").exists()
        assert cli.main(["outbox", "--config", "c.yaml"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "pending 1, dead 0"


def test_log_level_option_before_or_after_command(capsys: pytest.CaptureFixture[str]) -> None:
    """--log-level works on either side of the command; an unknown level is a usage error."""
    assert cli.main(["--log-level", "warning", "check-config", str(EXAMPLE)]) == 0
    assert cli.main(["check-config", str(EXAMPLE), "--log-level", "debug"]) == 0
    assert logging.getLogger("apprise").getEffectiveLevel() >= logging.INFO
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check-config", str(EXAMPLE), "--log-level", "chatty"])
    assert exit_.value.code == 2
    assert "error: unknown log level 'chatty'" in capsys.readouterr().err


def test_an_unknown_level_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad NOTIFIER_LOG_LEVEL was reported as if a flag were wrong, usage and all, with no
    flag given: the error names the variable, without the usage; a flag given beside it
    wins, and is what an error names."""
    monkeypatch.setenv("NOTIFIER_LOG_LEVEL", "bogus")
    assert cli.main(["check-config", str(EXAMPLE)]) == 2
    assert capsys.readouterr().err == (
        "notifier: NOTIFIER_LOG_LEVEL: unknown log level 'bogus' "
        "(use debug, info, warning or error)\n"
    )
    assert cli.main(["check-config", str(EXAMPLE), "--log-level", "warning"]) == 0
    with pytest.raises(SystemExit):
        cli.main(["check-config", str(EXAMPLE), "--log-level", "chatty"])
    assert "error: unknown log level 'chatty'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-level", "warning", "--log-format", "json", "run"],
        ["run", "--log-level", "warning", "--log-format", "json"],
        ["--log-level", "debug", "run", "--log-level", "warning", "--log-format", "json"],
    ],
)
def test_log_options_hold_on_either_side_of_the_command(argv: list[str]) -> None:
    """`notifier --log-format json run` (as --help shows it) must not fall back to text."""
    args = cli_args.build().parse_args(argv)
    assert (args.log_level, args.log_format) == ("warning", "json")


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: None, "No such file or directory"),
        (lambda p: p.mkdir(), "Is a directory"),
        (lambda p: p.write_bytes(b"\xff\xfe{}\n"), "can't decode byte 0xff"),
    ],
)
def test_test_command_with_unreadable_fills_is_a_usage_error(
    make: Callable[[Path], object], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --fills file that cannot be read says so in one line and exits 2, no traceback."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    make(Path("fills.jsonl"))
    assert cli.main(["test", "c.yaml", "--fills", "fills.jsonl"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("notifier test: cannot read --fills fills.jsonl: ")
    assert why in err
    assert "Traceback" not in err


def test_an_unexpected_error_is_logged_and_exits_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug is not "fatal" (1, which the unit never restarts): 70, through logging, as JSON
    when asked."""

    def broken(args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli._COMMANDS, "check-config", broken)
    assert cli.main(["check-config", str(EXAMPLE), "--log-format", "json"]) == 70
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["level"] == "critical"
    assert record["msg"] == "unexpected error, exiting: RuntimeError('a bug')"
    assert "Traceback" in record["exc"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["demo", "--fills", "-3"], "argument --fills: must be a whole number above 0, got '-3'"),
        (["demo", "--fills", "0"], "argument --fills: must be a whole number above 0, got '0'"),
        (["demo", "--fills", "ten"], "argument --fills: must be a whole number above 0, got 'ten'"),
        (["demo", "--send"], "demo --send needs --config: the demo's own rules have no channels"),
    ],
)
def test_demo_refuses_arguments_it_cannot_honour(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A count that is no count, or --send with nothing to send to: a usage error (2), not a
    demo that runs forever or quietly prints instead of sending."""
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {said}")


def test_ctrl_c_exits_130_except_in_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted command did not finish: 130, as a shell reports it. The demo is meant to
    be stopped with Ctrl-C: 0."""

    def interrupted(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli._COMMANDS, "check-config", interrupted)
    assert cli.main(["check-config", str(EXAMPLE)]) == 130
    monkeypatch.setattr("notifier.demo.run_demo", interrupted)
    assert cli.main(["demo", "--fills", "1"]) == 0


# Ctrl-C at two points of start-up, made exact: an import hook raises KeyboardInterrupt as
# the CLI module is imported (launch.entry) or as its arguments are parsed (cli.entry).
_INTERRUPTED_START = """
import argparse, sys
from importlib.abc import MetaPathFinder

class Interrupt(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "notifier.cli":
            raise KeyboardInterrupt
        return None

def interrupted(*args, **kwargs):
    raise KeyboardInterrupt

if sys.argv[1] == "import":
    sys.meta_path.insert(0, Interrupt())
else:
    argparse.ArgumentParser.parse_known_args = interrupted
from notifier.launch import entry
entry()
"""


@pytest.mark.parametrize("where", ["import", "arguments"])
def test_ctrl_c_while_starting_exits_130_without_a_traceback(where: str) -> None:
    """Ctrl-C in the first moments (importing the CLI, parsing arguments): 130, stderr empty."""
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_START, where],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert (done.returncode, done.stderr, done.stdout) == (130, "", "")


def _closed_pipe_run(argv: list[str], cwd: Path, *, stderr_too: bool) -> tuple[int, str]:
    """`notifier argv` with stdout (and stderr) to a pipe whose reader is already gone."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "notifier", *argv],
            stdout=write,
            stderr=write if stderr_too else subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=cwd,
            # Buffered, as a user's shell has it: the first write is often the exit's flush.
            env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
            | {"PYTHONPATH": str(ROOT)},
            check=False,
        )
    finally:
        os.close(write)
    return done.returncode, done.stderr or ""


def test_a_closed_stdout_ends_quietly_with_141(tmp_path: Path) -> None:
    """`notifier outbox | head` with the reader gone: 141, as `git log | head`, no traceback;
    also when the message is an error on a closed stderr (`check-config bad 2>&1 | head`)."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    Path("bad.yaml").write_text(BAD_CONFIG, encoding="utf-8")
    StateStore(Path("notifier.db")).close()
    outbox = ["outbox", "--config", "c.yaml"]
    assert _closed_pipe_run(outbox, tmp_path, stderr_too=False) == (141, "")
    assert _closed_pipe_run(["check-config", "bad.yaml"], tmp_path, stderr_too=True)[0] == 141


@contextlib.contextmanager
def _metrics_port_taken() -> Iterator[int]:
    """c.yaml with metrics on a port another socket holds (as an old instance stopping would):
    `run` ends at once with 70. The port, while held."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port: int = held.getsockname()[1]
        config = RULES.format(url="json://127.0.0.1:9/") + (
            f"metrics: {{listen: '127.0.0.1:{port}'}}\nfeed: {{base_url: 'http://127.0.0.1:9'}}\n"
        )
        Path("c.yaml").write_text(config, encoding="utf-8")
        yield port


async def test_metrics_port_in_use_is_one_line_and_exits_70(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The metrics port still held (an old instance stopping): a clear line, and 70, which the
    unit restarts on, not a traceback and 1."""
    with _metrics_port_taken() as port:
        assert await _main("run", "--config", "c.yaml") == 70
    err = capsys.readouterr().err
    assert f"notifier: metrics.listen 127.0.0.1:{port}: cannot listen: " in err
    assert "Traceback" not in err


def test_test_command_shows_a_repeated_fill_once_and_marks_shaped_rules(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same fill in another spelling or shape is shown once, saying when run would alert
    it again. A shaped rule's message is that of the fill alone, and says so; what `run`
    sends for it follows under "shaped", at its time."""
    shaped = (
        "  - name: calm\n    when: {side: BUY}\n    notify: [hook]\n"
        "    throttle: {by: [market_id], every: 10m}\n"
    )
    config = RULES.format(url="json://127.0.0.1:9/") + shaped
    Path("c.yaml").write_text(config, encoding="utf-8")
    again = FLAT.replace('"150"', '"150.0"').replace('"type": "fill", ', "")
    Path("fills.jsonl").write_text(f"{FLAT}\n{again}\n", encoding="utf-8")
    assert cli.main(["test", "c.yaml", "--fills", "fills.jsonl"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "fill 1: BUY 150 No @ 0.4 on 0xabc1 (order 42)"
    note = "this fill alone; what run sends is under 'shaped' below"
    assert f"  rule calm -> hook (throttled: {note})" in out
    shaped = out.index("shaped: what run would send for these fills, by their own times")
    assert out[shaped - 1] == (
        "fill 2: same order, time, quantity and price as fill 1: shown once; run alerts it "
        "again if it comes as a second live frame or twice in one history read (equal partial "
        "fills)"
    )
    assert out[shaped + 1 :] == [  # a throttle's first match goes out at once
        "  2026-02-06 12:00:45 UTC: rule calm -> hook (1 fill)",
        "    title: BUY No on 0xabc1",
        "    body:  BUY 150 No @ 0.4 on 0xabc1 (order #42)",
    ]


def test_test_command_shows_a_day_s_summary_at_its_time_in_its_zone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`group: {at: "17:00", tz: America/New_York}` on a rule with no `tz:`: `test` shows the
    summary at 17:00 New York time, in that zone, not as 22:00 UTC."""
    shaped = (
        "  - name: day\n    when: {side: BUY}\n    notify: [hook]\n"
        '    group: {at: "17:00", tz: America/New_York}\n'
    )
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/") + shaped, encoding="utf-8")
    assert cli.main(["test", "c.yaml", "--fill", FLAT]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  2026-02-06 17:00:00 EST (22:00 UTC): rule day -> hook (1 fill)" in out


def test_run_in_process_gives_sighup_back_and_its_last_word_is_a_json_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`main` is callable in-process: after `run` returns, SIGHUP is handled as before. Why
    it ended is a JSON line under --log-format json, not plain text in the journal."""
    before = signal.getsignal(signal.SIGHUP)
    with _metrics_port_taken() as port:
        code = cli.main(["run", "--config", "c.yaml", "--log-format", "json"])
        assert code == 70  # the port is taken: a quick end
    assert signal.getsignal(signal.SIGHUP) == before
    last = json.loads(capsys.readouterr().err.splitlines()[-1])  # the journal's kind of line
    assert last["level"] == "critical"
    assert last["msg"].startswith(f"metrics.listen 127.0.0.1:{port}: cannot listen: ")


def test_a_socks_proxy_without_its_package_is_fatal_and_said(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALL_PROXY=socks5://... needs a package httpx and websockets leave optional: exit 1 with
    their words, not an "unexpected error" (exit 70) that the unit restarts forever."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    assert cli.main(["run", "--config", "c.yaml"]) == cli.EXIT_FATAL
    err = capsys.readouterr().err
    assert "fatal: cannot use the proxy the environment names: Using SOCKS proxy" in err


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("HTTPS_PROXY", "ftp://u:SECRETPW@127.0.0.1:21", "HTTPS_PROXY (or its lower-case form) is"),
        ("http_proxy", "http://127.0.0.1:99999", "HTTP_PROXY (or its lower-case form) has a port"),
        ("ALL_PROXY", "http://:8080", "ALL_PROXY (or its lower-case form) names no host"),
    ],
)
def test_a_proxy_the_environment_names_wrongly_is_fatal_and_said(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    said: str,
) -> None:
    """An unknown proxy scheme (a ValueError from httpx) or a port past 65535 (an
    OverflowError at the first connect) was a traceback and exit 70, restarted forever:
    exit 1 naming the variable, never its URL (which may hold a password)."""
    Path("c.yaml").write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    monkeypatch.setenv(variable, value)
    assert cli.main(["run", "--config", "c.yaml"]) == cli.EXIT_FATAL
    err = capsys.readouterr().err
    assert f"fatal: cannot use the proxy the environment names: {said}" in err
    assert "SECRETPW" not in err
    assert "Traceback" not in err


def test_a_latch_from_launch_is_kept_until_the_process_exits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The latch `launch.entry` installs stays after `run` returns: the exit's last steps
    (flush, logging shutdown) still come, and a SIGHUP then must not end the process by
    signal, which systemd would take for a clean stop of a daemon exiting 70."""
    before = signal.getsignal(signal.SIGHUP)
    latch = HangupLatch().install()
    try:
        with _metrics_port_taken():
            assert cli.main(["run", "--config", "c.yaml"], hangups=latch) == 70
        assert signal.getsignal(signal.SIGHUP) == latch._note
    finally:
        latch.restore()
    assert signal.getsignal(signal.SIGHUP) == before


_DEMO_HUNG_UP_WHILE_STARTING = """\
import os, signal, sys
from notifier import cli
from notifier.hangup_latch import HangupLatch

latch = HangupLatch().install()
os.kill(os.getpid(), signal.SIGHUP)  # before main: noted by the latch, nothing else
sys.exit(cli.main(["demo"], hangups=latch))
"""


def test_demo_stops_on_a_sighup_that_came_while_it_started(tmp_path: Path) -> None:
    """The demo runs until its terminal closes: a SIGHUP the launch latch held while the demo
    started (imports, the simulated venue) stops it too, instead of being forgotten in the
    latch and leaving the demo running with no terminal to stop it. In a child interpreter:
    a latch that failed would let the SIGHUP end the process running the test."""
    done = subprocess.run(
        [sys.executable, "-c", _DEMO_HUNG_UP_WHILE_STARTING],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == cli.EXIT_OK, (done.returncode, done.stderr)
    assert done.stderr.count("SIGHUP during start-up: handling it now") == 1
    stopping = "stopping (SIGHUP, and no config file to reload): feed closed"
    assert done.stderr.count(stopping) == 1


def test_config_errors_are_one_json_record_under_json_logging(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`journalctl -o cat | jq` must read a failed start too: its commonest cause included."""
    Path("bad.yaml").write_text(BAD_CONFIG, encoding="utf-8")
    assert cli.main(["check-config", "bad.yaml", "--log-format", "json"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["level"] == "critical"
    assert record["msg"] == BAD_CONFIG_ERRORS.rstrip("\n")


def test_every_command_takes_its_config_either_way(capsys: pytest.CaptureFixture[str]) -> None:
    """`check-config PATH` and `check-config --config PATH` alike (and `run`, `outbox`...);
    two different files is a usage error; an unknown option shows the command's own usage."""
    assert cli.main(["check-config", str(EXAMPLE)]) == 0
    assert cli.main(["check-config", "--config", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.count(": ok: 5 rules") == 2
    for argv, said in (
        (["check-config", "a.yaml", "--config", "b.yaml"], "two config files given"),
        (
            ["outbox", "c.yaml", "--bogus"],
            "notifier outbox: error: unrecognized arguments: --bogus",
        ),
    ):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == 2
        assert said in capsys.readouterr().err
    args = cli_args.parse(["outbox", "c.yaml"])[1]
    assert args.config == "c.yaml"


def test_watch_counts_a_save_that_lands_while_the_daemon_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`run --watch` compares against the file as it was before it was read, so a save that
    lands between that read and the watcher's first poll is reloaded, not taken as the base."""
    from notifier import service as service_module
    from notifier.watch import signature

    config = Path("c.yaml")
    config.write_text(RULES.format(url="json://127.0.0.1:9/"), encoding="utf-8")
    read_from = signature(config)
    load = cli._load

    def load_then_save(path: Path) -> object:
        settings = load(path)
        with path.open("a", encoding="utf-8") as saved:  # the user's save, just after the read
            saved.write("# edited\n")
        return settings

    watched = []

    class StartedService:
        def __init__(self, settings: object, **kwargs: object) -> None:
            watched.append(kwargs["watch"])

        async def run(self) -> None:
            return None

    monkeypatch.setattr(cli, "_load", load_then_save)
    monkeypatch.setattr(service_module, "Service", StartedService)
    assert cli.main(["run", "--config", "c.yaml", "--watch"]) == cli.EXIT_OK
    [watch] = watched
    assert watch.path == config
    assert watch.since == read_from != signature(config)  # the save is a change to reload


def test_test_command_shows_each_service_the_title_it_gets_under_html(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Under body_format html a title's values are escaped, except for a service that shows
    the title apart from the body (here json), which gets it as plain text: `test` shows both,
    each to its channel, and to which of its URLs where it has several."""
    Path("c.yaml").write_text(
        "delivery: {body_format: html}\n"
        "channels:\n"
        "  hook: json://127.0.0.1:9/\n"
        "  desk: [json://127.0.0.1:8/, tgram://123456789:abcdefg_hijklmnop/12345]\n"
        "rules:\n"
        "  - name: big\n"
        "    notify: [hook, desk]\n"
        '    title: "Big {side} on {market_title}"\n'
        '    body: "{quantity} @ {price}"\n',
        encoding="utf-8",
    )
    fill = json.loads(FLAT) | {"market_title": "S&P < 5000"}
    assert cli.main(["test", "c.yaml", "--fill", json.dumps(fill)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == (
        "    title: Big BUY on S&P < 5000 (to hook, desk json://127.0.0.1:8/?method=POST"
        "&optional=no)"
    )
    assert out[3].startswith(
        "    title: Big BUY on S&amp;P &lt; 5000 (to desk tgram://1...p/12345/?"
    )
    assert out[4] == "    body:  150 @ 0.4"


def test_test_command_shows_each_channel_the_message_in_its_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Channels of different formats get different text: `test` shows each body with the
    targets it goes to (the html channel's with the venue's "<" escaped)."""
    Path("c.yaml").write_text(
        "channels:\n"
        "  hook: json://127.0.0.1:9/\n"
        "  mail:\n"
        "    url: 'mailto://u:p@127.0.0.1:9?to=a@example.com&from=b@example.com'\n"
        "    body_format: html\n"
        "rules:\n"
        "  - name: big\n"
        "    notify: [hook, mail]\n"
        '    title: "Big {side}"\n'
        '    body: "{quantity} on {market_title}"\n',
        encoding="utf-8",
    )
    fill = json.loads(FLAT) | {"market_title": "S&P < 5000"}
    assert cli.main(["test", "c.yaml", "--fill", json.dumps(fill)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2:5] == [
        "    title: Big BUY",
        "    body:  150 on S&P < 5000 (to hook)",
        "    body:  150 on S&amp;P &lt; 5000 (to mail)",
    ]
    assert not any("newline" in line for line in out)  # one line: nothing runs together
    Path("c.yaml").write_text(
        Path("c.yaml").read_text(encoding="utf-8").replace("{quantity} on", "{quantity}\\non"),
        encoding="utf-8",
    )
    assert cli.main(["test", "c.yaml", "--fill", json.dumps(fill)]) == 0
    assert (
        "    note: in html a newline shows as a space: the lines above run together where the "
        "channel is html; write <br> for a line break" in capsys.readouterr().out.splitlines()
    )
