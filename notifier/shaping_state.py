"""The Shaper's held state per rule, and its codec for the state file (so a restart keeps it).

Apart from the state machine (`shaping.py`, `shaping_steps.py`), which decides when these
records open and release.
State is stored as entries, one row each: a rule's own part (its held digest and dropped
count), and each key's open group or throttle period. Only entries that changed are written
again, so a rule throttling 10,000 markets costs a few rows per batch, not a 1 MB rewrite.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

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

# What an entry is: the rule's own part ("rule", key ()), or one key's group or throttle period.
Kind = Literal["rule", "group", "throttle"]
KINDS: tuple[Kind, ...] = ("rule", "group", "throttle")
Key = tuple[str, ...]


@dataclass(slots=True)
class RuleState:
    """Everything one rule holds; empty once nothing waits and nothing was dropped."""

    groups: dict[Key, OpenGroup]
    throttles: dict[Key, ThrottlePeriod]
    held: HeldDigest | None = None
    dropped: int = 0
    # Throttle periods at which ended, quiet ones are next swept away (not persisted).
    sweep_at: int = SWEEP_MIN
    # Group and throttle keys changed since the state was last saved (not persisted).
    dirty: set[tuple[Kind, Key]] = field(default_factory=set)

    def empty(self) -> bool:
        """Whether the rule holds nothing worth keeping."""
        return not (self.groups or self.throttles or self.held or self.dropped)


@dataclass(slots=True)
class StateChanges:
    """What the state file needs since the last save, applied in this order.

    `replace`: every stored entry goes first (an old whole-state snapshot being moved over);
    `cleared`: every entry of these rules goes; then `deletes` (rule, kind, key text) and
    `puts` (rule, kind, key text, data as JSON text).
    """

    replace: bool = False
    cleared: set[str] = field(default_factory=set)
    deletes: list[tuple[str, str, str]] = field(default_factory=list)
    puts: list[tuple[str, str, str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.replace or self.cleared or self.deletes or self.puts)


def key_text(key: Key) -> str:
    """A group or throttle key as the state file stores it."""
    return json.dumps(list(key), separators=(",", ":"))


def parse_key(text: str) -> Key:
    """What `key_text` wrote; ValueError otherwise."""
    raw = json.loads(text)
    if not isinstance(raw, list) or not all(isinstance(part, str) for part in raw):
        raise ValueError(f"not a key: {text[:80]!r}")
    return tuple(raw)


def entries(state: RuleState) -> Iterator[tuple[Kind, Key, dict[str, object]]]:
    """Every entry of a rule's state, as JSON-ready data (for a whole write)."""
    yield "rule", (), dump_own(state)
    for key, group in state.groups.items():
        yield "group", key, _dump_group(group)
    for key, throttle in state.throttles.items():
        yield "throttle", key, _dump_throttle(throttle)


def dump_entry(state: RuleState, kind: Kind, key: Key) -> dict[str, object] | None:
    """One entry as JSON-ready data, or None when the state no longer has it."""
    if kind == "rule":
        return dump_own(state)
    if kind == "group":
        group = state.groups.get(key)
        return None if group is None else _dump_group(group)
    throttle = state.throttles.get(key)
    return None if throttle is None else _dump_throttle(throttle)


def dump_own(state: RuleState) -> dict[str, object]:
    """The rule's own part: the digest held outside active hours, and the fills dropped."""
    held = state.held
    return {
        "held": None
        if held is None
        else {
            "opens": held.opens.isoformat(),
            "suppressed": held.suppressed,
            **_dump_bunch(held.bunch),
        },
        "dropped": state.dropped,
    }


def load_entry(state: RuleState, kind: Kind, key: Key, data: Mapping[str, object]) -> None:
    """Put one stored entry back into `state`; ValueError when it cannot be read."""
    try:
        if kind == "rule":
            state.dropped = int(data["dropped"])  # type: ignore[call-overload]  # JSON; refused below
            if (h := data["held"]) is not None:
                h = _mapping(h)
                state.held = HeldDigest(parse_time(h["opens"]), _bunch(h), int(h["suppressed"]))
        elif kind == "group":
            state.groups[key] = OpenGroup(parse_time(data["due"]), _bunch(data))
        elif kind == "throttle":
            state.throttles[key] = ThrottlePeriod(
                parse_time(data["until"]),
                _load_bunch(data),
                int(data["messages"]),  # type: ignore[call-overload]  # JSON; refused below
            )
        else:
            raise ValueError(f"unknown kind {kind!r}")
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        # ArithmeticError: "dropped": 1e999 is a float infinity that int() refuses.
        raise ValueError(f"unreadable {kind} entry: {exc!r}") from exc


def waiting(
    stored: Iterable[tuple[str, str, str, str]],
) -> tuple[dict[str, int], datetime | None]:
    """From the stored entries (rule, kind, key, JSON data): fills held per rule, and when
    the first of those goes out; for `notifier outbox`, which has no shaper. Unreadable
    entries are skipped (the daemon reports them when it loads)."""
    held: dict[str, int] = {}
    due: list[datetime] = []
    for rule, kind, _key, text in stored:
        state = RuleState(groups={}, throttles={})
        try:
            load_entry(state, cast("Kind", kind), (), json.loads(text))
        except ValueError:
            continue
        parts = [(g.due, g.bunch) for g in state.groups.values()]
        parts += [(t.until, t.bunch) for t in state.throttles.values() if t.bunch is not None]
        if state.held is not None:
            parts.append((state.held.opens, state.held.bunch))
        for at, bunch in parts:
            held[rule] = held.get(rule, 0) + bunch.count
            if at.year >= 2000:  # not the "look again at once" mark a reload may leave
                due.append(at)
    return held, min(due, default=None)


def load_snapshot(data: Mapping[str, object]) -> dict[str, RuleState]:
    """Per-rule state from a whole-state snapshot (the format before entries); ValueError
    when it cannot be read."""
    states: dict[str, RuleState] = {}
    try:
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        for rule, raw in _mapping(data["rules"]).items():
            states[str(rule)] = _load_rule(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable shaping snapshot: {exc}") from exc
    return states


def _mapping(value: object) -> Mapping[str, Any]:
    """A stored JSON object, or ValueError (a check that stays under `python -O`)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{type(value).__name__}, not an object")
    return value


def _dump_group(group: OpenGroup) -> dict[str, object]:
    return {"due": group.due.isoformat(), **_dump_bunch(group.bunch)}


def _dump_throttle(throttle: ThrottlePeriod) -> dict[str, object]:
    return {
        "until": throttle.until.isoformat(),
        "messages": throttle.messages,
        **_dump_bunch(throttle.bunch),
    }


def _load_rule(raw: object) -> RuleState:
    raw = _mapping(raw)
    state = RuleState(groups={}, throttles={})
    load_entry(state, "rule", (), raw)
    for g in raw["groups"]:
        load_entry(state, "group", tuple(g["key"]), g)
    for t in raw["throttles"]:
        load_entry(state, "throttle", tuple(t["key"]), t)
    return state


def _dump_bunch(bunch: Bunch | None) -> dict[str, object]:
    """The kept fills; the exact tally too once there were more fills than kept."""
    if bunch is None:
        return {"fills": []}
    data: dict[str, object] = {"fills": [fill_to_data(f) for f in bunch.kept]}
    # The tally also keeps which fill came last where that is not the last one kept (those
    # are in fill order).
    if bunch.count > len(bunch.kept) or bunch.last != bunch.kept[-1]:
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
    if not isinstance(fills, list):
        raise ValueError(f"fills: {type(fills).__name__}, not a list")
    if not fills:
        return None
    bunch = Bunch.of(*(fill_from_data(f) for f in fills))
    tally = raw.get("tally")
    if tally is not None:
        tally = _mapping(tally)
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
