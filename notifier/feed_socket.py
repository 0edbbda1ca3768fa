"""The feed's WebSocket: opened with the options the feed needs; why it would not open or closed.

So the client's loop deals in causes ("close_4001", "silent", ...), which its reconnect policy
and counters go by, and not in websockets' options, exceptions and close frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidProxy,
    InvalidStatus,
    WebSocketException,
)

from notifier.errors import FatalFeedError
from notifier.feed_connect import redact
from notifier.normalize import Rejected
from notifier.settings import FeedSettings
from notifier.venue_pages import retry_after_seconds

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 2.0  # seconds for the closing handshake before the socket is dropped
# Frames websockets may queue before it stops reading the socket. The connect-time backfill
# runs before the read loop, and a stopped reader also stops reading keepalive pongs: with
# websockets' default (16), a backfill longer than ping_interval + ping_timeout while the bot
# kept trading got a healthy connection closed as silent. 4,096 small frames are ~2 MB.
LIVE_QUEUE = 4096


class _NoDebug(logging.LoggerAdapter[logging.Logger]):
    """websockets logs the handshake request line (token in the query) at DEBUG: never that."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_WS_LOG = _NoDebug(logging.getLogger(f"{__name__}.websockets"), {})


@dataclass(frozen=True)
class Refused:
    """A connect that failed: the cause to count, and a 429's Retry-After for the next pause."""

    cause: str  # "rate_limited", "close_4001" or "connect_failed"
    wait: float = 0.0


async def open_socket(url: str, token: str, settings: FeedSettings) -> ClientConnection | Refused:
    """The WebSocket at `url` for `token`, or why it would not open; FatalFeedError for a
    proxy from the environment that no retry changes."""
    try:
        return await connect(
            f"{url}?token={quote(token, safe='')}",
            max_size=max(settings.max_frame_bytes * 4, 1 << 16),
            # No permessage-deflate: fill frames are a few hundred bytes, and inflating
            # each one cost more CPU than reading it (about 90k vs 65k frames/s here).
            compression=None,
            max_queue=LIVE_QUEUE,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            # Short: a stop must not wait on a peer that no longer answers.
            close_timeout=min(CLOSE_TIMEOUT, settings.ping_timeout),
            open_timeout=settings.request_timeout,
            logger=_WS_LOG,
        )
    except InvalidStatus as exc:
        code = exc.response.status_code
        log.warning("WebSocket handshake refused (HTTP %d)", code)
        if code == 429:  # too many connects: wait as long as the venue asks, at least
            wait = retry_after_seconds(exc.response.headers.get("Retry-After"))
            return Refused("rate_limited", wait or 0.0)
        return Refused("close_4001" if code in (401, 403) else "connect_failed")
    except InvalidProxy as exc:  # the environment's proxy, which no retry changes
        raise FatalFeedError(
            f"cannot use the proxy the environment names for the feed: {exc.msg}"
        ) from None
    except (OSError, TimeoutError, WebSocketException, UnicodeError) as exc:
        # UnicodeError: a host name IDNA cannot encode (a redirect's, say), refused as
        # the socket layer would refuse one it cannot resolve.
        log.warning("cannot connect: %s", redact(f"{type(exc).__name__}: {exc}", token))
        return Refused("connect_failed")
    except ImportError as exc:  # a SOCKS proxy in the environment: python-socks absent
        raise FatalFeedError(f"cannot use the proxy the environment names: {exc}") from None


def close_cause(exc: ConnectionClosed, token: str, reject: Callable[[Rejected, str], None]) -> str:
    """Why an open connection ended, from its close frames (an oversized frame goes to
    `reject`); a connection the watchdog dropped is "silent", which the caller knows."""
    if exc.rcvd is not None:
        code = exc.rcvd.code
        # The venue's text: quoted, so a newline in it cannot forge a line, and without the
        # token, which a 4001's reason may quote ("invalid token <token>").
        reason = redact(exc.rcvd.reason, token)[:80]
        log.info("server closed the connection (%d, reason %r)", code, reason)
        return f"close_{code}" if code in (4001, 4002) else "closed"
    if exc.sent is not None and exc.sent.code == 1011:
        log.warning("keepalive ping unanswered; replacing the connection")
        return "silent"
    if exc.sent is not None and exc.sent.code == 1009:
        reject(Rejected("oversized", "frame over the hard size limit"), "live")
        return "oversized"
    return "dropped"
