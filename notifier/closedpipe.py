"""A stdout whose reader has gone (`notifier outbox | head`): stop writing to it, quietly.

Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError, and so would every
later write and the flush at exit. Pointing the descriptor at /dev/null ends that.

Whoever runs only for its output (the demo) asks, with `when_dropped`, to be told: after the
drop its writes succeed into /dev/null, and nothing else would ever say the reader is gone.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator

_listeners: list[Callable[[], object]] = []
_lock = threading.Lock()


def drop_stdout() -> None:
    """Send whatever stdout still gets to /dev/null, and tell those who asked (any thread)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no descriptor (a captured stream)
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115  # lives as stdout
    else:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener()


@contextlib.contextmanager
def when_dropped(listener: Callable[[], object]) -> Iterator[None]:
    """Within the block, `drop_stdout` calls `listener` (on the thread whose write found the
    reader gone: it must only schedule work, as `loop.call_soon_threadsafe` does)."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)
