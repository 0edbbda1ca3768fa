"""The YAML mistakes people make most in a config, and what to tell them.

pyyaml's own words ("did not find expected key") say where reading stopped, not why; these
say what the writer most likely meant, and that a template needs quotes.
"""

from __future__ import annotations

import re

import yaml

_COMMENTED_PLACEHOLDER = re.compile(r"[ \t]+(#\{.*)")
_CUT_TEMPLATE = (
    "' #' starts a YAML comment, so the value ends before it and {dropped!r} is dropped:"
    " quote the whole value"
)
_CUT_AFTER_QUOTE = (
    "' #' after the closing quote starts a YAML comment, so {dropped!r} is dropped:"
    " move it inside the quotes"
)


def syntax_hint(text: str, exc: yaml.MarkedYAMLError) -> str:
    """A suggestion for the YAML mistakes people make most, when pyyaml's words do not say it."""
    mark, lines = exc.problem_mark, text.splitlines()
    if mark is not None and mark.line < len(lines) and "\t" in lines[mark.line]:
        return "; indent with spaces, not tabs"
    if exc.problem and "another document" in exc.problem:
        return "; one config is one YAML document: remove the '---' line"
    if "alias" in f"{exc.problem} {exc.context}":
        return '; a value starting with * (a glob) is read as a YAML alias: quote it, "*btc*"'
    if mark is not None and mark.line < len(lines):
        return _value_hint(lines[mark.line])
    return ""


# A block line's value (after any `- ` and `key: `) that opens with a quote or bracket, closes
# it, and goes on: `title: {side} filled`, `body: "{side}" at {price}`.
_VALUE_GOES_ON = re.compile(
    r"""\s*(?:-\s+)*(?:[^\s"'{\[#][^:]*:\s+)?"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|\{[^{}]*\}|\[[^\[\]]*\])[ \t]*[^\s#]"""
)


def _value_hint(line: str) -> str:
    """A hint for a template YAML read as structure or as a quoted string with text after."""
    found = _VALUE_GOES_ON.match(line)
    if found is None:
        return ""
    if found.group("value")[0] in "{[":
        return '; a value starting with { or [ is read as YAML structure: quote it, "{side} ..."'
    return "; text after a closing quote is not part of the value: quote the whole value"


def cut_by_comment(lines: list[str], end: yaml.Mark, *, quoted: bool = False) -> str | None:
    """The problem when a value ending at `end` (plain, or `quoted` and ending at its closing
    quote) is followed on its line by a comment that starts like a placeholder
    (` #{order_id}`): YAML took the rest of a template for a comment. None when there is none."""
    if end.line >= len(lines):
        return None
    found = _COMMENTED_PLACEHOLDER.match(lines[end.line], end.column)
    if found is None:
        return None
    dropped = found.group(1).rstrip()
    dropped = dropped if len(dropped) <= 40 else dropped[:37] + "..."
    return (_CUT_AFTER_QUOTE if quoted else _CUT_TEMPLATE).format(dropped=dropped)


def comma_hint(whole: str, part: str) -> str:
    """What `whole,part` was meant to be: a decimal, or (three digits after a non-zero whole)
    perhaps a number with a thousands separator."""
    hint = f"write {whole}.{part} with a decimal point"
    if len(part) == 3 and whole.strip("0-+"):
        hint += f", or {whole}{part} without the thousands separator"
    return hint


_WHOLE = re.compile(r"[+-]?[0-9]+")
_FRACTION = re.compile(r"[0-9]+")


def split_decimal(value: yaml.Node, key: yaml.Node, then: yaml.Node) -> str | None:
    """The problem when, in a {...} mapping, an entry's whole number `value` is followed by a
    key of digits alone (`then` empty): `{max: 0,65}` written with a decimal comma, which YAML
    splits into `max: 0` and a key `65`. None when the entries are not that."""
    if not all(isinstance(node, yaml.ScalarNode) and not node.style for node in (value, key)):
        return None
    if not isinstance(then, yaml.ScalarNode) or then.style or then.value:
        return None
    if not (_WHOLE.fullmatch(value.value) and _FRACTION.fullmatch(key.value)):
        return None
    return f"a comma in {{...}} separates entries: {comma_hint(value.value, key.value)}"


def tag_problem(tag: str) -> str:
    """A tag is refused: this loader resolves none, so its meaning would be dropped."""
    shown = tag.replace("tag:yaml.org,2002:", "!!")
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"YAML tags ({shown}) are not supported: remove it"
