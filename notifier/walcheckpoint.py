"""Checkpoints of the state file's WAL on a thread of their own, never on the event loop.

SQLite checkpoints automatically inside whichever commit takes the WAL past 1,000 pages: that
commit copies the WAL into the database and fsyncs it, 3 to 4 ms on this machine instead of
the usual 30 µs. The daemon commits on its event loop, so every few seconds one alert (and
the feed reader) waited that long. The service runs `checkpoint_forever` instead: a PASSIVE
checkpoint on a second connection, in a worker thread, which never blocks the writer.

A PASSIVE checkpoint lets the WAL start over only if it copied every frame before the next
commit; under a sustained flood of commits it may never get there. So the in-commit
checkpoint stays, at `BACKSTOP_PAGES` instead of 1,000: it bounds the WAL, and is cheap when
it comes, since the thread has copied most frames already.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote

from notifier.state_file_watch import Identity, identity

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 1.0  # seconds between background checkpoints
BACKSTOP_PAGES = 10_000  # the in-commit checkpoint's threshold (about 40 MB of WAL)


class WalCheckpointer:
    """A second connection to the state file that only checkpoints its WAL."""

    def __init__(
        self, path: Path, *, busy_timeout: float = 1.0, same_as: Identity | None = None
    ) -> None:
        self.path = path
        # The file the daemon opened: a different one at the path by the time this connects
        # (a restore) must not take the daemon's WAL, whose frames its own file then lacks.
        self._same_as = same_as
        self._busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one checkpoint at a time; close waits for it
        self._closed = False
        self.failing = False

    def checkpoint(self) -> tuple[int, int]:
        """Copy what the WAL holds into the file, without waiting on the writer.

        Returns (frames in the WAL, frames checkpointed); (0, 0) once closed or on a failure,
        which is logged once until a checkpoint succeeds again (the WAL then just grows).
        """
        with self._lock:
            if self._closed:
                return 0, 0
            try:
                if self._db is None:
                    # Used from whichever worker thread runs this call, one call at a time.
                    # mode=rw: never create a file; one deleted under the daemon stays gone
                    # (state_file_watch.py says so) rather than come back empty, 0644.
                    self._db = sqlite3.connect(
                        f"file:{quote(os.path.abspath(self.path))}?mode=rw",
                        uri=True,
                        isolation_level=None,
                        timeout=self._busy_timeout,
                        check_same_thread=False,
                    )
                    if self._same_as is not None and identity(self.path) != self._same_as:
                        self._db.close()
                        self._db = None
                        raise sqlite3.OperationalError("not the file the daemon opened")
                row = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:
                if not self.failing:
                    log.warning("state file %s: WAL checkpoint failed: %s", self.path, exc)
                self.failing = True
                return 0, 0
            if self.failing:
                log.info("state file %s: WAL checkpoints work again", self.path)
            self.failing = False
            return int(row[1]), int(row[2])

    def close(self) -> None:
        """Close the connection (after a checkpoint in flight); later calls do nothing."""
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None


async def checkpoint_forever(
    checkpointer: WalCheckpointer, *, every: float = CHECKPOINT_EVERY
) -> None:
    """Checkpoint every `every` seconds until cancelled (a checkpoint in flight finishes)."""
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(checkpointer.checkpoint)
