"""The /healthz verdict: is the daemon doing its job, as a supervisor or a probe asks it.

Unhealthy while starting (and while stopping: service.py), while the venue refuses the API
key, while the feed has been down too long (fills are not coming in), or while some
channel's alerts are not draining (drain_watch.py judges each channel).
"""

from __future__ import annotations

from collections.abc import Mapping

from notifier.deliver import Deliverer
from notifier.drain_watch import DrainWatch
from notifier.feed import FeedClient
from notifier.settings import ChannelSettings

FEED_DOWN_AFTER = 300.0  # seconds without a feed connection before /healthz says 503


def judge_health(
    feed: FeedClient | None,
    deliverer: Deliverer | None,
    drain: DrainWatch,
    channels: Mapping[str, ChannelSettings],
) -> tuple[bool, str]:
    """Healthy while the feed is up (or reconnecting, for at most FEED_DOWN_AFTER) and the
    outbox drains.

    Reconnecting is all of it: minting a token, the handshake (each up to request_timeout)
    and the pause between attempts; judging the pause alone made a probe see 503 and 200 by
    turns through one outage.
    """
    if feed is None or deliverer is None:
        return False, "starting"
    if feed.stats.key_refused:  # a person must look: no waiting for FEED_DOWN_AFTER
        return False, "the venue refuses the API key (it took it earlier in this run)"
    down = feed.down_for()
    if down > FEED_DOWN_AFTER:  # reconnecting, but for too long: fills are not coming in
        return False, f"feed not connected for {down / 60:.0f} minutes"
    paced = {  # a rate's period: how long a full window may hold an alert back
        name: rate[1] for name, channel in channels.items() if (rate := channel.rate)
    }
    urls = {name: len(channel.urls) for name, channel in channels.items()}
    stalled = drain.stalled(deliverer.pending_by_target(), paced, urls)
    if stalled:
        return False, "outbox not draining: " + "; ".join(stalled)
    return True, "ok"
