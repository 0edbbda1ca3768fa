"""The daemon's signals: SIGHUP before its own handlers are in (remembered, never fatal),
then the event loop's handlers while it runs (`loop_signals`).

Until the event loop installs its handlers, SIGHUP has its default action: the process ends,
and systemd counts a death by SIGHUP as a clean exit, so `Restart=on-failure` does not bring
it back. A reload in the second a start takes (imports, config, state file) would stop the
service for good. The `notifier` command installs a `HangupLatch` before importing anything
slow (`launch.py`); the service reloads once if a SIGHUP came before its handlers, and puts
the latch back when it removes them at the end. (Under systemd, `Type=notify` also holds a
reload until the daemon says it is ready: see sdnotify.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator, Mapping
from types import FrameType

log = logging.getLogger(__name__)

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
        with contextlib.suppress(ValueError):
            before = signal.getsignal(signal.SIGHUP)
            signal.signal(signal.SIGHUP, self._note)
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


@contextlib.contextmanager
def loop_signals(
    handlers: Mapping[int, Callable[[], object]],
    *,
    enabled: bool = True,
    hangups: HangupLatch | None = None,
) -> Iterator[None]:
    """The running loop's handlers for these signals; the handlers from before are back on exit.

    If SIGHUP is among them and `hangups` caught one during start-up, its handler runs now.
    Off the main thread, or without Unix signals, a signal keeps its handler.
    """
    loop = asyncio.get_running_loop()
    installed: dict[int, Handler] = {}  # signal -> the handler it had before
    for signum, handler in handlers.items() if enabled else ():
        before = signal.getsignal(signum)
        try:
            loop.add_signal_handler(signum, handler)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or not a Unix loop: signals stay default
        installed[signum] = before
    if signal.SIGHUP in installed and hangups is not None and hangups.take():
        log.info("SIGHUP during start-up: reloading now")
        handlers[signal.SIGHUP]()
    try:
        yield
    finally:
        for signum, before in installed.items():
            loop.remove_signal_handler(signum)  # leaves the default action behind
            if before is not None:
                signal.signal(signum, before)
