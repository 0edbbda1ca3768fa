"""Rule conditions and the indexed rule set, against plain fills."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.conditions import MATCH_ALL, AllOf, AnyOf, Bounds, Condition, FieldMatch, Not
from notifier.events import Fill
from notifier.render import DEFAULT_BODY, DEFAULT_TITLE, Template
from notifier.rules import Rule, RuleSet, naive_match

BASE = Fill(
    order_id="42",
    market_id="0xabc123",
    side="BUY",
    outcome="Yes",
    price=Decimal("0.65"),
    quantity=Decimal("10.0"),
    filled_at=datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC),
    status="FILLED",
    client_order_id="bot-1",
    market_title="Will Bitcoin close above $100k?",
)


def fill(**changes: object) -> Fill:
    return dataclasses.replace(BASE, **changes)  # type: ignore[arg-type]


def rule(name: str, condition: Condition = MATCH_ALL, **kw: object) -> Rule:
    return Rule(name, condition, ("desk",), Template(DEFAULT_TITLE), Template(DEFAULT_BODY), **kw)  # type: ignore[arg-type]


def test_exact_and_glob_strings() -> None:
    """A string test matches any listed value exactly, or as a * / ? glob."""
    cond = FieldMatch("market", ("0xdef", "0xab?1*"))
    assert cond.matches(fill(market_id="0xdef"))
    assert cond.matches(fill(market_id="0xabc123"))
    assert not cond.matches(fill(market_id="0xde"))
    assert not cond.matches(fill(market_id="0xab1"))


def test_brackets_are_literal_in_globs() -> None:
    """Only * and ? are wild: [ and ] compare literally, unlike fnmatch."""
    cond = FieldMatch("order_id", ("[a]*",))
    assert cond.matches(fill(order_id="[a]42"))
    assert not cond.matches(fill(order_id="a42"))


def _glob_reference(pattern: str, text: str) -> bool:
    """The plain meaning of a * / ? glob, by dynamic programming over prefixes."""
    reach = [True] + [False] * len(text)  # reach[j]: the pattern so far matches text[:j]
    for p in pattern:
        if p == "*":
            reach = [any(reach[: j + 1]) for j in range(len(text) + 1)]
        else:
            reach = [False] + [reach[j] and (p == "?" or p == text[j]) for j in range(len(text))]
    return reach[-1]


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.text("ab*?[", max_size=8), min_size=1, max_size=3),
    st.text("ab[", max_size=10),
)
def test_globs_mean_what_they_say(patterns: list[str], text: str) -> None:
    """Any mix of stars, runs of stars and `?` matches exactly the texts the glob describes."""
    want = any(_glob_reference(p, text) for p in patterns)
    assert FieldMatch("order_id", tuple(patterns)).matches(fill(order_id=text)) is want


@pytest.mark.parametrize(
    "pattern",
    ["0x" + "*" * 40 + "z", "*a" * 30 + "*b", "*Will*the*the*the*the*the*the*the*the*the*?x"],
)
def test_a_glob_with_many_stars_answers_without_backtracking(pattern: str) -> None:
    """Runs of stars and many `*word*` pieces cost one pass, not every split of the text.

    Each star as a plain `.*` tried every way to cut the text: one fill took seconds to
    minutes and held every alert behind it (this test then stops at pytest's timeout).
    """
    for field, text in (("market", "0x" + "a" * 200), ("market_title", "Will the " * 40)):
        assert not FieldMatch(field, (pattern,)).matches(fill(**{_FIELD_ATTR[field]: text}))


_FIELD_ATTR = {"market": "market_id", "market_title": "market_title"}


def test_title_outcome_and_status_are_caseless_others_not() -> None:
    """market_title, outcome and status compare case-insensitively; market and ids do not."""
    assert FieldMatch("market_title", ("*BITCOIN*",)).matches(BASE)
    assert FieldMatch("outcome", ("YES",)).matches(BASE)
    assert FieldMatch("status", ("filled",)).matches(BASE)
    assert not FieldMatch("market", ("0XABC123",)).matches(BASE)
    assert not FieldMatch("client_order_id", ("BOT-1",)).matches(BASE)


def test_caseless_matching_ignores_unicode_normal_form() -> None:
    """A title sent decomposed (e + combining accent) matches a pattern typed composed, and back."""
    composed, decomposed = "Will Pel\u00e9 win?", "Will Pele\u0301 win?"
    assert FieldMatch("market_title", (composed,)).matches(fill(market_title=decomposed))
    assert FieldMatch("market_title", (decomposed,)).matches(fill(market_title=composed))
    assert FieldMatch("market_title", ("*PEL\u00c9*",)).matches(fill(market_title=decomposed))
    assert FieldMatch("outcome", ("Ja\u0308",)).matches(fill(outcome="J\u00c4"))


def test_caseless_folding_and_the_one_character_glob() -> None:
    """ß folds to ss for exact text, yet `?` still stands for the ß the title writes."""
    assert FieldMatch("market_title", ("STRASSE",)).matches(fill(market_title="Stra\u00dfe"))
    assert FieldMatch("market_title", ("Stra?e",)).matches(fill(market_title="STRA\u00dfE"))
    assert FieldMatch("market_title", ("stra*e",)).matches(fill(market_title="Stra\u00dfe"))
    assert not FieldMatch("market_title", ("STRA?E",)).matches(fill(market_title="STRASSE"))
    assert not FieldMatch("market_title", ("Stra?e",)).matches(fill(market_title="Strasse"))
    # İ lower-cases to i + a combining dot, two characters: `?` still takes it as one.
    assert FieldMatch("market_title", ("?stanbul",)).matches(fill(market_title="\u0130stanbul"))
    assert FieldMatch("market_title", ("?STANBUL ?",)).matches(
        fill(market_title="\u0130stanbul \u0130")
    )
    # Typed without the Turkish İ, as most keyboards would.
    assert FieldMatch("market_title", ("*istanbul*",)).matches(fill(market_title="\u0130stanbul"))
    assert FieldMatch("market_title", ("ISTANBUL",)).matches(fill(market_title="\u0130STANBUL"))
    assert FieldMatch("outcome", ("\u0130zmir",)).matches(fill(outcome="izmir"))
    # Folding's own equivalences (the micro sign is μ) hold beside a `?` for a title's ß.
    assert FieldMatch("market_title", ("\u00b5?",)).matches(fill(market_title="\u039c\u00df"))
    # The pattern writes ß or İ itself beside a `?` that stands for one of them in the title.
    assert FieldMatch("market_title", ("Stra?e gro\u00df*",)).matches(
        fill(market_title="STRA\u00dfE GRO\u00dfE")
    )
    assert FieldMatch("market_title", ("?stanbul \u0130zmir",)).matches(
        fill(market_title="\u0130stanbul \u0130zmir")
    )


def test_missing_optional_field_matches_nothing() -> None:
    """A fill without a title or client order id matches no pattern on it, not even *."""
    bare = fill(market_title=None, client_order_id=None)
    assert not FieldMatch("market_title", ("*",)).matches(bare)
    assert not FieldMatch("client_order_id", ("*",)).matches(bare)
    assert Not(FieldMatch("market_title", ("*",))).matches(bare)


def test_field_names_are_checked() -> None:
    """A condition on a field that does not exist is refused when built."""
    with pytest.raises(ValueError, match="not a string field"):
        FieldMatch("price", ("1",))
    with pytest.raises(ValueError, match="not a decimal field"):
        Bounds("side", Decimal(1))


def test_bounds_are_inclusive_and_exact() -> None:
    """{min, max} includes both ends, compared as exact decimals (0.3 is 0.3)."""
    cond = Bounds("price", Decimal("0.3"), Decimal("0.65"))
    assert cond.matches(fill(price=Decimal("0.3")))
    assert cond.matches(fill(price=Decimal("0.65")))
    assert cond.matches(fill(price=Decimal("0.650")))
    assert not cond.matches(fill(price=Decimal("0.29999999999999999")))
    assert not cond.matches(fill(price=Decimal("0.6500001")))


def test_notional_bounds_use_price_times_quantity() -> None:
    """notional bounds compare price x quantity."""
    assert Bounds("notional", Decimal("6.5"), Decimal("6.5")).matches(BASE)


decimals = st.decimals(min_value=0, max_value=1000, allow_nan=False, places=4)


@given(price=decimals, low=st.none() | decimals, high=st.none() | decimals)
def test_bounds_match_exactly_the_inside(
    price: Decimal, low: Decimal | None, high: Decimal | None
) -> None:
    """A {min, max} test matches exactly the fills whose value lies within the bounds."""
    inside = (low is None or low <= price) and (high is None or price <= high)
    assert Bounds("price", low, high).matches(fill(price=price)) == inside


def test_any_all_not() -> None:
    """any needs one, all needs every, not inverts; the empty all matches every fill."""
    yes, no = FieldMatch("side", ("BUY",)), FieldMatch("side", ("SELL",))
    assert AnyOf((no, yes)).matches(BASE)
    assert not AnyOf((no,)).matches(BASE)
    assert not AllOf((yes, no)).matches(BASE)
    assert AllOf((yes, Not(no))).matches(BASE)
    assert MATCH_ALL.matches(BASE)
    assert not AnyOf(()).matches(BASE)


def test_match_in_file_order_and_stop() -> None:
    """Every matching enabled rule fires in file order; a matching stop rule ends the list."""
    rules = [
        rule("a"),
        rule("off", enabled=False, stop=True),
        rule("b", FieldMatch("side", ("SELL",)), stop=True),
        rule("c", stop=True),
        rule("d"),
    ]
    assert [r.name for r in RuleSet(rules).match(BASE)] == ["a", "c"]
    assert naive_match(rules, BASE) == RuleSet(rules).match(BASE)


def test_index_by_exact_and_prefix_market_and_side() -> None:
    """Rules pinning markets (exact or prefix glob) and sides match only those fills."""
    pin = AllOf((FieldMatch("market", ("0xabc*", "0xdef")), FieldMatch("side", ("SELL",))))
    nested = AllOf((AllOf((FieldMatch("market", ("0xabc123",)),)), Bounds("price", Decimal(1))))
    rules = RuleSet([rule("pin", pin), rule("nested", nested), rule("all")])
    assert [r.name for r in rules.match(fill(side="SELL"))] == ["pin", "all"]
    assert [r.name for r in rules.match(fill(market_id="0xdef", side="SELL"))] == ["pin", "all"]
    assert [r.name for r in rules.match(fill(market_id="0xab"))] == ["all"]
    assert [r.name for r in rules.match(fill(price=Decimal(1)))] == ["nested", "all"]
    starred = RuleSet([rule("starred", FieldMatch("market", ("0xab**",)))])
    assert starred.match(fill(market_id="0xab"))
    assert not starred.match(fill(market_id="0xa"))


def test_candidate_cache_is_bounded() -> None:
    """The per-(market, side) cache keeps a bounded number of entries however many markets."""
    rules = RuleSet([rule("x", FieldMatch("market", ("0x1*",)))])
    for i in range(20_000):
        expected = (rules.rules[0],) if str(i).startswith("1") else ()
        assert rules.match(fill(market_id=f"0x{i}")) == expected
    assert 0 < len(rules._cache) <= 16384


def test_rule_is_hashable_and_ruleset_readable() -> None:
    """Rules hash (they key dicts downstream) and a RuleSet's repr names its rules."""
    assert len({rule("a"), rule("a")}) == 1
    assert repr(RuleSet([rule("a"), rule("b")])) == "RuleSet(['a', 'b'])"
    assert len(RuleSet([rule("a")])) == 1
    assert [r.name for r in RuleSet([rule("a")])] == ["a"]


MARKETS = ("0xaa", "0xab", "0xabc", "0xb1", "0xb2")
markets = st.sampled_from(MARKETS)
strings = st.lists(
    st.sampled_from(("0xa*", "0xab", "0xb?", "0xabc", "*", "0x*c", "0xb1", "0xa**", "**")),
    min_size=1,
)


TITLE_PATTERNS = ("*bitcoin*", "Fed?", "*", "Will it rain?")
TITLES = ("Will Bitcoin close above $100k?", "fed?", "Will it rain?", "Other", "")


def conditions(depth: int = 2, *, titles: bool = False) -> st.SearchStrategy[Condition]:
    title_leaves: st.SearchStrategy[Condition] = (
        st.lists(st.sampled_from(TITLE_PATTERNS), min_size=1).map(
            lambda ps: FieldMatch("market_title", tuple(ps))
        )
        if titles
        else st.nothing()
    )
    leaves: st.SearchStrategy[Condition] = st.one_of(
        title_leaves,
        strings.map(lambda ps: FieldMatch("market", tuple(ps))),
        st.lists(st.sampled_from(("BUY", "SELL")), min_size=1).map(
            lambda ps: FieldMatch("side", tuple(ps))
        ),
        st.lists(st.sampled_from(("yes", "No", "*e*")), min_size=1).map(
            lambda ps: FieldMatch("outcome", tuple(ps))
        ),
        st.builds(
            Bounds,
            st.just("price"),
            st.none() | st.sampled_from([Decimal("0.2"), Decimal("0.5")]),
            st.none() | st.sampled_from([Decimal("0.5"), Decimal("0.8")]),
        ),
    )
    if depth == 0:
        return leaves
    inner = st.lists(conditions(depth - 1, titles=titles), max_size=3).map(tuple)
    return st.one_of(
        leaves,
        inner.map(AllOf),
        inner.map(AnyOf),
        conditions(depth - 1, titles=titles).map(Not),
    )


def rule_lists(*, titles: bool = False) -> st.SearchStrategy[list[Rule]]:
    return st.lists(
        st.builds(
            lambda i, c, enabled, stop: rule(f"r{i}", c, enabled=enabled, stop=stop),
            st.integers(0, 10**6),
            conditions(titles=titles),
            st.booleans(),
            st.integers(0, 4).map(lambda n: n == 0),
        ),
        max_size=12,
    )


fills = st.builds(
    lambda m, s, o, p: fill(market_id=m, side=s, outcome=o, price=p),
    markets,
    st.sampled_from(("BUY", "SELL")),
    st.sampled_from(("Yes", "No", "Up")),
    st.sampled_from([Decimal(x) for x in ("0.1", "0.2", "0.5", "0.65", "0.8", "0.9")]),
)


@settings(max_examples=300)
@given(rules=rule_lists(), batch=st.lists(fills, min_size=1, max_size=8))
def test_indexed_match_agrees_with_naive(rules: list[Rule], batch: list[Fill]) -> None:
    """RuleSet.match returns exactly what testing every rule in order returns, for any fill."""
    ruleset = RuleSet(rules)
    for f in batch + batch:  # twice: the second pass goes through the candidate cache
        assert ruleset.match(f) == naive_match(rules, f)


titled_fills = st.builds(
    lambda f, t: dataclasses.replace(f, market_title=t), fills, st.none() | st.sampled_from(TITLES)
)


@settings(max_examples=300)
@given(rules=rule_lists(titles=True), batch=st.lists(titled_fills, min_size=1, max_size=8))
def test_indexed_match_agrees_with_naive_on_titled_fills(
    rules: list[Rule], batch: list[Fill]
) -> None:
    """With title tests (decided once per market, side and title, then cached), RuleSet.match
    still returns exactly what testing every rule in order returns, titled or not."""
    ruleset = RuleSet(rules)
    for f in batch + batch:  # twice: the second pass goes through the caches
        assert ruleset.match(f) == naive_match(rules, f)


@dataclasses.dataclass(frozen=True, slots=True)
class CountedTitles(FieldMatch):
    """A title test that counts the titles it was asked about."""

    asked: list[str | None] = dataclasses.field(default_factory=list, compare=False)

    def accepts(self, value: str | None) -> bool:
        self.asked.append(value)
        return FieldMatch.accepts(self, value)


def test_a_title_glob_is_tested_once_per_market_and_title() -> None:
    """A rule on the title alone costs its glob once per (market, side, title), however many
    fills come; a market whose title changes is judged on the new title."""
    test = CountedTitles("market_title", ("*bitcoin*",))
    rules = [rule("pinned", AllOf((FieldMatch("market", ("0xabc123",)), test))), rule("wild", test)]
    ruleset = RuleSet(rules)
    for _ in range(100):
        assert [r.name for r in ruleset.match(BASE)] == ["pinned", "wild"]
        assert ruleset.match(fill(market_id="0xdef")) == (rules[1],)
    assert test.asked == [BASE.market_title] * 3  # 0xabc123: both rules; 0xdef: the wild one
    renamed = fill(market_title="Will Ether close above $5k?")
    assert ruleset.match(renamed) == ()
    assert ruleset.match(fill(market_title=None)) == ()  # no title: no title test holds


@settings(max_examples=300)
@given(rules=rule_lists(titles=True), batch=st.lists(fills, min_size=1, max_size=4))
def test_a_fill_needs_its_title_whenever_a_title_could_change_the_verdict(
    rules: list[Rule], batch: list[Fill]
) -> None:
    """If `needs_title` says no, every title gives the same matches as none (nothing waits
    for a title in vain, and nothing that a title could change goes without one)."""
    ruleset = RuleSet(rules)
    for titled in batch:
        untitled = dataclasses.replace(titled, market_title=None)
        if ruleset.needs_title(untitled):
            continue
        verdict = ruleset.match(untitled)
        for title in TITLES:
            assert ruleset.match(untitled.with_title(title)) == verdict
        assert not ruleset.needs_title(untitled.with_title("any"))  # titled: nothing to wait for


def test_needs_title_only_where_other_tests_leave_the_verdict_open() -> None:
    """A title test decides only when the rest of its rule does not: all/any/not, stop, pins."""
    title = FieldMatch("market_title", ("*bitcoin*",))
    big = Bounds("quantity", min=Decimal("1000"))
    untitled = fill(market_title=None)  # quantity 10, market 0xabc123, BUY
    assert RuleSet([rule("t", title)]).needs_title(untitled)
    assert RuleSet([rule("t", Not(title))]).needs_title(untitled)
    assert not RuleSet([rule("t", AllOf((big, title)))]).needs_title(untitled)  # too small anyway
    assert RuleSet([rule("t", AnyOf((big, title)))]).needs_title(untitled)
    assert not RuleSet([rule("t", AnyOf((Not(big), title)))]).needs_title(untitled)  # matches
    pinned_elsewhere = AllOf((FieldMatch("market", ("0xother",)), title))
    assert not RuleSet([rule("t", pinned_elsewhere)]).needs_title(untitled)
    assert not RuleSet([rule("t", AllOf((FieldMatch("side", ("SELL",)), title)))]).needs_title(
        untitled
    )
    # A stop rule that matches whatever the title ends the list: the title rule is never reached.
    assert not RuleSet([rule("all", stop=True), rule("t", title)]).needs_title(untitled)
    assert RuleSet([rule("all"), rule("t", title)]).needs_title(untitled)
    assert not RuleSet([rule("t", title, enabled=False), rule("all")]).needs_title(untitled)
    assert not RuleSet([rule("t", title)]).needs_title(fill())  # it has its title


def test_above_and_below_are_exclusive_and_exact() -> None:
    """ "Over $500" needed `min: 500.01`, which misses 500.001 and is not what was meant:
    `above` and `below` exclude their value, compared exactly."""
    over = Bounds("notional", above=Decimal("500"))
    under = Bounds("price", below=Decimal("0.10"), min=Decimal("0.01"))
    at = dataclasses.replace(BASE, price=Decimal("0.5"), quantity=Decimal("1000"))
    just_over = dataclasses.replace(at, quantity=Decimal("1000.000001"))
    assert (at.notional, over.matches(at), over.matches(just_over)) == (
        Decimal("500.0"),
        False,
        True,
    )
    cheap = dataclasses.replace(at, price=Decimal("0.0999999"))
    assert [under.matches(f) for f in (cheap, dataclasses.replace(at, price=Decimal("0.10")))] == [
        True,
        False,
    ]
