"""Compiled rules, and a rule set indexed by market and side (conditions.py: their tests).

Most rules pin a market and a side, so `RuleSet.match` looks the fill's (market, side) up in a
bounded cache of candidate rules (built from exact and prefix-glob market buckets plus a
wildcard bucket) and evaluates only those, with the indexed tests already taken out. The cost
per fill then follows the number of candidates, not the number of rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from notifier.conditions import (
    AllOf,
    Condition,
    FieldMatch,
    tests_field,
    verdict_without_title,
)
from notifier.events import Fill
from notifier.globs import is_glob
from notifier.render import Escape, Template
from notifier.shapingspecs import RuleShaping

_CACHE_SIZE = 16384


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


def reads_field(rule: Rule, name: str) -> bool:
    """Whether the rule's verdict, message or shaping key looks at the fill field `name`."""
    if tests_field(rule.condition, name):
        return True
    line = rule.extras.get("line")  # a digest's line per fill
    for template in (rule.title, rule.body, line):
        if isinstance(template, Template) and name in template.fields:
            return True
    shaping = rule.extras.get("shaping")
    if not isinstance(shaping, RuleShaping):
        return False
    group, throttle = shaping.group, shaping.throttle
    return name in (group.by if group else ()) or name in (throttle.by if throttle else ())


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
    return pattern.endswith("*") and not is_glob(pattern.rstrip("*"))  # "0xabc*" or "0xabc**"


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
            prefixes = frozenset(p.rstrip("*") for p in part.patterns if is_glob(p))
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
        "uses_client_order_id",
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
        # Whether a fill recovered from history (which lacks client_order_id) needs it looked
        # up: only then does backfill spend REST requests on the venue's order list.
        self.uses_client_order_id = any(
            rule.enabled and reads_field(rule, "client_order_id") for rule in self.rules
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
