"""Alert shaping between matching and rendering: group, throttle, active hours. Pure.

Per rule, a match passes three stages, each optional:

- **group**: the first match for a key (the `by` field values) opens a group at `now`; matches that
  arrive before `opened + wait` join it; at `opened + wait` it is released as one digest. The window
  is half-open: a match at exactly `opened + wait` opens the next group.
- **throttle**: at most one release per key per `every`. The first goes out at once and starts the
  period; later ones in the period are kept, and when it ends they go out as one message (all their
  fills, `suppressed` = how many messages were folded into it beyond the one sent), starting a new
  period. Every match is either sent or counted: nothing disappears silently.
- **active**: a match arriving outside the window skips group and throttle: `hold` folds it into
  one digest per rule, released when the window next opens; `drop` discards it, counted in
  `stats`. A group or throttle period that took matches inside the window and ends after it
  closes: `hold` folds its message into the held digest (no message outside hours); `drop`
  sends it when due, since what arrived inside the window is never discarded.

Times are the injected `now` (arrival), never `filled_at`: backfilled fills still wait their turn.
Deadlines are stored, not recomputed, so a reload that changes a spec never loses what is held.
A rule that stops being shaped (removed, renamed, or left without group/throttle/active) gives
up what it holds as releases (`reconfigure`'s result, `orphans` after `restore`): those fills are
already recorded as seen, so dropping them would lose them for good.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime

from notifier.digests import (
    Bunch,
    Release,
    ReleaseKind,
    key_of,
    make_release,
)
from notifier.events import Fill
from notifier.shaping_state import (
    SWEEP_MIN,
    HeldDigest,
    Key,
    Kind,
    OpenGroup,
    RuleState,
    ThrottlePeriod,
    dump_entry,
    entries,
    load_entry,
    load_snapshot,
)
from notifier.shapingspecs import (
    RuleShaping,
)
from notifier.windows import aware

_RECHECK = datetime(1970, 1, 1, tzinfo=UTC)  # a deadline already past: "look again at once"


class Shaper:
    """Per-rule shaping state driven by an injected clock; see the module docstring."""

    def __init__(self, specs: Mapping[str, RuleShaping]) -> None:
        self._specs = dict(specs)
        self._state: dict[str, RuleState] = {}
        self.orphans: list[Release] = []  # what `restore` found for rules no longer shaped
        # Since the last `changes()`: rules whose state changed, rules whose every entry went,
        # and whether everything must be written again (a restore from an old snapshot).
        self._touched: set[str] = set()
        self._cleared: set[str] = set()
        self._rewrite = False

    def offer(self, rule: str, fill: Fill, now: datetime) -> list[Release]:
        """Take one match of `rule`; return what goes out at once (possibly nothing)."""
        aware(now)
        spec = self._spec(rule)
        state = self._rule_state(rule)
        out: list[Release] = []
        if not self._open(spec, now):
            self._fold(spec, state, Bunch.of(fill), 0, now)
        elif spec.group is None:
            self._throttle(rule, spec, state, Bunch.of(fill), now, out)
        else:
            key = key_of(fill, spec.group.by)
            group = state.groups.get(key)
            if group is not None and now >= group.due:
                del state.groups[key]
                self._after_group(rule, spec, state, key, group, now, out)
                group = None
            if group is None:
                state.groups[key] = OpenGroup(due=now + spec.group.wait, bunch=Bunch.of(fill))
            else:
                group.bunch.add(fill)
            state.dirty.add(("group", key))
        self._tidy(rule)
        return out

    def due(self, now: datetime) -> list[Release]:
        """Everything whose time has come by `now`: closed groups, ended periods, opened windows."""
        aware(now)
        out: list[Release] = []
        # In a fixed order (rule, deadline, key), so a restart, which reads the state back in
        # another order, releases what falls due together in the same order.
        for rule in sorted(self._state):
            spec, state = self._specs[rule], self._state[rule]
            changed = len(out)
            if state.held is not None:
                if self._open(spec, now):
                    out.append(self._flush_held(rule, state))
                elif now >= state.held.opens and spec.active is not None:
                    state.held.opens = spec.active.next_open(now)
                    self._touched.add(rule)
            for _, key in sorted((g.due, k) for k, g in state.groups.items() if now >= g.due):
                group = state.groups.pop(key)
                state.dirty.add(("group", key))
                self._after_group(rule, spec, state, key, group, now, out)
            for _, key in sorted(
                (t.until, k) for k, t in state.throttles.items() if now >= t.until
            ):
                throttle = state.throttles.pop(key)
                state.dirty.add(("throttle", key))
                self._end_period(rule, spec, state, key, throttle, now, out)
            if state.dirty or len(out) > changed:
                self._touched.add(rule)
            self._tidy(rule)
        return out

    def next_deadline(self) -> datetime | None:
        """The earliest instant `due` has work to do, or None when nothing is waiting."""
        times = [
            t
            for state in self._state.values()
            for t in (
                *(g.due for g in state.groups.values()),
                *(t.until for t in state.throttles.values() if t.bunch),
                *((state.held.opens,) if state.held is not None else ()),
            )
        ]
        return min(times, default=None)

    def pull_in(self, now: datetime) -> int:
        """Bring deadlines further off than their spec allows back to `now` plus the spec's
        wait or period; how many moved.

        Only a wall clock that stepped back puts a deadline there (or a reload that shortened
        the spec): without this, a group of `wait: 30s` would wait out the step as well, and
        a held digest the opening the later clock had named.
        """
        moved = 0
        for rule, state in self._state.items():
            spec, before = self._specs[rule], moved
            if spec.group is not None:
                latest = now + spec.group.wait
                for key, group in state.groups.items():
                    if group.due > latest:
                        group.due = latest
                        state.dirty.add(("group", key))
                        moved += 1
            if spec.throttle is not None:
                latest = now + spec.throttle.every
                for key, throttle in state.throttles.items():
                    if throttle.until > latest:
                        throttle.until = latest
                        state.dirty.add(("throttle", key))
                        moved += 1
            if spec.active is not None and state.held is not None:
                # Stepped back into an open window, or to before an earlier opening: the
                # held digest is due then, not at the opening the later clock had named.
                opens = now if spec.active.is_active(now) else spec.active.next_open(now)
                if state.held.opens > opens:
                    state.held.opens = opens
                    moved += 1
            if moved > before:
                self._touched.add(rule)
        return moved

    def stats(self) -> dict[str, dict[str, int]]:
        """Per rule: fills dropped outside active hours, and fills waiting in each stage."""
        return {
            rule: {
                "dropped": s.dropped,
                "grouped": sum(g.bunch.count for g in s.groups.values()),
                "throttled": sum(t.bunch.count for t in s.throttles.values() if t.bunch),
                "held": s.held.bunch.count if s.held is not None else 0,
            }
            for rule, s in self._state.items()
        }

    def reconfigure(self, specs: Mapping[str, RuleShaping]) -> list[Release]:
        """New specs on reload: state of rules that still exist stays, with its deadlines.

        Returns what rules no longer in `specs` held, released now (see `_evict`).
        """
        old = self._specs
        self._specs = dict(specs)
        out = self._evict()
        for rule, state in self._state.items():
            if state.held is not None and old.get(rule, RuleShaping()).active != specs[rule].active:
                state.held.opens = _RECHECK  # the window moved: due() finds the new opening
                self._touched.add(rule)
        return out

    def touch_all(self) -> None:
        """Have the next `changes()` write every rule's own entry again (its channels moved)."""
        self._touched.update(self._state)

    def changes(self) -> Iterator[tuple[str, Kind, Key, dict[str, object] | None]]:
        """Entries changed since the last call: (rule, kind, key, data), data None if gone.

        Read `cleared()` and `rewrite()` first: those apply before these entries.
        """
        touched, self._touched = self._touched, set()
        for rule in sorted(touched):
            state = self._state.get(rule)
            if state is None:
                continue  # every entry of it went: in cleared()
            if self._rewrite:
                state.dirty.clear()
                for kind, key, data in entries(state):
                    yield rule, kind, key, data
                continue
            dirty, state.dirty = state.dirty, set()
            yield rule, "rule", (), dump_entry(state, "rule", ())
            for kind, key in dirty:
                yield rule, kind, key, dump_entry(state, kind, key)
        self._rewrite = False

    def cleared(self) -> set[str]:
        """Rules whose every stored entry goes (their state emptied or evicted); once."""
        cleared, self._cleared = self._cleared, set()
        return cleared

    def rewrite(self) -> bool:
        """Whether every stored entry goes before the next `changes()` (they hold all)."""
        return self._rewrite

    @classmethod
    def restore(
        cls,
        specs: Mapping[str, RuleShaping],
        stored: Iterable[tuple[str, Kind, Key, Mapping[str, object]]],
    ) -> Shaper:
        """A shaper holding the stored entries; rules no longer configured go to `orphans`.

        An entry that cannot be read raises ValueError naming its rule, kind and key.
        """
        shaper = cls(specs)
        for rule, kind, key, data in stored:
            shaper.load(rule, kind, key, data)
        shaper.settle()
        return shaper

    def load(self, rule: str, kind: Kind, key: Key, data: Mapping[str, object]) -> None:
        """Take back one stored entry (then `settle`); ValueError naming it if unreadable."""
        state = self._state.setdefault(rule, RuleState(groups={}, throttles={}))
        try:
            load_entry(state, kind, key, data)
        except ValueError as exc:
            raise ValueError(f"rule {rule!r}, {kind} {list(key)}: {exc}") from exc

    @classmethod
    def restore_snapshot(
        cls, specs: Mapping[str, RuleShaping], data: Mapping[str, object]
    ) -> Shaper:
        """A shaper holding a whole-state snapshot (the format before entries); its next
        `changes()` writes everything, replacing what the state file held."""
        shaper = cls(specs)
        shaper._state.update(load_snapshot(data))
        shaper.settle()
        shaper._rewrite = True
        shaper._touched.update(shaper._state)
        return shaper

    def settle(self) -> None:
        """After loading: empty states dropped, orphans taken, held windows rechecked."""
        for rule in [r for r, s in self._state.items() if s.empty()]:
            del self._state[rule]
            self._cleared.add(rule)
        self.orphans = self._evict()
        for rule, state in self._state.items():
            if state.held is not None:  # the window may have changed while we were down
                state.held.opens = _RECHECK
                self._touched.add(rule)

    def _evict(self) -> list[Release]:
        """Release everything held for rules without a spec, oldest deadline first.

        Each group, throttle period and held digest becomes one release, as it would have at
        its deadline; only the count of fills dropped outside active hours is forgotten.
        """
        out: list[Release] = []
        for rule in sorted(r for r in self._state if r not in self._specs):
            state = self._state.pop(rule)
            self._cleared.add(rule)
            pieces = [
                (g.due, make_release(rule, k, g.bunch, 0, "group")) for k, g in state.groups.items()
            ]
            pieces += [
                (t.until, make_release(rule, k, t.bunch, t.messages - 1, "throttle"))
                for k, t in state.throttles.items()
                if t.bunch
            ]
            if state.held is not None:
                held = make_release(rule, (), state.held.bunch, state.held.suppressed, "held")
                pieces.append((state.held.opens, held))
            pieces.sort(key=lambda p: (p[0], p[1].kind, p[1].key))  # fixed, as in `due`
            out += [release for _, release in pieces]
        return out

    def _spec(self, rule: str) -> RuleShaping:
        spec = self._specs.get(rule)
        if spec is None:
            self._specs[rule] = spec = RuleShaping()  # an unshaped rule passes straight through
        return spec

    def _rule_state(self, rule: str) -> RuleState:
        self._touched.add(rule)
        return self._state.setdefault(rule, RuleState(groups={}, throttles={}))

    def _tidy(self, rule: str) -> None:
        if self._state[rule].empty():
            del self._state[rule]
            self._cleared.add(rule)

    @staticmethod
    def _open(spec: RuleShaping, now: datetime) -> bool:
        return spec.active is None or spec.active.is_active(now)

    @staticmethod
    def _holds(spec: RuleShaping, due: datetime) -> bool:
        """Whether a message of matches that arrived inside the window, due at `due`, waits for
        the next opening (`hold` outside the window); with `drop` it goes out: never discarded."""
        active = spec.active
        return active is not None and active.outside == "hold" and not active.is_active(due)

    def _after_group(
        self,
        rule: str,
        spec: RuleShaping,
        state: RuleState,
        key: tuple[str, ...],
        group: OpenGroup,
        now: datetime,
        out: list[Release],
    ) -> None:
        bunch = group.bunch
        # Judged at the deadline, not at release: a group due inside the window goes out,
        # however late the release comes (a restart, a timer firing after closing time).
        if self._holds(spec, group.due):
            self._fold(spec, state, bunch, 0, now)
        elif spec.throttle is None:
            self._emit(spec, state, now, make_release(rule, key, bunch, 0, "group"), out)
        else:
            self._throttle(rule, spec, state, bunch, now, out)

    def _throttle(
        self,
        rule: str,
        spec: RuleShaping,
        state: RuleState,
        bunch: Bunch,
        now: datetime,
        out: list[Release],
    ) -> None:
        kind: ReleaseKind = "single" if spec.group is None else "group"
        if spec.throttle is None:
            self._emit(spec, state, now, make_release(rule, (), bunch, 0, kind), out)
            return
        key = key_of(bunch.last, spec.throttle.by)
        state.dirty.add(("throttle", key))
        throttle = state.throttles.get(key)
        if throttle is not None and now >= throttle.until:
            del state.throttles[key]
            self._end_period(rule, spec, state, key, throttle, now, out)
            throttle = state.throttles.get(key)
        if throttle is None:
            self._forget_quiet_periods(state, now)
            state.throttles[key] = ThrottlePeriod(until=now + spec.throttle.every, bunch=None)
            group_key = () if spec.group is None else key_of(bunch.last, spec.group.by)
            self._emit(spec, state, now, make_release(rule, group_key or key, bunch, 0, kind), out)
        else:
            if throttle.bunch is None:
                throttle.bunch = bunch  # no longer anyone else's: its group or fill ended
            else:
                throttle.bunch.merge(bunch)
            throttle.messages += 1

    @staticmethod
    def _forget_quiet_periods(state: RuleState, now: datetime) -> None:
        """Drop ended periods that kept nothing back: the same as no period at all.

        No deadline wakes `due` for them, so with `by: [order_id]` one per order ever
        throttled stayed in memory and in the stored state. Swept when the table has doubled
        since the last sweep, so the cost per offer stays constant.
        """
        if len(state.throttles) < state.sweep_at:
            return
        ended = [k for k, t in state.throttles.items() if not t.bunch and now >= t.until]
        for key in ended:
            del state.throttles[key]
            state.dirty.add(("throttle", key))
        state.sweep_at = max(SWEEP_MIN, 2 * len(state.throttles))

    def _end_period(
        self,
        rule: str,
        spec: RuleShaping,
        state: RuleState,
        key: tuple[str, ...],
        throttle: ThrottlePeriod,
        now: datetime,
        out: list[Release],
    ) -> None:
        bunch = throttle.bunch
        if bunch is None:
            return
        suppressed = throttle.messages - 1
        if self._holds(spec, throttle.until):  # at the period's end, as a group at its due
            self._fold(spec, state, bunch, suppressed, now)
            return
        if spec.throttle is not None:  # the trailing message starts the next period
            state.throttles[key] = ThrottlePeriod(until=now + spec.throttle.every, bunch=None)
            state.dirty.add(("throttle", key))
        self._emit(spec, state, now, make_release(rule, key, bunch, suppressed, "throttle"), out)

    def _emit(
        self,
        spec: RuleShaping,
        state: RuleState,
        now: datetime,
        release: Release,
        out: list[Release],
    ) -> None:
        # What waited for the window goes out first, if it is open: a group due inside the
        # window and released after closing (a late timer, a restart) goes out alone, and
        # what arrived after closing waits for the morning.
        if state.held is not None and self._open(spec, now):
            out.append(self._flush_held(release.rule, state))
        out.append(release)

    @staticmethod
    def _flush_held(rule: str, state: RuleState) -> Release:
        held = state.held
        assert held is not None
        state.held = None
        return make_release(rule, (), held.bunch, held.suppressed, "held")

    @staticmethod
    def _fold(
        spec: RuleShaping,
        state: RuleState,
        bunch: Bunch,
        suppressed: int,
        now: datetime,
    ) -> None:
        assert spec.active is not None
        if spec.active.outside == "drop":
            state.dropped += bunch.count
        elif state.held is None:
            state.held = HeldDigest(spec.active.next_open(now), bunch, suppressed)
        else:
            state.held.bunch.merge(bunch)
            state.held.suppressed += suppressed
