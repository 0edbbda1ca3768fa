"""Typed reads of located YAML nodes: each returns the value, or None after recording a problem.

Messages never echo a value unless the caller says it is safe to show (channel URLs and API
keys are secrets); they name the key path, and for a misspelling the closest valid name.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

from notifier.config_problems import Problems
from notifier.durations import parse_duration
from notifier.yaml_mistakes import number_hint
from notifier.yamltree import Node, Scalar, YMap, YSeq, describe

T = TypeVar("T")
CHANNEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")  # what `channels:` keys and `notify` name
# Reads one key's value: the parsed value, or None after recording a problem.
Parser = Callable[[Node, str, Problems], object | None]


def line_of(node: Node | None) -> int | None:
    """The line a node starts on, if there is a node."""
    return None if node is None else node.line


def key_line(node: Node | None, key: str) -> int | None:
    """The line of `key` in a mapping (the mapping's own when the key is absent); None when
    the node is not a mapping."""
    return node.key_lines.get(key, node.line) if isinstance(node, YMap) else None


def suggest(word: str, choices: Collection[str]) -> str:
    """ " (did you mean 'x'?)" for the closest choice, or "" when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def mapping(
    node: Node,
    path: str,
    problems: Problems,
    keys: Collection[str],
    *,
    skip: Collection[str] = (),
    meant: Mapping[str, str] | None = None,
    otherwise: str = "",
) -> YMap | None:
    """The node as a mapping whose keys all belong to `keys`; each other key is a problem.

    Keys in `skip` are left for the caller to report with a better message; `meant` names the
    key another word stands for where no spelling of it is near (`channel:` for `notify:`);
    `otherwise` ends the list of keys expected, for a key near none of them.
    """
    if not isinstance(node, YMap):
        if isinstance(node, Scalar) and node.kind == "null":
            return YMap(node.line)
        problems.add(node.line, path, f"must be a mapping, got {describe(node)}")
        return None
    for key in node:
        if key not in keys and key not in skip:
            child = f"{path}.{key}" if path else key
            other = (meant or {}).get(key.lower())
            hint = (
                f" (did you mean {other!r}?)"
                if other in keys
                else suggest(key, keys) or f" (expected one of: {', '.join(keys)}{otherwise})"
            )
            problems.add(node.key_lines[key], child, f"unknown key {key!r}{hint}")
    return node


def as_str(node: Node, path: str, problems: Problems) -> str | None:
    """Text: a string, or a number written plainly (an order id of 42 is the text "42")."""
    if isinstance(node, Scalar) and node.kind in ("str", "number", "yaml11_bool"):
        return node.text
    message = f"must be a string, got {describe(node)}"
    if isinstance(node, YMap) and path.rpartition(".")[2] in ("title", "body", "line"):
        # An unquoted template: YAML reads `{market_title}` as a mapping.
        message += ' (a value starting with { must be quoted: "{side} on {market_title}")'
    problems.add(node.line, path, message)
    return None


def as_nonempty_str(node: Node, path: str, problems: Problems) -> str | None:
    """Text that is not empty."""
    text = as_str(node, path, problems)
    if text is not None and not text.strip():
        problems.add(node.line, path, "must not be empty")
        return None
    return text


def as_str_list(node: Node, path: str, problems: Problems) -> list[tuple[str, Node, str]] | None:
    """A non-empty string or list of strings, as (text, node, path) so each can be checked."""
    items: list[tuple[Node, str]]
    if isinstance(node, YSeq):
        if not node:
            problems.add(node.line, path, "must list at least one value")
            return None
        items = [(item, f"{path}[{i}]") for i, item in enumerate(node)]
    else:
        items = [(node, path)]
    out: list[tuple[str, Node, str]] = []
    for item, item_path in items:
        text = as_nonempty_str(item, item_path, problems)
        if text is not None:
            out.append((text, item, item_path))
    return out if len(out) == len(items) else None


def as_bool(node: Node, path: str, problems: Problems) -> bool | None:
    """true or false; YAML 1.1 spellings (yes/no/on/off) are refused, never guessed."""
    if isinstance(node, Scalar) and node.boolean is not None:
        return node.boolean
    if isinstance(node, Scalar) and node.kind == "yaml11_bool":
        problems.add(
            node.line,
            path,
            f"must be true or false, got {node.text!r} "
            "(yes/no/on/off are not booleans here: write true or false)",
        )
        return None
    problems.add(node.line, path, f"must be true or false, got {describe(node)}")
    return None


def as_decimal(node: Node, path: str, problems: Problems) -> Decimal | None:
    """An exact decimal from the number's source text (never through a binary float)."""
    if isinstance(node, Scalar) and node.kind != "null":
        value = node.decimal()
        if value is not None:
            return value
        meant = number_hint(node.text)
        hint = f" ({meant})" if meant else ""
        problems.add(node.line, path, f"must be a number, got {node.text!r}{hint}")
        return None
    problems.add(node.line, path, f"must be a number, got {describe(node)}")
    return None


_MAX_INT_DIGITS = 18


def as_int(node: Node, path: str, problems: Problems, *, minimum: int = 0) -> int | None:
    """A whole number at least `minimum`."""
    value = as_decimal(node, path, problems)
    if value is None:
        return None
    if value.adjusted() > _MAX_INT_DIGITS:  # int(Decimal("1e999999999")) would run for minutes
        problems.add(node.line, path, f"must be a whole number below 10^{_MAX_INT_DIGITS}")
        return None
    if value != value.to_integral_value():
        problems.add(node.line, path, f"must be a whole number, got {value}")
        return None
    if value < minimum:
        problems.add(node.line, path, f"must be at least {minimum}, got {value}")
        return None
    return int(value)


def as_duration(node: Node, path: str, problems: Problems) -> timedelta | None:
    """A duration such as 30s, 5m, 1h30m, or a number of seconds."""
    if not isinstance(node, Scalar) or node.kind in ("null", "bool"):
        problems.add(node.line, path, f"must be a duration such as 30s or 5m, got {describe(node)}")
        return None
    try:
        return parse_duration(node.text)
    except ValueError as exc:
        problems.add(node.line, path, str(exc))
        return None


MAX_SECONDS = 86400.0  # the longest timeout or interval: socket APIs overflow far past it


def as_seconds(node: Node, path: str, problems: Problems, *, positive: bool = True) -> float | None:
    """A duration as float seconds (what socket and timer APIs take); positive unless told,
    and at most a day (a socket timeout of 300000 days fails every send, at run time)."""
    value = as_duration(node, path, problems)
    if value is None:
        return None
    if positive and value <= timedelta(0):
        problems.add(node.line, path, "must be more than 0")
        return None
    if value.total_seconds() > MAX_SECONDS:
        problems.add(node.line, path, "must be at most 1d")
        return None
    return value.total_seconds()


def as_choice(
    node: Node,
    path: str,
    problems: Problems,
    choices: Collection[str],
    meant: Mapping[str, str] | None = None,
) -> str | None:
    """One of `choices` (compared in lower case); `meant` names the choice another word
    stands for where no spelling of it is near (`md` for markdown)."""
    text = as_str(node, path, problems)
    if text is None:
        return None
    if text.lower() in choices:
        return text.lower()
    listed = " or ".join(", ".join(choices).rsplit(", ", 1))
    other = (meant or {}).get(text.lower())
    hint = f" (did you mean {other!r}?)" if other else suggest(text.lower(), choices)
    problems.add(node.line, path, f"must be {listed}, got {text!r}{hint}")
    return None


def section(
    node: Node | None, name: str, problems: Problems, default: T, table: Mapping[str, Parser]
) -> T:
    """A settings dataclass from `default` with each key in the mapping parsed by `table`."""
    if node is None:
        return default
    section = mapping(node, name, problems, table)
    if section is None:
        return default
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key in table:
            parsed = table[key](value, f"{name}.{key}", problems)
            if parsed is not None:
                values[key] = parsed
    return dataclasses.replace(default, **values)  # type: ignore[type-var]  # T is a dataclass


QUOTED = (
    "is wrapped in quotes: remove them (`docker run --env-file`, for one, keeps an env file's "
    "quotes as part of the value)"
)


def quoted(value: str) -> bool:
    """Whether `value` is wrapped in a pair of quotes that a shell would have taken off."""
    return len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
