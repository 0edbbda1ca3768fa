"""Compiled rules, and a rule set indexed by market and side (conditions.py: their tests).

Most rules pin a market and a side, so `RuleSet.match` looks the fill's (market, side) up in a
bounded cache of candidate rules (built from exact and prefix-glob market buckets plus a
wildcard bucket) and evaluates only those, with the indexed tests already taken out. The cost
per fill then follows the number of candidates, not the number of rules.

A market's title is the same for every fill on it, so a titled fill's candidates are cached by
(market, side, title) with each rule's top-level `market_title` tests already decided: a
thousand title globs cost their glob tests once per market and title, not once per fill.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import TypeVar

from notifier.conditions import (
    AllOf,
    Condition,
    FieldMatch,
    tests_field,
    verdict_without_title,
)
from notifier.events import Fill
from notifier.globs import is_glob
from notifier.render import Template
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
    tz: tzinfo | None = None  # `tz:`, the zone its messages show times in; None: UTC
    # group, throttle and active, combined (shapingconfig.combine); None: a plain rule.
    shaping: RuleShaping | None = dataclasses.field(default=None, hash=False)
    # A shaped rule's: how a digest lists each fill, and the title and body of a message of
    # one fill where the rule left them to the digest defaults ("Fills on X (1)").
    line: Template | None = None
    single: tuple[Template, Template] | None = None


def reads_field(rule: Rule, name: str) -> bool:
    """Whether the rule's verdict, message or shaping key looks at the fill field `name`."""
    if tests_field(rule.condition, name):
        return True
    for template in (rule.title, rule.body, rule.line):
        if template is not None and name in template.fields:
            return True
    shaping = rule.shaping
    if shaping is None:
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
_Key = TypeVar("_Key", tuple[str, str], tuple[str, str, str])


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
    titles: tuple[FieldMatch, ...]  # the residual's top-level market_title tests
    titled_pair: tuple[Rule, Condition | None]  # (rule, residual less `titles`), once they hold


def _flatten(condition: Condition) -> list[Condition]:
    """The conjuncts of a condition, nested AllOfs opened up."""
    if isinstance(condition, AllOf):
        return [part for c in condition.conditions for part in _flatten(c)]
    return [condition]


def _is_prefix_glob(pattern: str) -> bool:
    return pattern.endswith("*") and not is_glob(pattern.rstrip("*"))  # "0xabc*" or "0xabc**"


def _conjunction(parts: list[Condition]) -> Condition | None:
    return None if not parts else parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _index(position: int, rule: Rule) -> _Indexed:
    """Take one market test and one side test out of the rule's top-level conjunction, and
    note its top-level title tests."""
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
    residual = _conjunction(rest)
    titles = tuple(p for p in rest if isinstance(p, FieldMatch) and p.field == "market_title")
    untitled = _conjunction([p for p in rest if p not in titles]) if titles else residual
    return _Indexed(
        position,
        rule,
        markets,
        prefixes,
        sides,
        residual,
        (rule, residual),
        titles,
        (rule, untitled),
    )


class RuleSet:
    """Rules compiled for matching; `match` agrees with `naive_match` on every fill."""

    __slots__ = (
        "_by_market",
        "_by_prefix",
        "_cache",
        "_tests_titles",
        "_titled_cache",
        "_wild",
        "_wild_pairs",
        "rules",
        "uses_client_order_id",
        "uses_title",
    )

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
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
        # Whether a rule's top level tests the title: only then are titled fills told apart.
        self._tests_titles = False
        for position, rule in enumerate(self.rules):
            if not rule.enabled:
                continue
            entry = _index(position, rule)
            self._tests_titles = self._tests_titles or bool(entry.titles)
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
        self._titled_cache: dict[tuple[str, str, str], _Candidates] = {}

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
        title = fill.market_title
        if title is not None and self._tests_titles:
            titled = (fill.market_id, fill.side, title)
            candidates = self._titled_cache.get(titled)
            if candidates is None:
                candidates = self._titled_candidates(titled)
        else:
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
        entries = self._entries(*key)
        if entries is None:
            return self._wild_pairs.get(key[1], ())
        return _remember(self._cache, key, tuple(e.pair for e in entries))

    def _titled_candidates(self, key: tuple[str, str, str]) -> _Candidates:
        """As `_candidates`, for a fill with the title `key[2]`: a rule whose title tests
        refuse it is left out, one whose tests accept it comes without them (cached)."""
        market, side, title = key
        entries = self._entries(market, side)
        candidates: list[tuple[Rule, Condition | None]] = []
        for e in self._wild.get(side, ()) if entries is None else entries:
            if not e.titles:
                candidates.append(e.pair)
                continue
            for test in e.titles:  # a plain loop: all(genexpr) doubled a first fill's cost
                if not test.accepts(title):
                    break
            else:
                candidates.append(e.titled_pair)
        return _remember(self._titled_cache, key, tuple(candidates))

    def _entries(self, market: str, side: str) -> list[_Indexed] | None:
        """The rules whose market and side pins admit (market, side), in file order; None if
        no rule pins the market (the side's wildcard rules alone)."""
        pinned = list(self._by_market.get(market, ()))
        for length, bucket in self._by_prefix.items():
            pinned.extend(bucket.get(market[:length], ()))
        if not pinned:
            return None
        found = {e.position: e for e in pinned if e.sides is None or side in e.sides}
        found.update((e.position, e) for e in self._wild.get(side, ()))
        return [found[p] for p in sorted(found)]


def _remember(cache: dict[_Key, _Candidates], key: _Key, candidates: _Candidates) -> _Candidates:
    """Keep `key`'s candidates in a bounded cache."""
    if len(cache) >= _CACHE_SIZE:
        cache.clear()  # O(1) amortized; refilled by the markets actually trading
    cache[key] = candidates
    return candidates
