"""A dry run's view of alert shaping: the shaped rules run over the given fills, in time order.

`notifier test` shows each fill's own message. What a digest, a throttle or quiet hours send
depends on the fills around it and on time, so this runs the shaper the daemon runs
(`ShapingStage`) on a clock set to each fill's own time, then on to every deadline left: a
trader tuning a `group:` sees which messages `run` would send for those fills, and when.
Pure: no I/O, no sleeping; the clock is the fills'.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from notifier.digests import Release
from notifier.events import Fill
from notifier.rules import Rule, RuleSet
from notifier.shaping_stage import ShapingStage

# Deadlines a simulation runs through at most: each one releases something, so a few per
# fill are expected; the bound only keeps a dry run finite whatever it is given.
MAX_DEADLINES = 100_000


@dataclass(frozen=True, slots=True)
class Shaped:
    """One message the shaper released: when (by the fills' clock), for which rule."""

    at: datetime
    rule: Rule
    release: Release


@dataclass(slots=True)
class Simulation:
    """What the shaped rules would send for the fills, and what they would drop."""

    messages: list[Shaped] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # by rule: outside its active hours


class _Clock:
    """The simulation's clock: moved by hand to each fill's time and each deadline."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def simulate(rules: RuleSet, fills: Iterable[Fill]) -> Simulation:
    """Offer each fill (oldest first) to the shaped rules it matches, releasing what falls
    due between them, then run the clock on until nothing is held."""
    ordered = sorted(fills, key=lambda fill: fill.filled_at)
    result = Simulation()
    if not ordered or not any(r.enabled and r.shaping is not None for r in rules.rules):
        return result
    clock = _Clock(ordered[0].filled_at)
    stage = ShapingStage(rules.rules, clock=clock)
    budget = MAX_DEADLINES

    def release_until(moment: datetime | None) -> None:
        nonlocal budget
        while budget > 0:
            deadline = stage.next_deadline()
            if deadline is None or (moment is not None and deadline > moment):
                return
            budget -= 1
            clock.now = max(clock.now, deadline)
            for release in stage.due():
                _add(result, stage, clock.now, release)

    for fill in ordered:
        release_until(fill.filled_at)
        clock.now = max(clock.now, fill.filled_at)
        for rule in rules.match(fill):
            if rule.shaping is not None:
                for release in stage.offer(rule, fill):
                    _add(result, stage, clock.now, release)
    release_until(None)
    result.dropped = {
        rule: counts["dropped"] for rule, counts in stage.stats().items() if counts["dropped"]
    }
    return result


def _add(result: Simulation, stage: ShapingStage, at: datetime, release: Release) -> None:
    rule = stage.rule(release.rule)
    if rule is not None:  # every release here is of a configured rule
        result.messages.append(Shaped(at, rule, release))
