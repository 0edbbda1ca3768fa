"""The event loop's signal handlers while the daemon runs (`loop_signals`), taking over
SIGHUP from the start-up latch (hangup_latch.py) and handing it back at the end.

The service reloads once if a SIGHUP came before its handlers were in, and puts the latch
back when it removes them. (Under systemd, `Type=notify` also holds a reload until the daemon
says it is ready: see sdnotify.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator, Mapping

from notifier.hangup_latch import Handler, HangupLatch

log = logging.getLogger(__name__)


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
            # Removing the loop's handler leaves the default action behind until the one
            # from before is back: a SIGHUP in that gap would end the process. Held off
            # meanwhile, it reaches the restored handler instead.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
            try:
                loop.remove_signal_handler(signum)
                if before is not None:
                    signal.signal(signum, before)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
