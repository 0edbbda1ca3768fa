"""Notice a state file deleted or replaced while the daemon runs.

SQLite goes on writing to the file it opened: one deleted (or renamed away, or replaced by a
restore) keeps working, unseen, until the daemon stops, and the next start finds a new, empty
state: the alerts still pending in it are never sent. Said as an error, so that it is seen.

Copying the deleted file back from /proc while the daemon runs is not offered: its WAL goes
on at the path, and the next start replays it onto the copy, whose pages no longer match (a
malformed database).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger(__name__)

CHECK_EVERY = 60.0  # seconds between two looks at the state file's path

Identity = tuple[int, int]  # (st_dev, st_ino)


def identity(path: Path) -> Identity | None:
    """Which file the path names now; None if it names none."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


async def watch_state_file(
    path: Path,
    opened: Identity | None,
    *,
    every: float = CHECK_EVERY,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Log an error when `path` stops naming the file opened as `opened`; once per change,
    and once more if it comes back. Until cancelled."""
    if opened is None:
        return  # nothing to compare with (it vanished as it was opened)
    gone = False
    while True:
        await sleep(every)
        now = identity(path)
        if now == opened:
            if gone:
                log.info("state file %s is the file this run opened again", path)
            gone = False
            continue
        if gone:
            continue
        gone = True
        log.error(
            "state file %s was %s while running: this run goes on with the file it opened, "
            "but the next start will not find the alerts pending in it or the fills it "
            "recorded",
            path,
            "deleted" if now is None else "replaced",
        )
