"""When a lane's head row may go: now, after a wait, behind a moved row, or never (settled).

The row's timing policy, apart from the lanes (`deliver.py`) that wait and send by it. Before
it goes, a row may turn out delivered after all, past max_age (dead-lettered), on a URL a
reload removed (re-queued for its channel's current URLs), or due for its channel's fallback;
what each of these records is `delivery_outcomes.py`. A retry time further off than any wait we
set means the wall clock stepped back: the row is due then, not held for the step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime

from notifier.channel_limits import MAX_STATED_PAUSE
from notifier.delivery_outcomes import Outcomes
from notifier.sender import Sender
from notifier.settings import DeliverySettings
from notifier.store import OutboxItem, StateStore

STILL_SENDING_POLL = 1.0  # seconds between looks at a send given up on that may yet arrive

# The prefix a dead-lettered row's error gets ("undelivered after 1 day, 0:00:00: ...").
_UNDELIVERED = re.compile(r"^(?:undelivered after (?:\d+ days?, )?\d+:\d\d:\d\d(?:\.\d+)?: )+")


def due_in(
    item: OutboxItem,
    sender: Sender,
    settings: DeliverySettings,
    outcomes: Outcomes,
    clock: Callable[[], datetime],
) -> float | None:
    """Seconds until the row may be sent (0: now); None when it is settled instead: found
    delivered after all, dead-lettered, or re-queued for its channel's current URLs."""
    channel = sender.channel_of(item.target) or item.channel
    if outcomes.delivered_after_all(item, channel, sender):
        # First: the service has it, so it is neither dead, nor due for the fallback, nor
        # to be sent again to a URL a reload put in place of the one that took it.
        return None
    now = clock()
    expires = item.created_at + settings.max_age
    # A requeued row gets its one try, however long the daemon was down since the requeue:
    # `outbox --retry-dead` promises the next run sends it. Failing that try, it expires.
    expired = now >= expires and not item.requeued
    settles = expired or not sender.knows(item.target)
    if settles and outcomes.still_sending(item, sender):
        # A send given up on still runs: it may yet arrive, and the alert dead-lettered
        # (queued for the fallback) or moved to a URL a reload put in place of this one
        # would show twice. Looked at again until it ends (delivered after all: marked
        # sent above) or the sender stops holding it (one send deadline at most).
        return STILL_SENDING_POLL
    if expired:  # before any retarget: a re-queued row would start a new max_age
        # Once: a row dead-lettered before, requeued by `outbox --retry-dead`, had it.
        last = _UNDELIVERED.sub("", item.last_error or "") or "never attempted"
        error = f"undelivered after {settings.max_age}: {last}"
        outcomes.dead(item, channel, error, sender)
        return None
    if not sender.knows(item.target):
        outcomes.retarget(item, sender)
        return None
    wake = item.next_at if item.requeued else min(item.next_at, expires)
    falls_back = outcomes.fallback_at(item, channel)
    if falls_back is not None:
        if now >= falls_back:
            outcomes.escalate(item, channel, sender)
        else:
            wake = min(wake, falls_back)
    if item.attempts > 0:  # its channel is failing: the rows behind it wait on it
        behind = outcomes.sweep_fallbacks(item.target, channel, now, sender)
        if behind is not None:
            wake = min(wake, behind)
    if item.next_at <= now:
        return 0.0
    if (item.next_at - now).total_seconds() > max(settings.retry_cap, MAX_STATED_PAUSE):
        # Further off than any wait we set: the wall clock stepped back since. Due now,
        # rather than held for as long as the step.
        return 0.0
    # Wake at the retry time, expiry or fallback time, whichever comes first.
    return (wake - now).total_seconds()


def behind_a_move(
    item: OutboxItem, channel: str, lanes: Iterable[str], sender: Sender, store: StateStore
) -> bool:
    """Whether a row of `channel` filled before `item` still sits on a URL a reload removed
    (among the targets with a lane): its lane is about to re-queue it for the channel's current
    URLs (once a send still in flight there has its outcome), and it must reach them first."""
    for target in lanes:
        if target == item.target or sender.knows(target):
            continue
        head = store.head(target)
        if head and head[0].channel == channel and head[0].filled_at <= item.filled_at:
            return True
    return False
