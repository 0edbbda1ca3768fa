"""Indentation mistakes in a YAML block, in words: which keys a stray one should line up with.

pyyaml says where reading stopped ("did not find expected key", "mapping values are not
allowed in this context"), not that a key is a space off or sits under a value that is text.
The hints name lines and widths only, never a line's text: it may hold a channel's secret.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

# A line's content that starts with a key: a quoted or plain key, then `:` and a space or the
# line's end (`json://host` holds a colon but no key).
# Linear in the line's length: a lazy run then optional spaces backtracked over every space
# of a long line (a 50 KB file took seconds).
_KEY = re.compile(
    r"""(?:"(?:[^"\\]|\\.)*"\s*|'(?:[^']|'')*'\s*|[^\s#'"{\[](?:[^#:]|:(?!\s|$))*?):(?:\s|$)"""
)
# A key whose value is a block scalar (`body: |`): the lines under it are text.
_BLOCK_SCALAR = re.compile(r":\s+[|>][-+0-9]*\s*(?:#.*)?$")
_QUOTED_OR_COMMENT = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|(?:^|\s)#.*""")
_MISPLACED = ("expected key", "expected '-' indicator", "expected <block end>")
_QUOTE_OR_SPLIT = (
    "; a `key: value` was found inside a value: put it on its own line at its parent's "
    "indentation, or quote the value if the colon is part of the text"
)


@dataclass(frozen=True, slots=True)
class _Block:
    """A mapping's keys or a list's items ("- "), open at `column` since `line` (1-based)."""

    column: int
    line: int
    item: bool


def indentation_hint(lines: Sequence[str], exc: yaml.MarkedYAMLError) -> str:
    """A suggestion when pyyaml stopped at a key indented unlike its neighbours, or at a
    `key: value` inside a value; "" otherwise."""
    mark = exc.problem_mark
    if mark is None or mark.line >= len(lines):
        return ""
    problem = exc.problem or ""
    if "mapping values are not allowed" in problem:
        return _inside_value(lines, mark.line, mark.column)
    context = exc.context or ""
    if any(words in problem for words in _MISPLACED) and "block" in context:
        return _misaligned(lines, mark.line, mark.column)
    return ""


def _misaligned(lines: Sequence[str], index: int, column: int) -> str:
    """The key (or item) at line `index` starts at `column`, where no open block's do."""
    line = lines[index]
    if len(line) - len(line.lstrip(" ")) != column:  # stopped mid-line: not its indentation
        return ""
    item = _is_item(line[column:])
    near = _nearest([b for b in _open_blocks(lines, index) if b.item == item], column)
    if not near:
        return ""
    what, whose = ("item", "items of the list") if item else ("key", "keys of the mapping")
    here = f"; the {what} on line {index + 1} is {_indented(column)}"
    if len(near) == 1:
        block = near[0]
        return (
            f"{here}, but the {whose} begun at line {block.line} are {_indented(block.column)}: "
            "align it with them"
        )
    inner, outer = near
    return (
        f"{here}: align it with the {whose} begun at line {inner.line} "
        f"({_indented(inner.column)}) or with those of the one begun at line {outer.line} "
        f"({_indented(outer.column)}), whichever it belongs to"
    )


def _inside_value(lines: Sequence[str], index: int, column: int) -> str:
    """A `:` YAML read as a key's inside a plain value: on the value's own line (`title: Fill:
    {side}`), or on a line indented under a key whose value is text (`side: BUY`, then
    `quantity:` further in)."""
    line = lines[index]
    start = len(line) - len(line.lstrip(" "))
    if _KEY.match(_after_dashes(line[start:column])):
        return (
            f"; the value on line {index + 1} holds a colon and a space, which YAML reads as "
            "the start of a key: quote the value if the colon is part of the text, or put a "
            "second key on its own line"
        )
    owner = _owner(lines, index, start)
    if owner is None:
        return _QUOTE_OR_SPLIT
    at, key_column = owner
    return (
        f"; the key on line {index + 1} is indented under the one on line {at + 1}, whose "
        "value is text, so YAML read it as more of that text: align it with the key on line "
        f"{at + 1} ({_indented(key_column)}), or quote the value if the colon is part of the text"
    )


def _owner(lines: Sequence[str], index: int, column: int) -> tuple[int, int] | None:
    """The line (and key column) of the key above line `index`, indented less than `column`,
    whose plain value runs on into that line; None when there is no such key."""
    for above in range(index - 1, -1, -1):
        line = lines[above]
        content = line.lstrip(" ")
        if not content or content.startswith("#"):
            continue
        columns = _columns(content, len(line) - len(content))
        if not columns or columns[-1][1]:
            continue  # more of the value (its own lines carry no key)
        key_column = columns[-1][0]
        if key_column >= column:
            return None
        found = _KEY.match(line[key_column:])
        value = line[key_column + found.end() :].strip() if found else ""
        return (above, key_column) if value and not value.startswith(("#", "|", ">")) else None
    return None


def _open_blocks(lines: Sequence[str], end: int) -> list[_Block]:
    """The mappings and lists still open before line `end` (0-based), outermost first."""
    stack: list[_Block] = []
    text_under: int | None = None  # a block scalar's key column: lines deeper are its text
    inside_flow = 0  # {...} and [...] still open: their lines go on a value
    for index in range(end):
        line = lines[index]
        content = line.lstrip(" ")
        column = len(line) - len(content)
        if not content or content.startswith("#"):
            continue
        if text_under is not None and column > text_under:
            continue
        text_under, flow = None, inside_flow
        inside_flow = max(0, flow + _opened(content))
        if flow:
            continue
        starts = [_Block(c, index + 1, item) for c, item in _columns(content, column)]
        if not starts:
            continue  # more of a plain or flow value
        first = starts[0]
        while stack and (
            stack[-1].column > first.column
            or (stack[-1].column == first.column and stack[-1].item != first.item)
        ):
            stack.pop()
        if stack and stack[-1].column == first.column:
            starts = starts[1:]  # the same mapping or list goes on
        stack.extend(starts)
        if _BLOCK_SCALAR.search(content):
            text_under = starts[-1].column if starts else column
    return stack


def _columns(content: str, column: int) -> list[tuple[int, bool]]:
    """Where the line's items ("- ") and key start, and which each is."""
    found: list[tuple[int, bool]] = []
    while _is_item(content):
        found.append((column, True))
        rest = content[1:].lstrip(" ")
        column += len(content) - len(rest)
        content = rest
    if _KEY.match(content):
        found.append((column, False))
    return found


def _opened(content: str) -> int:
    """How many more brackets the line opens than it closes, outside quotes and comments."""
    plain = _QUOTED_OR_COMMENT.sub("", content)
    return sum(plain.count(c) for c in "{[") - sum(plain.count(c) for c in "}]")


def _is_item(content: str) -> bool:
    return content == "-" or content.startswith("- ")


def _after_dashes(content: str) -> str:
    while _is_item(content):
        content = content[1:].lstrip(" ")
    return content


def _nearest(blocks: list[_Block], column: int) -> list[_Block]:
    """The open blocks whose column is nearest `column` (one deeper and one shallower when
    both are as near), the deeper first; none when one starts at `column` itself."""
    if not blocks or any(block.column == column for block in blocks):
        return []
    best = min(abs(block.column - column) for block in blocks)
    near = {b.column: b for b in blocks if abs(b.column - column) == best}  # innermost of each
    return [near[c] for c in sorted(near, reverse=True)]


def _indented(spaces: int) -> str:
    if spaces == 0:
        return "not indented"
    return f"indented {spaces} space{'' if spaces == 1 else 's'}"
