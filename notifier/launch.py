"""The `notifier` command's first step: hold SIGHUP, then import and run the CLI.

Importing the CLI (config, YAML, asyncio) takes about 0.15 s, during which SIGHUP's default
action would end a daemon that was just asked to reload (see hangup.py).
"""

from __future__ import annotations

from typing import NoReturn

from notifier.hangup import HangupLatch


def entry() -> NoReturn:
    """The console script and `python -m notifier`."""
    hangups = HangupLatch().install()
    from notifier import cli

    cli.entry(hangups=hangups)
