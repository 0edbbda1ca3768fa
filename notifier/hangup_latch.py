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
    """A SIGHUP handler that notes the signal (`take` says whether one came), or hands it on
    while the event loop runs (`forward`).

    It stays SIGHUP's handler for the life of the process: the loop gets the signal through
    it rather than through `loop.add_signal_handler`, whose removal at the end resets SIGHUP
    to its default action until the handler from before is put back. A SIGHUP in that gap,
    which any thread of the process may receive, ended the daemon.
    """

    def __init__(self) -> None:
        self._pending = False
        self._before: Handler = None
        self._installed = False
        self._forward: Callable[[], object] | None = None

    def install(self) -> HangupLatch:
        """Hold SIGHUP from now on; off the main thread (an embedding caller) it cannot, and
        signals stay as they were, as the service's own handlers do there."""
        try:
            before = signal.getsignal(signal.SIGHUP)
            signal.signal(signal.SIGHUP, self._note)
        except ValueError:
            return self
        # Calls the signal interrupts in any thread resume, as under asyncio's own handlers,
        # rather than fail with EINTR: the latch stays the handler for the whole run.
        signal.siginterrupt(signal.SIGHUP, False)
        self._before, self._installed = before, True
        return self

    def restore(self) -> None:
        """Put back the handler from before `install` (for callers that live on)."""
        if self._installed:
            signal.signal(signal.SIGHUP, self._before or signal.SIG_DFL)
            self._installed = False

    @property
    def installed(self) -> bool:
        """Whether SIGHUP comes here: installed, and not replaced by another handler since."""
        return self._installed and signal.getsignal(signal.SIGHUP) == self._note

    def forward(self, deliver: Callable[[], object] | None) -> None:
        """From now on each SIGHUP calls `deliver` instead of being noted (None: noted again).

        It runs inside the signal handler, so it must only schedule work, as
        `loop.call_soon_threadsafe` does; if it raises RuntimeError (the loop closed), the
        signal is noted instead.
        """
        self._forward = deliver

    def _note(self, signum: int, frame: FrameType | None) -> None:
        deliver = self._forward
        if deliver is not None:
            try:
                deliver()
            except RuntimeError:
                pass
            else:
                return
        self._pending = True

    def take(self) -> bool:
        """Whether a SIGHUP came since the last call."""
        pending, self._pending = self._pending, False
        return pending
