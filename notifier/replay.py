"""`notifier test`: show what given fills would do under a config, and optionally send it.

Fills go through the same normalizer, identity and `plan_alerts` as the daemon, so what this
prints is what `run` would render. A fill given twice (in any shape) is shown once, though
`run` takes two live frames of it, or two listings in one history read, for two equal partial
fills and alerts both (see recurrence.py); given here, they are more likely one fill pasted
twice. Shaped rules (group, throttle, active hours) depend on time and on the fills around
them: this shows the message of each fill alone, marked as such, then runs the shaped rules
over the fills given, by their own times (shaping_preview.py), to show what `run` would send
and when; `--send` sends what `run` would: each plain rule's message under it, and the shaped
rules' messages under "shaped", not each fill's own. A fill given without its market title is
judged without it, with a note where a `market_title` test could change the verdict (`run`
looks titles up).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, tzinfo
from typing import TextIO

from notifier.channels import ChannelSet
from notifier.conditions import tests_field
from notifier.events import Alert, Fill
from notifier.mentions import NO_MENTION
from notifier.miss_reasons import why_not
from notifier.normalize import (
    Rejected,
    decode_frame,
    decode_json,
    missing_fields,
    normalize_any,
    showable,
)
from notifier.plan import Planned, plan_alerts
from notifier.recurrence import Recurrences
from notifier.rules import Rule, RuleSet
from notifier.settings import Settings
from notifier.shaping_preview import Simulation, simulate
from notifier.shaping_stage import release_alerts
from notifier.wording import counted

EXIT_OK, EXIT_SEND_FAILED, EXIT_BAD_INPUT = 0, 1, 2
MAX_LINE_BYTES = 1 << 20
# What a dry run takes for a channel URL whose variable is unset: shown as plain text.
UNSET_URL = "console://unset"
MISSES_SHOWN = 10  # rules a fill that matched none is said to miss, each with why


def parse_fill(line: str | Mapping[str, object]) -> Fill | Rejected | None:
    """One JSON text (or object) as a fill: any feed shape or a plain fill object, optionally
    with a title."""
    obj = decode_frame(line, max_bytes=MAX_LINE_BYTES) if isinstance(line, str) else line
    if isinstance(obj, Rejected):
        return obj
    result = normalize_any(obj)
    if isinstance(result, Rejected) and result.reason == "missing_field":
        missing = missing_fields(obj)
        if len(missing) > 1:
            names = ", ".join(missing[:-1]) + " and " + missing[-1]
            result = Rejected("missing_field", f"{names} are missing")
    data = obj.get("data")
    # Where the shape keeps the fill's fields: the nested shape's `data`, else the top level.
    title = data.get("market_title") if isinstance(data, Mapping) else None
    if title is None:
        title = obj.get("market_title")
    if isinstance(result, Fill) and isinstance(title, str):
        return result.with_title(showable(title))  # as the daemon shows a venue's title
    return result


Given = list[tuple[int, str | Mapping[str, object]]]


def fills_given(lines: Iterable[tuple[int, str]]) -> tuple[Given, bool]:
    """The fills to show, numbered: a JSON text per line, or a JSON array of them given whole
    (a history page as the venue answers it, saved), numbered by their place in it; and
    whether it was such a page."""
    given: Given = list(lines)
    text = "".join(line for _, line in given if isinstance(line, str))
    if not text.lstrip().startswith("["):
        return given, False
    try:
        items = decode_json(text)
    except ValueError:
        return given, False  # not one array after all: each line says what is wrong with it
    if not isinstance(items, list):
        return given, False
    page: Given = [
        (n, item if isinstance(item, Mapping) else json.dumps(item, default=str))
        for n, item in enumerate(items, 1)
    ]
    return page, True


def _parsed(given: Given, *, page: bool) -> list[tuple[int, Fill | Rejected | None]]:
    """Each fill given, parsed; a page's equal items numbered as `run` numbers one history
    read's (two equal partial fills of an order are two fills, each alerted)."""
    parsed = [(number, parse_fill(line)) for number, line in given]
    if not page:
        return parsed
    fills = [fill for _, fill in parsed if isinstance(fill, Fill)]
    numbered = iter(Recurrences().number_page(fills))
    return [(n, next(numbered) if isinstance(fill, Fill) else fill) for n, fill in parsed]


async def replay(
    settings: Settings, lines: Iterable[tuple[int, str]], *, send: bool, out: TextIO
) -> int:
    """Print matches and rendered messages for each fill; with `send`, deliver them too."""
    given, page = fills_given(lines)
    channels = ChannelSet.build(settings.channels, delivery=settings.delivery)
    for name, channel in settings.channels.items():
        if UNSET_URL in channel.urls:
            print(
                f"note: channel {name}: its URL names a variable that is not set here, so its "
                "messages are shown as a plain-text service gets them (--send needs it set)",
                file=out,
            )
    status = EXIT_OK
    seen: dict[str, int] = {}  # fill identity -> the number it was first given as
    fills: list[Fill] = []
    for number, parsed in _parsed(given, page=page):  # by the file's lines, or a page's items
        if isinstance(parsed, Rejected):
            print(f"fill {number}: rejected ({parsed.reason}): {parsed.detail}", file=out)
            status = EXIT_BAD_INPUT
            continue
        if parsed is None:
            print(f"fill {number}: not a fill message (ignored by the feed too)", file=out)
            continue
        first = seen.setdefault(parsed.key, number)
        if first != number:
            print(
                f"fill {number}: same order, time, quantity and price as fill {first}: shown "
                "once; run alerts it again if it comes as a second live frame or twice in one "
                "history read (equal partial fills)",
                file=out,
            )
            continue
        fills.append(parsed)
        planned = plan_alerts(parsed, rules=settings.rules, targets=channels)
        sender = _Sender(channels, out) if send else None
        await _describe(number, planned, channels, out, rules=settings.rules, sender=sender)
        if parsed.status is None and any(
            rule.enabled and tests_field(rule.condition, "status") for rule in settings.rules.rules
        ):
            print(_NO_STATUS, file=out)
        if sender is not None and not sender.all_ok:
            status = max(status, EXIT_SEND_FAILED)
    sender = _Sender(channels, out) if send else None
    await _shaped(simulate(settings.rules, fills), channels, out, sender=sender)
    if sender is not None and not sender.all_ok:
        status = max(status, EXIT_SEND_FAILED)
    return status


async def _shaped(
    simulation: Simulation, channels: ChannelSet, out: TextIO, *, sender: _Sender | None
) -> None:
    """The shaped rules' messages for the fills given, each at the time run would send it;
    with `sender`, sent now (what `run` sends for these rules, not each fill's own)."""
    if not simulation.messages and not simulation.dropped:
        return
    print("shaped: what run would send for these fills, by their own times", file=out)
    for shaped in simulation.messages:
        rule, release = shaped.rule, shaped.release
        zone = _zone_shown(rule)
        at = shaped.at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")
        if shaped.at.astimezone(zone).utcoffset():  # the order of the lines, in one zone
            at += shaped.at.astimezone(UTC).strftime(" (%H:%M UTC)")
        fills = counted(release.count, "fill")
        print(f"  {at}: rule {rule.name} -> {', '.join(rule.notify)} ({fills})", file=out)
        alerts = release_alerts(rule, release, channels)
        _message(alerts, channels, out)
        if sender is not None:
            await sender.send(alerts)
    for name, count in simulation.dropped.items():
        print(f"  rule {name}: {counted(count, 'fill')} dropped outside its active hours", file=out)


# The feed's flat `fill` shape carries no status (the execution shapes do): a rule on status
# judges such a fill as having none, which a trader reading "partial fills only" may not expect.
_NO_STATUS = (
    "  note: this fill has no status (the feed's flat `fill` shape sends none): a `status`"
    " test does not match it, and `not: {status: ...}` does"
)


async def _describe(
    number: int,
    planned: Planned,
    channels: ChannelSet,
    out: TextIO,
    *,
    rules: RuleSet,
    sender: _Sender | None,
) -> None:
    fill = planned.fill
    # The venue's text as messages show it (no bidi control reversing the terminal line) and
    # decimals in plain digits ("1000", never "1E+3").
    print(
        f"fill {number}: {fill.side} {fill.quantity:f} {showable(fill.outcome)} @ "
        f"{fill.price:f} on {showable(fill.market_title or fill.market_id)} "
        f"(order {showable(fill.order_id)})",
        file=out,
    )
    if not planned.rules:
        print("  no rule matches", file=out)
        _misses(fill, rules, out, matched=())
    if rules.needs_title(fill):
        print(
            "  note: a market_title test could change this verdict; run looks the title up "
            '(and waits for it), here give it as "market_title" in the fill',
            file=out,
        )
    for rule in planned.rules:
        print(f"  rule {rule.name} -> {', '.join(rule.notify)}{_shaped_note(rule)}", file=out)
        alerts = [a for a in planned.alerts if a.rule == rule.name]
        _message(alerts, channels, out)
        if sender is not None and rule.shaping is None:
            await sender.send(alerts)
        elif sender is not None:
            print("    not sent: run sends this rule's message under 'shaped' below", file=out)
    if planned.rules and len(planned.rules) < sum(rule.enabled for rule in rules.rules):
        print("  not matched:", file=out)
        _misses(fill, rules, out, matched=planned.rules)


def _misses(fill: Fill, rules: RuleSet, out: TextIO, *, matched: tuple[Rule, ...]) -> None:
    """Why each enabled rule not `matched` passed the fill over (the first MISSES_SHOWN): "no
    alerts arrive" answered from the config alone, also beside a catch-all summary's match."""
    missed = [rule for rule in rules.rules if rule.enabled and rule not in matched]
    stopped_by = next((rule for rule in matched if rule.stop), None)
    for rule in missed[:MISSES_SHOWN]:
        if not rule.condition.matches(fill):
            why = why_not(rule.condition, fill)
        elif stopped_by is not None:
            why = f"not reached: rule {stopped_by.name} matched first and has stop: true"
        else:  # cannot be: match and the conditions agree
            why = "its condition holds, yet it was not reached"
        print(f"  rule {rule.name}: {why}", file=out)
    if len(missed) > MISSES_SHOWN:
        print(f"  ... and {counted(len(missed) - MISSES_SHOWN, 'more rule')}", file=out)
    disabled = len(rules.rules) - sum(rule.enabled for rule in rules.rules)
    if disabled:
        print(f"  ({counted(disabled, 'rule')} with enabled: false not judged)", file=out)


def _message(alerts: list[Alert], channels: ChannelSet, out: TextIO) -> None:
    """One rule's message: its title and body per target, where they differ (each channel
    writes its own format; in html a service that shows the title apart gets it as text)."""
    if not alerts:
        return
    titles: dict[str, list[str]] = {}  # title -> the targets that get it
    bodies: dict[str, list[str]] = {}
    for each in alerts:
        # A channel by its name; one of several URLs of a channel by its URL too.
        shown = each.channel
        if len(channels.targets(each.channel)) > 1:
            shown += f" {channels.display(each.target)}"
        title = channels.title_for(each.target, each.title, each.body_format)
        titles.setdefault(title, []).append(shown)
        bodies.setdefault(each.body, []).append(shown)
    for title, where in titles.items():
        to = f" (to {', '.join(where)})" if len(titles) > 1 else ""
        print(f"    title: {title}{to}", file=out)
    for body, where in bodies.items():
        to = f" (to {', '.join(where)})" if len(bodies) > 1 else ""
        for number, body_line in enumerate(body.splitlines() or [""]):
            print(f"    body:  {body_line}{'' if number else to}", file=out)
    if any(alert.body_format == "html" and "\n" in alert.body for alert in alerts):
        print(
            "    note: in html a newline shows as a space: the lines above run together "
            "where the channel is html; write <br> for a line break",
            file=out,
        )
    if any(NO_MENTION in alert.title or NO_MENTION in alert.body for alert in alerts):
        print(
            "    note: zero-width spaces (U+200B) keep the @mentions and links in the "
            "fill's text from pinging anyone or linking anywhere",
            file=out,
        )


def _zone_shown(rule: Rule) -> tzinfo:
    """Where a shaped message's time is shown: the rule's zone, else the one its shaping is
    timed in (a group's `at` times, its active hours), else UTC."""
    shaping = rule.shaping
    if rule.tz is not None or shaping is None:
        return rule.tz or UTC
    if shaping.group is not None and shaping.group.at:
        return shaping.group.tz
    return shaping.active.tz if shaping.active is not None else UTC


def _shaped_note(rule: Rule) -> str:
    """What `run` does differently for a shaped rule, in a few words; "" for a plain rule."""
    shaping = rule.shaping
    if shaping is None:
        return ""
    kinds = [
        kind
        for kind, spec in (
            ("grouped", shaping.group),
            ("throttled", shaping.throttle),
            ("active hours", shaping.active),
        )
        if spec is not None
    ]
    return f" ({', '.join(kinds)}: this fill alone; what run sends is under 'shaped' below)"


class _Sender:
    """`--send`: delivers a rule's alerts right under its message, saying how each went."""

    def __init__(self, channels: ChannelSet, out: TextIO) -> None:
        self._channels = channels
        self._out = out
        self.all_ok = True

    async def send(self, alerts: Iterable[Alert]) -> None:
        for alert in alerts:
            result = await self._channels.send(
                alert.target,
                alert.title,
                alert.body,
                body_format=alert.body_format,
                diagnose=True,  # a failure says why, as send-test's do
            )
            shown = self._channels.display(alert.target)
            verdict = "sent" if result.ok else f"FAILED: {result.error}"
            print(f"    {alert.channel} {shown}: {verdict}", file=self._out)
            self.all_ok = self.all_ok and result.ok
