"""Conditions: the compiled predicates a rule's `when` becomes, over one Fill.

Leaves compare one field (`FieldMatch` for text, with globs and caseless folding; `Bounds`
for exact decimals); `AllOf`, `AnyOf` and `Not` combine them. Also the questions the rule
index and the title gate ask of a tree: which fields it tests, and its verdict when the
market title is not known yet.
"""

from __future__ import annotations

import dataclasses
import functools
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter

from notifier.events import Fill
from notifier.globs import Matcher, glob_matcher, is_glob

STRING_FIELDS = (
    "market",
    "market_title",
    "outcome",
    "side",
    "status",
    "order_id",
    "client_order_id",
)
CASELESS_FIELDS = frozenset({"market_title", "outcome", "status"})
DECIMAL_FIELDS = ("price", "quantity", "notional")
# `market` in a rule is the fill's `market_id`.
_ATTRIBUTE = {"market": "market_id"}


class Condition(ABC):
    """A compiled predicate over a fill."""

    __slots__ = ()

    @abstractmethod
    def matches(self, fill: Fill) -> bool:
        """Whether the fill satisfies this condition."""


@functools.lru_cache(maxsize=4096)  # one title is folded once, not once per rule testing it
def fold(text: str) -> str:
    """Caseless form for comparing titles and outcomes: "Straße" and "STRASSE" fold alike.

    NFC first, so a title sent decomposed (e + combining accent) equals one typed composed.
    The dot that casefold() leaves on a Turkish İ ("i" + U+0307) is dropped, so "istanbul"
    and "ISTANBUL" match "İstanbul", as anyone typing the name without that key expects.
    """
    folded = unicodedata.normalize("NFC", text).casefold()
    if folded.isascii():
        return folded
    return unicodedata.normalize("NFC", folded.replace(_I_DOT, "i"))


_I_DOT = "i\u0307"  # casefold("İ")


@dataclass(frozen=True, slots=True)
class FieldMatch(Condition):
    """The field equals any of `patterns` (globs allowed); caseless for title/outcome/status.

    A fill whose field is None (no title yet, no client order id) matches no pattern.
    """

    field: str
    patterns: tuple[str, ...]
    _get: Callable[[Fill], str | None] = dataclasses.field(init=False, repr=False, compare=False)
    _caseless: bool = dataclasses.field(init=False, repr=False, compare=False)
    _exact: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)
    _globs: tuple[Matcher, ...] = dataclasses.field(init=False, repr=False, compare=False)
    # For a title whose folded form is longer, lowered one character for one instead: the
    # globs of each pattern lowered so, and folded.
    _lowered_globs: tuple[Matcher, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.field not in STRING_FIELDS:
            raise ValueError(f"not a string field: {self.field!r}")
        caseless = self.field in CASELESS_FIELDS
        norm = [fold(p) if caseless else p for p in self.patterns]
        globs = tuple(glob_matcher(p) for p in norm if is_glob(p))
        # Both forms of each pattern: the lowered one for what only the title's own letters
        # match (a `?` for its ß), the folded one for what only folding equates (µ and μ).
        lowered = {_lower_each(unicodedata.normalize("NFC", p)) for p in self.patterns}
        lowered_globs = tuple(glob_matcher(p) for p in sorted(lowered | set(norm)) if is_glob(p))
        object.__setattr__(self, "_get", attrgetter(_ATTRIBUTE.get(self.field, self.field)))
        object.__setattr__(self, "_caseless", caseless)
        object.__setattr__(self, "_exact", frozenset(p for p in norm if not is_glob(p)))
        object.__setattr__(self, "_globs", globs)
        object.__setattr__(self, "_lowered_globs", lowered_globs if caseless else ())

    def matches(self, fill: Fill) -> bool:
        return self.accepts(self._get(fill))

    def accepts(self, value: str | None) -> bool:
        """Whether the field's value `value` matches (`matches` reads it from a fill)."""
        if value is None:
            return False
        if not self._caseless:
            return value in self._exact or self._any_glob(value)
        folded = fold(value)
        if folded in self._exact:
            return True
        if not self._globs:
            return False
        if self._any_glob(folded):
            return True
        if value.isascii():
            return False  # casefold() is lower() there: no other form to try
        # `?` is one character as the title writes it: "Stra?e" matches "Straße" (folded
        # "strasse"), "?stanbul" matches "İstanbul" (folded "i" + a combining dot).
        lowered = _lower_each(unicodedata.normalize("NFC", value))
        return any(matches(lowered) for matches in self._lowered_globs)

    def _any_glob(self, text: str) -> bool:
        return any(matches(text) for matches in self._globs)


def _lower_each(text: str) -> str:
    """Lower case, one character for one: a character whose lower case is longer stays as is."""
    return "".join(low if len(low := c.lower()) == 1 else c for c in text)


@dataclass(frozen=True, slots=True)
class Bounds(Condition):
    """min <= field <= max (inclusive) and above < field < below (exclusive), each optional,
    compared as exact decimals: "over $500" is `above: 500`, which no `min` can say exactly."""

    field: str
    min: Decimal | None = None
    max: Decimal | None = None
    above: Decimal | None = None
    below: Decimal | None = None
    _get: Callable[[Fill], Decimal] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.field not in DECIMAL_FIELDS:
            raise ValueError(f"not a decimal field: {self.field!r}")
        object.__setattr__(self, "_get", attrgetter(self.field))

    def matches(self, fill: Fill) -> bool:
        value = self._get(fill)
        if self.min is not None and value < self.min:
            return False
        if self.max is not None and value > self.max:
            return False
        if self.above is not None and value <= self.above:
            return False
        return self.below is None or value < self.below


@dataclass(frozen=True, slots=True)
class AllOf(Condition):
    """Every condition holds; `AllOf(())` matches every fill (a rule without `when`)."""

    conditions: tuple[Condition, ...] = ()

    def matches(self, fill: Fill) -> bool:
        for condition in self.conditions:  # noqa: SIM110 -- a plain loop; all(genexpr) is slower
            if not condition.matches(fill):
                return False
        return True


@dataclass(frozen=True, slots=True)
class AnyOf(Condition):
    """At least one condition holds."""

    conditions: tuple[Condition, ...] = ()

    def matches(self, fill: Fill) -> bool:
        for condition in self.conditions:  # noqa: SIM110 -- a plain loop; any(genexpr) is slower
            if condition.matches(fill):
                return True
        return False


@dataclass(frozen=True, slots=True)
class Not(Condition):
    """The condition does not hold."""

    condition: Condition

    def matches(self, fill: Fill) -> bool:
        return not self.condition.matches(fill)


MATCH_ALL = AllOf(())


def verdict_without_title(condition: Condition, fill: Fill) -> bool | None:
    """The condition's verdict on a fill whose title is unknown; None if the title decides it.

    Three-valued (Kleene) logic: a `market_title` test is unknown, and `all`/`any`/`not` pass
    an unknown on unless the other parts settle the answer (one false `all` part, one true
    `any` part).
    """
    if isinstance(condition, FieldMatch) and condition.field == "market_title":
        return None
    if isinstance(condition, AllOf | AnyOf):
        settles = isinstance(condition, AnyOf)  # the part value that decides at once
        unknown = False
        for part in condition.conditions:
            value = verdict_without_title(part, fill)
            if value is None:
                unknown = True
            elif value is settles:
                return settles
        return None if unknown else not settles
    if isinstance(condition, Not):
        value = verdict_without_title(condition.condition, fill)
        return None if value is None else not value
    return condition.matches(fill)


def tests_field(condition: Condition, name: str) -> bool:
    """Whether `condition` (at any depth) looks at the fill field `name`."""
    if isinstance(condition, FieldMatch | Bounds):
        return condition.field == name
    if isinstance(condition, AllOf | AnyOf):
        return any(tests_field(c, name) for c in condition.conditions)
    if isinstance(condition, Not):
        return tests_field(condition.condition, name)
    return True  # an unknown kind of condition: assume it may
