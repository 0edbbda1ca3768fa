"""Rule globs: `*` is any run of characters, `?` any one, everything else (`[` too) literal.

Matched in time linear in the text, whatever the pattern. A regular expression with a `.*`
per star backtracks through every way of cutting the text between the stars when it fails:
`0x********z` or `*a*a*a*a*b` took seconds to minutes for one fill, and held every alert
behind it. Here each piece between stars is taken at its first place after the one before
and never tried again, which loses no match: a later place only leaves less text for the
pieces after it. The common shapes (`abc*`, `*abc`, `*abc*`) are one string method call.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Matcher = Callable[[str], bool]


def is_glob(pattern: str) -> bool:
    """A pattern with `*` or `?` is a glob; anything else compares exactly."""
    return "*" in pattern or "?" in pattern


def glob_matcher(pattern: str) -> Matcher:
    """A predicate: whether a whole text matches `pattern`."""
    if "*" not in pattern:
        return _Piece(pattern).whole
    head, *middle, tail = re.sub(r"\*+", "*", pattern).split("*")  # a run of stars is one
    if not any("?" in piece for piece in (head, *middle, tail)):
        if not middle:
            return _affixes(head, tail)
        if not head and not tail and len(middle) == 1:
            inner = middle[0]
            return lambda text: inner in text  # *abc*
    return _Pieces(_Piece(head), [_Piece(p) for p in middle], _Piece(tail)).matches


def _affixes(head: str, tail: str) -> Matcher:
    """`head*tail` without `?`: string methods only."""
    if not tail:
        return lambda text: text.startswith(head)
    if not head:
        return lambda text: text.endswith(tail)
    least = len(head) + len(tail)
    return lambda text: len(text) >= least and text.startswith(head) and text.endswith(tail)


class _Piece:
    """A star-free piece: literal text, or a fixed-length pattern where it has `?`."""

    __slots__ = ("regex", "size", "text")

    def __init__(self, piece: str) -> None:
        self.size = len(piece)
        self.text = piece
        wild = "?" in piece
        self.regex = re.compile(_piece_regex(piece), re.DOTALL) if wild else None

    def whole(self, text: str) -> bool:
        """The piece is the whole text."""
        if self.regex is None:
            return text == self.text
        return self.regex.fullmatch(text) is not None

    def at(self, text: str, start: int) -> bool:
        """The piece matches `text` at `start` (which leaves room for it)."""
        if self.regex is None:
            return text.startswith(self.text, start)
        return self.regex.match(text, start) is not None

    def find(self, text: str, start: int, end: int) -> int:
        """Where the piece ends at its first place in text[start:end]; -1 if nowhere."""
        if self.regex is None:
            found = text.find(self.text, start, end)
            return -1 if found < 0 else found + self.size
        match = self.regex.search(text, start, end)
        return -1 if match is None else match.end()


class _Pieces:
    """`head*middle*...*tail`: head at the start, tail at the end, each middle piece at its
    first place between them."""

    __slots__ = ("head", "middle", "tail")

    def __init__(self, head: _Piece, middle: list[_Piece], tail: _Piece) -> None:
        self.head = head
        self.middle = middle
        self.tail = tail

    def matches(self, text: str) -> bool:
        end = len(text) - self.tail.size  # where the tail starts
        if end < self.head.size or not self.head.at(text, 0) or not self.tail.at(text, end):
            return False
        at = self.head.size
        for piece in self.middle:
            at = piece.find(text, at, end)
            if at < 0:
                return False
        return True


def _piece_regex(piece: str) -> str:
    return "".join("." if c == "?" else re.escape(c) for c in piece)
