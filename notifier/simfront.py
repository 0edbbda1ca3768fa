"""The fake venue's public port: a minimal HTTP/1.1 server that also pipes WebSocket upgrades.

REST requests (the token POST among them) are answered by a route function; a request asking
to upgrade to WebSocket is relayed byte for byte to an internal websockets server. The relay
is where a dead network is simulated: while `silent()` is true, bytes vanish both ways and
nobody closes. Loopback test equipment, not a general HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Route = Callable[[str, str, Mapping[str, str]], Awaitable[tuple[int, object, dict[str, str]]]]
_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity"}


class HttpFront:
    """Keep-alive HTTP/1.1 on 127.0.0.1: JSON answers from `route`, upgrades piped onward."""

    def __init__(
        self,
        route: Route,
        *,
        silent: Callable[[], bool],
        refuse_upgrade: Callable[[], tuple[int, dict[str, str]] | None] = lambda: None,
    ) -> None:
        self._route = route
        self._silent = silent
        self._refuse_upgrade = refuse_upgrade  # (status, headers) to answer an upgrade with
        self._upgrade_port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    async def start(self, *, upgrade_port: int, port: int = 0) -> int:
        """Listen on loopback `port` (0: an ephemeral one), returned; upgrades go to
        `upgrade_port`."""
        self._upgrade_port = upgrade_port
        self._server = await asyncio.start_server(self._http, "127.0.0.1", port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        """Stop listening and end every open connection."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    return
                method, target, headers = _parse_head(head)
                if headers.get("upgrade", "").lower() == "websocket":
                    refusal = self._refuse_upgrade()
                    if refusal is not None:
                        status, extra = refusal
                        writer.write(_response(status, {"detail": "refused"}, extra))
                        await writer.drain()
                    else:
                        await self._pipe(head, reader, writer)
                    return
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                status, body, extra = await self._route(method, target, headers)
                writer.write(_response(status, body, extra))
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (OSError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # stop() cancels us; asyncio's stream callback reports a cancelled handler task
            # as an error, so end quietly instead.
            return
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _pipe(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Relay a WebSocket connection to the internal server, byte for byte."""
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upgrade_port)
        up_writer.write(head)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            up_writer.close()
            with contextlib.suppress(OSError):
                await up_writer.wait_closed()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                if self._silent():
                    continue  # a dead network: bytes vanish, nobody closes
                sink.write(data)
                await sink.drain()


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = ([*lines[0].split(" ", 2), "", ""])[:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _response(status: int, body: object, extra: Mapping[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
