"""The `notifier` command's first step: hold SIGHUP, then import and run the CLI.

Importing the CLI (config, YAML, asyncio) takes about 0.15 s, during which SIGHUP's default
action would end a daemon that was just asked to reload (see hangup_latch.py).
"""

from __future__ import annotations

import os
from typing import NoReturn

from notifier.hangup_latch import HangupLatch

EXIT_INTERRUPTED = 130  # as cli.EXIT_INTERRUPTED, which is not imported yet


def entry() -> NoReturn:
    """The console script and `python -m notifier`."""
    hangups = HangupLatch().install()
    try:
        from notifier import cli
    except KeyboardInterrupt:  # Ctrl-C while starting: the exit status says it, no traceback
        os._exit(EXIT_INTERRUPTED)
    cli.entry(hangups=hangups)
