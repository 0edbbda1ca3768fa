"""The YAML mistakes people make most in a config, and what to tell them.

pyyaml's own words ("did not find expected key") say where reading stopped, not why; these
say what the writer most likely meant, and that a template needs quotes (a key indented
unlike its neighbours is yaml_indentation.py's).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import yaml

from notifier.yaml_indentation import indentation_hint

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
        line = lines[mark.line]
        return _flow_reference_hint(line) or _value_hint(line) or indentation_hint(lines, exc)
    return ""


# An unquoted `${NAME}` after a `{` or `[` on its line: inside a flow mapping or list, YAML reads
# its braces as structure (`phone: {url: ${NTFY_URL}, rate: 20/min}`).
_FLOW_REFERENCE = re.compile(r"[{\[][^#\"']*?(?<![\"'])\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


_SHOWN_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,39}")  # as variables are named, no pasted key


def _flow_reference_hint(line: str) -> str:
    found = _FLOW_REFERENCE.search(line)
    if found is None:
        return ""
    # Never the default (`${SLACK_URL:-slack://T/B/token}` holds a secret), nor a name that
    # could be a key pasted in place of one.
    name = found.group(1) if _SHOWN_NAME.fullmatch(found.group(1)) else "NAME"
    reference = f"${{{name}{':-...' if found.group(2) else ''}}}"
    before, after = line[: found.start(1) - 2].rstrip(), line[found.end() :].lstrip()
    if before.endswith((":", "[", ",", "{")) and (not after or after[0] in ",}]#"):  # all of it
        return f'; a {reference} inside {{...}} or [...] must be quoted: "{reference}"'
    return f"; a {reference} inside {{...}} or [...] must be quoted: quote the whole value it is in"


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
    a number with a thousands separator. "or 1.000 with a decimal point" is not offered: it
    reads as a thousand to the writer of "1,000", and is one."""
    if len(part) == 3 and whole.strip("0-+"):  # "1,000": a thousand, not one
        return f"write {whole}{part} without the thousands separator"
    return f"write {whole}.{part} with a decimal point"


_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_CURRENCY_SIGNS = "$€£"
_DIGIT_SEPARATORS = ("_", " ", "\u00a0", "\u202f", "'")  # 1_000, 1 000, 1'000


def number_hint(text: str) -> str:
    """What a number that does not read as one was meant to be, or "": a decimal comma or a
    thousands comma, a currency sign (`$500`), digits grouped by `_`, spaces or `'`."""
    stripped = text.strip()
    whole, comma, part = stripped.partition(",")
    if comma and whole.isdigit() and part.isdigit():
        return comma_hint(whole, part)
    unsigned = stripped.lstrip(_CURRENCY_SIGNS).strip()
    if unsigned != stripped and _PLAIN_NUMBER.fullmatch(unsigned):
        return f"write {unsigned}, without the currency sign"
    joined = unsigned
    for separator in _DIGIT_SEPARATORS:
        joined = joined.replace(separator, "")
    if joined != unsigned and _PLAIN_NUMBER.fullmatch(joined):
        return f"write {joined}, without separators between the digits"
    return ""


_WHOLE = re.compile(r"[+-]?[0-9]+")
_PIECE = re.compile(r"[0-9]+")
_SPLIT = "a comma in {{...}} separates entries: {hint}"


def split_numbers(entries: Sequence[tuple[yaml.Node, yaml.Node]]) -> dict[int, tuple[str, int]]:
    """The numbers YAML split at their commas in a {...} mapping: `{max: 0,65}` is read as
    `max: 0` and a key `65` with no value, `{min: 1,000,000}` as three entries. For each
    entry so cut short, by its index: the problem to report and how many of the entries after
    it are its pieces."""
    found: dict[int, tuple[str, int]] = {}
    index = 0
    while index < len(entries):
        pieces = list(itertools.takewhile(_is_piece, entries[index + 1 :]))
        key, whole = entries[index]
        if pieces and isinstance(key, yaml.ScalarNode) and _is_whole(whole):
            parts = [str(piece.value) for piece, _ in pieces]
            found[index] = (_SPLIT.format(hint=_number_hint(str(whole.value), parts)), len(parts))
            index += len(pieces)
        index += 1
    return found


def _is_whole(node: yaml.Node) -> bool:
    """A number's part before its first comma: plain, or quoted (`"0",65`)."""
    return (
        isinstance(node, yaml.ScalarNode)
        and node.style in (None, "", "'", '"')
        and _WHOLE.fullmatch(str(node.value)) is not None
    )


def _is_piece(entry: tuple[yaml.Node, yaml.Node]) -> bool:
    """An entry that is a number's part after a comma: a plain key of digits, no value."""
    key, value = entry
    return (
        isinstance(key, yaml.ScalarNode)
        and not key.style
        and _PIECE.fullmatch(str(key.value)) is not None
        and isinstance(value, yaml.ScalarNode)
        and not value.style
        and not value.value
    )


def _number_hint(whole: str, parts: list[str]) -> str:
    if len(parts) == 1:
        return comma_hint(whole, parts[0])
    if whole.strip("0-+") and all(len(part) == 3 for part in parts):
        return f"write {whole}{''.join(parts)} without the thousands separators"
    return f"write {','.join([whole, *parts])} as one number, with no comma"


def tag_problem(tag: str) -> str:
    """A tag is refused: this loader resolves none, so its meaning would be dropped."""
    shown = tag.replace("tag:yaml.org,2002:", "!!")
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"YAML tags ({shown}) are not supported: remove it"
