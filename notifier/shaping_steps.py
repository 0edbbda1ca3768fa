"""One rule's shaping steps: how its state takes a match, a group's or a period's end, an opening.

Apart from `shaping.py`'s Shaper, which keeps every rule's state, reads the clock's deadlines
and notes what the state file must write again. Each step here acts on one rule's `RuleState`
under its `RuleShaping` and appends what goes out to `out`, in the order it goes out; the
semantics (group, throttle, active hours) are in shaping.py's docstring.
"""

from __future__ import annotations

from datetime import datetime

from notifier.digests import Bunch, Release, ReleaseKind, key_of, make_release
from notifier.events import Fill
from notifier.shaping_state import (
    SWEEP_MIN,
    HeldDigest,
    Key,
    OpenGroup,
    RuleState,
    ThrottlePeriod,
)
from notifier.shapingspecs import RuleShaping


def is_open(spec: RuleShaping, now: datetime) -> bool:
    """Whether the rule's active window is open at `now` (always, without `active`)."""
    return spec.active is None or spec.active.is_active(now)


def take_match(
    rule: str,
    spec: RuleShaping,
    state: RuleState,
    fill: Fill,
    now: datetime,
    out: list[Release],
    *,
    settled: datetime | None = None,
) -> None:
    """One match of `rule`: held or dropped outside active hours, else grouped or throttled.
    `settled`: the time up to which deadlines were released (see group_due)."""
    if not is_open(spec, now):
        _hold_or_drop(spec, state, Bunch.of(fill), 0, now)
    elif spec.group is None:
        _pass_throttle(rule, spec, state, Bunch.of(fill), now, out)
    else:
        key = key_of(fill, spec.group.by)
        group = state.groups.get(key)
        # An overdue group (the daemon was down at its time) still takes a fill made before
        # its time, which the start's catch-up brings: the day's summary, not the next day's.
        if group is not None and now >= group.due and fill.filled_at >= group.due:
            del state.groups[key]
            close_group(rule, spec, state, key, group, now, out)
            group = None
        if group is None:
            state.groups[key] = OpenGroup(
                due=group_due(spec, fill.filled_at, now, settled=settled), bunch=Bunch.of(fill)
            )
        else:
            group.bunch.add(fill)
        state.dirty.add(("group", key))


def group_due(
    spec: RuleShaping, opened: datetime, now: datetime, *, settled: datetime | None = None
) -> datetime:
    """When a group whose first fill was made at `opened` closes, judged at `now`. A summary
    at times of day closes at the first after the fill was made, though it is already past,
    unless that time was `settled` (its deadlines released) already: a fill made at 16:58
    that the start's catch-up brings at 17:05 belongs to the 17:00 summary (which goes out
    at once), not the next day's; one made at 16:59:59 that arrives just after a 17:00
    summary went goes in the next. A `wait` runs from `now`: a catch-up's fills go out
    together, not one summary for each stretch of the outage."""
    assert spec.group is not None
    if spec.group.wait is not None:
        return spec.group.due(now)
    start = min(opened, now)  # a fill stamped ahead of this clock: from now
    if settled is not None and start < settled <= now:
        start = settled
    return spec.group.due(start)


def close_group(
    rule: str,
    spec: RuleShaping,
    state: RuleState,
    key: Key,
    group: OpenGroup,
    now: datetime,
    out: list[Release],
) -> None:
    """A group taken out of `state` at its deadline: held for the window, sent, or throttled."""
    bunch = group.bunch
    # Judged at the deadline, not at release: a group due inside the window goes out,
    # however late the release comes (a restart, a timer firing after closing time).
    if _waits_for_window(spec, group.due):
        _hold_or_drop(spec, state, bunch, 0, now)
    elif spec.throttle is None:
        _emit(spec, state, now, make_release(rule, key, bunch, 0, "group"), out)
    else:
        _pass_throttle(rule, spec, state, bunch, now, out)


def end_period(
    rule: str,
    spec: RuleShaping,
    state: RuleState,
    key: Key,
    throttle: ThrottlePeriod,
    now: datetime,
    out: list[Release],
) -> None:
    """A throttle period taken out of `state` at its end: what it kept back goes out and
    starts the next period, or waits for the window; a period that kept nothing just ends."""
    bunch = throttle.bunch
    if bunch is None:
        return
    suppressed = throttle.messages - 1
    if _waits_for_window(spec, throttle.until):  # at the period's end, as a group at its due
        _hold_or_drop(spec, state, bunch, suppressed, now)
        return
    if spec.throttle is not None:  # the trailing message starts the next period
        state.throttles[key] = ThrottlePeriod(until=now + spec.throttle.every, bunch=None)
        state.dirty.add(("throttle", key))
    _emit(spec, state, now, make_release(rule, key, bunch, suppressed, "throttle"), out)


def flush_held(rule: str, state: RuleState) -> Release:
    """The digest held outside active hours, taken out of `state` as one release."""
    held = state.held
    assert held is not None
    state.held = None
    return make_release(rule, (), held.bunch, held.suppressed, "held")


def give_up(rule: str, state: RuleState) -> list[Release]:
    """Everything `state` holds as releases, oldest deadline first, for a rule no longer shaped.

    Each group, throttle period and held digest becomes one release, as it would have at
    its deadline; only the count of fills dropped outside active hours is forgotten.
    """
    pieces = [(g.due, make_release(rule, k, g.bunch, 0, "group")) for k, g in state.groups.items()]
    pieces += [
        (t.until, make_release(rule, k, t.bunch, t.messages - 1, "throttle"))
        for k, t in state.throttles.items()
        if t.bunch
    ]
    if state.held is not None:
        held = make_release(rule, (), state.held.bunch, state.held.suppressed, "held")
        pieces.append((state.held.opens, held))
    pieces.sort(key=lambda p: (p[0], p[1].kind, p[1].key))  # fixed, as in `Shaper.due`
    return [release for _, release in pieces]


def _pass_throttle(
    rule: str,
    spec: RuleShaping,
    state: RuleState,
    bunch: Bunch,
    now: datetime,
    out: list[Release],
) -> None:
    """A message (one fill, or a closed group) through the throttle: sent when it starts a
    period, else kept back in the period; sent at once without `throttle`."""
    kind: ReleaseKind = "single" if spec.group is None else "group"
    if spec.throttle is None:
        _emit(spec, state, now, make_release(rule, (), bunch, 0, kind), out)
        return
    key = key_of(bunch.last, spec.throttle.by)
    state.dirty.add(("throttle", key))
    throttle = state.throttles.get(key)
    if throttle is not None and now >= throttle.until:
        del state.throttles[key]
        end_period(rule, spec, state, key, throttle, now, out)
        throttle = state.throttles.get(key)
    if throttle is None:
        _forget_quiet_periods(state, now)
        state.throttles[key] = ThrottlePeriod(until=now + spec.throttle.every, bunch=None)
        group_key = () if spec.group is None else key_of(bunch.last, spec.group.by)
        _emit(spec, state, now, make_release(rule, group_key or key, bunch, 0, kind), out)
    else:
        if throttle.bunch is None:
            throttle.bunch = bunch  # no longer anyone else's: its group or fill ended
        else:
            throttle.bunch.merge(bunch)
        throttle.messages += 1


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


def _emit(
    spec: RuleShaping,
    state: RuleState,
    now: datetime,
    release: Release,
    out: list[Release],
) -> None:
    # What waited for the window goes out first, if it is open: a group due inside the
    # window and released after closing (a late timer, a restart) goes out alone, and
    # what arrived after closing waits for the morning.
    if state.held is not None and is_open(spec, now):
        out.append(flush_held(release.rule, state))
    out.append(release)


def _hold_or_drop(
    spec: RuleShaping,
    state: RuleState,
    bunch: Bunch,
    suppressed: int,
    now: datetime,
) -> None:
    """A message outside active hours: folded into the held digest (`hold`), or counted as
    dropped (`drop`)."""
    assert spec.active is not None
    if spec.active.outside == "drop":
        state.dropped += bunch.count
    elif state.held is None:
        state.held = HeldDigest(spec.active.next_open(now), bunch, suppressed)
    else:
        state.held.bunch.merge(bunch)
        state.held.suppressed += suppressed


def _waits_for_window(spec: RuleShaping, due: datetime) -> bool:
    """Whether a message of matches that arrived inside the window, due at `due`, waits for
    the next opening (`hold` outside the window); with `drop` it goes out: never discarded.
    One due at a close or an opening goes out (`holds_until`)."""
    active = spec.active
    return active is not None and active.outside == "hold" and not active.holds_until(due)
