"""Tell systemd how the daemon is doing (`Type=notify`): ready once it can be reloaded.

With `Type=exec`, `systemctl start` returns as soon as the process exists, so a reload right
after it could land before the daemon handles SIGHUP. With `Type=notify`, systemd waits for
READY=1, sent once the signal handlers are in, and holds a reload until then. STOPPING=1 says a
graceful stop began. Without $NOTIFY_SOCKET (not under systemd) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> None:
    """Send one state line ("READY=1") to systemd's socket; a failure is logged, not raised."""
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
        log.warning("could not tell systemd %s: %s", state, exc)
