"""The event loop's signal handlers while the daemon runs (`loop_signals`).

SIGHUP reaches the loop through the start-up latch (hangup_latch.py) when there is one: the
service reloads once if a SIGHUP came before it ran, and each later one is forwarded to the
loop; at the end the latch notes them again. SIGHUP's handler never changes meanwhile, so
there is no moment when its default action (the process ends) applies. (Under systemd,
`Type=notify` also holds a reload until the daemon says it is ready: see sdnotify.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
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

    SIGHUP goes through `hangups` when it holds the signal: its handler runs now if one came
    during start-up, and on each later one. Off the main thread, or without Unix signals, a
    signal keeps its handler.
    """
    loop = asyncio.get_running_loop()
    held = enabled and signal.SIGHUP in handlers and hangups is not None and hangups.installed
    latch = hangups if held else None  # SIGHUP comes through it
    installed: dict[int, Handler] = {}  # signal -> the handler it had before
    for signum, handler in handlers.items() if enabled else ():
        if latch is not None and signum == signal.SIGHUP:
            continue  # through the latch, below
        before = signal.getsignal(signum)
        try:
            loop.add_signal_handler(signum, handler)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or not a Unix loop: signals stay default
        installed[signum] = before
    if latch is not None:
        on_hangup = handlers[signal.SIGHUP]
        # Forwarding first, then the start-up note: a SIGHUP in between is not lost.
        # In this context, not in that of whichever task the signal interrupts.
        context = contextvars.copy_context()
        latch.forward(functools.partial(loop.call_soon_threadsafe, on_hangup, context=context))
        if latch.take():
            log.info("SIGHUP during start-up: handling it now")
            on_hangup()
    try:
        yield
    finally:
        if latch is not None:
            latch.forward(None)
        for signum, before in installed.items():
            loop.remove_signal_handler(signum)  # leaves the default action behind
            if before is not None:
                signal.signal(signum, before)
