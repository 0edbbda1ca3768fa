"""What a reload changes: the settings it puts in force, and the words its log line uses.

A reload swaps rules and channels only; the feed connection, the state file, the metrics
socket and logging were set up at start, so edits to those wait for a restart (and say so).
"""

from __future__ import annotations

import dataclasses

from notifier.settings import Settings

RESTART_SECTIONS = ("feed", "state", "metrics", "log")  # what a reload does not change


def kept_runtime(old: Settings, new: Settings) -> Settings:
    """The settings now in force: new rules and channels, the running feed, state, metrics
    and logging (see RESTART_SECTIONS)."""
    return dataclasses.replace(new, **{name: getattr(old, name) for name in RESTART_SECTIONS})


def waiting_for_restart(old: Settings, new: Settings) -> list[str]:
    """The sections edited that take effect only at the next restart."""
    return [name for name in RESTART_SECTIONS if getattr(new, name) != getattr(old, name)]


def described_changes(old: Settings, new: Settings) -> str:
    """What a reload changed in rules and channels, by name, and which delivery settings, for
    its log line."""
    said = []
    old_rules = {r.name: r for r in old.rules.rules}
    new_rules = {r.name: r for r in new.rules.rules}
    for kind, before, after in (
        ("rules", old_rules, new_rules),
        ("channels", dict(old.channels), dict(new.channels)),
    ):
        for verb, names in (
            ("added", [n for n in after if n not in before]),
            ("removed", [n for n in before if n not in after]),
            ("changed", [n for n in after if n in before and after[n] != before[n]]),
        ):
            if names:
                said.append(f"{kind} {verb}: {', '.join(names)}")
    disabled = [
        name
        for name, rule in new_rules.items()
        if not rule.enabled and name in old_rules and old_rules[name].enabled
    ]
    if disabled:  # its shaping state stays: what it gathered is sent, not dropped unsaid
        said.append(
            f"rules disabled: {', '.join(disabled)} (fills they hold still go out when due; "
            "`notifier outbox` lists them)"
        )
    delivery = [
        field.name
        for field in dataclasses.fields(new.delivery)
        if getattr(new.delivery, field.name) != getattr(old.delivery, field.name)
    ]
    if delivery:  # in force for the next send: "no change" would say the edit was lost
        said.append(f"delivery changed: {', '.join(delivery)}")
    return "; ".join(said) or "no change in rules, channels or delivery"
