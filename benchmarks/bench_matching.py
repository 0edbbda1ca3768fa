"""Matching speed: the indexed RuleSet against a naive loop, for 10, 1,000 and 10,000 rules.

Run: `python benchmarks/bench_matching.py` (about 30 s). Prints, per rule count, match-only
cost and the feed reader's hot path (JSON frame -> normalize -> dedupe on Fill.key -> match),
each for the engine and for a naive loop over every rule, plus compile and config-parse time.

The generated rules are a realistic mix for a bot's owner: most pin one market (a 66-character
condition id) and a side, some with a quantity or price bound; a tenth pin a market prefix glob
("0xab12*"); and a handful of global rules (a title glob, a notional bound, an outcome) that
look at every fill whatever the rule count. Fills fall 70% on markets the rules know.

A last table shows rules that pin no market (here, one title glob each). A market's title is
the same on every fill, so the engine tests the globs once per market and title and caches the
verdict: "warm" is a fill on a market seen before (each market with its own title, as the venue
names it), "cold" a fill whose title the engine has never seen (every fill a new title, as on a
first fill of each market), where every glob is tested, as the naive loop does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from notifier.conditions import AllOf, AnyOf, Bounds, Condition, FieldMatch
from notifier.config import parse
from notifier.events import Fill
from notifier.normalize import decode_frame, normalize_message
from notifier.render import DEFAULT_BODY, DEFAULT_TITLE, Template
from notifier.rules import Rule, RuleSet, naive_match

SIZES = (10, 1_000, 10_000)
BUDGET = 0.4  # seconds per measurement; best of 3 (--quick: a tenth)
SEED = 7
TITLE, BODY = Template(DEFAULT_TITLE), Template(DEFAULT_BODY)


def market_id(rng: random.Random) -> str:
    return "0x" + "".join(rng.choices("0123456789abcdef", k=64))


def make_rules(n: int, rng: random.Random) -> tuple[list[Rule], list[str]]:
    """n rules in the mix described above, and the markets they pin exactly."""
    n_global = min(3, n // 3)
    n_prefix = n // 10
    markets = [market_id(rng) for _ in range(max(1, (n - n_global - n_prefix) // 2))]
    rules: list[Rule] = []
    globals_: list[Condition] = [
        FieldMatch("market_title", ("*bitcoin*",)),
        AnyOf((Bounds("notional", Decimal(500)), FieldMatch("outcome", ("Up",)))),
        AllOf((FieldMatch("side", ("SELL",)), Bounds("price", None, Decimal("0.05")))),
    ]
    for i in range(n_global):
        rules.append(Rule(f"global-{i}", globals_[i], ("desk",), TITLE, BODY))
    for i in range(n_prefix):
        prefix = "0x" + "".join(rng.choices("0123456789abcdef", k=4)) + "*"
        side = FieldMatch("side", (rng.choice(("BUY", "SELL")),))
        cond = AllOf((FieldMatch("market", (prefix,)), side))
        rules.append(Rule(f"prefix-{i}", cond, ("desk",), TITLE, BODY))
    for i in range(n - len(rules)):
        parts: list[Condition] = [
            FieldMatch("market", (markets[i // 2 % len(markets)],)),
            FieldMatch("side", (("BUY", "SELL")[i % 2],)),
        ]
        if i % 3 == 0:
            parts.append(Bounds("quantity", Decimal(rng.choice((10, 50, 100)))))
        if i % 5 == 0:
            parts.append(Bounds("price", Decimal("0.1"), Decimal("0.9")))
        rules.append(Rule(f"market-{i}", AllOf(tuple(parts)), ("desk",), TITLE, BODY))
    rng.shuffle(rules)  # file order is the user's, not grouped by kind
    return rules, markets


def make_frames(count: int, markets: Sequence[str], rng: random.Random) -> list[str]:
    """Unique fill frames in the three wire shapes, 70% on the rules' markets."""
    start = datetime(2026, 2, 6, 12, tzinfo=UTC)
    frames = []
    for i in range(count):
        fields = {
            "order_id": str(100_000 + i),
            "market_id": rng.choice(markets) if rng.random() < 0.7 else market_id(rng),
            "side": rng.choice(("BUY", "SELL")),
            "outcome": rng.choice(("Yes", "No", "Up")),
            "price": str(Decimal(rng.randint(1, 99)) / 100),
            "quantity": str(Decimal(rng.randint(1, 2000)) / 10),
        }
        stamp = (start + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z")
        shape = i % 3
        if shape == 0:
            frames.append(json.dumps({"type": "fill", **fields, "filled_at": stamp}))
        elif shape == 1:
            frames.append(json.dumps({"type": "execution", **fields, "timestamp": stamp}))
        else:
            frames.append(json.dumps({"type": "execution", "data": {**fields, "timestamp": stamp}}))
    return frames


def to_fills(frames: Sequence[str]) -> list[Fill]:
    fills = []
    for frame in frames:
        obj = decode_frame(frame, max_bytes=1 << 20)
        fill = normalize_message(obj) if isinstance(obj, dict) else None
        assert isinstance(fill, Fill), fill
        fills.append(fill)
    return fills


def unpinned(n: int, fills: Sequence[Fill], rng: random.Random) -> tuple[float, float, float]:
    """Seconds a fill for n title-glob rules, on titled fills: the engine warm (each market
    with its own title, seen before) and cold (a title never seen), and the naive loop."""
    words = [f"w{i}" for i in range(max(n, 100))]
    rules = [
        Rule(f"title-{i}", FieldMatch("market_title", (f"*{words[i]} *",)), ("desk",), TITLE, BODY)
        for i in range(n)
    ]
    names: dict[str, str] = {}
    titled = [
        dataclasses.replace(
            f, market_title=names.setdefault(f.market_id, f"Will {rng.choice(words)} win the race?")
        )
        for f in fills[:2000]
    ]
    fresh = [
        dataclasses.replace(f, market_title=f"Will {rng.choice(words)} win race {k}?")
        for k, f in enumerate(fills[:500])
    ]
    ruleset = RuleSet(rules)
    for fill in titled[:200] + fresh[:200]:
        assert ruleset.match(fill) == naive_match(rules, fill)
    naive = lambda f: naive_match(rules, f)  # noqa: E731 -- bound per size
    return match_only(ruleset.match, titled), cold(rules, fresh), match_only(naive, titled[:500])


def cold(rules: Sequence[Rule], fills: Sequence[Fill]) -> float:
    """Best seconds a fill over 3 passes, each through a new RuleSet: no title seen before."""
    best = float("inf")
    for _ in range(3):
        ruleset = RuleSet(rules)
        t0 = time.perf_counter()
        for fill in fills:
            ruleset.match(fill)
        best = min(best, (time.perf_counter() - t0) / len(fills))
    return best


def per_item(run: Callable[[int], int]) -> float:
    """Best seconds per item over 3 timed runs of about BUDGET seconds each."""
    count, elapsed = 1, 0.0
    while elapsed < BUDGET / 8:  # size a run to the budget
        count *= 2
        t0 = time.perf_counter()
        run(count)
        elapsed = time.perf_counter() - t0
    count = max(1, int(count * BUDGET / elapsed))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        done = run(count)
        best = min(best, (time.perf_counter() - t0) / done)
    return best


def match_only(match: Callable[[Fill], tuple[Rule, ...]], fills: Sequence[Fill]) -> float:
    def run(count: int) -> int:
        n = len(fills)
        for i in range(count):
            match(fills[i % n])
        return count

    return per_item(run)


def hot_path(match: Callable[[Fill], tuple[Rule, ...]], frames: Sequence[str]) -> float:
    """Frame text to matched rules, as the feed reader does it (a fresh seen-set per pass)."""

    def run(count: int) -> int:
        seen: set[str] = set()
        n = len(frames)
        for i in range(count):
            if i % n == 0:
                seen = set()
            obj = decode_frame(frames[i % n], max_bytes=1 << 20)
            if not isinstance(obj, dict):
                continue
            fill = normalize_message(obj)
            if not isinstance(fill, Fill):
                continue
            key = fill.key
            if key in seen:
                continue
            seen.add(key)
            match(fill)
        return count

    return per_item(run)


def config_text(rules: Sequence[Rule]) -> str:
    """The generated rules as a config file, to time parsing and validation (a reload)."""
    lines = ["channels:", "  desk: json://127.0.0.1/desk", "rules:"]
    for rule in rules:
        lines.append(f"  - name: {rule.name}")
        lines.append("    notify: desk")
        lines.append(f"    when: {_when(rule.condition)}")
    return "\n".join(lines) + "\n"


def _when(cond: Condition) -> str:
    if isinstance(cond, FieldMatch):
        return "{" + f"{cond.field}: {json.dumps(list(cond.patterns))}" + "}"
    if isinstance(cond, Bounds):
        bounds = ", ".join(f"{k}: {v}" for k, v in (("min", cond.min), ("max", cond.max)) if v)
        return "{" + f"{cond.field}: {{{bounds}}}" + "}"
    assert isinstance(cond, AllOf | AnyOf)
    key = "all" if isinstance(cond, AllOf) else "any"
    return "{" + key + ": [" + ", ".join(_when(c) for c in cond.conditions) + "]}"


def main() -> None:
    global BUDGET  # one knob for every measurement of the run
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the timing budget")
    if parser.parse_args().quick:
        BUDGET /= 10
    rng = random.Random(SEED)
    rows = []
    for n in SIZES:
        rules, markets = make_rules(n, rng)
        frames = make_frames(20_000, markets, rng)
        fills = to_fills(frames)
        t0 = time.perf_counter()
        ruleset = RuleSet(rules)
        compile_s = time.perf_counter() - t0
        text = config_text(rules)
        t0 = time.perf_counter()
        parsed = parse(text, source=Path("bench.yaml"), env={"POLYSIM_API_KEY": "ps_test_x"})
        parse_s = time.perf_counter() - t0
        assert parsed.rules.names() == ruleset.names()
        for fill in fills[:2000]:
            assert ruleset.match(fill) == naive_match(rules, fill)
        naive = lambda f, rules=rules: naive_match(rules, f)  # noqa: E731 -- bound per size
        matched = sum(bool(ruleset.match(f)) for f in fills) / len(fills)
        rows.append(
            {
                "rules": n,
                "engine": match_only(ruleset.match, fills),
                "naive": match_only(naive, fills[:500]),
                "engine_path": hot_path(ruleset.match, frames),
                "naive_path": hot_path(naive, frames[:500]),
                "compile": compile_s,
                "parse": parse_s,
                "matched": matched,
            }
        )
        print(f"... {n} rules done", file=sys.stderr)
    report(rows)
    print("\nrules that pin no market (a title glob each): tested once per market and title")
    print(f"{'rules':>7} {'warm µs/fill':>13} {'cold µs/fill':>13} {'naive µs/fill':>14}")
    base = None
    for n in SIZES:
        warm, first, naive = unpinned(n, fills, rng)
        base = base or warm
        print(
            f"{n:>7,} {warm * 1e6:>13.2f} {first * 1e6:>13.2f} {naive * 1e6:>14.2f}"
            f"   (warm {warm / base:.2f}x of 10)"
        )


def report(rows: list[dict[str, float]]) -> None:
    def rate(seconds: float) -> str:
        return f"{1 / seconds:>12,.0f}"

    print("match only (Fill -> matching rules)")
    print(
        f"{'rules':>7} {'engine fills/s':>15} {'µs/fill':>8} {'naive fills/s':>14} "
        f"{'µs/fill':>9} {'matched':>8} {'compile':>8} {'config parse':>13}"
    )
    for r in rows:
        print(
            f"{r['rules']:>7,.0f} {rate(r['engine']):>15} {r['engine'] * 1e6:>8.2f} "
            f"{rate(r['naive']):>14} {r['naive'] * 1e6:>9.1f} {r['matched']:>8.0%} "
            f"{r['compile'] * 1e3:>6.1f}ms {r['parse']:>12.2f}s"
        )
    print("\nhot path (JSON frame -> normalize -> dedupe on Fill.key -> match)")
    print(
        f"{'rules':>7} {'engine fills/s':>15} {'µs/fill':>8} {'naive fills/s':>14} {'µs/fill':>9}"
    )
    for r in rows:
        print(
            f"{r['rules']:>7,.0f} {rate(r['engine_path']):>15} {r['engine_path'] * 1e6:>8.2f} "
            f"{rate(r['naive_path']):>14} {r['naive_path'] * 1e6:>9.1f}"
        )
    by = {int(r["rules"]): r for r in rows}
    print("\nratios")
    print(
        f"  10,000 vs 10 rules, match only:  {by[10_000]['engine'] / by[10]['engine']:.2f}x "
        "the cost (target <= 1.5x)"
    )
    print(
        f"  10,000 vs 10 rules, hot path:    "
        f"{by[10_000]['engine_path'] / by[10]['engine_path']:.2f}x the cost (target <= 1.5x)"
    )
    print(
        f"  engine vs naive at 1,000 rules:  {by[1000]['naive'] / by[1000]['engine']:.0f}x "
        f"faster match, {by[1000]['naive_path'] / by[1000]['engine_path']:.0f}x on the hot path "
        "(target >= 5x)"
    )
    print(
        f"  1,000 rules, match only:         {by[1000]['engine'] * 1e6:.2f} µs/fill (target < 10)"
    )


if __name__ == "__main__":
    main()
