"""The `rules:` section: located YAML into compiled `Rule`s, every problem recorded.

`RULE_KEYS` is the one table of per-rule keys: a parser per key. `group`, `throttle`,
`active` and `line` are combined into the rule's shaping (shapingconfig.py); the others are
fields of `Rule` (`when` as its `condition`). A rule's `when:` is read by `whenconfig.py`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from notifier.conditions import MATCH_ALL, Condition
from notifier.config_problems import Problems
from notifier.configvalues import (
    CHANNEL_NAME,
    as_bool,
    as_nonempty_str,
    as_str_list,
    mapping,
)
from notifier.digests import GROUP_FIELDS, GROUP_SAMPLES
from notifier.render import (
    DEFAULT_BODY,
    DEFAULT_TITLE,
    Template,
    TemplateError,
)
from notifier.rules import Rule
from notifier.shapingconfig import (
    DIGEST_BODY,
    DIGEST_TITLE,
    SHAPING_KEYS,
    combine,
    digest_field_message,
    note_closed_summaries,
    one_zone,
    parse_active_node,
    parse_group_node,
    parse_line,
    parse_throttle_node,
)
from notifier.whenconfig import WHEN_KEYS, parse_condition
from notifier.yamltree import Node, Scalar, YMap, YSeq, describe
from notifier.zonenames import zone


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What a rule key's parser may need besides its node: where problems go, known channels."""

    problems: Problems
    channels: Collection[str]
    shaped: bool = False  # the rule has group/throttle/active: its templates get digest fields


RuleKeyParser = Callable[[Node, str, RuleContext], object | None]


def _when(node: Node, path: str, ctx: RuleContext) -> Condition | None:
    return parse_condition(node, path, ctx.problems, RULE_KEYS)


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


def channel_shown(text: str) -> str:
    """A name given as a channel's, as a message may quote it: only if it could be one (a URL
    or token pasted in its place is a secret)."""
    if CHANNEL_NAME.fullmatch(text):
        return repr(text)
    return "that (not shown: no channel name, and a URL or token belongs under channels:)"


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
    if not channels:
        return f"unknown channel {text!r} (no channels are defined)"
    close = difflib.get_close_matches(text, list(channels), n=1)  # as suggest() finds it
    meant = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown channel {text!r} ({meant}channels defined: {_listed(channels)})"


_SHOWN_CHANNELS = 12  # the most channel names one message lists


def _listed(channels: Collection[str]) -> str:
    """The channels there are, in config order: a name mistyped past a did-you-mean (`slack`
    for `desk`) is answered by what the file does define."""
    names = list(channels)
    more = len(names) - _SHOWN_CHANNELS
    return ", ".join(names[:_SHOWN_CHANNELS]) + (f" and {more} more" if more > 0 else "")


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


def _tz(node: Node, path: str, ctx: RuleContext) -> ZoneInfo | None:
    """The zone the rule's messages show times in (`filled_at`, a digest's first and last)."""
    name = as_nonempty_str(node, path, ctx.problems)
    if name is None:
        return None
    try:
        return zone(name)
    except ValueError as exc:
        ctx.problems.add(node.line, path, str(exc))
        return None


RULE_KEYS: dict[str, RuleKeyParser] = {
    "name": _name,
    "when": _when,
    "notify": _notify,
    "title": _template,
    "body": _template,
    "enabled": lambda node, path, ctx: as_bool(node, path, ctx.problems),
    "stop": lambda node, path, ctx: as_bool(node, path, ctx.problems),
    "group": lambda node, path, ctx: parse_group_node(node, path, ctx.problems),
    "throttle": lambda node, path, ctx: parse_throttle_node(node, path, ctx.problems),
    "active": lambda node, path, ctx: parse_active_node(node, path, ctx.problems),
    "line": lambda node, path, ctx: parse_line(node, path, ctx.problems),
    "tz": _tz,
}
REQUIRED_RULE_KEYS = ("name", "notify")
# Other words for a rule's keys, where no spelling of the key is near (difflib finds those).
_RULE_WORDS = {
    "channel": "notify",
    "channels": "notify",
    "to": "notify",
    "send_to": "notify",
    "if": "when",
    "match": "when",
    "filter": "when",
    "conditions": "when",
    "subject": "title",
    "message": "body",
    "text": "body",
    "template": "body",
}
# Rule keys stored under another Rule field name; the shaping keys are combined instead.
_FIELD_OF = {"when": "condition"}
# A rule without its "- " (or rules keyed by their names) makes `rules:` one mapping.
_LIST_OF_RULES = (
    ': start each rule with "- " and indent its other keys under its name, as in '
    '"- name: big-buys" then "  notify: [desk]" on the next line'
)
_RULE_FIELDS = frozenset({"name", "condition", "notify", "title", "body", "enabled", "stop", "tz"})


def parse_rules(node: Node | None, path: str, ctx: RuleContext) -> list[Rule]:
    """Every rule that parsed cleanly (problems record the rest); names must be unique."""
    if node is None or (isinstance(node, Scalar) and node.kind == "null"):
        return []
    if not isinstance(node, YSeq):
        hint = _LIST_OF_RULES if isinstance(node, YMap) else ""
        ctx.problems.add(node.line, path, f"must be a list of rules, got {describe(node)}{hint}")
        return []
    rules: list[Rule] = []
    first_line: dict[str, int] = {}
    dropping: list[tuple[int | None, str]] = []  # (line, path) of each `stop` rule that drops fills
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
        if rule is None:
            continue
        if dropping and rule.enabled:  # a later rule those `stop` rules keep fills from
            for line, where in dropping:
                ctx.problems.note(line, where, _STOP_DROPS)
            dropping.clear()
        active = rule.shaping.active if rule.shaping is not None else None
        if rule.stop and rule.enabled and active is not None and active.outside == "drop":
            line = item.key_lines.get("stop", item.line) if isinstance(item, YMap) else None
            dropping.append((line, f"{path}[{i}].stop"))
        rules.append(rule)
    return rules


# A `stop` rule matches a fill outside its hours, drops it, and stops there.
_STOP_DROPS = (
    "with active hours and `outside: drop`, a fill this rule matches outside its hours is "
    "dropped, and no later rule sees it: put the rule after the ones that should still get "
    "such fills, or hold them (`outside: hold`)"
)


def _rule(node: Node, path: str, ctx: RuleContext) -> Rule | None:
    if isinstance(node, YMap):
        for key in node:
            if key not in RULE_KEYS and key in WHEN_KEYS:
                message = f"unknown rule key {key!r} (a condition: put it under when:)"
                ctx.problems.add(node.key_lines[key], f"{path}.{key}", message)
            elif key == "body_format":
                message = (
                    "a format is a channel's (channels.NAME.body_format) or every channel's "
                    "(delivery.body_format), not a rule's"
                )
                ctx.problems.add(node.key_lines[key], f"{path}.{key}", message)
    skip = (*WHEN_KEYS, "body_format")
    raw = mapping(node, path, ctx.problems, RULE_KEYS, skip=skip, meant=_RULE_WORDS)
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
    one_zone(values, raw)
    note_closed_summaries(values, raw, path, ctx.problems)
    fields = {k: v for k, v in values.items() if k in _RULE_FIELDS}
    fields.setdefault("condition", MATCH_ALL)
    if shaped:
        before = len(ctx.problems.items)
        combined = combine(values, raw, path, ctx.problems)
        if len(ctx.problems.items) > before:
            return None
        if combined is not None:
            fields["shaping"], fields["line"] = combined
        if "title" not in fields or "body" not in fields:
            # A message of one fill looks like one fill, whatever shaping the rule has: the
            # digest defaults ("Fills on X (1)") are for several.
            fields["single"] = (
                fields.get("title", Template(DEFAULT_TITLE)),
                fields.get("body", Template(DEFAULT_BODY)),
            )
        fields.setdefault("title", Template(DIGEST_TITLE))
        # Its lines end as each channel's format ends a line (release_render.render_release).
        fields.setdefault("body", Template(DIGEST_BODY))
    fields.setdefault("title", Template(DEFAULT_TITLE))
    fields.setdefault("body", Template(DEFAULT_BODY))
    return Rule(**fields)
