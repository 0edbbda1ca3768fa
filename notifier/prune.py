"""The hourly prune: forgets fill identities and sent alerts past the backfill horizon.

A fill older than the horizon can no longer come back through backfill, so its identity no
longer guards against a duplicate; without the prune the state file would grow with every
fill. Each pass deletes in steps of `PRUNE_STEP` rows (a few ms each) and yields between
them, so the feed and delivery run while a large backlog is cleared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from notifier.store import PRUNE_STEP, StateStore

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0  # seconds between passes


async def prune_forever(
    store: StateStore,
    *,
    horizon: timedelta,
    clock: Callable[[], datetime],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """A pass now and one every `PRUNE_EVERY` seconds, until cancelled."""
    while True:
        cutoff = clock() - horizon
        removed = 0
        while True:
            step = store.prune(fills_before=cutoff, sent_before=cutoff, limit=PRUNE_STEP)
            removed += step
            if step < PRUNE_STEP:
                break
            await asyncio.sleep(0)  # the feed and delivery run between steps
        if removed:
            log.info("pruned %d old entries from the state file", removed)
        await sleep(PRUNE_EVERY)
