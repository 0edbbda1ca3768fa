"""Which rules a fill matches and the alerts they render: the pure middle of the pipeline.

The daemon's pipeline and the dry-run `test` command both call `plan_alerts`, so what a dry
run prints is what `run` would queue.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from notifier.events import Alert, Fill
from notifier.fanout import Render, TargetLookup, fan_out
from notifier.release_render import preview
from notifier.render import Escape, fill_values
from notifier.rules import Rule, RuleSet


@dataclass(frozen=True, slots=True)
class Planned:
    """What one fill produces: the rules it matched and the alerts (one per target) to send.

    `shaped` are the matched rules left to the shaping stage (only when it was deferred to).
    """

    fill: Fill
    rules: tuple[Rule, ...]
    alerts: tuple[Alert, ...]
    shaped: tuple[Rule, ...] = ()


def plan_alerts(
    fill: Fill,
    *,
    rules: RuleSet,
    targets: TargetLookup,
    defer_shaped: bool = False,
    matched: tuple[Rule, ...] | None = None,
) -> Planned:
    """Match `fill` against `rules` and render one alert per rule and target (pure).

    A shaped rule renders as the digest of this fill alone (what a dry run can show), or with
    `defer_shaped` is left out of the alerts and listed in `shaped` for the shaping stage.
    `matched` is `rules.match(fill)` when the caller has it already.
    """
    if matched is None:
        matched = rules.match(fill)
    alerts: list[Alert] = []
    shaped: list[Rule] = []
    for rule in matched:
        render: Render
        if rule.shaping is not None:
            if defer_shaped:
                shaped.append(rule)
                continue
            render = functools.partial(preview, rule, fill)
        else:
            values = fill_values(fill, rule=rule.name, tz=rule.tz)
            render = functools.partial(_message, rule, values)
        alerts += fan_out(
            fill_key=fill.key,
            rule=rule.name,
            channels=rule.notify,
            render=render,
            filled_at=fill.filled_at,
            targets=targets,
        )
    return Planned(fill=fill, rules=matched, alerts=tuple(alerts), shaped=tuple(shaped))


def _message(rule: Rule, values: Mapping[str, object], escape: Escape | None) -> tuple[str, str]:
    """A plain rule's title and body over one fill's values, escaped for a channel's format."""
    return rule.title.render(values, escape=escape), rule.body.render(values, escape=escape)
