"""A stdout whose reader has gone (`notifier outbox | head`): stop writing to it, quietly.

Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError, and so would every
later write and the flush at exit. Pointing the descriptor at /dev/null ends that.
"""

from __future__ import annotations

import os
import sys


def drop_stdout() -> None:
    """Send whatever stdout still gets to /dev/null."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no descriptor (a captured stream)
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115  # lives as stdout
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
