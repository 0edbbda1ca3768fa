"""The pipeline's shaping stage: a Shaper over the configured rules, and releases made into alerts.

Pure (no I/O): the pipeline owns persistence and the timer. A rule is shaped when its config has
`group`, `throttle` or `active` (`Rule.extras["shaping"]`); every other rule keeps the plain path.
A release renders with its rule's templates over `Release.fields`, plus `lines`: each fill in the
rule's `line` template, capped so a digest of a busy minute stays one readable message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from notifier.digests import Release, cap_lines, make_release
from notifier.events import Alert, Fill
from notifier.render import Template, fill_values
from notifier.rules import Rule
from notifier.shaping import Shaper
from notifier.shapingconfig import DEFAULT_LINE
from notifier.windows import RuleShaping

log = logging.getLogger(__name__)

SNAPSHOT_KEY = "shaping"  # the store's meta key for the Shaper snapshot
LINES_LIMIT = 20  # fills listed one per line in a digest; the rest are "… and N more"


class _Target(Protocol):
    @property
    def key(self) -> str: ...


class _Targets(Protocol):
    def targets(self, channel: str) -> Sequence[_Target]: ...


def rule_shaping(rule: Rule) -> RuleShaping | None:
    """The rule's shaping specs, or None for a plain rule."""
    spec = rule.extras.get("shaping")
    return spec if isinstance(spec, RuleShaping) else None


def render_release(rule: Rule, release: Release) -> tuple[str, str]:
    """Title and body of a release: the rule's templates over the digest fields and `lines`."""
    line = rule.extras.get("line")
    template = line if isinstance(line, Template) else Template(DEFAULT_LINE)
    values = dict(release.fields)
    rendered = [template.render(fill_values(f, rule=rule.name)) for f in release.fills]
    values["lines"] = cap_lines(rendered, LINES_LIMIT)
    body = rule.body.render(values)
    if release.suppressed and "suppressed" not in rule.body.fields:
        # A throttled message always says what it folded in, whatever the rule's body.
        plural = "" if release.suppressed == 1 else "s"
        body += f"\n({release.suppressed} earlier message{plural} folded into this one)"
    return rule.title.render(values), body


def release_alerts(rule: Rule, release: Release, targets: _Targets) -> list[Alert]:
    """One alert per target of the rule's channels; the outbox knows it by `release.fill_key`."""
    title, body = render_release(rule, release)
    filled_at = max(f.filled_at for f in release.fills)
    return [
        Alert(
            fill_key=release.fill_key,
            rule=rule.name,
            channel=channel,
            target=target.key,
            title=title,
            body=body,
            filled_at=filled_at,
        )
        for channel in rule.notify
        for target in targets.targets(channel)
    ]


def preview(rule: Rule, fill: Fill) -> tuple[str, str]:
    """What a shaped rule would send for this fill alone (the dry run's view of a digest)."""
    return render_release(rule, make_release(rule.name, (), (fill,), 0, "single"))


class ShapingStage:
    """The Shaper for the shaped rules of the running config, on an injected clock."""

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        clock: Callable[[], datetime],
        snapshot: str | None = None,
    ) -> None:
        self._clock = clock
        self._rules = _shaped(rules)
        specs = self._specs()
        self._shaper = Shaper(specs)
        if snapshot is not None:
            try:
                data = json.loads(snapshot)
                if not isinstance(data, Mapping):
                    raise ValueError("not a JSON object")  # one error path
                self._shaper = Shaper.restore(specs, data)
            except ValueError as exc:
                # Refusing to start would hold every later alert hostage to one bad blob.
                log.error("shaping state unreadable, starting without held alerts: %s", exc)

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

    def reconfigure(self, rules: Iterable[Rule]) -> None:
        """A reload: held state of surviving rules stays, with its deadlines."""
        self._rules = _shaped(rules)
        self._shaper.reconfigure(self._specs())

    def alerts(self, release: Release, targets: _Targets) -> list[Alert]:
        """The alerts of a release (none if its rule is gone)."""
        rule = self.rule(release.rule)
        return [] if rule is None else release_alerts(rule, release, targets)

    def snapshot(self) -> str:
        """The shaper's state as JSON text for the store."""
        return json.dumps(self._shaper.snapshot(), separators=(",", ":"))

    def stats(self) -> dict[str, dict[str, int]]:
        """Per shaped rule: fills grouped, throttled, held and dropped."""
        return self._shaper.stats()


def _shaped(rules: Iterable[Rule]) -> dict[str, tuple[Rule, RuleShaping]]:
    out: dict[str, tuple[Rule, RuleShaping]] = {}
    for rule in rules:
        spec = rule_shaping(rule)
        if spec is not None:
            out[rule.name] = (rule, spec)
    return out
