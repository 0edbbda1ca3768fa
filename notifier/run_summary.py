"""A run's two canonical log lines: what it starts with, and what it did (the totals behind
the shutdown line and the CLI's exit)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from notifier import __version__
from notifier.deliver import Deliverer
from notifier.errors import key_prefix
from notifier.feedconfig import shown_url
from notifier.pipeline import Pipeline
from notifier.settings import Settings
from notifier.wording import counted

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Summary:
    """What a run did, for the shutdown line and the CLI's exit."""

    fills: int
    duplicates: int
    matched: int
    sent: int
    failed: int
    dead: int
    pending: int
    held: int = 0  # fills waiting in a group, a throttle period or for active hours

    def line(self) -> str:
        """The one summary line logged at shutdown."""
        held = f", {self.held} fills held by alert shaping (kept for later)" if self.held else ""
        return (
            f"stopped: {self.fills} new fills ({self.duplicates} duplicates skipped), "
            f"{self.matched} matched, {self.sent} alerts sent, {self.failed} failed attempts, "
            f"{self.dead} dead, {self.pending} pending{held}"
        )


def summarize(pipe: Pipeline | None, dlv: Deliverer | None) -> Summary:
    """Totals so far of a run's pipeline and deliverer (zeros for one not started yet)."""
    return Summary(
        fills=pipe.stats.processed if pipe else 0,
        duplicates=pipe.stats.duplicates if pipe else 0,
        matched=pipe.stats.matched_fills if pipe else 0,
        sent=dlv.stats.sent if dlv else 0,
        failed=dlv.stats.failed if dlv else 0,
        dead=dlv.stats.dead if dlv else 0,
        pending=dlv.pending() if dlv else 0,
        held=sum(
            n
            for stages in (pipe.shaping.stats().values() if pipe else ())
            for stage, n in stages.items()
            if stage != "dropped"
        ),
    )


def log_start(settings: Settings) -> None:
    """The start line: version, rule and channel counts, the key's prefix (never the key)."""
    rules, channels = len(settings.rules.rules), len(settings.channels)
    feed = shown_url(settings.feed.base_url)  # a path may hold what no log should
    log.info(
        "notifier %s started: %s, %s, key %s, state %s, feed %s",
        __version__,
        counted(rules, "rule"),
        counted(channels, "channel"),
        key_prefix(settings.feed.api_key),
        settings.state.path,
        feed,
        extra={
            "event": "started",
            "version": __version__,
            "rules": rules,
            "channels": channels,
            "key_prefix": key_prefix(settings.feed.api_key),
            "state": str(settings.state.path),
            "feed": feed,
        },
    )
    for note in settings.notes:  # a channel URL from its default: a variable forgotten, perhaps
        log.info("config note: %s", note)
    if not any(rule.enabled for rule in settings.rules.rules):
        log.warning("%s", NO_RULE_ENABLED)


NO_RULE_ENABLED = "no rule is enabled: fills are recorded, but nothing will be alerted"
