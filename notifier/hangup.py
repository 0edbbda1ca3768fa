"""SIGHUP before the daemon's own handlers are in: remembered, never fatal.

Until the event loop installs its handlers, SIGHUP has its default action: the process ends,
and systemd counts a death by SIGHUP as a clean exit, so `Restart=on-failure` does not bring
it back. A `systemctl reload` in the second a start takes (imports, config, state file) would
stop the service for good. `run` installs a `HangupLatch` first thing; the service reloads once
if a SIGHUP came before its handlers, and puts the latch back when it removes them at the end.
"""

from __future__ import annotations

import contextlib
import signal
from types import FrameType


class HangupLatch:
    """A SIGHUP handler that only notes the signal; `take` says whether one came."""

    def __init__(self) -> None:
        self._pending = False

    def install(self) -> HangupLatch:
        """Hold SIGHUP from now on; off the main thread (an embedding caller) it cannot, and
        signals stay as they were, as the service's own handlers do there."""
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGHUP, self._note)
        return self

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self._pending = True

    def take(self) -> bool:
        """Whether a SIGHUP came since the last call."""
        pending, self._pending = self._pending, False
        return pending
