"""The Shaper's held state per rule, and its JSON snapshot codec (so a restart keeps it).

Apart from `shaping.py`'s state machine, which decides when these records open and release.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from notifier.digests import Bunch, fill_from_data, fill_to_data, parse_decimal, parse_time

SNAPSHOT_VERSION = 1


@dataclass(slots=True)
class OpenGroup:
    """A group collecting matches for one key until `due`."""

    due: datetime
    bunch: Bunch


@dataclass(slots=True)
class ThrottlePeriod:
    """One key's throttle period: what was kept back (None: nothing yet) until `until`."""

    until: datetime
    bunch: Bunch | None
    messages: int = 0  # messages kept back this period


@dataclass(slots=True)
class HeldDigest:
    """What arrived outside active hours, released as one digest when the window `opens`."""

    opens: datetime
    bunch: Bunch
    suppressed: int = 0


SWEEP_MIN = 64  # throttle periods a rule keeps before ended, quiet ones are swept


@dataclass(slots=True)
class RuleState:
    """Everything one rule holds; empty once nothing waits and nothing was dropped."""

    groups: dict[tuple[str, ...], OpenGroup]
    throttles: dict[tuple[str, ...], ThrottlePeriod]
    held: HeldDigest | None = None
    dropped: int = 0
    # Throttle periods at which ended, quiet ones are next swept away (not persisted).
    sweep_at: int = SWEEP_MIN

    def empty(self) -> bool:
        """Whether the rule holds nothing worth keeping."""
        return not (self.groups or self.throttles or self.held or self.dropped)


def dump_snapshot(states: Mapping[str, RuleState]) -> dict[str, object]:
    """All held state as JSON-ready data (decimals as strings, datetimes ISO-8601)."""
    return {"version": SNAPSHOT_VERSION, "rules": {r: _dump_rule(s) for r, s in states.items()}}


def load_snapshot(data: Mapping[str, object]) -> dict[str, RuleState]:
    """Per-rule state from what `dump_snapshot` made; ValueError when it cannot be read."""
    states: dict[str, RuleState] = {}
    try:
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        rules = data["rules"]
        assert isinstance(rules, Mapping)
        for rule, raw in rules.items():
            states[str(rule)] = _load_rule(raw)
    except (KeyError, TypeError, ValueError, AssertionError) as exc:
        raise ValueError(f"unreadable shaping snapshot: {exc}") from exc
    return states


def _dump_rule(state: RuleState) -> dict[str, object]:
    return {
        "groups": [
            {"key": list(k), "due": g.due.isoformat(), **_dump_bunch(g.bunch)}
            for k, g in state.groups.items()
        ],
        "throttles": [
            {
                "key": list(k),
                "until": t.until.isoformat(),
                "messages": t.messages,
                **_dump_bunch(t.bunch),
            }
            for k, t in state.throttles.items()
        ],
        "held": None
        if state.held is None
        else {
            "opens": state.held.opens.isoformat(),
            "suppressed": state.held.suppressed,
            **_dump_bunch(state.held.bunch),
        },
        "dropped": state.dropped,
    }


def _load_rule(raw: object) -> RuleState:
    assert isinstance(raw, Mapping)
    state = RuleState(groups={}, throttles={}, dropped=int(raw["dropped"]))
    for g in raw["groups"]:
        state.groups[tuple(g["key"])] = OpenGroup(parse_time(g["due"]), _bunch(g))
    for t in raw["throttles"]:
        state.throttles[tuple(t["key"])] = ThrottlePeriod(
            parse_time(t["until"]), _load_bunch(t), int(t["messages"])
        )
    if (h := raw["held"]) is not None:
        state.held = HeldDigest(parse_time(h["opens"]), _bunch(h), int(h["suppressed"]))
    return state


def _dump_bunch(bunch: Bunch | None) -> dict[str, object]:
    """The kept fills; the exact tally too once there were more fills than kept."""
    if bunch is None:
        return {"fills": []}
    data: dict[str, object] = {"fills": [fill_to_data(f) for f in bunch.kept]}
    if bunch.count > len(bunch.kept):
        data["tally"] = {
            "last": fill_to_data(bunch.last),
            "count": bunch.count,
            "quantity": str(bunch.quantity),
            "notional": str(bunch.notional),
            "min_price": str(bunch.min_price),
            "max_price": str(bunch.max_price),
            "first_at": bunch.first_at.isoformat(),
            "last_at": bunch.last_at.isoformat(),
            "sides": sorted(bunch.sides),
            "outcomes": sorted(bunch.outcomes),
            "markets": sorted(bunch.markets),
            "more_markets": bunch.more_markets,
        }
    return data


def _load_bunch(raw: Mapping[str, object]) -> Bunch | None:
    """What `_dump_bunch` wrote (or a snapshot from before tallies: every fill listed)."""
    fills = raw["fills"]
    assert isinstance(fills, list)
    if not fills:
        return None
    bunch = Bunch.of(*(fill_from_data(f) for f in fills))
    tally = raw.get("tally")
    if tally is not None:
        assert isinstance(tally, Mapping)
        bunch.last = fill_from_data(tally["last"])
        bunch.count = int(tally["count"])
        bunch.quantity = parse_decimal(tally["quantity"])
        bunch.notional = parse_decimal(tally["notional"])
        bunch.min_price = parse_decimal(tally["min_price"])
        bunch.max_price = parse_decimal(tally["max_price"])
        bunch.first_at, bunch.last_at = parse_time(tally["first_at"]), parse_time(tally["last_at"])
        bunch.sides, bunch.outcomes = set(tally["sides"]), set(tally["outcomes"])
        # A snapshot from before market tracking names only some fills' markets: "at least".
        bunch.markets = set(tally.get("markets", [])) | bunch.markets | {bunch.last.market_id}
        bunch.more_markets = bool(tally.get("more_markets", "markets" not in tally))
        bunch.cap_markets()
    return bunch


def _bunch(raw: Mapping[str, object]) -> Bunch:
    bunch = _load_bunch(raw)
    if bunch is None:
        raise ValueError("a group or held digest without fills")
    return bunch
