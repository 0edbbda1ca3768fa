"""Tending the backfill gap while a connection reads: retry a failed gap, close a recovered one.

Beside the read loop, not inline: while a retry pages history, frames (and pongs) must still
be read, or the watchdog would take a healthy connection for a silent one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from websockets.asyncio.client import ClientConnection

from notifier.backfill import Backfill

TEND_EVERY = 1.0  # seconds between looks at a gap to retry or close while no frame comes


class GapTender:
    """One connection's gap: `tend()` when the backfill is due, called by the read loop between
    frames and by a timer task of its own, started here; `cancel()` when the connection ends."""

    def __init__(
        self,
        ws: ClientConnection,
        backfill: Backfill,
        *,
        retry: Callable[[], Coroutine[Any, Any, None]],  # one backfill attempt
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,  # the timer's wait
    ) -> None:
        self._ws = ws
        self._backfill = backfill
        self._new_retry = retry
        self._sleep = sleep
        self._retry: asyncio.Task[None] | None = None  # a gap retry beside the read loop
        self._timer = asyncio.create_task(self._tend_on_time(), name="feed-gap-tender")
        self._timer.add_done_callback(self._helper_ended)

    def tend(self) -> None:
        """Close a recovered gap, or retry an open one in a task beside the read loop."""
        retry = self._retry
        failed = retry.exception() if retry is not None and retry.done() else None
        if failed is not None:
            raise failed  # the state store failed: as if the retry ran inline
        if self._backfill.settling:
            self._backfill.settle()
        elif retry is None or retry.done():
            self._retry = asyncio.create_task(self._new_retry(), name="feed-backfill")
            self._retry.add_done_callback(self._helper_ended)

    def cancel(self) -> list[asyncio.Task[None]]:
        """Cancel the timer and any retry; returns them, for the read loop to await (and to
        raise a failure of, as if they ran inline)."""
        retry, self._retry = self._retry, None
        helpers = [self._timer] if retry is None else [retry, self._timer]
        for task in helpers:
            task.cancel()
        return helpers

    async def _tend_on_time(self) -> None:
        """Retry a failed gap, or close a recovered one, when due even if no frame comes: a
        quiet feed (a bot not trading, a venue answering only protocol pings) would otherwise
        leave the fills missed while away unalerted until its next fill."""
        while True:
            await self._sleep(TEND_EVERY)
            if self._backfill.due:
                self.tend()

    def _helper_ended(self, task: asyncio.Task[None]) -> None:
        """A retry or the timer that failed (the state store did) ends the connection now,
        so the read loop raises its error at once: left alone, no retry would ever run again
        and the error would wait, unseen, for the connection to end on its own."""
        if not task.cancelled() and task.exception() is not None:
            self._ws.transport.abort()
