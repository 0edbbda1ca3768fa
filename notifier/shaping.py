"""Alert shaping between matching and rendering: group, throttle, active hours. Pure.

Per rule, a match passes three stages, each optional:

- **group**: the first match for a key (the `by` field values) opens a group at `now`; matches that
  arrive before its due time (`opened + wait`, or the first of its `at` times of day after the
  match was made and not yet released, which a catch-up's fill may find past) join it; at that
  time it is released as one digest. The window is half-open: a match at exactly the due time
  opens the next group.
- **throttle**: at most one release per key per `every`. The first goes out at once and starts the
  period; later ones in the period are kept, and when it ends they go out as one message (all their
  fills, `suppressed` = how many messages were folded into it beyond the one sent), starting a new
  period. Every match is either sent or counted: nothing disappears silently.
- **active**: a match arriving outside the window skips group and throttle: `hold` folds it into
  one digest per rule, released when the window next opens; `drop` discards it, counted in
  `stats`. A group or throttle period that took matches inside the window and ends after it
  closes: `hold` folds its message into the held digest (no message outside hours); `drop`
  sends it when due, since what arrived inside the window is never discarded.

Times are the injected `now` (arrival), but for `at` times above and an overdue group taking a
fill made before its time: a summary of the day holds the day's fills that come late (inside
active hours: one arriving outside them is held for the opening, as any);
otherwise backfilled fills still wait their turn.
Deadlines are stored, not recomputed, so a reload that changes a spec never loses what is held.
A rule that stops being shaped (removed, renamed, or left without group/throttle/active) gives
up what it holds as releases (`reconfigure`'s result, `orphans` after `restore`): those fills are
already recorded as seen, so dropping them would lose them for good.

The Shaper keeps every rule's state, finds what is due, and notes what the state file must
write again; how one rule's state takes a match or a deadline is in `shaping_steps.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime

from notifier.digests import Release
from notifier.events import Fill
from notifier.shaping_state import (
    Key,
    Kind,
    RuleState,
    dump_entry,
    entries,
    load_entry,
    load_snapshot,
)
from notifier.shaping_steps import (
    close_group,
    end_period,
    flush_held,
    give_up,
    group_due,
    is_open,
    take_match,
)
from notifier.shapingspecs import GroupSpec, RuleShaping
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
        # The latest `due(now)`: every deadline up to it is released. Unknown after a start,
        # when what the catch-up brings may belong to a summary due while the daemon was down.
        self._settled: datetime | None = None

    def offer(self, rule: str, fill: Fill, now: datetime) -> list[Release]:
        """Take one match of `rule`; return what goes out at once (possibly nothing)."""
        aware(now)
        spec = self._spec(rule)
        state = self._rule_state(rule)
        out: list[Release] = []
        take_match(rule, spec, state, fill, now, out, settled=self._settled)
        self._tidy(rule)
        return out

    def due(self, now: datetime) -> list[Release]:
        """Everything whose time has come by `now`: closed groups, ended periods, opened windows."""
        aware(now)
        self._settled = now
        out: list[Release] = []
        # In a fixed order (rule, deadline, key), so a restart, which reads the state back in
        # another order, releases what falls due together in the same order.
        for rule in sorted(self._state):
            spec, state = self._specs[rule], self._state[rule]
            changed = len(out)
            if state.held is not None:
                if is_open(spec, now):
                    out.append(flush_held(rule, state))
                elif now >= state.held.opens and spec.active is not None:
                    state.held.opens = spec.active.next_open(now)
                    self._touched.add(rule)
            for _, key in sorted((g.due, k) for k, g in state.groups.items() if now >= g.due):
                group = state.groups.pop(key)
                state.dirty.add(("group", key))
                close_group(rule, spec, state, key, group, now, out)
            for _, key in sorted(
                (t.until, k) for k, t in state.throttles.items() if now >= t.until
            ):
                throttle = state.throttles.pop(key)
                state.dirty.add(("throttle", key))
                end_period(rule, spec, state, key, throttle, now, out)
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
        """Bring deadlines further off than their spec allows back to where the spec puts them
        from `now` (its wait or next `at` time, its period); how many moved.

        Only a wall clock that stepped back puts a deadline there (or a reload that shortened
        the spec): without this, a group of `wait: 30s` would wait out the step as well, and
        a held digest the opening the later clock had named.
        """
        moved = 0
        for rule, state in self._state.items():
            spec, before = self._specs[rule], moved
            if spec.group is not None:
                latest = spec.group.due(now)
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

    def reconfigure(self, specs: Mapping[str, RuleShaping], *, now: datetime) -> list[Release]:
        """New specs on reload, at `now`: state of rules that still exist stays, with its
        deadlines, but for groups whose times of day moved (due at the first new one after their
        first fill, which may have passed).

        Returns what rules no longer in `specs` held, released now (see `_evict`).
        """
        old = self._specs
        self._specs = dict(specs)
        out = self._evict()
        for rule, state in self._state.items():
            before = old.get(rule, RuleShaping())
            if state.held is not None and before.active != specs[rule].active:
                state.held.opens = _RECHECK  # the window moved: due() finds the new opening
                self._touched.add(rule)
            spec = specs[rule]
            if (
                spec.group is not None
                and state.groups
                and _schedule_moved(before.group, spec.group)
            ):
                # A summary moved from 17:00 to 18:00 goes out at 18:00, not once more at 17:00,
                # and one moved to 15:00 at 16:00, holding fills made since 10:00, goes out at
                # once: today's summary, not folded into tomorrow's (a `wait` changed keeps its
                # deadlines: pull_in shortens those).
                moved_from = before.group
                assert moved_from is not None  # _schedule_moved: there was one to move
                for key, open_group in state.groups.items():
                    # From when the old schedule's period began (or its first fill, if later):
                    # a late fill made before the last summary does not pull it back there.
                    began = max(open_group.bunch.first_at, moved_from.period_start(open_group.due))
                    open_group.due = group_due(spec, began, now)
                    state.dirty.add(("group", key))
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
        """Release everything held for rules without a spec, rule by rule (see `give_up`)."""
        out: list[Release] = []
        for rule in sorted(r for r in self._state if r not in self._specs):
            self._cleared.add(rule)
            out += give_up(rule, self._state.pop(rule))
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


def _schedule_moved(before: GroupSpec | None, after: GroupSpec) -> bool:
    """Whether a reload moved a group's times of day (`at`, `tz`), or swapped them for a
    `wait` or back: its open groups are then due by the new schedule."""
    if before is None or not (before.at or after.at):
        return False
    return (before.at, before.tz, before.wait) != (after.at, after.tz, after.wait)
