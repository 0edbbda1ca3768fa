"""Debug lines, one a fill, saying what the rules made of it.

"No alert came" is answered from the daemon's own log at `--log-level debug`: which fill was
read, from where, and which rules it matched, or none, or that it waits for its market's title.
Each entry point asks the level first (once a batch), so a daemon at `info` pays nothing a fill.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from notifier.events import Fill
from notifier.rules import Rule

log = logging.getLogger("notifier.fills")


def enabled() -> bool:
    """Whether fill lines are logged (debug level)."""
    return log.isEnabledFor(logging.DEBUG)


def shown(fill: Fill, title: str | None = None) -> str:
    """A fill in a line: order, trade, market (its title when known), time made."""
    title = fill.market_title or title
    market = f"{title!r} ({fill.market_id})" if title else fill.market_id
    return (
        f"order {fill.order_id} {fill.side} {fill.quantity} {fill.outcome} @ {fill.price} "
        f"on {market}, filled {fill.filled_at.isoformat()}"
    )


def trace_batch(
    batch: Sequence[tuple[Fill, str]],
    hits: Iterable[tuple[Fill, tuple[Rule, ...]]],
    waiting: Iterable[Fill],
    title_of: Callable[[str], str | None],
) -> None:
    """One line a fill of the batch: the rules it matched, none, or that it waits for a title
    (`title_of`: a market's title if already known, never a look-up)."""
    if not enabled():
        return
    matched = {fill.key: (fill, rules) for fill, rules in hits}  # with its title, if looked up
    held = {fill.key for fill in waiting}
    for fill, source in batch:
        if fill.key in held:
            verdict = "waits for its market title before the rules judge it"
        elif fill.key in matched:
            fill, rules = matched[fill.key]
            verdict = "matched " + ", ".join(rule.name for rule in rules)
        else:
            verdict = "matched no rule"
        log.debug("fill (%s) %s: %s", source, shown(fill, title_of(fill.market_id)), verdict)


def trace_repeat(fill: Fill) -> None:
    """A matching fill handled before (a backfill overlap, a reconnect's replay): no alert."""
    if enabled():
        log.debug("fill %s: handled before, no alert again", shown(fill))
