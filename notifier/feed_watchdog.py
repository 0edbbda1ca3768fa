"""The feed's liveness watchdog: ping an idle connection, drop it if even that goes unanswered.

A task beside the read loop, which only stamps `alive_at` on each frame: the loop stays free
of a timer per frame, which cost more than everything else done per frame.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from notifier.settings import FeedSettings

log = logging.getLogger(__name__)

_APP_PING = '{"action": "ping"}'


class Watchdog:
    """Watches one connection from `run()`; `silent` once it dropped it for not answering."""

    def __init__(self, ws: ClientConnection, settings: FeedSettings, *, alive_at: float) -> None:
        self._ws = ws
        self._settings = settings
        self.alive_at = alive_at  # loop time of the last frame (or answered ping)
        self.silent = False

    async def run(self) -> None:
        """Ping when the feed has been idle; drop the connection if even that goes unanswered.

        Both pings: the JSON one, and a protocol one, since a venue may answer only the latter
        (the reference says both work; PolySimulator's AsyncAPI lists pong on the prices
        channel only). A frame or the protocol pong, either one, shows the peer alive.
        """
        ws, settings = self._ws, self._settings
        loop_time = asyncio.get_running_loop().time
        while True:
            idle = loop_time() - self.alive_at
            if idle < settings.ping_interval:
                await asyncio.sleep(settings.ping_interval - idle)
                continue
            try:
                await ws.send(_APP_PING)
                pong = asyncio.ensure_future(await ws.ping())  # already a future: the same one
            except ConnectionClosed:
                return  # the read loop sees the close and says why
            pinged = loop_time()
            await asyncio.sleep(settings.ping_timeout)
            if pong.done() and not pong.cancelled() and pong.exception() is None:
                self.alive_at = max(self.alive_at, loop_time())  # alive: idle counts from now
            if self.alive_at < pinged:
                log.warning("no frame and no pong; replacing the connection")
                self.silent = True
                ws.transport.abort()  # a silent peer would not answer a closing handshake
                return
