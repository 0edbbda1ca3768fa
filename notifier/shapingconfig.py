"""The rule keys `group`, `throttle`, `active` and `line`: located YAML into shaping specs.

The spec parsers live in `shapingspecs.py` and `windows.py` and work on plain values; this module
converts the located YAML, maps each `SpecError.path` (`by[1]`, `hours`) back onto the config path
and line (a SpecErrors carries every problem of one mapping: each becomes its own config problem),
and combines a rule's specs into one `RuleShaping` stored in `Rule.shaping`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from datetime import date, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from notifier.config_problems import Problems
from notifier.digests import AGGREGATE_FIELDS
from notifier.render import FILL_FIELDS, Template, TemplateError
from notifier.shapingspecs import (
    GroupSpec,
    RuleShaping,
    SpecError,
    ThrottleSpec,
    parse_group,
    parse_throttle,
)
from notifier.walltimes import resolve_wall_time
from notifier.windows import ActiveSpec, parse_active
from notifier.yamltree import Node, Scalar, YMap, YSeq, describe

SHAPING_KEYS = ("group", "throttle", "active")
# Seven days of winter and seven of summer, every weekday in each: daylight saving moves one
# zone's times against another's.
_WEEKS = [[date(2026, month, 5) + timedelta(days=n) for n in range(7)] for month in (1, 7)]
# Templates of a shaped rule when the config gives none: a digest must say what it folded.
DIGEST_BODY = "{count} fills on {market_title}: {total_quantity} @ avg {vwap:.4f}\n{lines}"
DIGEST_TITLE = "Fills on {market_title} ({count})"
DEFAULT_LINE = "{side} {quantity} {outcome} @ {price} #{order_id}"
# The defaults for a digest whose fills differ in market, side or outcome (what quiet hours
# hold overnight): sums and an average price across them mean nothing, and a line that does
# not name its market cannot be placed.
MIXED_DIGEST_BODY = "{count} fills on {market_title}\n{lines}"
MIXED_LINE = "{side} {quantity} {outcome} @ {price} on {market_title} #{order_id}"


def digest_body(newline: str, *, mixed: bool = False) -> str:
    """The default digest body (`mixed`: for fills that differ in market, side or outcome),
    its line ending the message format's (render.line_break)."""
    return (MIXED_DIGEST_BODY if mixed else DIGEST_BODY).replace("\n", newline)


_EXAMPLES = {
    "group": '{by: [market_id], wait: 30s} or {at: "17:00"}',
    "throttle": "{by: [market_id], every: 10m}",
    "active": '{hours: "08:00-22:00", tz: Europe/London}',
}
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
S = TypeVar("S")


def plain(node: Node) -> object:
    """A located node as plain values for the spec parsers (scalars as their text)."""
    if isinstance(node, YMap):
        return {key: plain(value) for key, value in node.items()}
    if isinstance(node, YSeq):
        return [plain(item) for item in node]
    if node.kind == "null":
        return None
    if node.kind == "bool":
        return node.boolean
    return node.text


def line_at(node: Node, spec_path: str) -> int:
    """The line of the node at `spec_path` (relative, like `by[1]`) or its nearest parent."""
    line = node.line
    current: Node | None = node
    for key, index in _STEP.findall(spec_path):
        if key and isinstance(current, YMap) and key in current:
            line = current.key_lines.get(key, line)
            current = current[key]
        elif index and isinstance(current, YSeq) and int(index) < len(current):
            current = current[int(index)]
            line = current.line
        else:
            break
    return line


def _spec(what: str, parse: Callable[[object], S]) -> Callable[[Node, str, Problems], S | None]:
    def parser(node: Node, path: str, problems: Problems) -> S | None:
        if not isinstance(node, YMap):
            message = f"must be a mapping like {_EXAMPLES[what]}, got {describe(node)}"
            problems.add(node.line, path, message)
            return None
        try:
            return parse(plain(node))
        except SpecError as exc:
            for error in exc.errors:  # every problem of the mapping, each at its own line
                where = f"{path}.{error.path}" if error.path else path
                problems.add(line_at(node, error.path), where, error.message)
            return None

    return parser


parse_group_node = _spec("group", parse_group)
parse_throttle_node = _spec("throttle", parse_throttle)
parse_active_node = _spec("active", parse_active)


def parse_line(node: Node, path: str, problems: Problems) -> Template | None:
    """A `line` template: one fill of a digest, so only fill fields."""
    if not isinstance(node, Scalar) or node.kind == "null" or not node.text.strip():
        problems.add(node.line, path, f"must be a template string, got {describe(node)}")
        return None
    return _fill_template(node.text, node.line, path, problems)


def _fill_template(text: str, line: int, path: str, problems: Problems) -> Template | None:
    try:
        return Template.parse(text, fields=FILL_FIELDS)
    except TemplateError as exc:
        digest = sorted(_digest_fields(text))
        if digest:
            message = f"{{{digest[0]}}} is a digest field; a line shows one fill (fill fields only)"
            problems.add(line, path, message)
        else:
            problems.add(line, path, str(exc))
        return None


def _digest_fields(text: str) -> frozenset[str]:
    try:
        return Template(text).fields & frozenset(AGGREGATE_FIELDS)
    except TemplateError:
        return frozenset()


def digest_field_message(text: str) -> str | None:
    """For a plain rule's template using a digest field: the message saying how to get it."""
    digest = sorted(_digest_fields(text))
    if not digest:
        return None
    return f"{{{digest[0]}}} is a digest field: only a rule with group, throttle or active has it"


def combine(
    values: Mapping[str, object], raw: YMap, path: str, problems: Problems
) -> tuple[RuleShaping, Template] | None:
    """One rule's RuleShaping and line template from its parsed keys; None after a problem."""
    group, throttle, active = (values.get(k) for k in SHAPING_KEYS)
    if not isinstance(group, GroupSpec | None) or not isinstance(throttle, ThrottleSpec | None):
        return None  # not what the key parsers give (they failed: a problem is recorded)
    if not isinstance(active, ActiveSpec | None):
        return None
    line = values.get("line")
    if group is not None and group.line is not None:
        if line is not None:
            problems.add(raw.key_lines["line"], f"{path}.line", "given twice: here and group.line")
            return None
        node = raw["group"]
        assert isinstance(node, YMap)
        line = _fill_template(group.line, line_at(node, "line"), f"{path}.group.line", problems)
        if line is None:
            return None
    try:
        shaping = RuleShaping(group=group, throttle=throttle, active=active)
    except SpecError as exc:
        for error in exc.errors:
            problems.add(line_at(raw, error.path), f"{path}.{error.path}", error.message)
        return None
    template = line if isinstance(line, Template) else Template(DEFAULT_LINE)
    return shaping, template


def one_zone(values: dict[str, Any], raw: YMap) -> None:
    """One rule, one zone: `tz: America/New_York` with `active: {hours: 09:30-16:00}` means
    New York's hours, not UTC's, and with `group: {at: "16:00"}` New York's close. A group's
    `at` times without a zone of their own or the rule's take its active hours' zone."""
    zone_of_rule, active, group = values.get("tz"), values.get("active"), values.get("group")
    if (
        isinstance(zone_of_rule, ZoneInfo)
        and isinstance(active, ActiveSpec)
        and _unzoned(raw, "active")
    ):
        values["active"] = active = dataclasses.replace(active, tz=zone_of_rule)
    if not isinstance(group, GroupSpec) or not group.at or not _unzoned(raw, "group"):
        return
    if isinstance(zone_of_rule, ZoneInfo):
        values["group"] = dataclasses.replace(group, tz=zone_of_rule)
    elif isinstance(active, ActiveSpec):
        values["group"] = dataclasses.replace(group, tz=active.tz)


def note_closed_summaries(
    values: Mapping[str, Any], raw: YMap, path: str, problems: Problems
) -> None:
    """A note for each `at` time at which the rule's active hours (`hold`) are never open:
    that summary waits for the next opening, folded into what arrived after closing."""
    group, active = values.get("group"), values.get("active")
    if not isinstance(group, GroupSpec) or not isinstance(active, ActiveSpec):
        return
    if active.outside != "hold":
        return
    node = raw.get("group")
    line = node.key_lines.get("at", node.line) if isinstance(node, YMap) else raw.line
    for when in group.at:
        closed = [not _ever_open(active, group, when, week) for week in _WEEKS]
        if any(closed):
            part = "" if all(closed) else " for part of the year (daylight saving)"
            problems.note(
                line,
                f"{path}.group.at",
                f"{when:%H:%M} ({group.tz}) is outside the rule's active hours{part}: that "
                "summary waits for them to open, folded into what they hold then",
            )


def _ever_open(active: ActiveSpec, group: GroupSpec, when: time, week: list[date]) -> bool:
    """Whether the hours are open at `when` on some day of `week`: at the time itself (an
    opening) or just before it (a close), as a release is judged."""
    instants = (resolve_wall_time(day, when, group.tz) for day in week)
    return any(active.holds_until(at) for at in instants)


def _unzoned(raw: YMap, key: str) -> bool:
    """Whether the rule's `key` spec (active, group) names no zone of its own."""
    node = raw.get(key)
    return isinstance(node, YMap) and "tz" not in node
