"""Compiled rules: predicate trees over a Fill, and a rule set indexed by market and side.

Most rules pin a market and a side, so `RuleSet.match` looks the fill's (market, side) up in a
bounded cache of candidate rules (built from exact and prefix-glob market buckets plus a
wildcard bucket) and evaluates only those, with the indexed tests already taken out. The cost
per fill then follows the number of candidates, not the number of rules.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter
from typing import Any, cast

from notifier.events import Fill
from notifier.render import Escape, Template

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
_CACHE_SIZE = 16384


class Condition(ABC):
    """A compiled predicate over a fill."""

    __slots__ = ()

    @abstractmethod
    def matches(self, fill: Fill) -> bool:
        """Whether the fill satisfies this condition."""


def is_glob(pattern: str) -> bool:
    """A pattern with `*` or `?` is a glob; anything else compares exactly."""
    return "*" in pattern or "?" in pattern


@functools.lru_cache(maxsize=4096)  # one title is folded once, not once per rule testing it
def fold(text: str) -> str:
    """Caseless form for comparing titles and outcomes: "Straße" and "STRASSE" fold alike.

    NFC first, so a title sent decomposed (e + combining accent) equals one typed composed.
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())


def _glob_regex(pattern: str) -> str:
    """Only `*` and `?` are wild (unlike fnmatch, `[` is literal: market ids are plain text)."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


@dataclass(frozen=True, slots=True)
class FieldMatch(Condition):
    """The field equals any of `patterns` (globs allowed); caseless for title/outcome/status.

    A fill whose field is None (no title yet, no client order id) matches no pattern.
    """

    field: str
    patterns: tuple[str, ...]
    _get: Any = dataclasses.field(init=False, repr=False, compare=False)
    _caseless: bool = dataclasses.field(init=False, repr=False, compare=False)
    _exact: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)
    _regex: re.Pattern[str] | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.field not in STRING_FIELDS:
            raise ValueError(f"not a string field: {self.field!r}")
        caseless = self.field in CASELESS_FIELDS
        norm = [fold(p) if caseless else p for p in self.patterns]
        globs = [p for p in norm if is_glob(p)]
        regex = re.compile("|".join(map(_glob_regex, globs)), re.DOTALL) if globs else None
        object.__setattr__(self, "_get", attrgetter(_ATTRIBUTE.get(self.field, self.field)))
        object.__setattr__(self, "_caseless", caseless)
        object.__setattr__(self, "_exact", frozenset(p for p in norm if not is_glob(p)))
        object.__setattr__(self, "_regex", regex)

    def matches(self, fill: Fill) -> bool:
        value = self._get(fill)
        if value is None:
            return False
        if not self._caseless:
            return value in self._exact or (
                self._regex is not None and self._regex.fullmatch(value) is not None
            )
        folded = fold(value)
        if folded in self._exact:
            return True
        if self._regex is None:
            return False
        if self._regex.fullmatch(folded) is not None:
            return True
        if value.isascii():
            return False  # casefold() is lower() there: no other form to try
        # `?` is one character as the title writes it: "Stra?e" matches "Straße" (folded "strasse").
        lowered = unicodedata.normalize("NFC", value).lower()
        return lowered != folded and self._regex.fullmatch(lowered) is not None


@dataclass(frozen=True, slots=True)
class Bounds(Condition):
    """min <= field <= max, both inclusive and optional, compared as exact decimals."""

    field: str
    min: Decimal | None = None
    max: Decimal | None = None
    _get: Any = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.field not in DECIMAL_FIELDS:
            raise ValueError(f"not a decimal field: {self.field!r}")
        object.__setattr__(self, "_get", attrgetter(self.field))

    def matches(self, fill: Fill) -> bool:
        value = self._get(fill)
        if self.min is not None and value < self.min:
            return False
        return self.max is None or value <= self.max


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


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule: which fills, which channels, what message."""

    name: str
    condition: Condition
    notify: tuple[str, ...]
    title: Template
    body: Template
    enabled: bool = True
    stop: bool = False
    # Room for per-rule shaping specs (group/throttle/active), added by the shaping stage.
    extras: Mapping[str, object] = dataclasses.field(default_factory=dict, hash=False)


def rule_escape(rule: Rule) -> Escape | None:
    """How the rule's field values are escaped for the message format (render.escape_for)."""
    escape = rule.extras.get("escape")
    return cast("Escape", escape) if callable(escape) else None


def naive_match(rules: Sequence[Rule], fill: Fill) -> tuple[Rule, ...]:
    """Reference semantics: enabled matching rules in order, up to the first matching `stop`."""
    out: list[Rule] = []
    for rule in rules:
        if rule.enabled and rule.condition.matches(fill):
            out.append(rule)
            if rule.stop:
                break
    return tuple(out)


_Candidates = tuple[tuple[Rule, Condition | None], ...]


@dataclass(frozen=True, slots=True)
class _Indexed:
    """What the index learned about one rule: its market and side pins and the rest."""

    position: int
    rule: Rule
    markets: frozenset[str] | None  # exact ids; None = not pinned
    prefixes: frozenset[str]  # from "0xabc*" globs
    sides: frozenset[str] | None
    residual: Condition | None  # what is left to test once the pins hold; None = nothing
    pair: tuple[Rule, Condition | None]  # (rule, residual), built once and shared by candidates


def _flatten(condition: Condition) -> list[Condition]:
    """The conjuncts of a condition, nested AllOfs opened up."""
    if isinstance(condition, AllOf):
        return [part for c in condition.conditions for part in _flatten(c)]
    return [condition]


def _is_prefix_glob(pattern: str) -> bool:
    return pattern.endswith("*") and not is_glob(pattern[:-1])


def _index(position: int, rule: Rule) -> _Indexed:
    """Take one market test and one side test out of the rule's top-level conjunction."""
    markets: frozenset[str] | None = None
    prefixes: frozenset[str] = frozenset()
    sides: frozenset[str] | None = None
    rest: list[Condition] = []
    for part in _flatten(rule.condition):
        if (
            isinstance(part, FieldMatch)
            and part.field == "market"
            and markets is None
            and not prefixes
            and all(not is_glob(p) or _is_prefix_glob(p) for p in part.patterns)
        ):
            markets = frozenset(p for p in part.patterns if not is_glob(p))
            prefixes = frozenset(p[:-1] for p in part.patterns if is_glob(p))
        elif (
            isinstance(part, FieldMatch)
            and part.field == "side"
            and sides is None
            and not any(is_glob(p) for p in part.patterns)
        ):
            sides = frozenset(part.patterns)
        else:
            rest.append(part)
    residual = None if not rest else rest[0] if len(rest) == 1 else AllOf(tuple(rest))
    return _Indexed(position, rule, markets, prefixes, sides, residual, (rule, residual))


class RuleSet:
    """Rules compiled for matching; `match` agrees with `naive_match` on every fill."""

    __slots__ = (
        "_by_market",
        "_by_prefix",
        "_cache",
        "_wild",
        "_wild_pairs",
        "escape",
        "rules",
        "uses_title",
    )

    def __init__(self, rules: Sequence[Rule], *, escape: Escape | None = None) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        # The message format's escaping (render.escape_for), for text rendered without a rule
        # (the digest of a rule gone from the config); each rule carries it too.
        self.escape = escape
        # Whether matching looks at market_title: if not, a fill needs its title (a REST
        # look-up) only once it has matched, to render the message.
        self.uses_title = any(
            rule.enabled and tests_field(rule.condition, "market_title") for rule in self.rules
        )
        self._by_market: dict[str, list[_Indexed]] = {}
        self._by_prefix: dict[int, dict[str, list[_Indexed]]] = {}
        wild: list[_Indexed] = []
        for position, rule in enumerate(self.rules):
            if not rule.enabled:
                continue
            entry = _index(position, rule)
            if entry.markets is None:
                wild.append(entry)
                continue
            for market in entry.markets:
                self._by_market.setdefault(market, []).append(entry)
            for prefix in entry.prefixes:
                bucket = self._by_prefix.setdefault(len(prefix), {})
                bucket.setdefault(prefix, []).append(entry)
        # Fills on markets no rule pins (exactly or by prefix) need only the wildcard rules:
        # precomputed per side, so they never touch (or churn) the cache.
        self._wild: dict[str, tuple[_Indexed, ...]] = {
            side: tuple(e for e in wild if e.sides is None or side in e.sides)
            for side in ("BUY", "SELL")
        }
        self._wild_pairs = {side: tuple(e.pair for e in w) for side, w in self._wild.items()}
        self._cache: dict[tuple[str, str], _Candidates] = {}

    def __repr__(self) -> str:
        return f"RuleSet({list(self.names())!r})"

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def names(self) -> tuple[str, ...]:
        """Rule names in file order."""
        return tuple(rule.name for rule in self.rules)

    def match(self, fill: Fill) -> tuple[Rule, ...]:
        """Enabled rules matching `fill`, in file order, up to the first matching `stop` rule."""
        key = (fill.market_id, fill.side)
        candidates = self._cache.get(key)
        if candidates is None:
            candidates = self._candidates(key)
        out: list[Rule] = []
        for rule, residual in candidates:
            if residual is None or residual.matches(fill):
                out.append(rule)
                if rule.stop:
                    break
        return tuple(out)

    def needs_title(self, fill: Fill) -> bool:
        """Whether the verdict on this untitled fill could change once its title is known."""
        if not self.uses_title or fill.market_title is not None:
            return False
        key = (fill.market_id, fill.side)
        candidates = self._cache.get(key)
        if candidates is None:
            candidates = self._candidates(key)
        for rule, residual in candidates:
            value = True if residual is None else verdict_without_title(residual, fill)
            if value is None:
                return True
            if value and rule.stop:
                return False  # rules after a matching stop rule are never reached
        return False

    def _candidates(self, key: tuple[str, str]) -> _Candidates:
        """Rules whose market and side pins admit `key`, in file order (cached, bounded)."""
        market, side = key
        pinned = list(self._by_market.get(market, ()))
        for length, bucket in self._by_prefix.items():
            pinned.extend(bucket.get(market[:length], ()))
        if not pinned:
            return self._wild_pairs.get(side, ())
        found = {e.position: e for e in pinned if e.sides is None or side in e.sides}
        found.update((e.position, e) for e in self._wild.get(side, ()))
        candidates = tuple(found[p].pair for p in sorted(found))
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()  # O(1) amortized; refilled by the markets actually trading
        self._cache[key] = candidates
        return candidates
