"""Notice when the config file changes, for `run --watch` (a reload without SIGHUP).

Polling the file's modification time and size is portable and costs one stat a second. A
change is reloaded once the file has stayed the same for one more poll: an editor that saves
in two steps (truncate, then write) or a `>` redirect in progress would otherwise be reloaded
half-written, and a half-written file can be a valid one (an empty file, or one cut between
two rules) that silently drops rules.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

Signature = tuple[int, int, int] | None  # (mtime_ns, size, inode); None while missing


@dataclass(frozen=True)
class WatchedFile:
    """A file to reload on change, with its signature from just before it was read: a save
    that lands between that read and the first poll then counts as a change."""

    path: Path
    since: Signature

    @classmethod
    def before_reading(cls, path: Path) -> WatchedFile:
        """Take this before reading the file, never after (a save in between would be lost)."""
        return cls(path, signature(path))


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
    """Call `on_change` each time the file at `path` differs from `since` and has then stayed
    the same for one poll; until cancelled.

    `since` is taken by the caller when it read the file, so a change made between that read
    and this task's first poll is not missed.
    """
    last = since
    settling: Signature = None  # a change seen at the last poll, reloaded if it holds
    while True:
        await sleep(interval)
        current = signature(path)
        if current is None or current == last:
            last = current if current is None else last  # gone: its return is a change
            settling = None
            continue
        if current != settling:
            settling = current  # still being written, perhaps: look again next poll
            continue
        log.info("config file %s changed: reloading", path)
        on_change()
        last, settling = current, None
