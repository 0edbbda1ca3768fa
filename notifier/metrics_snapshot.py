"""Every counter of a running service now: what the metrics endpoint reads at each scrape.

Read from the feed's, pipeline's and deliverer's own stats (metrics.py says why they live
there), zero or empty for a part not built yet; the oldest-pending gauge is drain_watch.py's.
Every channel and enabled rule of the config in force has its series from the first scrape, at
0: Prometheus' increase() and rate() miss the first count of a series that appears with it, and
the first dead-lettered alert of a channel is the one an operator's alert must not miss.
"""

from __future__ import annotations

from datetime import datetime

from notifier.config_reload import ConfigReloader
from notifier.deliver import Deliverer
from notifier.drain_watch import DrainWatch
from notifier.feed import FeedClient
from notifier.metrics import Snapshot
from notifier.pipeline import Pipeline
from notifier.settings import Settings

_SOURCES = ("live", "backfill")


def take_snapshot(
    feed: FeedClient | None,
    pipe: Pipeline | None,
    dlv: Deliverer | None,
    drain: DrainWatch,
    reloads: ConfigReloader,
    settings: Settings,
    *,
    now: datetime,
) -> Snapshot:
    """Every counter now (`now` by the wall clock), for the metrics endpoint."""
    age = feed.last_frame_age if feed else None
    lookups = feed.order_lookups if feed else (0, 0)  # order-list requests, failed
    channels = dict.fromkeys(settings.channels, 0)
    rules = dict.fromkeys((rule.name for rule in settings.rules if rule.enabled), 0)
    # A rule that can drop has its dropped series from the start too (the shaper reports a
    # rule only once it holds or dropped something); "dropped" alone adds no waiting series.
    drops = {
        rule.name: {"dropped": 0}
        for rule in settings.rules
        if rule.enabled
        and rule.shaping is not None
        and rule.shaping.active is not None
        and rule.shaping.active.outside == "drop"
    }
    return Snapshot(
        fills_received={**dict.fromkeys(_SOURCES, 0), **(pipe.stats.received if pipe else {})},
        rejected=dict(feed.stats.rejected) if feed else {},
        duplicates=pipe.stats.duplicates if pipe else 0,
        matched={**rules, **(pipe.stats.matched if pipe else {})},
        sent={**channels, **(dlv.stats.sent_by_channel if dlv else {})},
        failed={**channels, **(dlv.stats.failed_by_channel if dlv else {})},
        dead={**channels, **(dlv.stats.dead_by_channel if dlv else {})},
        outbox_pending=dlv.pending() if dlv else 0,
        oldest_pending=drain.oldest(dlv.pending_by_channel()) if dlv else {},
        feed_connected=bool(feed and feed.stats.connected),
        last_frame_unix=None if age is None else now.timestamp() - age,
        reconnects=dict(feed.stats.reconnects) if feed else {},
        backfilled=feed.stats.backfilled if feed else 0,
        backfill_failures=feed.stats.backfill_failures if feed else 0,
        backfill_gap_open=bool(feed and feed.gap_open),
        order_list_requests=lookups[0],
        order_list_failures=lookups[1],
        shaping={**drops, **(pipe.shaping.stats() if pipe else {})},
        shaping_lost=dict(pipe.shaping.lost) if pipe else {},
        retargeted=dlv.stats.retargeted if dlv else 0,
        awaiting_title=len(pipe.waits) if pipe else 0,
        judged_untitled=pipe.waits.gave_up if pipe else 0,
        reloads=dict(reloads.results),
        last_reload_ok=reloads.last_ok,
    )
