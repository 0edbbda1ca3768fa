"""`console://`: an apprise service that prints alerts to stdout, for `notifier demo`.

Registered with apprise's `@notify` decorator when this module is imported (notifier.channel_urls
imports it), so a demo config can name `console://` like any other channel URL.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, cast

from apprise.decorators import notify

from notifier.closedpipe import drop_stdout

_Sender = Callable[..., bool]
# apprise's decorator is untyped; it registers the function and returns it unchanged.
_register = cast("Callable[..., Callable[[_Sender], _Sender]]", notify)

_BOLD, _RESET = "\033[1m", "\033[0m"
_PRINTING = threading.Lock()


@_register(on="console", name="Console")
def print_alert(body: str, title: str, *args: Any, **kwargs: Any) -> bool:
    """Print one alert: its title on a line of its own (bold in a terminal), then the body.

    `console://desk` names the channel before the title: the demo prints every channel of a
    config here, and an alert to two channels would otherwise show twice without a word why.
    """
    out = sys.stdout  # looked up per call, so redirected or captured stdout is honoured
    meta = kwargs.get("meta")
    channel = meta.get("host") if isinstance(meta, dict) else None
    head = ""
    if title:
        heading = f"{_BOLD}{title}{_RESET}" if out.isatty() else f"== {title} =="
        head = (f"[{channel}] " if channel else "") + heading + "\n"
    elif channel:
        head = f"[{channel}]\n"
    try:
        # One write under a lock: channels send on threads of their own, and two alerts
        # written a line at a time showed one channel's body under the other's heading.
        with _PRINTING:
            out.write(head + body.rstrip("\n") + "\n\n")
            out.flush()
    except BrokenPipeError:
        # `notifier demo | head`: the reader has read what it wanted. Nothing is lost by not
        # printing, and retrying would stall the demo for its whole settle time. The demo,
        # told by drop_stdout, stops: its output was all it ran for.
        drop_stdout()
    return True
