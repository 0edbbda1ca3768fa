"""What a run did: the totals behind the shutdown line and the CLI's exit."""

from __future__ import annotations

from dataclasses import dataclass

from notifier.deliver import Deliverer
from notifier.pipeline import Pipeline


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
