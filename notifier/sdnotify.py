"""Tell systemd how the daemon is doing (`Type=notify`): ready, reloading, alive, its status.

With `Type=exec`, `systemctl start` returns as soon as the process exists, so a reload right
after it could land before the daemon handles SIGHUP. With `Type=notify`, systemd waits for
READY=1, sent once the signal handlers are in, and holds a reload until then. A reload is
bracketed by RELOADING=1 and READY=1 (systemd 253 and later show the unit as reloading in
between, and `Type=notify-reload` makes `systemctl reload` wait for it); its outcome goes in
STATUS=, which `systemctl status` shows: a refused reload changes nothing else there. While the
daemon runs, STATUS= says every STATUS_EVERY seconds whether the feed is connected, how many
alerts wait, and a reload that did not take (until one does). With
`WatchdogSec=` set, WATCHDOG=1 is sent from the event loop, so a loop that stops turning gets
the daemon restarted. STOPPING=1 says a graceful stop began. Without $NOTIFY_SOCKET (not
under systemd) nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

from notifier.wording import counted

log = logging.getLogger(__name__)

MIN_WATCHDOG_PING = 0.05  # seconds between pings at most this often, whatever systemd asks
STATUS_EVERY = 15.0  # seconds between status lines: what `systemctl status` shows stays fresh


def notify(state: str) -> None:
    """Send state lines ("READY=1") to systemd's socket; a failure is logged, not raised."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # a socket in the abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        first = state.split("\n", 1)[0]  # the state, not a STATUS= text after it
        log.warning("could not tell systemd %s: %s", first, exc)


def reloading(monotonic: Callable[[], float] = time.monotonic) -> str:
    """The lines that open a reload: systemd 253+ matches them to the reload it asked for by
    the monotonic time (CLOCK_MONOTONIC, as Python's on Linux), in microseconds."""
    return f"RELOADING=1\nMONOTONIC_USEC={int(monotonic() * 1_000_000)}"


def status(text: str) -> str:
    """A STATUS= line: one line of at most 200 characters, whatever `text` holds."""
    return "STATUS=" + " ".join(text.split())[:200]


def under_systemd(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether systemd listens ($NOTIFY_SOCKET): only then is a status line worth making."""
    return bool(environ.get("NOTIFY_SOCKET"))


def status_report(running: str, *, connected: bool, waiting: int, reload: str | None) -> str:
    """The status line of a running daemon: "running: 3 rules, 2 channels; feed connected; 0
    alerts waiting", and how a reload that did not take went (`reload`), until one does."""
    feed = "feed connected" if connected else "feed not connected"
    alerts = f"{counted(waiting, 'alert')} waiting"
    return "; ".join(part for part in (running, feed, alerts, reload) if part)


async def tell_every(
    message: Callable[[], str],
    every: float,
    *,
    send: Callable[[str], None] = notify,
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    """Send `message()` at once, then every `every` seconds until cancelled: from a task on
    the event loop, so a loop stuck in a blocking call stops it (what the watchdog needs)."""
    while True:
        send(message())
        await sleep(every)


def start_status(tasks: asyncio.TaskGroup, line: Callable[[], str]) -> asyncio.Task[None] | None:
    """The task that keeps the status line fresh, under systemd; None outside it."""
    if not under_systemd():
        return None
    report = tell_every(lambda: status(line()), STATUS_EVERY, sleep=asyncio.sleep)
    return tasks.create_task(report, name="status")


def start_watchdog(tasks: asyncio.TaskGroup) -> asyncio.Task[None] | None:
    """The task that pings the watchdog, when `WatchdogSec=` asks; None when it does not."""
    interval = watchdog_interval()
    if interval is None:
        return None
    # systemd restarts the daemon once `WatchdogSec=` passes without a ping.
    ping = tell_every(lambda: "WATCHDOG=1", interval, sleep=asyncio.sleep)
    return tasks.create_task(ping, name="watchdog")


def watchdog_interval(
    environ: Mapping[str, str] = os.environ, pid: int | None = None
) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of `WatchdogSec=`), or None when systemd asks
    for none, or asks another process (WATCHDOG_PID names the one it watches)."""
    raw = environ.get("WATCHDOG_USEC", "")
    if not raw.isdigit() or int(raw) == 0:
        return None
    watched = environ.get("WATCHDOG_PID", "")
    if watched and watched != str(os.getpid() if pid is None else pid):
        return None
    return max(int(raw) / 2_000_000, MIN_WATCHDOG_PING)
