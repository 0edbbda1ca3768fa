"""Notice when the config file changes, for `run --watch` (a reload without SIGHUP).

Polling the file's modification time and size is portable and costs one stat a second; an
editor that saves in two steps may trigger a reload of a half-written file, which validation
refuses (the running config stays) before the complete file is picked up on the next poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger(__name__)

Signature = tuple[int, int, int] | None  # (mtime_ns, size, inode); None while missing


def signature(path: Path) -> Signature:
    """What identifies the file's current content cheaply; None if it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


async def watch_file(
    path: Path,
    on_change: Callable[[], object],
    *,
    since: Signature,
    interval: float = 1.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Call `on_change` each time the file at `path` differs from `since`; until cancelled.

    `since` is taken by the caller when it read the file, so a change made between that read
    and this task's first poll is not missed.
    """
    last = since
    while True:
        await sleep(interval)
        current = signature(path)
        if current != last and current is not None:
            log.info("config file %s changed: reloading", path)
            on_change()
        last = current
