"""The `rules:` section: located YAML into compiled `Rule`s, every problem recorded.

`RULE_KEYS` is the one table of per-rule keys: a parser per key. Keys that are not fields of
`Rule` (say a future `group` or `throttle`) land in `Rule.extras`, so adding one is one entry.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from notifier.conditions import (
    DECIMAL_FIELDS,
    MATCH_ALL,
    STRING_FIELDS,
    AllOf,
    AnyOf,
    Bounds,
    Condition,
    FieldMatch,
    Not,
)
from notifier.configvalues import (
    CHANNEL_NAME,
    as_bool,
    as_decimal,
    as_nonempty_str,
    as_str_list,
    mapping,
    suggest,
)
from notifier.digests import GROUP_FIELDS, GROUP_SAMPLES
from notifier.render import (
    DEFAULT_BODY,
    DEFAULT_TITLE,
    Escape,
    Template,
    TemplateError,
    line_break,
)
from notifier.rules import Rule
from notifier.shapingconfig import (
    DIGEST_TITLE,
    SHAPING_KEYS,
    combine,
    digest_body,
    digest_field_message,
    parse_active_node,
    parse_group_node,
    parse_line,
    parse_throttle_node,
)
from notifier.yamltree import Node, Problems, Scalar, YMap, YSeq, describe

WHEN_KEYS = (*STRING_FIELDS, *DECIMAL_FIELDS, "any", "all", "not")
SIDES = ("BUY", "SELL")


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What a rule key's parser may need besides its node: where problems go, known channels."""

    problems: Problems
    channels: Collection[str]
    shaped: bool = False  # the rule has group/throttle/active: its templates get digest fields
    escape: Escape | None = None  # field values escaped for delivery.body_format (html)


RuleKeyParser = Callable[[Node, str, RuleContext], object | None]


def _misplaced(key: str) -> str:
    """The advice for a rule key found among a rule's conditions."""
    if key == "title":  # `when: {title: "*bitcoin*"}` means the market's title, not the alert's
        return (
            "'title' is the alert's title template, a key of the rule: to match the market's "
            "title, write `market_title:`"
        )
    return f"{key!r} belongs to the rule, not to its conditions: indent it as `when:` is"


def parse_condition(node: Node, path: str, ctx: RuleContext) -> Condition | None:
    """A `when` mapping (or one nested under any/all/not); null or {} matches every fill."""
    problems = ctx.problems
    misplaced = [key for key in RULE_KEYS if key not in WHEN_KEYS]
    when = mapping(node, path, problems, WHEN_KEYS, skip=misplaced)
    if when is None:
        return None
    for key in when:
        if key in misplaced:  # `notify:` indented under `when:`: the YAML nests it there
            problems.add(when.key_lines[key], f"{path}.{key}", _misplaced(key))
    parts: list[Condition] = []
    ok = all(key in WHEN_KEYS for key in when)
    for key, value in when.items():
        child = f"{path}.{key}"
        part: Condition | None = None
        if key == "side":
            part = _side(value, child, problems)
        elif key in STRING_FIELDS:
            values = _strings(key, value, child, problems)
            part = None if values is None else FieldMatch(key, values)
        elif key in DECIMAL_FIELDS:
            part = _bounds(key, value, child, problems)
        elif key in ("any", "all"):
            part = _group(key, value, child, ctx)
        elif key == "not":
            if not value or _is_null(value):
                # `not` of nothing matches no fill: the rule could never alert. Most often
                # the next key was meant to be indented under it.
                message = "needs at least one condition (indent the ones it negates under it)"
                problems.add(when.key_lines[key], child, message)
                ok = False
                continue
            inner = parse_condition(value, child, ctx)
            part = None if inner is None else Not(inner)
        else:
            continue
        if part is None:
            ok = False
        else:
            parts.append(part)
    if not ok:
        return None
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


# Fields whose values never hold a comma: `market: 0xabc, 0xdef` meant a list, and as one
# string it would silently match nothing.
_NO_COMMA = frozenset({"market", "order_id", "status"})


def _strings(key: str, node: Node, path: str, problems: Problems) -> tuple[str, ...] | None:
    values = as_str_list(node, path, problems)
    if values is None:
        return None
    ok = True
    for text, item, item_path in values:
        if key in _NO_COMMA and "," in text:
            first = text.split(",")[0].strip()
            problems.add(
                item.line,
                item_path,
                f"holds a comma: to match any of several, write a list: [{first}, ...]",
            )
            ok = False
    return tuple(v for v, _, _ in values) if ok else None


def _side(node: Node, path: str, problems: Problems) -> Condition | None:
    values = as_str_list(node, path, problems)
    if values is None:
        return None
    sides: list[str] = []
    for text, item, item_path in values:
        if text.upper() in SIDES:
            sides.append(text.upper())
        else:
            hint = suggest(text.upper(), SIDES)
            problems.add(item.line, item_path, f"must be BUY or SELL, got {text!r}{hint}")
    return FieldMatch("side", tuple(sides)) if len(sides) == len(values) else None


def _bounds(key: str, node: Node, path: str, problems: Problems) -> Condition | None:
    if not isinstance(node, YMap):
        got = describe(node)
        problems.add(node.line, path, f"must be a mapping like {{min: 1, max: 2}}, got {got}")
        return None
    if mapping(node, path, problems, ("min", "max")) is None or set(node) - {"min", "max"}:
        return None
    if not node:
        problems.add(node.line, path, "needs min, max or both")
        return None
    low = as_decimal(node["min"], f"{path}.min", problems) if "min" in node else None
    high = as_decimal(node["max"], f"{path}.max", problems) if "max" in node else None
    if ("min" in node and low is None) or ("max" in node and high is None):
        return None
    ends_said = problems.silenced(f"{path}.min") or problems.silenced(f"{path}.max")
    if low is not None and high is not None and low > high and not ends_said:
        problems.add(node.line, path, f"min {low} is greater than max {high}")
        return None
    wrong = False
    for end, value in (("min", low), ("max", high)):
        problem = None if value is None else _out_of_range(key, end, value)
        if problem is not None:
            problems.add(node[end].line, f"{path}.{end}", problem)
            wrong = True
    if wrong:
        return None
    return Bounds(key, low, high)


def _out_of_range(key: str, end: str, value: Decimal) -> str | None:
    """A bound no fill can reach: a price is a probability, a quantity or notional is never
    negative, so such a rule would match nothing."""
    if key == "price" and not 0 <= value <= 1:
        return f"must be between 0 and 1 (a price of 65¢ is 0.65), got {value}"
    if value < 0:
        return f"must be 0 or more: no fill has a negative {key}, got {value}"
    if key == "quantity" and end == "max" and not value:
        return "must be above 0: every fill's quantity is, so this rule would match none"
    return None


def _is_null(node: Node) -> bool:
    return isinstance(node, Scalar) and node.kind == "null"


def _group(key: str, node: Node, path: str, ctx: RuleContext) -> Condition | None:
    if not isinstance(node, YSeq) or not node:
        got = describe(node) if not isinstance(node, YSeq) else "an empty list"
        ctx.problems.add(node.line, path, f"must be a list of conditions, got {got}")
        return None
    empty = [i for i, item in enumerate(node) if not item or _is_null(item)]
    for i in empty:
        # An empty item matches every fill: a stray `-` made the whole `any` match every fill.
        message = "is an empty condition, which matches every fill (a stray `-`?)"
        ctx.problems.add(node[i].line, f"{path}[{i}]", message)
    parts = [parse_condition(item, f"{path}[{i}]", ctx) for i, item in enumerate(node)]
    if empty or any(p is None for p in parts):
        return None
    conditions = tuple(p for p in parts if p is not None)
    return AnyOf(conditions) if key == "any" else AllOf(conditions)


def _notify(node: Node, path: str, ctx: RuleContext) -> tuple[str, ...] | None:
    values = as_str_list(node, path, ctx.problems)
    if values is None:
        return None
    names: list[str] = []
    for text, item, item_path in values:
        if text in ctx.channels:
            if text not in names:
                names.append(text)
            continue
        ctx.problems.add(item.line, item_path, unknown_channel(text, ctx.channels))
    return tuple(names) if len(names) == len({v for v, _, _ in values}) else None


_TEMPLATE_PATH = re.compile(r"rules\[\d+\]\.(?:title|body|line|group\.line)")
_REFERENCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def template_placeholder(path: str, reference: str) -> bool:
    """Whether `${reference}` at `path` is "$" before a template placeholder, not a variable.

    "Bought at ${price}" is the natural way to write a dollar sign before {price}; read as an
    environment variable, it failed to load, or (with a `price` variable set) showed a wrong
    price in every alert.
    """
    name = _REFERENCE_NAME.match(reference)
    return (
        name is not None
        and name.group(0) in GROUP_FIELDS
        and _TEMPLATE_PATH.fullmatch(path) is not None
    )


def unknown_channel(text: str, channels: Collection[str]) -> str:
    """The message for a name that is not a channel; a pasted URL or token (a secret) is not
    echoed: only text that could be a channel name is."""
    if "://" in text or "@" in text:
        return "unknown channel: this looks like a URL; define it under channels: and use its name"
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > 1 and all(CHANNEL_NAME.fullmatch(part) for part in parts):
        return f"unknown channel {text!r}: several channels are a list, [{', '.join(parts)}]"
    if not CHANNEL_NAME.fullmatch(text):
        return (
            "unknown channel: not a channel name (a letter, then letters, digits, _ and -); "
            "a URL or token belongs under channels:, named there"
        )
    hint = suggest(text, channels) if channels else " (no channels are defined)"
    return f"unknown channel {text!r}{hint}"


def _template(node: Node, path: str, ctx: RuleContext) -> Template | None:
    text = as_nonempty_str(node, path, ctx.problems)
    if text is None:
        return None
    try:
        if ctx.shaped:
            return Template.parse(text, fields=GROUP_FIELDS, samples=GROUP_SAMPLES)
        return Template.parse(text)
    except TemplateError as exc:
        digest = None if ctx.shaped else digest_field_message(text)
        ctx.problems.add(node.line, path, digest or str(exc))
        return None


def _name(node: Node, path: str, ctx: RuleContext) -> str | None:
    text = as_nonempty_str(node, path, ctx.problems)
    if text is not None and (text != text.strip() or not text.isprintable()):
        ctx.problems.add(node.line, path, "must be one line without leading or trailing spaces")
        return None
    return text


RULE_KEYS: dict[str, RuleKeyParser] = {
    "name": _name,
    "when": parse_condition,
    "notify": _notify,
    "title": _template,
    "body": _template,
    "enabled": lambda node, path, ctx: as_bool(node, path, ctx.problems),
    "stop": lambda node, path, ctx: as_bool(node, path, ctx.problems),
    "group": lambda node, path, ctx: parse_group_node(node, path, ctx.problems),
    "throttle": lambda node, path, ctx: parse_throttle_node(node, path, ctx.problems),
    "active": lambda node, path, ctx: parse_active_node(node, path, ctx.problems),
    "line": lambda node, path, ctx: parse_line(node, path, ctx.problems),
}
REQUIRED_RULE_KEYS = ("name", "notify")
# Rule keys stored under another Rule field name; keys not in Rule's fields go to `extras`.
_FIELD_OF = {"when": "condition"}
_RULE_FIELDS = frozenset({"name", "condition", "notify", "title", "body", "enabled", "stop"})


def parse_rules(node: Node | None, path: str, ctx: RuleContext) -> list[Rule]:
    """Every rule that parsed cleanly (problems record the rest); names must be unique."""
    if node is None or (isinstance(node, Scalar) and node.kind == "null"):
        return []
    if not isinstance(node, YSeq):
        ctx.problems.add(node.line, path, f"must be a list of rules, got {describe(node)}")
        return []
    rules: list[Rule] = []
    first_line: dict[str, int] = {}
    for i, item in enumerate(node):
        rule = _rule(item, f"{path}[{i}]", ctx)
        name = item.get("name") if isinstance(item, YMap) else None
        if isinstance(name, Scalar) and name.text in first_line:
            first = first_line[name.text]
            message = f"duplicate rule name {name.text!r} (first at line {first})"
            ctx.problems.add(name.line, f"{path}[{i}].name", message)
            continue
        if isinstance(name, Scalar):
            first_line[name.text] = name.line
        if rule is not None:
            rules.append(rule)
    return rules


def _rule(node: Node, path: str, ctx: RuleContext) -> Rule | None:
    if isinstance(node, YMap):
        for key in node:
            if key not in RULE_KEYS and key in WHEN_KEYS:
                message = f"unknown rule key {key!r} (a condition: put it under when:)"
                ctx.problems.add(node.key_lines[key], f"{path}.{key}", message)
    raw = mapping(node, path, ctx.problems, RULE_KEYS, skip=WHEN_KEYS)
    if raw is None:
        return None
    ok = all(key in RULE_KEYS for key in raw)
    for key in REQUIRED_RULE_KEYS:
        if key not in raw:
            ctx.problems.add(raw.line, path, f"missing required key {key!r}")
            ok = False
    shaped = any(key in raw for key in SHAPING_KEYS)
    if shaped:
        ctx = dataclasses.replace(ctx, shaped=True)
    elif "line" in raw:
        message = "is used only by a rule with group, throttle or active"
        ctx.problems.add(raw.key_lines["line"], f"{path}.line", message)
        ok = False
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in RULE_KEYS:
            parsed = RULE_KEYS[key](value, f"{path}.{key}", ctx)
            if parsed is None:
                ok = False
            values[_FIELD_OF.get(key, key)] = parsed
    if not ok:
        return None
    fields = {k: v for k, v in values.items() if k in _RULE_FIELDS}
    extras = {k: v for k, v in values.items() if k not in _RULE_FIELDS}
    fields.setdefault("condition", MATCH_ALL)
    if shaped:
        before = len(ctx.problems.items)
        combined = combine(values, raw, path, ctx.problems)
        if len(ctx.problems.items) > before:
            return None
        if combined is not None:
            extras["shaping"], extras["line"] = combined
        fields.setdefault("title", Template(DIGEST_TITLE))
        fields.setdefault("body", Template(digest_body(line_break(ctx.escape))))
    fields.setdefault("title", Template(DEFAULT_TITLE))
    fields.setdefault("body", Template(DEFAULT_BODY))
    if ctx.escape is not None:
        extras["escape"] = ctx.escape
    return Rule(**fields, extras=extras)
