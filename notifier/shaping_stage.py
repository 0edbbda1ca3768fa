"""The pipeline's shaping stage: a Shaper over the configured rules, and releases made into alerts.

Pure (no I/O): the pipeline owns persistence and the timer. A rule is shaped when its config has
`group`, `throttle` or `active` (`Rule.shaping`); every other rule keeps the plain path.
What a release says is release_render.py's.

A rule that stops being shaped on a reload or restart hands back what it held (`reconfigure`,
`take_orphans`). Those fills are already seen, so they go out now as digests in the default
digest templates (a now-plain rule's templates know only one fill's fields, and one digest per
group keeps the promise of not flooding) to the rule's current channels, or, for a rule gone
from the config, to the channels it named (kept with its held state). Only when none of those
channels exists any more are the fills lost: a warning names the rule, and `lost` counts them.

Held state persists as entries (see shaping_state.py): the stage is given what the state file
holds when it starts, and `changes()` says what to write after each batch.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from notifier.digests import Release
from notifier.events import Alert, Fill
from notifier.fanout import Render, TargetLookup, fan_out
from notifier.release_render import render_orphan, render_release
from notifier.rules import Rule
from notifier.shaping import Shaper
from notifier.shaping_state import KINDS, StateChanges, key_text, parse_key
from notifier.shapingspecs import RuleShaping

log = logging.getLogger(__name__)

# A stored entry: (rule, kind, key text, data as JSON text).
StoredEntry = tuple[str, str, str, str]


def release_alerts(rule: Rule, release: Release, targets: TargetLookup) -> list[Alert]:
    """One alert per target of the rule's channels; the outbox knows it by `release.fill_key`."""
    render = functools.partial(render_release, rule, release)
    return _alerts(release, rule.name, rule.notify, render, targets)


def _alerts(
    release: Release, rule: str, channels: Iterable[str], render: Render, targets: TargetLookup
) -> list[Alert]:
    return fan_out(
        fill_key=release.fill_key,
        rule=rule,
        channels=channels,
        render=render,
        filled_at=release.bunch.last_at,
        targets=targets,
    )


class ShapingStage:
    """The Shaper for the shaped rules of the running config, on an injected clock."""

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        clock: Callable[[], datetime],
        stored: Sequence[StoredEntry] = (),
        snapshot: str | None = None,
    ) -> None:
        """`stored`: the entries the state file holds; `snapshot`: a whole-state snapshot an
        older notifier left instead (read, then replaced by entries at the first save)."""
        self._clock = clock
        rules = tuple(rules)
        self._rules = _shaped(rules)
        self._channels = {rule.name: rule.notify for rule in rules}
        self._former: dict[str, tuple[str, ...]] = {}  # channels of rules just gone
        self._bad: list[tuple[str, str, str]] = []  # unreadable entries, deleted at the save
        self.lost: dict[str, int] = {}  # by rule: held fills no configured channel could take
        specs = self._specs()
        # Refusing to start would hold every later alert hostage to one bad row or blob.
        if snapshot is not None:
            try:
                data = json.loads(snapshot)
                if not isinstance(data, Mapping):
                    raise ValueError("not a JSON object")  # one error path
                self._shaper = Shaper.restore_snapshot(specs, data)
            except ValueError as exc:
                log.error("shaping state unreadable, starting without held alerts: %s", exc)
                self._shaper = Shaper.restore_snapshot(specs, {"version": 1, "rules": {}})
            else:
                self._former = _saved_channels(data.get("notify"))
        else:
            self._shaper = Shaper(specs)
            self._load(stored)
        self._orphans = self._shaper.orphans
        self._shaper.orphans = []

    def _specs(self) -> dict[str, RuleShaping]:
        return {name: spec for name, (_, spec) in self._rules.items()}

    def rule(self, name: str) -> Rule | None:
        """The shaped rule of that name in the running config."""
        entry = self._rules.get(name)
        return entry[0] if entry else None

    def offer(self, rule: Rule, fill: Fill) -> list[Release]:
        """Hand one match to the shaper; what goes out at once."""
        return self._shaper.offer(rule.name, fill, self._clock())

    def due(self) -> list[Release]:
        """Releases whose time has come by the clock's now."""
        return self._shaper.due(self._clock())

    def next_deadline(self) -> datetime | None:
        """When `due` next has work, or None."""
        return self._shaper.next_deadline()

    def pull_in(self) -> bool:
        """Deadlines beyond their spec (the wall clock stepped back, or a reload shortened a
        rule's wait, period or times) brought in; whether any."""
        moved = self._shaper.pull_in(self._clock())
        if moved:
            log.warning(
                "%d shaping deadline(s) lay further off than their rule now allows (a reload "
                "that shortened it, or the wall clock stepped back): brought in",
                moved,
            )
        return bool(moved)

    def reconfigure(self, rules: Iterable[Rule]) -> list[Release]:
        """A reload: held state of surviving rules stays; what rules no longer shaped held is
        returned, to record now (`alerts` renders it)."""
        rules = tuple(rules)
        self._former = dict(self._channels)
        self._rules = _shaped(rules)
        self._channels = {rule.name: rule.notify for rule in rules}
        released = self._shaper.reconfigure(self._specs(), now=self._clock())
        self._shaper.touch_all()  # each rule entry names its channels: they may have moved
        return released

    def take_orphans(self) -> list[Release]:
        """What the stored state held for rules no longer shaped (once; then empty)."""
        orphans, self._orphans = self._orphans, []
        return orphans

    def alerts(self, release: Release, targets: TargetLookup) -> list[Alert]:
        """The alerts of a release: its rule's templates, or an orphan's default digest."""
        rule = self.rule(release.rule)
        if rule is not None:
            return release_alerts(rule, release, targets)
        name = release.rule
        channels = self._channels.get(name, self._former.get(name, ()))
        present = [c for c in channels if _configured(targets, c)]
        if len(present) < len(channels):
            missing = ", ".join(c for c in channels if c not in present)
            log.warning(
                "rule %s: %d held fill(s) not sent to channel(s) no longer configured: %s",
                name,
                release.count,
                missing or "(channels unknown)",
            )
        if not present:
            log.warning("rule %s: %d held fill(s) lost: no channel left", name, release.count)
            self.lost[name] = self.lost.get(name, 0) + release.count
        render = functools.partial(render_orphan, release)
        return _alerts(release, name, present, render, targets)

    def changes(self) -> StateChanges:
        """What to write to the state file since the last call.

        A rule's own entry carries the channels it names, for when it is gone from the config.
        """
        out = StateChanges(replace=self._shaper.rewrite(), cleared=self._shaper.cleared())
        out.deletes += self._bad
        self._bad = []
        for rule, kind, key, data in self._shaper.changes():
            if data is None:
                out.deletes.append((rule, kind, key_text(key)))
                continue
            if kind == "rule":
                data["notify"] = list(self._channels.get(rule, self._former.get(rule, ())))
            out.puts.append((rule, kind, key_text(key), json.dumps(data, separators=(",", ":"))))
        return out

    def _load(self, stored: Sequence[StoredEntry]) -> None:
        """Take back the stored entries, and each rule entry's channels. One that cannot be
        read is logged and deleted at the next save: what it held is lost, and said so."""
        for rule, kind, key, text in stored:
            try:
                if kind not in KINDS:
                    raise ValueError(f"unknown kind {kind!r}")
                data = json.loads(text)
                if not isinstance(data, Mapping):
                    raise ValueError("not a JSON object")
                chans = data.get("notify")
                if isinstance(chans, list):
                    self._former[rule] = tuple(str(c) for c in chans)
                self._shaper.load(rule, kind, parse_key(key) if key else (), data)
            except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
                log.error("shaping state of rule %s unreadable, dropped: %s", rule, exc)
                self._bad.append((rule, kind, key))
        self._shaper.settle()
        # Each rule entry names the channels its fills go to if the rule is removed: those of
        # the config running now, which may have moved while we were down.
        self._shaper.touch_all()

    def stats(self) -> dict[str, dict[str, int]]:
        """Per shaped rule: fills grouped, throttled, held and dropped."""
        return self._shaper.stats()


def _configured(targets: TargetLookup, channel: str) -> bool:
    try:
        targets.targets(channel)
    except KeyError:
        return False
    return True


def _saved_channels(raw: object) -> dict[str, tuple[str, ...]]:
    """The snapshot's rule -> channels map; nothing usable (an older snapshot) is empty."""
    if not isinstance(raw, Mapping):
        return {}
    return {
        str(rule): tuple(str(c) for c in chans)
        for rule, chans in raw.items()
        if isinstance(chans, list)
    }


def _shaped(rules: Iterable[Rule]) -> dict[str, tuple[Rule, RuleShaping]]:
    out: dict[str, tuple[Rule, RuleShaping]] = {}
    for rule in rules:
        spec = rule.shaping
        if spec is not None:
            out[rule.name] = (rule, spec)
    return out
