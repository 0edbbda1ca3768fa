"""SIGHUP before the event loop's handlers are in: remembered, never fatal.

Until then SIGHUP has its default action: the process ends, and systemd counts a death by
SIGHUP as a clean exit, so `Restart=on-failure` does not bring it back. A reload in the
second a start takes (imports, config, state file) would stop the service for good. The
`notifier` command installs a `HangupLatch` before importing anything slow (`launch.py`), so
this module imports nothing but `signal`: asyncio alone takes some 50 ms to import.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

Handler = Callable[[int, FrameType | None], object] | int | None  # as signal.getsignal says


class HangupLatch:
    """A SIGHUP handler that only notes the signal; `take` says whether one came."""

    def __init__(self) -> None:
        self._pending = False
        self._before: Handler = None
        self._installed = False

    def install(self) -> HangupLatch:
        """Hold SIGHUP from now on; off the main thread (an embedding caller) it cannot, and
        signals stay as they were, as the service's own handlers do there."""
        try:
            before = signal.getsignal(signal.SIGHUP)
            signal.signal(signal.SIGHUP, self._note)
        except ValueError:
            return self
        self._before, self._installed = before, True
        return self

    def restore(self) -> None:
        """Put back the handler from before `install` (for callers that live on)."""
        if self._installed:
            signal.signal(signal.SIGHUP, self._before or signal.SIG_DFL)
            self._installed = False

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self._pending = True

    def take(self) -> bool:
        """Whether a SIGHUP came since the last call."""
        pending, self._pending = self._pending, False
        return pending
